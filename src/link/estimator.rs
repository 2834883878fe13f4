//! The bandwidth estimate for a viewer that sends transport-wide congestion control feedback.
//!
//! rtc's congestion-control interceptor matches the viewer's TWCC feedback to what was sent and
//! hands over per-packet reports (departure, arrival, size, lost or not); this estimator turns
//! them into a rate, in the spirit of Google Congestion Control: a delay signal drives an AIMD
//! controller, and heavy loss caps the result.
//!
//! The delay signal is the queueing delay itself: each packet's one-way delay above the
//! smallest seen in the last few seconds. A bottleneck that fills its buffer shows it directly,
//! however slowly it fills; a per-group delay gradient against an adaptive threshold (rtc's
//! detector) misses a sender only a little above the link until the buffer overflows, and then
//! only loss is left to react to. The controller is campeer's own too: the estimate must climb
//! back quickly once a bottleneck widens, must not run far ahead of what is actually sent (an
//! encoder that follows the estimate would otherwise jump into a link nobody has tested), and
//! must give one decrease time to show before the next.

use super::{CongestionReport, EstimateWriter, Publisher};
use rtc::interceptor::{BandwidthEstimator, EstimatorStats, PacketReport, RateControlState, Usage};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Back off to this share of what the link delivered when its queue grows.
const DECREASE_FACTOR: f64 = 0.85;
/// Growth per second far from the last known ceiling.
const MULTIPLICATIVE_GROWTH: f64 = 1.15;
/// Growth per second near the last known ceiling: a twentieth of the rate, at least this.
const ADDITIVE_GROWTH_SHARE: f64 = 0.05;
const ADDITIVE_GROWTH_MIN_BPS: f64 = 20_000.0;
/// How long the rate the link last choked at is remembered as its ceiling.
const CEILING_MEMORY: Duration = Duration::from_secs(30);
/// A link seen delivering this much more than its ceiling has widened: the ceiling goes.
const CEILING_PASSED: f64 = 1.15;
/// How far the estimate may run ahead of what the link is seen to deliver.
const HEADROOM_FACTOR: f64 = 1.25;
const HEADROOM_MIN_BPS: f64 = 100_000.0;
/// Loss above this lowers the estimate in proportion; below the lower bound it may grow.
const HIGH_LOSS: f64 = 0.10;
const LOW_LOSS: f64 = 0.02;
/// Changes closer together than this act on the same evidence twice.
const CHANGE_INTERVAL: Duration = Duration::from_millis(200);
/// The stretch of arrivals the delivered rate is measured over.
const DELIVERY_WINDOW: Duration = Duration::from_millis(1000);
/// Queueing delay above this means the bottleneck's buffer is filling: back off.
const QUEUE_OVERUSE: Duration = Duration::from_millis(40);
/// Below this the path is clear: the rate may grow. Between the two: hold.
const QUEUE_CLEAR: Duration = Duration::from_millis(15);
/// How long the smallest one-way delay is remembered as the path's base delay.
const BASE_DELAY_MEMORY: Duration = Duration::from_secs(10);
/// After a decrease, the next waits this long for the first to show.
const DECREASE_HOLD: Duration = Duration::from_millis(600);
/// After the loss cap comes down, it waits this long for reports on packets sent since.
const LOSS_HOLD: Duration = Duration::from_secs(1);

/// The queueing delay on the path: one-way delay (arrival on the viewer's clock minus
/// departure on ours, so an unknown constant offset) above its minimum over the last
/// [`BASE_DELAY_MEMORY`].
#[derive(Debug, Clone, Default)]
struct QueueDelay {
    epoch: Option<Instant>,
    /// (departure, the smallest one-way delay in that second), per second of departures.
    minima: VecDeque<(Instant, f64)>,
    /// Queueing delay of the latest reports, smoothed.
    smoothed_ms: Option<f64>,
}

