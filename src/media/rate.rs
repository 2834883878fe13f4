//! The one encoder's target rate, and which layers each viewer gets, from the links of the
//! viewers it serves.
//!
//! Each viewer's link has an estimate (see `link`); what is left of it for video, after sound
//! and packet overhead, is that viewer's budget. The encoder makes two temporal layers: a base
//! of every other frame, and the frames between, which nothing refers to. So one stream can
//! serve links of different speeds:
//!
//! - the encoder works to the fastest viewer's budget (within the configured rate), so a fast
//!   viewer is never held down to a slow one's rate;
//! - a viewer whose budget is below that is sent the base layer only: half the frames, about
//!   [`BASE_LAYER_SHARE`] of the bits, and still a moving picture;
//! - if even the base layer would not fit the slowest viewer, the target comes down until it
//!   does, so nobody is flooded and nobody freezes.
//!
//! Decreases take effect at once (a link is overflowing); increases are spaced out, so the
//! encoder does not chase every estimate. A viewer moves between the whole stream and the base
//! layer with some hysteresis, so it does not flap on estimate noise.

use super::encoder::BASE_LAYER_SHARE;
use std::time::{Duration, Instant};

/// Share of a link's estimate left for media after RTP, SRTP, UDP and IP headers (about 50
/// bytes on packets of about 1200) and a margin for the estimate's own error.
pub const PAYLOAD_SHARE: f64 = 0.90;
/// Per-packet overhead of sound, on top of its codec rate: 50 packets a second of ~60 bytes.
const AUDIO_OVERHEAD_BPS: f64 = 24_000.0;
/// Increases closer together than this would follow noise.
const INCREASE_SPACING: Duration = Duration::from_millis(500);
/// Changes smaller than this share are not worth telling the encoder.
const MIN_CHANGE: f64 = 0.04;
/// A viewer gets the whole stream when its budget reaches this share of the target; one on
/// the base layer goes back to the whole stream only above [`FULL_AGAIN`].
const FULL_FROM: f64 = 0.95;
const FULL_AGAIN: f64 = 1.05;

/// One viewer as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewerLink {
    pub estimate_bps: f64,
    /// The codec rate of the sound this viewer gets, 0 without sound.
    pub audio_bps: f64,
    /// Whether it is sent the base layer only now.
    pub base_layer_only: bool,
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

/// What the allocator decided.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Allocation {
    /// The encoder's new target, when it should change.
    pub encoder_bps: Option<u32>,
    /// For each viewer (by the key it was given under): base layer only.
    pub base_layer_only: Vec<(u64, bool)>,
}

