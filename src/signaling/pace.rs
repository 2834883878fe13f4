//! Small clocks for the signaling core: how often something may happen.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// At most `limit` events in any `window`: a sliding window over the last `limit` times.
#[derive(Debug, Clone)]
pub struct RateWindow {
    limit: usize,
    window: Duration,
    times: VecDeque<Instant>,
}

impl RateWindow {
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit,
            window,
            times: VecDeque::with_capacity(limit),
        }
    }

    /// Counts an event at `now`; `false` (and not counted) when the window is full.
    pub fn allow(&mut self, now: Instant) -> bool {
        while self
            .times
            .front()
            .is_some_and(|first| now.saturating_duration_since(*first) >= self.window)
        {
            self.times.pop_front();
        }
        if self.times.len() >= self.limit {
            return false;
        }
        self.times.push_back(now);
        true
    }
}

/// A token bucket: `burst` at once, then `per_second` on average.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: f64,
    per_second: f64,
    tokens: f64,
    refilled_at: Option<Instant>,
}

impl TokenBucket {
    pub fn new(burst: u32, per_second: u32) -> Self {
        Self {
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            tokens: f64::from(burst),
            refilled_at: None,
        }
    }

    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.refilled_at {
            let earned = now.saturating_duration_since(at).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + earned).min(self.burst);
        }
        self.refilled_at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Coalesces status publishes: a change is published at once when the last publish is at
/// least `interval` old, otherwise once at the end of the interval with whatever is current
/// then. A flood of joins and leaves costs two publishes a second, not one per event.
#[derive(Debug, Clone)]
pub struct StatusPacer {
    interval: Duration,
    dirty: bool,
    published_at: Option<Instant>,
}

impl StatusPacer {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            dirty: false,
            published_at: None,
        }
    }

    /// Something in the status changed at `now`: `true` to publish it right away.
    pub fn changed(&mut self, now: Instant) -> bool {
        self.dirty = true;
        self.poll(now)
    }

    /// Publish now regardless of the interval (after a reconnect the broker must learn the
    /// status at once).
    pub fn force(&mut self, now: Instant) {
        self.dirty = false;
        self.published_at = Some(now);
    }

    /// When a pending change is due; `None` when nothing is pending.
    pub fn due_at(&self) -> Option<Instant> {
        self.published_at
            .filter(|_| self.dirty)
            .map(|at| at + self.interval)
    }

    /// Whether a pending change is due at `now`; if so, it counts as published.
    pub fn poll(&mut self, now: Instant) -> bool {
        let due = self.dirty
            && self
                .published_at
                .is_none_or(|at| now.saturating_duration_since(at) >= self.interval);
        if due {
            self.force(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_allows_its_limit_then_frees_up() {
        let t0 = Instant::now();
        let mut window = RateWindow::new(3, Duration::from_secs(60));
        for s in 0..3 {
            assert!(window.allow(t0 + Duration::from_secs(s)));
        }
        assert!(!window.allow(t0 + Duration::from_secs(30)));
        assert!(!window.allow(t0 + Duration::from_secs(59)));
        assert!(window.allow(t0 + Duration::from_secs(60)), "the first left");
        assert!(!window.allow(t0 + Duration::from_secs(60)));
    }

    #[test]
    fn the_bucket_gives_a_burst_then_a_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(5, 10);
        assert_eq!((0..20).filter(|_| bucket.take(t0)).count(), 5);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| bucket.take(t1)).count(), 5);
        let t2 = t1 + Duration::from_secs(100);
        assert_eq!(
            (0..20).filter(|_| bucket.take(t2)).count(),
            5,
            "capped at the burst"
        );
    }

    #[test]
    fn status_changes_are_coalesced() {
        let t0 = Instant::now();
        let mut pacer = StatusPacer::new(Duration::from_millis(500));
        assert!(!pacer.poll(t0), "nothing changed");
        assert_eq!(pacer.due_at(), None);
        assert!(pacer.changed(t0), "the first change goes out at once");
        let published = (1..500)
            .filter(|ms| pacer.changed(t0 + Duration::from_millis(*ms)))
            .count();
        assert_eq!(published, 0);
        assert_eq!(pacer.due_at(), Some(t0 + Duration::from_millis(500)));
        assert!(!pacer.poll(t0 + Duration::from_millis(499)));
        assert!(pacer.poll(t0 + Duration::from_millis(500)));
        assert!(!pacer.poll(t0 + Duration::from_secs(5)), "nothing pending");
        assert!(
            pacer.changed(t0 + Duration::from_secs(5)),
            "quiet long enough"
        );
    }
}
