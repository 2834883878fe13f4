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
//! - a viewer whose link cannot carry that is sent the base layer only: half the frames, about
//!   [`BASE_LAYER_SHARE`] of the bits, and still a moving picture;
//! - if even the base layer would not fit the slowest viewer, the target comes down until it
//!   does, so nobody is flooded and nobody freezes.
//!
//! Every estimator campeer meets grows only with what it is sent: a viewer's own REMB follows
//! what it receives (aiortc's is capped at 1.5 times that, and stays at what it receives for
//! its first seconds), and campeer's transport-wide estimate may run only a quarter ahead of
//! what the link delivered. An estimate below the target therefore proves nothing by itself:
//! a viewer on the base layer would never see its estimate reach the whole stream's rate. So
//! each viewer's layers are a small state machine ([`Layers`]): a viewer starts on trial with
//! the whole stream; congestion (its estimate falling, loss, a queue in campeer's pacer) sends
//! it to the base layer; there it is tried on the whole stream again when its estimate shows
//! room above what the base layer needs, backing off after each failed trial; and one on the
//! whole stream keeps it while its estimate stays near the target.
//!
//! Decreases of the target take effect at once (a link is overflowing); increases are spaced
//! out, so the encoder does not chase every estimate.

use super::encoder::BASE_LAYER_SHARE;
use std::collections::{HashMap, VecDeque};
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
/// A viewer whose budget reaches this share of the target takes the whole stream with no
/// trial.
const FULL_FROM: f64 = 0.95;
/// A viewer on the whole stream keeps it while its budget stays above this share of the
/// target: an estimator that follows what it receives reports about the stream's own rate.
const STAY_FULL: f64 = 0.85;
/// A viewer on the base layer is tried on the whole stream when its budget is this much above
/// what the base layer needs: its estimate has room it has not been able to show.
const TRIAL_HEADROOM: f64 = 1.1;
/// How long a trial of the whole stream lasts, and how long a viewer that passed one (or just
/// joined) keeps the whole stream whatever its budget, unless congestion shows: long enough
/// for the slowest estimator (aiortc's REMB follows what it receives from 3 s on) to speak.
const TRIAL: Duration = Duration::from_secs(2);
const PROBATION: Duration = Duration::from_secs(5);
/// The wait before the first trial after a move to the base layer (the congestion that moved
/// it has passed out of sight by then), doubling after each failed trial up to the longest.
const TRIAL_BACKOFF_FIRST: Duration = Duration::from_secs(2);
const TRIAL_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Congestion: the estimate fell below this share of its highest in the last
/// [`PEAK_WINDOW`], or the viewer lost more than [`CONGESTED_LOSS`] of its packets, or more
/// than [`CONGESTED_QUEUE`] waits in campeer's pacer for it.
const CONGESTED_DROP: f64 = 0.9;
const PEAK_WINDOW: Duration = Duration::from_secs(2);
const CONGESTED_LOSS: f64 = 0.05;
const CONGESTED_QUEUE: Duration = Duration::from_millis(150);
/// An estimate this much above where it was [`PEAK_WINDOW`] ago is still climbing.
const RISING: f64 = 1.03;

/// One viewer as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewerLink {
    pub estimate_bps: f64,
    /// The codec rate of the sound this viewer gets, 0 without sound.
    pub audio_bps: f64,
    /// Fraction of packets the viewer last reported lost (0.0 to 1.0).
    pub loss: f64,
    /// How long what waits in campeer's pacer for this viewer takes to leave.
    pub queued: Duration,
}

impl ViewerLink {
    /// A link with this estimate, no sound, no loss and nothing queued.
    pub fn with_estimate(estimate_bps: f64) -> Self {
        Self {
            estimate_bps,
            audio_bps: 0.0,
            loss: 0.0,
            queued: Duration::ZERO,
        }
    }

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

/// Which layers one viewer is sent, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layers {
    /// The whole stream. Until `probation_until` only congestion takes it away.
    Full { probation_until: Option<Instant> },
    /// The base layer; tried on the whole stream again from `next_trial`.
    Base {
        next_trial: Instant,
        backoff: Duration,
    },
    /// The whole stream on trial until `until`: congestion ends it, and the next trial waits
    /// twice `backoff`.
    Trial { until: Instant, backoff: Duration },
}

