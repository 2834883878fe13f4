//! The signaling core driven by a stranger: a sequence of messages on any session ids, session
//! answers, connections and ends, and clock steps. Whatever arrives, it must not panic and must keep its promises: never
//! more sessions than the limit, never more actions than the inputs justify.
#![no_main]

use campeer::protocol::Segment;
use campeer::signaling::sessions::EndReason;
use campeer::signaling::{Action, Limits, Signaling};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

const MAX_VIEWERS: usize = 3;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::new(MAX_VIEWERS, Duration::from_secs(30));
    let most_waiting = limits.waiting_offers;
    let mut core = Signaling::new(limits, true);
    let mut now = Instant::now();
    let mut started: Vec<(Segment, u64)> = Vec::new();
    // Records: [op, session byte, length, payload...].
    let mut rest = data;
    while let [op, session, length, tail @ ..] = rest {
        let take = usize::from(*length).min(tail.len());
        let (payload, next) = tail.split_at(take);
        rest = next;
        let Ok(id) = Segment::parse(&format!("s{}", session % 8)) else {
            continue;
        };
        match op % 6 {
            0 => core.handle_message(now, id, payload),
            1 => {
                if let Some((id, serial)) = started.pop() {
                    core.session_ended(now, id, serial, &EndReason::Timeout);
                }
            }
            2 => {
                now += Duration::from_millis(u64::from(*length) * 10);
                core.handle_timeout(now);
            }
            3 if *length % 4 == 0 => core.broker_lost(),
            3 => core.broker_connected(now),
            4 => {
                if let Some((id, serial)) =
                    started.get(usize::from(*session) % started.len().max(1))
                {
                    core.session_answered(now, id, *serial);
                }
            }
            _ => {
                if let Some((id, serial)) =
                    started.get(usize::from(*session) % started.len().max(1))
                {
                    core.session_connected(id, *serial);
                }
            }
        }
        while let Some(action) = core.poll_action() {
            if let Action::Start(start) = action {
                started.push((start.id, start.serial));
            }
        }
        assert!(core.occupied() <= MAX_VIEWERS, "admission let too many in");
        assert!(core.waiting() <= most_waiting, "more offers wait than allowed");
    }
});
