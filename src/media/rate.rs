//! The one encoder's target rate, set from the links of the viewers it serves.
//!
//! Each viewer's link has an estimate (see `link`); what is left of it for video, after sound
//! and packet overhead, is that viewer's budget. The encoder works to the smallest budget, so
//! no viewer is sent more than its link carries, within the configured rate and above a floor
//! below which no picture is worth sending. Decreases take effect at once (a link is
//! overflowing); increases are spaced out, so the encoder does not chase every estimate.

use std::time::{Duration, Instant};

/// Share of a link's estimate left for media after RTP, SRTP, UDP and IP headers (about 50
/// bytes on packets of about 1200) and a margin for the estimate's own error.
const PAYLOAD_SHARE: f64 = 0.90;
/// Per-packet overhead of sound, on top of its codec rate: 50 packets a second of ~60 bytes.
const AUDIO_OVERHEAD_BPS: f64 = 24_000.0;
/// Increases closer together than this would follow noise.
const INCREASE_SPACING: Duration = Duration::from_millis(500);
/// Changes smaller than this share are not worth telling the encoder.
const MIN_CHANGE: f64 = 0.04;

/// One viewer as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewerLink {
    pub estimate_bps: f64,
    /// The codec rate of the sound this viewer gets, 0 without sound.
    pub audio_bps: f64,
}

impl ViewerLink {
    /// What this viewer's link leaves for video.
    pub fn video_budget(&self) -> f64 {
        let audio = if self.audio_bps > 0.0 {
            self.audio_bps + AUDIO_OVERHEAD_BPS
        } else {
            0.0
        };
        (self.estimate_bps * PAYLOAD_SHARE - audio).max(0.0)
    }
}

#[derive(Debug, Clone)]
pub struct RateAllocator {
    min_bps: u32,
    max_bps: u32,
    current_bps: u32,
    last_increase: Option<Instant>,
}

impl RateAllocator {
    /// Starts at the configured rate, which is also the most it will ever ask for.
    pub fn new(min_bps: u32, max_bps: u32) -> Self {
        let max_bps = max_bps.max(min_bps);
        Self {
            min_bps,
            max_bps,
            current_bps: max_bps,
            last_increase: None,
        }
    }

    pub fn current_bps(&self) -> u32 {
        self.current_bps
    }

    /// The encoder's new target when it should change; `None` to leave it. With no viewer the
    /// rate stays where it is (the encoder idles soon anyway).
    pub fn decide(&mut self, now: Instant, viewers: &[ViewerLink]) -> Option<u32> {
        let smallest = viewers
            .iter()
            .map(ViewerLink::video_budget)
            .reduce(f64::min)?;
        let wanted = smallest.clamp(f64::from(self.min_bps), f64::from(self.max_bps)) as u32;
        let current = f64::from(self.current_bps);
        let change = (f64::from(wanted) - current) / current;
        if change.abs() < MIN_CHANGE && wanted != self.max_bps && wanted != self.min_bps {
            return None;
        }
        if wanted == self.current_bps {
            return None;
        }
        if wanted > self.current_bps {
            if self
                .last_increase
                .is_some_and(|at| now.saturating_duration_since(at) < INCREASE_SPACING)
            {
                return None;
            }
            self.last_increase = Some(now);
        }
        self.current_bps = wanted;
        Some(wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(estimate_bps: f64) -> ViewerLink {
        ViewerLink {
            estimate_bps,
            audio_bps: 0.0,
        }
    }

    #[test]
    fn the_budget_leaves_room_for_headers_and_sound() {
        assert_eq!(viewer(1_000_000.0).video_budget(), 900_000.0);
        let with_sound = ViewerLink {
            estimate_bps: 1_000_000.0,
            audio_bps: 32_000.0,
        };
        assert_eq!(with_sound.video_budget(), 900_000.0 - 56_000.0);
        assert_eq!(viewer(10_000.0).video_budget(), 9_000.0);
        let starved = ViewerLink {
            estimate_bps: 10_000.0,
            audio_bps: 32_000.0,
        };
        assert_eq!(starved.video_budget(), 0.0);
    }

    #[test]
    fn the_encoder_follows_the_narrowest_link_within_its_bounds() {
        let start = Instant::now();
        let mut rates = RateAllocator::new(100_000, 1_500_000);
        assert_eq!(rates.decide(start, &[]), None);
        assert_eq!(
            rates.decide(start, &[viewer(3_000_000.0), viewer(500_000.0)]),
            Some(450_000)
        );
        assert_eq!(
            rates.decide(start, &[viewer(50_000.0)]),
            Some(100_000),
            "floor"
        );
        let later = start + INCREASE_SPACING;
        assert_eq!(
            rates.decide(later, &[viewer(9e6)]),
            Some(1_500_000),
            "ceiling"
        );
    }

    #[test]
    fn decreases_are_immediate_increases_spaced_and_small_changes_ignored() {
        let start = Instant::now();
        let mut rates = RateAllocator::new(100_000, 2_000_000);
        assert_eq!(rates.decide(start, &[viewer(1_000_000.0)]), Some(900_000));
        assert_eq!(
            rates.decide(start, &[viewer(1_020_000.0)]),
            None,
            "under 4 %"
        );
        let soon = start + Duration::from_millis(100);
        assert_eq!(rates.decide(soon, &[viewer(1_200_000.0)]), Some(1_080_000));
        let sooner = soon + Duration::from_millis(100);
        assert_eq!(rates.decide(sooner, &[viewer(1_500_000.0)]), None, "spaced");
        assert_eq!(
            rates.decide(sooner, &[viewer(600_000.0)]),
            Some(540_000),
            "at once"
        );
        let later = soon + INCREASE_SPACING;
        assert_eq!(rates.decide(later, &[viewer(1_500_000.0)]), Some(1_350_000));
        assert_eq!(rates.current_bps(), 1_350_000);
    }
}
