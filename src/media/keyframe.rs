//! When the encoder must produce an IDR frame.
//!
//! Three things ask for one: the periodic interval, a viewer whose decoder (re)connects or
//! fell behind, and PLI/FIR feedback from a viewer's decoder. Requests are coalesced and
//! rate-limited by a token bucket: a short burst is served at once (two viewers joining
//! together both see a picture immediately), but a viewer that floods keyframe requests gets
//! at most one IDR per `min_gap`, so it cannot turn the stream into all-IDR (which would raise
//! the bitrate for every viewer and starve the link).

use std::time::{Duration, Instant};

/// Request-driven IDRs that may follow each other without waiting for `min_gap`.
const BURST: f64 = 2.0;

#[derive(Debug, Clone)]
pub struct KeyframePolicy {
    interval: Option<Duration>,
    min_gap: Duration,
    last_keyframe: Option<Instant>,
    requested: bool,
    /// A viewer whose decoder has just (re)connected asked: it has none of the keyframe
    /// that may still be on its way to the others, so it does not wait for that one's airtime.
    for_new_viewer: bool,
    tokens: f64,
    refilled_at: Option<Instant>,
    /// How long the last keyframe takes to reach the viewers at the encoder's rate. A
    /// requested keyframe waits that long after it: on a slow link, a viewer that lost part of
    /// one asks again before the rest could arrive, and keyframes sent back to back would fill
    /// the link with pictures none of which gets through.
    airtime: Duration,
}

impl KeyframePolicy {
    /// `interval`: periodic IDR spacing (`None`: on demand only). `min_gap`: the sustained
    /// spacing of IDRs forced by requests (zero: no limit).
    pub fn new(interval: Option<Duration>, min_gap: Duration) -> Self {
        Self {
            interval,
            min_gap,
            last_keyframe: None,
            requested: false,
            for_new_viewer: false,
            tokens: BURST,
            refilled_at: None,
            airtime: Duration::ZERO,
        }
    }

    /// Records how long the keyframe just encoded takes to send at the current rate.
    pub fn set_airtime(&mut self, airtime: Duration) {
        self.airtime = airtime;
    }

    /// A viewer needs a keyframe. Served by the next frame the rate limit allows.
    pub fn request(&mut self) {
        self.requested = true;
    }

    /// A viewer that has just connected needs its first keyframe: served by the next frame
    /// the token bucket allows, without waiting for the last keyframe's airtime (which is
    /// for viewers that got part of it; this one got none). Measured: a viewer joining a
    /// pipeline that had just started waited ~250 ms for the start's keyframe airtime.
    pub fn request_for_new_viewer(&mut self) {
        self.requested = true;
        self.for_new_viewer = true;
    }

