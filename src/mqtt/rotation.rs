//! Which broker of `mqtt.broker`'s list the next connection attempt goes to, and how long to
//! wait first: a plain state machine the connection's driver asks after every outcome.
//!
//! The brokers are tried in turn: a failed attempt moves on to the next at once, and only a
//! whole round of failures waits, longer after each round (up to a ceiling). A connection
//! that was up and is lost tries its own broker again first (a broker restarting, a blip on
//! the network), then the others. With one broker this is plain reconnection with backoff.

use std::time::Duration;

/// The wait after the first round of failures, and after losing a connection that was up.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between rounds.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRotation {
    brokers: usize,
    current: usize,
    /// Attempts that failed since a broker last accepted campeer.
    failed_in_a_row: usize,
    /// The wait after the next whole round of failures.
    backoff: Duration,
}

/// Where and when to try next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextAttempt {
    /// The broker's place in the list.
    pub broker: usize,
    pub after: Duration,
}

impl BrokerRotation {
    /// A rotation over `brokers` brokers (at least one), starting with the first.
    pub fn new(brokers: usize) -> Self {
        Self {
            brokers: brokers.max(1),
            current: 0,
            failed_in_a_row: 0,
            backoff: BACKOFF_FIRST,
        }
    }

    /// The broker the current or next attempt goes to.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The broker accepted campeer: the waits start short again.
    pub fn connected(&mut self) {
        self.failed_in_a_row = 0;
        self.backoff = BACKOFF_FIRST;
    }

    /// A connection that was up is lost: its broker is tried again first, after a moment.
    pub fn lost(&mut self) -> NextAttempt {
        NextAttempt {
            broker: self.current,
            after: BACKOFF_FIRST,
        }
    }

    /// An attempt failed before the broker accepted campeer: the next broker is tried, at
    /// once unless a whole round has now failed.
    pub fn failed(&mut self) -> NextAttempt {
        self.failed_in_a_row = self.failed_in_a_row.saturating_add(1);
        self.current = (self.current + 1) % self.brokers;
        let after = if self.failed_in_a_row.is_multiple_of(self.brokers) {
            let wait = self.backoff;
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            wait
        } else {
            Duration::ZERO
        };
        NextAttempt {
            broker: self.current,
            after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_broker_is_retried_with_a_growing_wait() {
        let mut rotation = BrokerRotation::new(1);
        let waits: Vec<_> = (0..9).map(|_| rotation.failed()).collect();
        assert!(waits.iter().all(|next| next.broker == 0));
        let millis: Vec<_> = waits.iter().map(|n| n.after.as_millis()).collect();
        assert_eq!(
            millis,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
        );
        rotation.connected();
        assert_eq!(rotation.failed().after, BACKOFF_FIRST);
    }

    #[test]
    fn brokers_are_tried_in_turn_and_only_a_whole_round_waits() {
        let mut rotation = BrokerRotation::new(3);
        assert_eq!(rotation.current(), 0);
        let next = [rotation.failed(), rotation.failed(), rotation.failed()];
        assert_eq!(next.map(|n| n.broker), [1, 2, 0]);
        assert_eq!(
            next.map(|n| n.after),
            [Duration::ZERO, Duration::ZERO, BACKOFF_FIRST]
        );
        let next = [rotation.failed(), rotation.failed(), rotation.failed()];
        assert_eq!(next.map(|n| n.broker), [1, 2, 0]);
        assert_eq!(
            next[2].after,
            BACKOFF_FIRST * 2,
            "the second round waits longer"
        );
    }

    #[test]
    fn a_lost_connection_tries_its_broker_first_then_the_others() {
        let mut rotation = BrokerRotation::new(2);
        rotation.failed();
        assert_eq!(rotation.current(), 1);
        rotation.connected();
        // The second broker goes away: it is tried again, then the first.
        assert_eq!(
            rotation.lost(),
            NextAttempt {
                broker: 1,
                after: BACKOFF_FIRST
            }
        );
        assert_eq!(
            rotation.failed(),
            NextAttempt {
                broker: 0,
                after: Duration::ZERO
            }
        );
        rotation.connected();
        assert_eq!(rotation.current(), 0);
    }
}