impl QueueDelay {
    fn add(&mut self, departure: Instant, arrival: Duration) {
        let epoch = *self.epoch.get_or_insert(departure);
        let sent_ms = departure.saturating_duration_since(epoch).as_secs_f64() * 1000.0;
        let one_way_ms = arrival.as_secs_f64() * 1000.0 - sent_ms;
        match self.minima.back_mut() {
            Some((started, minimum))
                if departure.saturating_duration_since(*started) < Duration::from_secs(1) =>
            {
                *minimum = minimum.min(one_way_ms);
            }
            _ => self.minima.push_back((departure, one_way_ms)),
        }
        while self
            .minima
            .front()
            .is_some_and(|(at, _)| departure.saturating_duration_since(*at) > BASE_DELAY_MEMORY)
        {
            self.minima.pop_front();
        }
        let base = self
            .minima
            .iter()
            .map(|(_, m)| *m)
            .fold(f64::INFINITY, f64::min);
        let queued = (one_way_ms - base).max(0.0);
        self.smoothed_ms = Some(self.smoothed_ms.map_or(queued, |s| 0.7 * s + 0.3 * queued));
    }

    fn delay(&self) -> Duration {
        Duration::from_secs_f64(self.smoothed_ms.unwrap_or(0.0).max(0.0) / 1000.0)
    }

    fn usage(&self) -> Usage {
        match self.smoothed_ms {
            Some(ms) if ms > QUEUE_OVERUSE.as_secs_f64() * 1000.0 => Usage::Over,
            Some(ms) if ms < QUEUE_CLEAR.as_secs_f64() * 1000.0 => Usage::Normal,
            // Between: hold where it is.
            Some(_) => Usage::Under,
            None => Usage::Normal,
        }
    }
}

/// What the link delivered, from the arrival times the viewer reported (on its clock), not
/// from when the reports came back: a report about packets that sat in a queue arrives in a
/// bunch, and counting them then would read the sending rate, not the link's.
#[derive(Debug, Clone, Default)]
struct DeliveredRate {
    arrivals: VecDeque<(Duration, usize)>,
    bytes: usize,
}

impl DeliveredRate {
    fn add(&mut self, arrival: Duration, size: usize) {
        // Reports come in send order; an arrival earlier than the last (reordering) is
        // counted as arriving with it.
        let arrival = self
            .arrivals
            .back()
            .map_or(arrival, |(last, _)| arrival.max(*last));
        self.arrivals.push_back((arrival, size));
        self.bytes += size;
        while let Some(&(oldest, size)) = self.arrivals.front() {
            if arrival.saturating_sub(oldest) <= DELIVERY_WINDOW {
                break;
            }
            self.arrivals.pop_front();
            self.bytes -= size;
        }
    }

    /// Bits per second over the window; `None` until it spans a tenth of a second.
    fn bits_per_second(&self) -> Option<f64> {
        let (first, first_size) = *self.arrivals.front()?;
        let (last, _) = *self.arrivals.back()?;
        let span = last.saturating_sub(first);
        if span < Duration::from_millis(100) {
            return None;
        }
        // The first packet's bytes arrived before the span began.
        Some((self.bytes - first_size) as f64 * 8.0 / span.as_secs_f64())
    }
}

/// The delay-based AIMD controller with a ceiling that is forgotten.
#[derive(Debug, Clone)]
struct RateController {
    state: RateControlState,
    target: f64,
    min: f64,
    max: f64,
    /// What the link delivered when it last choked, and when.
    ceiling: Option<(f64, Instant)>,
    last_change: Option<Instant>,
    /// The hold after a decrease is timed from the decrease alone: an increase a moment
    /// before an overuse must not delay backing off.
    last_decrease: Option<Instant>,
}

impl RateController {
    fn new(initial: f64, min: f64, max: f64) -> Self {
        Self {
            state: RateControlState::default(),
            target: initial.clamp(min, max),
            min,
            max,
            ceiling: None,
            last_change: None,
            last_decrease: None,
        }
    }