#[derive(Debug, Clone)]
pub struct RateAllocator {
    /// The encoder makes the two temporal layers; without them every viewer gets every frame,
    /// and the rate comes down to the slowest viewer's budget.
    layered: bool,
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
            layered: true,
            min_bps,
            max_bps,
            current_bps: max_bps,
            last_increase: None,
        }
    }

    /// For an encoder without temporal layers (VP8): one stream that must fit every viewer.
    pub fn single_layer(min_bps: u32, max_bps: u32) -> Self {
        Self {
            layered: false,
            ..Self::new(min_bps, max_bps)
        }
    }

    pub fn current_bps(&self) -> u32 {
        self.current_bps
    }

    /// The rate the viewers' budgets call for: the fastest one's, brought down until the
    /// base layer fits the slowest.
    fn wanted(&self, viewers: &[(u64, ViewerLink)]) -> Option<f64> {
        let budgets = viewers.iter().map(|(_, v)| v.video_budget());
        let fastest = budgets.clone().reduce(f64::max)?;
        let slowest = budgets.reduce(f64::min)?;
        let highest = if self.layered {
            fastest.min(slowest / BASE_LAYER_SHARE)
        } else {
            slowest
        };
        let target = highest.clamp(f64::from(self.min_bps), f64::from(self.max_bps));
        Some(target)
    }

    /// The encoder's new target (when it should change) and each viewer's layers. With no
    /// viewer the rate stays where it is (the encoder idles soon anyway).
    pub fn decide(&mut self, now: Instant, viewers: &[(u64, ViewerLink)]) -> Allocation {
        let Some(wanted) = self.wanted(viewers) else {
            return Allocation::default();
        };
        let wanted = wanted as u32;
        let current = f64::from(self.current_bps);
        let change = (f64::from(wanted) - current) / current;
        let worth_it =
            change.abs() >= MIN_CHANGE || wanted == self.max_bps || wanted == self.min_bps;
        let mut encoder_bps = None;
        if worth_it && wanted < self.current_bps {
            encoder_bps = Some(wanted);
        } else if worth_it
            && wanted > self.current_bps
            && self
                .last_increase
                .is_none_or(|at| now.saturating_duration_since(at) >= INCREASE_SPACING)
        {
            self.last_increase = Some(now);
            encoder_bps = Some(wanted);
        }
        if let Some(bps) = encoder_bps {
            self.current_bps = bps;
        }
        let target = f64::from(self.current_bps);
        let base_layer_only = viewers
            .iter()
            .map(|(id, viewer)| {
                let needed = if viewer.base_layer_only {
                    FULL_AGAIN
                } else {
                    FULL_FROM
                };
                (*id, self.layered && viewer.video_budget() < target * needed)
            })
            .collect();
        Allocation {
            encoder_bps,
            base_layer_only,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(estimate_bps: f64) -> ViewerLink {
        ViewerLink {
            estimate_bps,
            audio_bps: 0.0,
            base_layer_only: false,
        }
    }

    fn viewers(estimates: &[f64]) -> Vec<(u64, ViewerLink)> {
        estimates
            .iter()
            .enumerate()
            .map(|(i, &e)| (i as u64, viewer(e)))
            .collect()
    }

    #[test]
    fn the_budget_leaves_room_for_headers_and_sound() {
        assert_eq!(viewer(1_000_000.0).video_budget(), 900_000.0);
        let with_sound = ViewerLink {
            audio_bps: 32_000.0,
            ..viewer(1_000_000.0)
        };
        assert_eq!(with_sound.video_budget(), 900_000.0 - 56_000.0);
        let starved = ViewerLink {
            audio_bps: 32_000.0,
            ..viewer(10_000.0)
        };
        assert_eq!(starved.video_budget(), 0.0);
    }

    #[test]
    fn one_viewer_gets_its_whole_budget_within_the_bounds() {
        let start = Instant::now();
        let mut rates = RateAllocator::new(100_000, 1_500_000);
        assert_eq!(rates.decide(start, &[]), Allocation::default());
        let one = rates.decide(start, &viewers(&[500_000.0]));
        assert_eq!(one.encoder_bps, Some(450_000));
        assert_eq!(one.base_layer_only, vec![(0, false)]);
        assert_eq!(
            rates.decide(start, &viewers(&[50_000.0])).encoder_bps,
            Some(100_000),
            "floor"
        );
        let later = start + INCREASE_SPACING;
        assert_eq!(
            rates.decide(later, &viewers(&[9e6])).encoder_bps,
            Some(1_500_000),
            "ceiling"
        );
    }

    #[test]
    fn without_layers_the_slowest_viewer_sets_the_rate_and_everyone_gets_every_frame() {
        let start = Instant::now();
        let mut rates = RateAllocator::single_layer(50_000, 1_500_000);
        let decided = rates.decide(start, &viewers(&[3_000_000.0, 300_000.0]));
        assert_eq!(decided.encoder_bps, Some(270_000));
        assert_eq!(decided.base_layer_only, vec![(0, false), (1, false)]);
    }

    #[test]
    fn a_slow_viewer_gets_the_base_layer_and_does_not_hold_a_fast_one_down() {
        let start = Instant::now();
        let mut rates = RateAllocator::new(100_000, 1_500_000);
        // 300 kbit/s beside 3 Mbit/s: the fast one's rate is capped only where the base layer
        // would no longer fit the slow one.
        let decided = rates.decide(start, &viewers(&[3_000_000.0, 300_000.0]));
        let target = decided.encoder_bps.expect("a target");
        assert_eq!(target, (270_000.0 / BASE_LAYER_SHARE) as u32);
        assert!(f64::from(target) * BASE_LAYER_SHARE <= 270_000.0 + 1.0);
        assert_eq!(decided.base_layer_only, vec![(0, false), (1, true)]);
        // 1 Mbit/s beside 3 Mbit/s: the fast one gets the configured rate, the slower the base.
        let mut rates = RateAllocator::new(100_000, 1_500_000);
        let decided = rates.decide(start, &viewers(&[3_000_000.0, 1_000_000.0]));
        assert_eq!(decided.encoder_bps, None, "already at the configured rate");
        assert_eq!(rates.current_bps(), 1_500_000);
        assert_eq!(decided.base_layer_only, vec![(0, false), (1, true)]);
    }

    #[test]
    fn a_viewer_returns_to_the_whole_stream_only_clearly_above_the_target() {
        let start = Instant::now();
        let mut rates = RateAllocator::new(100_000, 900_000);
        let mut slow = ViewerLink {
            base_layer_only: true,
            ..viewer(990_000.0)
        };
        // Budget 891 000 against a target of 900 000: within the band, stays on the base.
        let decided = rates.decide(start, &[(7, slow)]);
        assert_eq!(decided.base_layer_only, vec![(7, true)]);
        slow.estimate_bps = 1_100_000.0;
        let decided = rates.decide(start, &[(7, slow)]);
        assert_eq!(decided.base_layer_only, vec![(7, false)]);
    }

    #[test]
    fn decreases_are_immediate_increases_spaced_and_small_changes_ignored() {
        let start = Instant::now();
        let mut rates = RateAllocator::new(100_000, 2_000_000);
        let at = |rates: &mut RateAllocator, t: Instant, e: f64| {
            rates.decide(t, &viewers(&[e])).encoder_bps
        };
        assert_eq!(at(&mut rates, start, 1_000_000.0), Some(900_000));
        assert_eq!(at(&mut rates, start, 1_020_000.0), None, "under 4 %");
        let soon = start + Duration::from_millis(100);
        assert_eq!(at(&mut rates, soon, 1_200_000.0), Some(1_080_000));
        let sooner = soon + Duration::from_millis(100);
        assert_eq!(at(&mut rates, sooner, 1_500_000.0), None, "spaced");
        assert_eq!(at(&mut rates, sooner, 600_000.0), Some(540_000), "at once");
        let later = soon + INCREASE_SPACING;
        assert_eq!(at(&mut rates, later, 1_500_000.0), Some(1_350_000));
        assert_eq!(rates.current_bps(), 1_350_000);
    }
}
