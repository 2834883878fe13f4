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
///
/// While the broker connection is up, the status also goes out again every `refresh` without
/// a change: a broker cluster that keeps retained messages per node (RabbitMQ) shows a viewer
/// on another node than campeer's only what it publishes while that viewer listens.
#[derive(Debug, Clone)]
pub struct StatusPacer {
    interval: Duration,
    refresh: Duration,
    dirty: bool,
    published_at: Option<Instant>,
    /// The broker connection is up: refreshes go out.
    connected: bool,
}

impl StatusPacer {
    pub fn new(interval: Duration, refresh: Duration) -> Self {
        Self {
            interval,
            refresh,
            dirty: false,
            published_at: None,
            connected: false,
        }
    }

    /// The broker connection is down: no refreshes until [`StatusPacer::force`] says it is
    /// back (they would only queue up).
    pub fn disconnected(&mut self) {
        self.connected = false;
    }

    /// Something in the status changed at `now`: `true` to publish it right away.
    pub fn changed(&mut self, now: Instant) -> bool {
        self.dirty = true;
        self.poll(now)
    }

    /// Publish now regardless of the interval: the broker has (again) accepted the
    /// connection and must learn the status at once.
    pub fn force(&mut self, now: Instant) {
        self.connected = true;
        self.published(now);
    }

    fn published(&mut self, now: Instant) {
        self.dirty = false;
        self.published_at = Some(now);
    }

    /// When a pending change or the next refresh is due; `None` when neither is.
    pub fn due_at(&self) -> Option<Instant> {
        let at = self.published_at?;
        if self.dirty {
            Some(at + self.interval)
        } else if self.connected {
            Some(at + self.refresh)
        } else {
            None
        }
    }

    /// Whether a pending change or a refresh is due at `now`; if so, it counts as published.
    pub fn poll(&mut self, now: Instant) -> bool {
        let since = self
            .published_at
            .map(|at| now.saturating_duration_since(at));
        let change_due = self.dirty && since.is_none_or(|since| since >= self.interval);
        let refresh_due = self.connected && since.is_some_and(|since| since >= self.refresh);
        if change_due || refresh_due {
            self.published(now);
        }
        change_due || refresh_due
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
        let mut pacer = StatusPacer::new(Duration::from_millis(500), Duration::from_secs(3600));
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

    #[test]
    fn the_status_is_refreshed_while_the_broker_connection_is_up() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let mut pacer = StatusPacer::new(Duration::from_millis(500), secs(10));
        assert_eq!(pacer.due_at(), None, "never connected: nothing to refresh");
        pacer.force(t0);
        assert_eq!(pacer.due_at(), Some(t0 + secs(10)));
        assert!(!pacer.poll(t0 + secs(9)));
        assert!(pacer.poll(t0 + secs(10)), "refreshed without a change");
        assert_eq!(pacer.due_at(), Some(t0 + secs(20)));
        // A change resets the clock: the refresh comes 10 s after it.
        assert!(pacer.changed(t0 + secs(15)));
        assert!(!pacer.poll(t0 + secs(24)));
        assert!(pacer.poll(t0 + secs(25)));
        // The broker goes away: no refreshes pile up in the queue meanwhile.
        pacer.disconnected();
        assert_eq!(pacer.due_at(), None);
        assert!(!pacer.poll(t0 + secs(300)));
        pacer.force(t0 + secs(301));
        assert!(pacer.poll(t0 + secs(311)));
    }
}
