//! When a viewer session has been unreachable too long and must be torn down.
//!
//! A session is live while its peer connection is connected. From creation until the first
//! connection, and from any disconnect or failure until it recovers (an ICE restart can bring
//! it back), the clock runs; when it reaches the timeout, the session ends.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

#[derive(Debug, Clone)]
pub struct Liveness {
    /// From the offer to the first connection: short, so offers that never connect do not
    /// hold viewer slots.
    connect_timeout: Duration,
    /// After a connected session loses its link: long enough for an ICE restart.
    timeout: Duration,
    unreachable_since: Option<Instant>,
    ever_connected: bool,
    closed: bool,
}

impl Liveness {
    pub fn new(connect_timeout: Duration, timeout: Duration, now: Instant) -> Self {
        Self {
            connect_timeout,
            timeout,
            unreachable_since: Some(now),
            ever_connected: false,
            closed: false,
        }
    }

    pub fn on_state(&mut self, state: LinkState, now: Instant) {
        match state {
            LinkState::Connected => {
                self.unreachable_since = None;
                self.ever_connected = true;
            }
            LinkState::Closed => self.closed = true,
            LinkState::Connecting | LinkState::Disconnected | LinkState::Failed => {
                self.unreachable_since.get_or_insert(now);
            }
        }
    }

    pub fn is_connected(&self) -> bool {
        self.unreachable_since.is_none() && !self.closed
    }

    /// When the session will be torn down unless it connects first.
    pub fn deadline(&self) -> Option<Instant> {
        let allowed = if self.ever_connected {
            self.timeout
        } else {
            self.connect_timeout
        };
        self.unreachable_since.map(|since| since + allowed)
    }

    pub fn must_end(&self, now: Instant) -> bool {
        self.closed || self.deadline().is_some_and(|deadline| now >= deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[test]
    fn a_session_that_never_connects_times_out() {
        let t0 = Instant::now();
        let mut live = Liveness::new(TIMEOUT, TIMEOUT, t0);
        live.on_state(LinkState::Connecting, t0 + Duration::from_secs(3));
        assert!(!live.must_end(t0 + Duration::from_secs(9)));
        assert!(live.must_end(t0 + TIMEOUT));
    }

    #[test]
    fn a_connected_session_lives_and_a_disconnect_starts_the_clock() {
        let t0 = Instant::now();
        let mut live = Liveness::new(TIMEOUT, TIMEOUT, t0);
        live.on_state(LinkState::Connected, t0 + Duration::from_secs(1));
        assert!(live.is_connected());
        assert_eq!(live.deadline(), None);
        assert!(!live.must_end(t0 + Duration::from_secs(3600)));
        let cut = t0 + Duration::from_secs(100);
        live.on_state(LinkState::Disconnected, cut);
        // Failed after Disconnected does not restart the clock.
        live.on_state(LinkState::Failed, cut + Duration::from_secs(5));
        assert_eq!(live.deadline(), Some(cut + TIMEOUT));
        assert!(live.must_end(cut + TIMEOUT));
    }

    #[test]
    fn recovering_stops_the_clock() {
        let t0 = Instant::now();
        let mut live = Liveness::new(TIMEOUT, TIMEOUT, t0);
        live.on_state(LinkState::Connected, t0);
        live.on_state(LinkState::Disconnected, t0 + Duration::from_secs(1));
        live.on_state(LinkState::Connected, t0 + Duration::from_secs(8));
        assert!(!live.must_end(t0 + Duration::from_secs(20)));
    }

    #[test]
    fn closed_ends_at_once() {
        let t0 = Instant::now();
        let mut live = Liveness::new(TIMEOUT, TIMEOUT, t0);
        live.on_state(LinkState::Connected, t0);
        live.on_state(LinkState::Closed, t0);
        assert!(live.must_end(t0));
        assert!(!live.is_connected());
    }

    #[test]
    fn the_first_connection_has_the_shorter_deadline() {
        let t0 = Instant::now();
        let mut live = Liveness::new(Duration::from_secs(3), TIMEOUT, t0);
        assert_eq!(live.deadline(), Some(t0 + Duration::from_secs(3)));
        live.on_state(LinkState::Connecting, t0 + Duration::from_secs(1));
        assert!(live.must_end(t0 + Duration::from_secs(3)));

        let mut live = Liveness::new(Duration::from_secs(3), TIMEOUT, t0);
        live.on_state(LinkState::Connected, t0 + Duration::from_secs(2));
        let cut = t0 + Duration::from_secs(50);
        live.on_state(LinkState::Disconnected, cut);
        assert!(!live.must_end(cut + Duration::from_secs(5)));
        assert_eq!(live.deadline(), Some(cut + TIMEOUT));
    }
}