    fn update(&mut self, now: Instant, usage: Usage, received: Option<f64>) -> f64 {
        self.state = self.state.next(usage);
        if let Some((ceiling, at)) = self.ceiling {
            let grew = received.is_some_and(|r| r > ceiling * CEILING_PASSED);
            if grew || now.saturating_duration_since(at) > CEILING_MEMORY {
                self.ceiling = None;
            }
        }
        let since_change = self
            .last_change
            .map_or(CHANGE_INTERVAL, |last| now.saturating_duration_since(last));
        if since_change < CHANGE_INTERVAL && self.state != RateControlState::Decrease {
            return self.target;
        }
        match self.state {
            RateControlState::Hold => {}
            RateControlState::Decrease => {
                // Back off from what the path delivers, not from what was aimed at; then give
                // the decrease time to show (the queue drains) before the next.
                let held = self
                    .last_decrease
                    .is_none_or(|at| now.saturating_duration_since(at) >= DECREASE_HOLD);
                if let Some(received) = received
                    && held
                {
                    self.target = (received * DECREASE_FACTOR)
                        .min(self.target)
                        .clamp(self.min, self.max);
                    self.ceiling = Some((received, now));
                    self.last_change = Some(now);
                    self.last_decrease = Some(now);
                }
            }
            RateControlState::Increase => {
                let seconds = since_change.as_secs_f64().min(1.0);
                let near_ceiling = self
                    .ceiling
                    .is_some_and(|(ceiling, _)| self.target > ceiling * 0.85);
                let grown = if near_ceiling {
                    self.target
                        + seconds
                            * (self.target * ADDITIVE_GROWTH_SHARE).max(ADDITIVE_GROWTH_MIN_BPS)
                } else {
                    self.target * MULTIPLICATIVE_GROWTH.powf(seconds)
                };
                // Never far ahead of what the link has been seen to carry.
                let limit = received.map_or(self.max, |r| {
                    (r * HEADROOM_FACTOR).max(r + HEADROOM_MIN_BPS)
                });
                if grown > self.target {
                    self.target = grown.min(limit.max(self.target)).clamp(self.min, self.max);
                }
                self.last_change = Some(now);
            }
        }
        self.target
    }
}

/// Loss-based cap: heavy loss lowers it in proportion, light loss lets it grow back.
#[derive(Debug, Clone)]
struct LossCap {
    cap: f64,
    min: f64,
    max: f64,
    average: Option<f64>,
    last_change: Option<Instant>,
    last_decrease: Option<Instant>,
}

impl LossCap {
    fn update(&mut self, now: Instant, lost: usize, total: usize, current: f64) {
        if total == 0 {
            return;
        }
        let sample = lost as f64 / total as f64;
        let average = self
            .average
            .map_or(sample, |previous| 0.8 * previous + 0.2 * sample);
        self.average = Some(average);
        let since = |at: Option<Instant>, otherwise: Duration| {
            at.map_or(otherwise, |at| now.saturating_duration_since(at))
        };
        if average > HIGH_LOSS {
            // Reports about packets sent before the last decrease say nothing new: wait.
            if since(self.last_decrease, LOSS_HOLD) < LOSS_HOLD {
                return;
            }
            self.cap = (current.min(self.cap) * (1.0 - 0.5 * average)).clamp(self.min, self.max);
            self.last_decrease = Some(now);
            self.last_change = Some(now);
        } else if average < LOW_LOSS {
            let since_change = since(self.last_change, CHANGE_INTERVAL);
            if since_change < CHANGE_INTERVAL {
                return;
            }
            let growth = MULTIPLICATIVE_GROWTH.powf(since_change.as_secs_f64().min(1.0));
            self.cap = (self.cap * growth).clamp(self.min, self.max);
            self.last_change = Some(now);
        }
    }
}

/// Campeer's estimator for one viewer: the one writer of its link's estimate, and of what
/// transport-wide feedback says about queueing and loss.
pub struct LinkEstimator {
    estimate: EstimateWriter,
    report: Publisher<CongestionReport>,
    queue: QueueDelay,
    received: DeliveredRate,
    delay: RateController,
    loss: LossCap,
    target: f64,
}

impl LinkEstimator {
    /// Starts from the link's current estimate, within its bounds.
    pub fn new(estimate: EstimateWriter, report: Publisher<CongestionReport>) -> Self {
        let (initial, max) = (estimate.get(), estimate.max_bps());
        let min = super::MIN_ESTIMATE_BPS;
        Self {
            estimate,
            report,
            queue: QueueDelay::default(),
            received: DeliveredRate::default(),
            delay: RateController::new(initial, min, max),
            loss: LossCap {
                cap: max,
                min,
                max,
                average: None,
                last_change: None,
                last_decrease: None,
            },
            target: initial,
        }
    }
}

