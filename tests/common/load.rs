//! How many scenarios of one test binary run at once on a 2-core machine.
//!
//! Most scenarios spend their time waiting (for a broker, a timeout, a browser to load) and
//! can run beside each other; those that measure time or resources (frame rates, freezes,
//! latency, a rate's reaction, the process's memory) must have the machine to themselves, or
//! they measure each other. Every scenario says which it is as its first statement:
//!
//! ```ignore
//! let _load = common::load::shared();        // runs beside up to SHARED_AT_ONCE - 1 others
//! let _load = common::load::whole_machine(); // runs alone in its binary
//! ```
//!
//! The gate is per process, so it holds within a test binary whatever `--test-threads` says;
//! cargo runs the binaries one after another.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Scenarios of the shared kind that may run at once. Each runs campeer, its viewers and often
/// a browser or another WebRTC stack; three at once keep a 2-core machine busy without
/// starving any of them into a timeout.
pub const SHARED_AT_ONCE: usize = 3;

#[derive(Default)]
struct Occupancy {
    shared: usize,
    whole: bool,
    /// Scenarios waiting for the whole machine: no new shared one starts meanwhile, so they
    /// are not starved by a stream of short shared scenarios.
    whole_waiting: usize,
}

struct Gate {
    occupancy: Mutex<Occupancy>,
    changed: Condvar,
}

static GATE: Gate = Gate {
    occupancy: Mutex::new(Occupancy {
        shared: 0,
        whole: false,
        whole_waiting: 0,
    }),
    changed: Condvar::new(),
};

impl Gate {
    /// The lock survives a scenario that panicked while holding it: its slot was given back
    /// by [`Slot`]'s drop during the unwind, so the counts are right.
    fn lock(&self) -> MutexGuard<'_, Occupancy> {
        self.occupancy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Occupancy>) -> MutexGuard<'a, Occupancy> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A scenario's place; given back when dropped (at the end of the scenario, or when it
/// panics).
#[must_use = "the place is given back when this is dropped: bind it to `_load`, not `_`"]
pub struct Slot {
    whole: bool,
}

/// A place beside other shared scenarios. Blocks (the calling thread) until there is one.
pub fn shared() -> Slot {
    let mut occupancy = GATE.lock();
    while occupancy.whole || occupancy.whole_waiting > 0 || occupancy.shared >= SHARED_AT_ONCE {
        occupancy = GATE.wait(occupancy);
    }
    occupancy.shared += 1;
    Slot { whole: false }
}

/// The machine to itself, within this binary. Blocks (the calling thread) until every other
/// scenario has given its place back.
pub fn whole_machine() -> Slot {
    let mut occupancy = GATE.lock();
    occupancy.whole_waiting += 1;
    while occupancy.whole || occupancy.shared > 0 {
        occupancy = GATE.wait(occupancy);
    }
    occupancy.whole_waiting -= 1;
    occupancy.whole = true;
    Slot { whole: true }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut occupancy = GATE.lock();
        if self.whole {
            occupancy.whole = false;
        } else {
            occupancy.shared = occupancy.shared.saturating_sub(1);
        }
        drop(occupancy);
        GATE.changed.notify_all();
    }
}
