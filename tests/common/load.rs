//! How many scenarios run at once on a 2-core machine, across every test binary.
//!
//! Most scenarios spend their time waiting (for a broker, a timeout, a browser to load) and
//! can run beside each other; those that measure time or resources (frame rates, freezes,
//! latency, a rate's reaction, the process's memory) must have the machine to themselves, or
//! they measure each other. Every scenario says which it is as its first statement:
//!
//! ```ignore
//! let _load = common::load::shared();        // runs beside up to SHARED_AT_ONCE - 1 others
//! let _load = common::load::whole_machine(); // runs alone on the machine
//! ```
//!
//! The gate is held in file locks (`flock`) under `target/test-load/`, so it holds within a
//! binary whatever `--test-threads` says, and across binaries run side by side (cargo runs them
//! one after another; two terminals need not). A lock goes with its file descriptor: a
//! scenario that panics, or a binary that is killed, gives its place back.
//!
//! The locks, writer-preferring so that a stream of short shared scenarios does not starve a
//! measurement:
//! - `turnstile`: every scenario passes it on the way in. A scenario waiting for the whole
//!   machine holds it while it waits, so no new shared scenario starts meanwhile.
//! - `machine`: shared scenarios hold it shared, a whole-machine scenario exclusively.
//! - `slot-N`: each shared scenario holds one of [`SHARED_AT_ONCE`] exclusively.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

/// Scenarios of the shared kind that may run at once. Each runs campeer, its viewers and often
/// a browser or another WebRTC stack; three at once keep a 2-core machine busy without
/// starving any of them into a timeout.
pub const SHARED_AT_ONCE: usize = 3;

/// How often a shared scenario looks for a free slot while all are taken.
const SLOT_POLL: Duration = Duration::from_millis(50);

/// A scenario's place; given back when dropped (at the end of the scenario, or when it
/// panics), as its files close.
#[must_use = "the place is given back when this is dropped: bind it to `_load`, not `_`"]
pub struct Slot {
    _machine: File,
    _slot: Option<File>,
}

fn gate_file(name: &str) -> File {
    let dir: PathBuf = crate::repo_root().join("target/test-load");
    std::fs::create_dir_all(&dir).expect("create target/test-load");
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(name))
        .unwrap_or_else(|e| panic!("open the load gate's {name}: {e}"))
}

/// `flock(2)`, retried when a signal interrupts it. `false` only for a non-blocking attempt
/// on a lock someone else holds.
fn lock(file: &File, operation: libc::c_int) -> bool {
    loop {
        // SAFETY: flock on a descriptor this File owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return true;
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if operation & libc::LOCK_NB != 0 => return false,
            _ => panic!("flock on the load gate: {error}"),
        }
    }
}

/// A place beside other shared scenarios. Blocks (the calling thread) until there is one.
pub fn shared() -> Slot {
    let turnstile = gate_file("turnstile");
    lock(&turnstile, libc::LOCK_EX);
    let machine = gate_file("machine");
    lock(&machine, libc::LOCK_SH);
    let slot = loop {
        let free = (0..SHARED_AT_ONCE).find_map(|index| {
            let slot = gate_file(&format!("slot-{index}"));
            lock(&slot, libc::LOCK_EX | libc::LOCK_NB).then_some(slot)
        });
        match free {
            Some(slot) => break slot,
            None => std::thread::sleep(SLOT_POLL),
        }
    };
    // Closing the turnstile's file lets the next scenario in.
    drop(turnstile);
    Slot {
        _machine: machine,
        _slot: Some(slot),
    }
}

/// The machine to itself. Blocks (the calling thread) until every other scenario, in this
/// binary or another, has given its place back.
pub fn whole_machine() -> Slot {
    let turnstile = gate_file("turnstile");
    lock(&turnstile, libc::LOCK_EX);
    let machine = gate_file("machine");
    lock(&machine, libc::LOCK_EX);
    drop(turnstile);
    Slot {
        _machine: machine,
        _slot: None,
    }
}
