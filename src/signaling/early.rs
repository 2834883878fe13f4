//! Candidates that arrive before their session's offer.

use crate::protocol::{Candidate, Segment};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Candidates that arrived before their session's offer (MQTT does not order messages across
/// a viewer's publishes strictly enough to rely on, and browsers trickle fast). Bounded in
/// every dimension, so an anonymous flood cannot grow memory.
pub struct EarlyCandidates {
    by_session: HashMap<Segment, (Instant, Vec<Candidate>)>,
    max_sessions: usize,
    max_per_session: usize,
    ttl: Duration,
}

impl EarlyCandidates {
    pub fn new(max_sessions: usize, max_per_session: usize, ttl: Duration) -> Self {
        Self {
            by_session: HashMap::new(),
            max_sessions,
            max_per_session,
            ttl,
        }
    }

    /// Holds a candidate; `false` when a limit refused it.
    pub fn hold(&mut self, session: &Segment, candidate: Candidate, now: Instant) -> bool {
        if !self.by_session.contains_key(session) && self.by_session.len() >= self.max_sessions {
            return false;
        }
        let (_, held) = self
            .by_session
            .entry(session.clone())
            .or_insert_with(|| (now, Vec::new()));
        if held.len() >= self.max_per_session {
            return false;
        }
        held.push(candidate);
        true
    }

    pub fn take(&mut self, session: &Segment) -> Vec<Candidate> {
        self.by_session
            .remove(session)
            .map(|(_, held)| held)
            .unwrap_or_default()
    }

    pub fn forget(&mut self, session: &Segment) {
        self.by_session.remove(session);
    }

    pub fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.by_session
            .retain(|_, (first, _)| now.saturating_duration_since(*first) < ttl);
    }

    /// How many more candidates `session` may have held.
    pub fn room(&self, session: &Segment) -> usize {
        let held = self
            .by_session
            .get(session)
            .map_or(0, |(_, held)| held.len());
        if held == 0 && self.by_session.len() >= self.max_sessions {
            return 0;
        }
        self.max_per_session.saturating_sub(held)
    }

    pub fn sessions(&self) -> usize {
        self.by_session.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn candidate(n: u32) -> Candidate {
        Candidate {
            candidate: format!("candidate:{n} 1 udp 1 127.0.0.1 {n} typ host"),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: None,
        }
    }

    fn seg(s: &str) -> Segment {
        Segment::parse(s).unwrap()
    }

    #[test]
    fn early_candidates_are_held_in_order_and_taken_once() {
        let mut early = EarlyCandidates::new(4, 4, Duration::from_secs(30));
        let now = Instant::now();
        assert!(early.hold(&seg("a"), candidate(1), now));
        assert!(early.hold(&seg("a"), candidate(2), now));
        assert_eq!(early.take(&seg("a")), vec![candidate(1), candidate(2)]);
        assert!(early.take(&seg("a")).is_empty());
    }

    #[test]
    fn early_candidates_are_bounded() {
        let mut early = EarlyCandidates::new(2, 3, Duration::from_secs(30));
        let now = Instant::now();
        for n in 0..3 {
            assert!(early.hold(&seg("a"), candidate(n), now));
        }
        assert!(
            !early.hold(&seg("a"), candidate(9), now),
            "per-session limit"
        );
        assert!(early.hold(&seg("b"), candidate(1), now));
        assert!(!early.hold(&seg("c"), candidate(1), now), "session limit");
        assert_eq!(early.sessions(), 2);
    }

    #[test]
    fn early_candidates_expire() {
        let mut early = EarlyCandidates::new(4, 4, Duration::from_secs(30));
        let now = Instant::now();
        early.hold(&seg("old"), candidate(1), now);
        early.hold(&seg("new"), candidate(2), now + Duration::from_secs(20));
        early.expire(now + Duration::from_secs(31));
        assert!(early.take(&seg("old")).is_empty());
        assert_eq!(early.take(&seg("new")), vec![candidate(2)]);
    }
}
