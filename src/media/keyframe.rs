//! When the encoder must produce an IDR frame.
//!
//! Three things ask for one: the periodic interval, a viewer that joins or falls behind, and
//! PLI/FIR feedback from a viewer's decoder. Requests are coalesced and rate-limited, so a
//! viewer that floods keyframe requests cannot turn the stream into all-IDR (which would raise
//! the bitrate for every viewer and starve the link).

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct KeyframePolicy {
    interval: Option<Duration>,
    min_gap: Duration,
    last_keyframe: Option<Instant>,
    requested: bool,
}

impl KeyframePolicy {
    /// `interval`: periodic IDR spacing (`None`: on demand only). `min_gap`: fewest time between
    /// two IDRs forced by requests.
    pub fn new(interval: Option<Duration>, min_gap: Duration) -> Self {
        Self {
            interval,
            min_gap,
            last_keyframe: None,
            requested: false,
        }
    }

    /// A viewer needs a keyframe. Served by the next frame the rate limit allows.
    pub fn request(&mut self) {
        self.requested = true;
    }

    /// Whether the frame about to be encoded must be an IDR.
    pub fn must_force(&self, now: Instant) -> bool {
        let Some(last) = self.last_keyframe else {
            return true;
        };
        let since = now.saturating_duration_since(last);
        if self.interval.is_some_and(|interval| since >= interval) {
            return true;
        }
        self.requested && since >= self.min_gap
    }

    /// Records what the encoder produced. Any IDR satisfies outstanding requests, whether it
    /// was forced or the encoder chose it (scene change, first frame).
    pub fn on_encoded(&mut self, was_keyframe: bool, now: Instant) {
        if was_keyframe {
            self.last_keyframe = Some(now);
            self.requested = false;
        }
    }

    /// Forgets the stream: the next frame is an IDR. Used when the encoder restarts.
    pub fn reset(&mut self) {
        self.last_keyframe = None;
        self.requested = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(33);

    /// Runs `frames` frames; `requests_at(i)` says whether a request arrives before frame i.
    fn count_keyframes(
        policy: &mut KeyframePolicy,
        frames: u32,
        requests_at: impl Fn(u32) -> bool,
    ) -> Vec<u32> {
        let start = Instant::now();
        let mut keyframes = vec![];
        for i in 0..frames {
            if requests_at(i) {
                policy.request();
            }
            let now = start + FRAME * i;
            let key = policy.must_force(now);
            if key {
                keyframes.push(i);
            }
            policy.on_encoded(key, now);
        }
        keyframes
    }

    #[test]
    fn first_frame_is_a_keyframe() {
        let policy = KeyframePolicy::new(None, Duration::from_millis(500));
        assert!(policy.must_force(Instant::now()));
    }

    #[test]
    fn periodic_interval_is_honoured() {
        let mut policy = KeyframePolicy::new(Some(Duration::from_secs(1)), Duration::ZERO);
        let keys = count_keyframes(&mut policy, 100, |_| false);
        // 100 frames of 33 ms = 3.3 s: frames 0, ~31, ~62, ~93.
        assert_eq!(keys.len(), 4, "{keys:?}");
        assert!(keys.windows(2).all(|w| w[1] - w[0] == 31), "{keys:?}");
    }

    #[test]
    fn a_request_is_served_by_the_next_frame() {
        let mut policy = KeyframePolicy::new(None, Duration::from_millis(500));
        let keys = count_keyframes(&mut policy, 60, |i| i == 40);
        assert_eq!(keys, vec![0, 40]);
    }

    #[test]
    fn a_flood_of_requests_is_rate_limited() {
        let mut policy = KeyframePolicy::new(None, Duration::from_millis(500));
        // A request before every frame for 3.3 s.
        let keys = count_keyframes(&mut policy, 100, |_| true);
        // At most one per 500 ms (16 frames at 33 ms): 0, 16, 32, 48, 64, 80, 96.
        assert_eq!(keys, vec![0, 16, 32, 48, 64, 80, 96]);
    }

    #[test]
    fn a_request_inside_the_gap_waits_rather_than_being_lost() {
        let mut policy = KeyframePolicy::new(None, Duration::from_millis(500));
        let keys = count_keyframes(&mut policy, 40, |i| i == 3);
        assert_eq!(keys, vec![0, 16]);
    }

    #[test]
    fn an_encoder_chosen_idr_satisfies_requests() {
        let mut policy = KeyframePolicy::new(None, Duration::ZERO);
        let now = Instant::now();
        policy.on_encoded(true, now);
        policy.request();
        policy.on_encoded(true, now + FRAME);
        assert!(!policy.must_force(now + FRAME * 2));
    }

    #[test]
    fn reset_forces_the_next_frame() {
        let mut policy = KeyframePolicy::new(None, Duration::from_secs(10));
        let now = Instant::now();
        policy.on_encoded(true, now);
        assert!(!policy.must_force(now + FRAME));
        policy.reset();
        assert!(policy.must_force(now + FRAME));
    }
}