impl BandwidthEstimator for LinkEstimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        if reports.is_empty() {
            return;
        }
        for report in reports {
            if let (true, Some(arrival)) = (report.arrived, report.arrival) {
                self.received.add(arrival, report.size);
                self.queue.add(report.departure, arrival);
            }
        }
        let usage = self.queue.usage();
        let received = self.received.bits_per_second();
        let delay_target = self.delay.update(now, usage, received);
        let lost = reports.iter().filter(|report| !report.arrived).count();
        self.loss.update(now, lost, reports.len(), delay_target);
        let target = delay_target.min(self.loss.cap);
        if target < self.target * 0.97 {
            tracing::debug!(
                "link estimate down to {:.0} kbit/s: {usage:?}, delivered {:.0} kbit/s, loss cap {:.0} kbit/s ({lost}/{} lost)",
                target / 1000.0,
                received.unwrap_or(0.0) / 1000.0,
                self.loss.cap / 1000.0,
                reports.len()
            );
        }
        self.target = target;
        self.estimate.set(self.target);
        let (queue_delay, loss) = (self.queue.delay(), self.loss.average);
        self.report.update(|report| {
            report.queue_delay = queue_delay;
            report.last_at = Some(now);
            report.loss = loss.or(report.loss);
        });
    }

    fn target_bitrate(&self) -> f64 {
        self.target
    }

    fn stats(&self) -> EstimatorStats {
        let mut stats = EstimatorStats::default();
        stats.delay_based_bitrate = Some(self.delay.target);
        stats.loss_based_bitrate = Some(self.loss.cap);
        stats.packet_loss = self.loss.average;
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Link;
    use crate::sdp::CongestionFeedback;

    /// A bottleneck of `link_bps` with a 200 ms drop-tail queue (like tbf), fed with
    /// packets of 1200 bytes; every 100 ms the viewer reports what has arrived (or was lost)
    /// by then, as TWCC feedback does.
    struct Path {
        epoch: Instant,
        next_id: u64,
        clock_ms: f64,
        /// When the bottleneck is next free.
        busy_until_ms: f64,
        pending: Vec<(f64, PacketReport)>,
    }

    impl Path {
        fn new() -> Self {
            Self {
                epoch: Instant::now(),
                next_id: 0,
                clock_ms: 0.0,
                busy_until_ms: 0.0,
                pending: Vec::new(),
            }
        }

        fn at(&self, ms: f64) -> Instant {
            self.epoch + Duration::from_secs_f64(ms / 1000.0)
        }

        fn interval(
            &mut self,
            send_bps: f64,
            link_bps: f64,
            lost_every: Option<u64>,
        ) -> (Instant, Vec<PacketReport>) {
            let size = 1200usize;
            let gap_ms = size as f64 * 8.0 / send_bps * 1000.0;
            let service_ms = size as f64 * 8.0 / link_bps * 1000.0;
            let end = self.clock_ms + 100.0;
            while self.clock_ms < end {
                let sent = self.clock_ms;
                let id = self.next_id;
                self.next_id += 1;
                let queued = (self.busy_until_ms - sent).max(0.0);
                let dropped = queued > 200.0 || lost_every.is_some_and(|n| id.is_multiple_of(n));
                let arrival_ms = if dropped {
                    None
                } else {
                    self.busy_until_ms = sent.max(self.busy_until_ms) + service_ms;
                    Some(self.busy_until_ms + 20.0)
                };
                let report = PacketReport {
                    ssrc: 1,
                    id,
                    rtp_sequence_number: id as u16,
                    is_twcc: true,
                    twcc_sequence_number: id as u16,
                    size,
                    arrived: arrival_ms.is_some(),
                    departure: self.at(sent),
                    arrival: arrival_ms.map(|ms| Duration::from_secs_f64(ms / 1000.0)),
                    ecn: Default::default(),
                };
                // A lost packet is reported once a later one has arrived.
                let known_at = arrival_ms.unwrap_or(self.busy_until_ms + 20.0);
                self.pending.push((known_at, report));
                self.clock_ms += gap_ms;
            }
            let now_ms = end + 20.0;
            let (due, later): (Vec<_>, Vec<_>) = self
                .pending
                .drain(..)
                .partition(|(known, _)| *known <= now_ms);
            self.pending = later;
            (self.at(now_ms), due.into_iter().map(|(_, r)| r).collect())
        }
    }

    fn estimator(initial: f64) -> (Link, LinkEstimator) {
        let (link, writers) = Link::new(CongestionFeedback::TransportCc, initial, 5_000_000.0);
        let estimator = LinkEstimator::new(writers.estimate, writers.congestion);
        (link, estimator)
    }

    /// Runs `seconds` of a sender that follows the estimate over a link of `link_bps`.
    fn follow(path: &mut Path, estimator: &mut LinkEstimator, link_bps: f64, seconds: u64) {
        for _ in 0..seconds * 10 {
            let send = estimator.target_bitrate();
            let (now, reports) = path.interval(send, link_bps, None);
            estimator.on_reports(now, &reports);
        }
    }

    #[test]
    fn a_sender_following_the_estimate_settles_below_a_narrow_link() {
        let mut path = Path::new();
        let (link, mut estimator) = estimator(1_000_000.0);
        follow(&mut path, &mut estimator, 400_000.0, 10);
        let estimate = estimator.target_bitrate();
        assert!(
            (250_000.0..=440_000.0).contains(&estimate),
            "estimate {estimate} for a 400 kbit/s link"
        );
        assert_eq!(
            link.snapshot().estimate_bps,
            estimate,
            "written to the link"
        );
        assert!(link.snapshot().last_feedback_at.is_some());
    }

    #[test]
    fn an_overuse_just_after_an_increase_is_backed_off_at_once() {
        let start = Instant::now();
        let mut controller = RateController::new(300_000.0, 60_000.0, 2_000_000.0);
        let grown = controller.update(start, Usage::Normal, Some(300_000.0));
        assert!(grown > 300_000.0, "{grown}");
        let later = start + Duration::from_millis(50);
        let backed_off = controller.update(later, Usage::Over, Some(300_000.0));
        assert_eq!(backed_off, 300_000.0 * DECREASE_FACTOR);
        // The next overuse within the hold waits for the first decrease to show.
        let soon = later + Duration::from_millis(100);
        assert_eq!(
            controller.update(soon, Usage::Over, Some(200_000.0)),
            backed_off
        );
        let after_hold = later + DECREASE_HOLD;
        assert_eq!(
            controller.update(after_hold, Usage::Over, Some(200_000.0)),
            200_000.0 * DECREASE_FACTOR
        );
    }

    #[test]
    fn the_estimate_climbs_back_quickly_when_the_link_widens() {
        let mut path = Path::new();
        let (_, mut estimator) = estimator(1_000_000.0);
        follow(&mut path, &mut estimator, 400_000.0, 8);
        let low = estimator.target_bitrate();
        follow(&mut path, &mut estimator, 3_000_000.0, 12);
        let high = estimator.target_bitrate();
        // Past the old ceiling gently (additive), then multiplicatively: at least three times
        // the narrow link's rate within 12 s.
        assert!(
            high > 1_200_000.0,
            "after 12 s on a 3 Mbit/s link the estimate is only {high} (from {low})"
        );
    }

    #[test]
    fn the_estimate_does_not_run_far_ahead_of_what_is_sent() {
        let mut path = Path::new();
        let (_, mut estimator) = estimator(300_000.0);
        // An encoder that only ever sends 200 kbit/s on a wide link.
        for _ in 0..200 {
            let (now, reports) = path.interval(200_000.0, 10_000_000.0, None);
            estimator.on_reports(now, &reports);
        }
        let estimate = estimator.target_bitrate();
        assert!(
            estimate <= 360_000.0,
            "estimate {estimate} for a sender at 200 kbit/s"
        );
    }

    #[test]
    fn heavy_loss_lowers_the_estimate_light_loss_does_not() {
        let mut path = Path::new();
        let (_, mut light) = estimator(1_000_000.0);
        for _ in 0..50 {
            let (now, reports) = path.interval(1_000_000.0, 10_000_000.0, Some(33));
            light.on_reports(now, &reports);
        }
        assert!(
            light.target_bitrate() >= 1_000_000.0,
            "3 % loss must not cut the rate"
        );
        let mut path = Path::new();
        let (link, mut heavy) = estimator(1_000_000.0);
        for _ in 0..50 {
            let (now, reports) = path.interval(1_000_000.0, 10_000_000.0, Some(4));
            heavy.on_reports(now, &reports);
        }
        assert!(
            heavy.target_bitrate() < 700_000.0,
            "{}",
            heavy.target_bitrate()
        );
        assert!(link.snapshot().loss.is_some_and(|l| l > 0.2));
    }
}