impl Layers {
    pub fn base_layer_only(&self) -> bool {
        matches!(self, Layers::Base { .. })
    }
}

/// One viewer's layers and its recent estimates.
#[derive(Debug, Clone)]
struct ViewerLayers {
    layers: Layers,
    /// (when, estimate) over the last [`PEAK_WINDOW`], for the congestion signal.
    estimates: VecDeque<(Instant, f64)>,
    /// On trial, or on the base layer with room shown and no trial failed yet: the target
    /// must hold still until the trial says whether this viewer takes the whole stream.
    holds_target: bool,
}

impl ViewerLayers {
    fn joining(now: Instant) -> Self {
        Self {
            layers: Layers::Full {
                probation_until: Some(now + PROBATION),
            },
            estimates: VecDeque::new(),
            holds_target: false,
        }
    }

    /// Whether the estimate is climbing: an estimator that follows what it receives and has
    /// not caught up with the stream yet.
    fn rising(&self, link: &ViewerLink) -> bool {
        self.estimates
            .front()
            .is_some_and(|(_, oldest)| link.estimate_bps >= oldest * RISING)
    }

    /// Records the estimate; whether the link shows congestion.
    fn congested(&mut self, now: Instant, link: &ViewerLink) -> bool {
        while self
            .estimates
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > PEAK_WINDOW)
        {
            self.estimates.pop_front();
        }
        // One sample per decision: bounded by the window over the decision period.
        self.estimates.push_back((now, link.estimate_bps));
        let peak = self
            .estimates
            .iter()
            .map(|(_, estimate)| *estimate)
            .fold(0.0, f64::max);
        link.estimate_bps < peak * CONGESTED_DROP
            || link.loss > CONGESTED_LOSS
            || link.queued > CONGESTED_QUEUE
    }

    fn demote(&mut self, now: Instant, backoff: Duration) {
        self.layers = Layers::Base {
            next_trial: now + backoff,
            backoff,
        };
    }

    /// Moves this viewer's layers on, given the target the encoder works to.
    fn decide(&mut self, now: Instant, link: &ViewerLink, target: f64) {
        let congested = self.congested(now, link);
        let budget = link.video_budget();
        // Room is shown by the lowest estimate of the window: an estimator held back only by
        // what it is sent sits steadily at its ceiling, while one at its link's limit keeps
        // probing above it and falling back.
        let lowest = self
            .estimates
            .iter()
            .map(|(_, estimate)| *estimate)
            .fold(link.estimate_bps, f64::min);
        let steady_budget = ViewerLink {
            estimate_bps: lowest,
            ..*link
        }
        .video_budget();
        let room_shown = steady_budget >= target * BASE_LAYER_SHARE * TRIAL_HEADROOM;
        let rising = self.rising(link);
        self.transition(now, congested, rising, budget, room_shown, target);
        self.holds_target = match self.layers {
            Layers::Trial { .. } => true,
            Layers::Base { backoff, .. } => room_shown && backoff <= TRIAL_BACKOFF_FIRST,
            Layers::Full { .. } => false,
        };
    }

    fn transition(
        &mut self,
        now: Instant,
        congested: bool,
        rising: bool,
        budget: f64,
        room_shown: bool,
        target: f64,
    ) {
        match self.layers {
            Layers::Full { probation_until } => {
                let on_probation = probation_until.is_some_and(|until| now < until);
                let short = budget < target * STAY_FULL && !rising;
                if (congested && budget < target) || (short && !on_probation) {
                    self.demote(now, TRIAL_BACKOFF_FIRST);
                }
            }
            Layers::Base {
                next_trial,
                backoff,
            } => {
                if budget >= target * FULL_FROM {
                    self.layers = Layers::Full {
                        probation_until: None,
                    };
                } else if now >= next_trial && !congested && room_shown {
                    self.layers = Layers::Trial {
                        until: now + TRIAL,
                        backoff,
                    };
                }
            }
            Layers::Trial { until, backoff } => {
                if congested {
                    self.demote(now, (backoff * 2).min(TRIAL_BACKOFF_MAX));
                } else if now >= until {
                    self.layers = Layers::Full {
                        probation_until: Some(now + PROBATION),
                    };
                }
            }
        }
    }
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
    viewers: HashMap<u64, ViewerLayers>,
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
            viewers: HashMap::new(),
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

    /// A viewer's layers now (`None` for one the allocator has not seen).
    pub fn layers(&self, viewer: u64) -> Option<Layers> {
        self.viewers.get(&viewer).map(|v| v.layers)
    }

    /// The rate the viewers' budgets call for: the fastest one's, brought down until the
    /// base layer fits the slowest of those sent the base layer.
    fn wanted(&self, viewers: &[(u64, ViewerLink)]) -> Option<f64> {
        let fastest = viewers
            .iter()
            .map(|(_, v)| v.video_budget())
            .reduce(f64::max)?;
        let highest = if self.layered {
            let on_base = viewers
                .iter()
                .filter(|(id, _)| self.layers(*id).is_some_and(|l| l.base_layer_only()))
                .map(|(_, v)| v.video_budget() / BASE_LAYER_SHARE);
            on_base.fold(fastest, f64::min)
        } else {
            viewers
                .iter()
                .map(|(_, v)| v.video_budget())
                .fold(fastest, f64::min)
        };
        let target = highest.clamp(f64::from(self.min_bps), f64::from(self.max_bps));
        Some(target)
    }

    /// Whether a viewer is being tried on the whole stream, or has shown room on the base
    /// layer and waits for its first trial: the target holds still meanwhile, or it would run
    /// away from a viewer that may well take it (each estimator grows only with what it is
    /// sent). A viewer whose link is simply slower holds nothing up.
    fn trial_pending(&self) -> bool {
        self.layered && self.viewers.values().any(|v| v.holds_target)
    }

    /// Each viewer's layers, against the target the encoder works to now, then the encoder's
    /// new target (when it should change). With no viewer the rate stays where it is (the
    /// encoder idles soon anyway).
    pub fn decide(&mut self, now: Instant, viewers: &[(u64, ViewerLink)]) -> Allocation {
        self.viewers
            .retain(|id, _| viewers.iter().any(|(viewer, _)| viewer == id));
        let sent = f64::from(self.current_bps);
        let base_layer_only: Vec<(u64, bool)> = viewers
            .iter()
            .map(|(id, link)| {
                let viewer = self
                    .viewers
                    .entry(*id)
                    .or_insert_with(|| ViewerLayers::joining(now));
                viewer.decide(now, link, sent);
                (*id, self.layered && viewer.layers.base_layer_only())
            })
            .collect();
        let Some(wanted) = self.wanted(viewers) else {
            return Allocation::default();
        };
        let wanted = wanted as u32;
        let change = (f64::from(wanted) - sent) / sent;
        let worth_it =
            change.abs() >= MIN_CHANGE || wanted == self.max_bps || wanted == self.min_bps;
        let mut encoder_bps = None;
        if worth_it && wanted < self.current_bps {
            encoder_bps = Some(wanted);
        } else if worth_it
            && wanted > self.current_bps
            && !self.trial_pending()
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
        // A viewer on the base layer whose budget the new target fits takes the whole stream
        // now: the one whose budget set the target among them.
        let target = f64::from(self.current_bps);
        let base_layer_only = base_layer_only
            .into_iter()
            .zip(viewers)
            .map(|((id, base), (_, link))| {
                let fits = link.video_budget() >= target * FULL_FROM;
                match self.viewers.get_mut(&id) {
                    Some(viewer) if base && fits => {
                        viewer.layers = Layers::Full {
                            probation_until: None,
                        };
                        (id, false)
                    }
                    _ => (id, base),
                }
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
        ViewerLink::with_estimate(estimate_bps)
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
        // Congestion on the slow link changes nothing about the layers: there is one.
        let later = start + Duration::from_secs(1);
        let decided = rates.decide(later, &viewers(&[3_000_000.0, 150_000.0]));
        assert_eq!(decided.base_layer_only, vec![(0, false), (1, false)]);
    }

    #[test]
    fn a_congested_viewer_gets_the_base_layer_and_does_not_hold_a_fast_one_down() {
        let start = Instant::now();
        let mut rates = RateAllocator::new(100_000, 1_500_000);
        // Both join at the initial estimate: each gets the whole stream on trial.
        let decided = rates.decide(start, &viewers(&[600_000.0, 600_000.0]));
        assert_eq!(decided.base_layer_only, vec![(0, false), (1, false)]);
        // The fast one's estimate climbs; the slow one's link chokes and its estimate falls.
        let later = start + Duration::from_secs(1);
        let decided = rates.decide(later, &viewers(&[3_000_000.0, 300_000.0]));
        let target = decided.encoder_bps.expect("a target");
        // The fast one's rate is capped only where the base layer would no longer fit.
        assert_eq!(target, (270_000.0 / BASE_LAYER_SHARE) as u32);
        assert_eq!(decided.base_layer_only, vec![(0, false), (1, true)]);
        assert!(matches!(rates.layers(1), Some(Layers::Base { .. })));
    }

    #[test]
    fn the_viewer_whose_budget_sets_the_target_always_gets_the_whole_stream() {
        let start = Instant::now();
        let mut rates = RateAllocator::new(100_000, 900_000);
        rates.decide(start, &viewers(&[1_000_000.0]));
        // Its estimate falls: the target follows it down at once, and the stream still fits.
        let t1 = start + Duration::from_millis(200);
        let decided = rates.decide(t1, &viewers(&[500_000.0]));
        assert_eq!(decided.encoder_bps, Some(450_000));
        assert_eq!(decided.base_layer_only, vec![(0, false)]);
        // A viewer held on the base layer whose estimate becomes the fastest goes to the
        // whole stream at once (and the other, whose link collapsed, to the base layer).
        let mut rates = RateAllocator::new(100_000, 1_500_000);
        rates.decide(start, &viewers(&[2_000_000.0, 2_000_000.0]));
        let decided = rates.decide(t1, &viewers(&[2_000_000.0, 600_000.0]));
        assert_eq!(decided.base_layer_only, vec![(0, false), (1, true)]);
        let t2 = t1 + Duration::from_millis(200);
        let decided = rates.decide(t2, &viewers(&[500_000.0, 600_000.0]));
        assert_eq!(decided.base_layer_only, vec![(0, true), (1, false)]);
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

    /// How a viewer's estimator sees its link, for the simulations below.
    #[derive(Debug, Clone, Copy)]
    enum Estimator {
        /// aiortc's REMB: what it receives, then up by 8 % a second, never above 1.5 times
        /// what it receives; 0.85 of what the link delivers when the link overflows.
        Remb,
        /// campeer's transport-wide estimate: up by 15 % a second, never more than a quarter
        /// ahead of what the link delivers; 0.85 of that when the link overflows.
        TransportCc,
    }

    /// One viewer behind a bottleneck of `capacity_bps`, in virtual time.
    struct SimViewer {
        estimator: Estimator,
        capacity_bps: f64,
        estimate_bps: f64,
        /// Time spent on the whole stream, from the measured part of the run on.
        full_time: Duration,
    }

    /// Runs the allocator with `viewers` for `seconds` of virtual time, 200 ms a step (the
    /// hub's rate period); returns each viewer's time on the whole stream from `from` on,
    /// and how many times each was moved to the base layer.
    fn simulate(
        viewers: &mut [SimViewer],
        seconds: u64,
        from: Duration,
    ) -> (Vec<Duration>, Vec<usize>, RateAllocator) {
        let start = Instant::now();
        let mut rates = RateAllocator::new(100_000, 1_500_000);
        let step = Duration::from_millis(200);
        let mut demotions = vec![0; viewers.len()];
        let mut base = vec![false; viewers.len()];
        for tick in 0..seconds * 5 {
            let elapsed = step * tick as u32;
            let now = start + elapsed;
            let links: Vec<(u64, ViewerLink)> = viewers
                .iter()
                .enumerate()
                .map(|(id, v)| (id as u64, viewer(v.estimate_bps)))
                .collect();
            let decided = rates.decide(now, &links);
            let target = f64::from(rates.current_bps());
            for (id, only_base) in decided.base_layer_only {
                let Some(v) = viewers.get_mut(id as usize) else {
                    continue;
                };
                if only_base && !base[id as usize] {
                    demotions[id as usize] += 1;
                }
                base[id as usize] = only_base;
                // What it is sent, with headers; what the link delivers of it.
                let sent = if only_base {
                    target * BASE_LAYER_SHARE
                } else {
                    target
                } / PAYLOAD_SHARE;
                let delivered = sent.min(v.capacity_bps);
                let seconds = step.as_secs_f64();
                v.estimate_bps = if sent > v.capacity_bps * 1.02 {
                    0.85 * delivered
                } else {
                    match v.estimator {
                        Estimator::Remb => (v.estimate_bps * 1.08f64.powf(seconds))
                            .min((1.5 * delivered).max(v.estimate_bps))
                            .max(delivered),
                        // Never down for being sent less; up only so far ahead.
                        Estimator::TransportCc => (v.estimate_bps * 1.15f64.powf(seconds))
                            .min((1.25 * delivered).max(delivered + 100_000.0))
                            .max(v.estimate_bps),
                    }
                };
                if !only_base && elapsed >= from {
                    v.full_time += step;
                }
            }
        }
        let full = viewers.iter().map(|v| v.full_time).collect();
        (full, demotions, rates)
    }

    fn sim_viewer(estimator: Estimator, capacity_bps: f64) -> SimViewer {
        SimViewer {
            estimator,
            capacity_bps,
            estimate_bps: crate::link::INITIAL_ESTIMATE_BPS,
            full_time: Duration::ZERO,
        }
    }

    #[test]
    fn viewers_whose_estimates_follow_what_they_receive_all_get_the_whole_stream() {
        for estimator in [Estimator::Remb, Estimator::TransportCc] {
            for count in [1, 2, 4] {
                let mut viewers: Vec<SimViewer> =
                    (0..count).map(|_| sim_viewer(estimator, 100e6)).collect();
                // One of them starts on the base layer, as after a passing congestion.
                viewers[0].estimate_bps = 200_000.0;
                let (full, _, rates) = simulate(&mut viewers, 20, Duration::from_secs(5));
                for (id, time) in full.iter().enumerate() {
                    assert!(
                        *time >= Duration::from_secs(15) - Duration::from_millis(200),
                        "{estimator:?}, {count} viewers: viewer {id} had the whole stream for \
                         only {time:?} of the last 15 s"
                    );
                }
                // The estimators climb at their own pace; the target follows the fastest.
                assert!(
                    rates.current_bps() >= 800_000,
                    "{estimator:?} {count}: {}",
                    rates.current_bps()
                );
            }
        }
    }

    #[test]
    fn a_slow_link_keeps_the_base_layer_without_dragging_the_others_down() {
        for estimator in [Estimator::Remb, Estimator::TransportCc] {
            let mut viewers = vec![
                sim_viewer(estimator, 100e6),
                sim_viewer(estimator, 100e6),
                sim_viewer(estimator, 1_000_000.0),
            ];
            let (full, demotions, rates) = simulate(&mut viewers, 60, Duration::from_secs(5));
            let [fast, also_fast, slow] = full.as_slice() else {
                panic!("three viewers");
            };
            assert!(*fast >= Duration::from_secs(54), "{estimator:?}: {fast:?}");
            assert!(
                *also_fast >= Duration::from_secs(54),
                "{estimator:?}: {also_fast:?}"
            );
            // The slow one is tried now and then, ever more rarely, and stays on the base.
            assert!(
                *slow <= Duration::from_secs(10),
                "{estimator:?}: the slow viewer had the whole stream for {slow:?}"
            );
            assert!(
                demotions[2] <= 8,
                "{estimator:?}: {} trials in a minute",
                demotions[2]
            );
            // The base layer fits the slow link (its estimator probes a little above it);
            // the target stays far above it.
            let target = f64::from(rates.current_bps());
            assert!(
                target * BASE_LAYER_SHARE / PAYLOAD_SHARE <= 1_100_000.0,
                "{estimator:?}: {target}"
            );
            assert!(target >= 1_300_000.0, "{estimator:?}: {target}");
        }
    }

    #[test]
    fn a_slow_viewer_on_the_base_layer_does_not_hold_the_target_still() {
        for estimator in [Estimator::Remb, Estimator::TransportCc] {
            let mut viewers = vec![
                sim_viewer(estimator, 100e6),
                sim_viewer(estimator, 600_000.0),
            ];
            let (full, _, rates) = simulate(&mut viewers, 60, Duration::from_secs(5));
            assert!(
                full[0] >= Duration::from_secs(54),
                "{estimator:?}: {full:?}"
            );
            // The target rises to where the base layer just fits the slow link.
            let fits = 600_000.0 * PAYLOAD_SHARE / BASE_LAYER_SHARE;
            let target = f64::from(rates.current_bps());
            assert!(
                target >= 0.8 * fits && target <= 1.25 * fits,
                "{estimator:?}: target {target}, the base layer fits the slow link at {fits}"
            );
        }
    }

    #[test]
    fn a_failed_trial_backs_off_and_a_passed_one_keeps_the_whole_stream() {
        let start = Instant::now();
        let mut layers = ViewerLayers::joining(start);
        let target = 1_000_000.0;
        let link = |estimate| viewer(estimate);
        // Congestion while on probation: the base layer, a trial after a second.
        layers.decide(start, &link(1_200_000.0), target);
        let t = start + Duration::from_millis(200);
        layers.decide(t, &link(800_000.0), target);
        assert_eq!(
            layers.layers,
            Layers::Base {
                next_trial: t + TRIAL_BACKOFF_FIRST,
                backoff: TRIAL_BACKOFF_FIRST
            }
        );
        // Room above the base layer once the wait is over (the fall is out of sight by then):
        // a trial.
        let t = t + TRIAL_BACKOFF_FIRST - Duration::from_millis(200);
        layers.decide(t, &link(800_000.0), target);
        assert!(layers.layers.base_layer_only(), "not yet");
        let t = t + Duration::from_millis(200);
        layers.decide(t, &link(800_000.0), target);
        assert!(matches!(layers.layers, Layers::Trial { .. }));
        // Congestion in the trial: the next waits twice as long.
        let t = t + Duration::from_millis(400);
        layers.decide(t, &link(650_000.0), target);
        assert_eq!(
            layers.layers,
            Layers::Base {
                next_trial: t + 2 * TRIAL_BACKOFF_FIRST,
                backoff: 2 * TRIAL_BACKOFF_FIRST
            }
        );
        // No room above the base layer: no trial, however long it waits.
        let t = t + Duration::from_secs(10);
        layers.decide(t, &link(700_000.0), target);
        assert!(matches!(layers.layers, Layers::Base { .. }));
        // Room again: a trial that passes, then the whole stream on probation.
        let t = t + Duration::from_secs(3);
        layers.decide(t, &link(800_000.0), target);
        assert!(matches!(layers.layers, Layers::Trial { .. }));
        let t = t + TRIAL;
        layers.decide(t, &link(850_000.0), target);
        assert!(matches!(
            layers.layers,
            Layers::Full {
                probation_until: Some(_)
            }
        ));
        // Short of the target on probation: kept. After it, still short: the base layer.
        let t = t + Duration::from_secs(1);
        layers.decide(t, &link(900_000.0), target);
        assert!(matches!(layers.layers, Layers::Full { .. }));
        let t = t + PROBATION;
        layers.decide(t, &link(900_000.0), target);
        assert!(matches!(layers.layers, Layers::Base { .. }));
    }

    #[test]
    fn loss_and_a_queue_in_the_pacer_count_as_congestion() {
        let start = Instant::now();
        let target = 1_000_000.0;
        for link in [
            ViewerLink {
                loss: 0.2,
                ..viewer(1_000_000.0)
            },
            ViewerLink {
                queued: Duration::from_millis(300),
                ..viewer(1_000_000.0)
            },
        ] {
            let mut layers = ViewerLayers::joining(start);
            layers.decide(start, &link, target);
            assert!(layers.layers.base_layer_only(), "{link:?}");
        }
    }
}