    /// Whether the frame about to be encoded must be an IDR. Spends a token when a request is
    /// what forces it.
    pub fn decide(&mut self, now: Instant) -> bool {
        self.refill(now);
        let Some(last) = self.last_keyframe else {
            return true;
        };
        if self
            .interval
            .is_some_and(|interval| now.saturating_duration_since(last) >= interval)
        {
            return true;
        }
        if !self.requested {
            return false;
        }
        if !self.for_new_viewer && now.saturating_duration_since(last) < self.airtime {
            return false;
        }
        if self.min_gap.is_zero() {
            return true;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }

    fn refill(&mut self, now: Instant) {
        if let Some(then) = self.refilled_at
            && !self.min_gap.is_zero()
        {
            let earned =
                now.saturating_duration_since(then).as_secs_f64() / self.min_gap.as_secs_f64();
            self.tokens = (self.tokens + earned).min(BURST);
        }
        self.refilled_at = Some(now);
    }

    /// Records what the encoder produced. Any IDR satisfies outstanding requests, whether it
    /// was forced or the encoder chose it (scene change, first frame).
    pub fn on_encoded(&mut self, was_keyframe: bool, now: Instant) {
        if was_keyframe {
            self.last_keyframe = Some(now);
            self.requested = false;
            self.for_new_viewer = false;
        }
    }

    /// Forgets the stream: the next frame is an IDR. Used when the encoder restarts.
    pub fn reset(&mut self) {
        self.last_keyframe = None;
        self.requested = false;
        self.for_new_viewer = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requested_keyframe_waits_for_the_last_one_to_get_through() {
        let mut policy = KeyframePolicy::new(None, Duration::from_millis(100));
        let start = Instant::now();
        assert!(policy.decide(start));
        policy.on_encoded(true, start);
        // A 30 KB keyframe at 240 kbit/s is a second on the wire.
        policy.set_airtime(Duration::from_secs(1));
        policy.request();
        assert!(!policy.decide(start + Duration::from_millis(500)));
        assert!(policy.decide(start + Duration::from_millis(1000)));
    }

    #[test]
    fn a_new_viewer_does_not_wait_for_the_airtime_of_a_keyframe_it_never_got() {
        let mut policy = KeyframePolicy::new(None, Duration::from_millis(100));
        let start = Instant::now();
        assert!(policy.decide(start));
        policy.on_encoded(true, start);
        policy.set_airtime(Duration::from_secs(1));
        policy.request_for_new_viewer();
        assert!(policy.decide(start + Duration::from_millis(100)));
        policy.on_encoded(true, start + Duration::from_millis(100));
        // An ordinary request after it waits for the airtime again.
        policy.request();
        assert!(!policy.decide(start + Duration::from_millis(300)));
        // And new viewers still spend tokens: a flood of joins is rate-limited.
        let mut policy = KeyframePolicy::new(None, Duration::from_secs(1));
        let mut forced = 0;
        for i in 0..30 {
            let now = start + FRAME * i;
            policy.request_for_new_viewer();
            if policy.decide(now) {
                forced += 1;
                policy.on_encoded(true, now);
            }
        }
        assert!(forced <= 3, "{forced} keyframes for 30 joins in a second");
    }

    const FRAME: Duration = Duration::from_millis(33);

    /// Runs `frames` frames; `requests_at(i)` says whether a request arrives before frame i.
    fn keyframes(
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
            let key = policy.decide(now);
            if key {
                keyframes.push(i);
            }
            policy.on_encoded(key, now);
        }
        keyframes
    }

    #[test]
    fn first_frame_is_a_keyframe() {
        let mut policy = KeyframePolicy::new(None, Duration::from_millis(500));
        assert!(policy.decide(Instant::now()));
    }

    #[test]
    fn periodic_interval_is_honoured() {
        let mut policy = KeyframePolicy::new(Some(Duration::from_secs(1)), Duration::ZERO);
        let keys = keyframes(&mut policy, 100, |_| false);
        // 100 frames of 33 ms = 3.3 s: frames 0, ~31, ~62, ~93.
        assert_eq!(keys.len(), 4, "{keys:?}");
        assert!(keys.windows(2).all(|w| w[1] - w[0] == 31), "{keys:?}");
    }

    #[test]
    fn a_request_is_served_by_the_next_frame() {
        let mut policy = KeyframePolicy::new(None, Duration::from_millis(500));
        assert_eq!(keyframes(&mut policy, 60, |i| i == 40), vec![0, 40]);
    }

    #[test]
    fn a_request_right_after_the_first_keyframe_is_not_delayed() {
        // A viewer connecting just after the encoder started must not wait out the gap.
        let mut policy = KeyframePolicy::new(None, Duration::from_millis(500));
        assert_eq!(
            keyframes(&mut policy, 20, |i| i == 3 || i == 5),
            vec![0, 3, 5]
        );
    }

    #[test]
    fn a_flood_of_requests_is_rate_limited() {
        let mut policy = KeyframePolicy::new(None, Duration::from_millis(500));
        // A request before every frame for 10 s.
        let keys = keyframes(&mut policy, 300, |_| true);
        // The first frame, a burst of two, then one per 500 ms: about 1 + 2 + 20.
        assert!(
            (20..=24).contains(&keys.len()),
            "{} keyframes: {keys:?}",
            keys.len()
        );
        let sustained = &keys[3..];
        assert!(
            sustained.windows(2).all(|w| w[1] - w[0] >= 15),
            "IDRs closer than the gap: {keys:?}"
        );
    }

    #[test]
    fn zero_gap_means_no_limit() {
        let mut policy = KeyframePolicy::new(None, Duration::ZERO);
        assert_eq!(keyframes(&mut policy, 5, |_| true), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn an_encoder_chosen_idr_satisfies_requests() {
        let mut policy = KeyframePolicy::new(None, Duration::ZERO);
        let now = Instant::now();
        policy.on_encoded(true, now);
        policy.request();
        policy.on_encoded(true, now + FRAME);
        assert!(!policy.decide(now + FRAME * 2));
    }

    #[test]
    fn reset_forces_the_next_frame() {
        let mut policy = KeyframePolicy::new(None, Duration::from_secs(10));
        let now = Instant::now();
        policy.on_encoded(true, now);
        assert!(!policy.decide(now + FRAME));
        policy.reset();
        assert!(policy.decide(now + FRAME));
    }
}
