//! One viewer's network link, as campeer's side of the peer connection sees it: how much it
//! carries (the bandwidth estimate), how long a round trip takes, what it loses, and what was
//! sent over it. The pieces are interceptors in that viewer's webrtc chain, each a plain
//! synchronous state machine driven by the packets and instants the chain hands it:
//!
//! - [`estimator::LinkEstimator`]: the estimate from transport-wide congestion control
//!   feedback (delay trend and loss), for viewers that offer `transport-cc`;
//! - [`feedback::FeedbackReader`]: round-trip time and loss from receiver reports, the
//!   viewer's own estimate (REMB) for viewers that send it, and a loss-only estimate for
//!   viewers that give neither;
//! - [`pacer::Pacer`]: releases packets at a multiple of the estimate, sound first, so a
//!   keyframe does not leave as one burst;
//! - [`retransmit::Retransmitter`]: answers NACKs from a short history, each packet at most
//!   once per round trip and within a share of the estimate, and asks for a keyframe when loss
//!   is beyond repair;
//! - [`meter::WireMeter`]: counts what actually leaves.
//!
//! They share one [`Link`]: the session reads it to report the link and to decide which
//! frames this viewer gets, and the video hub reads every viewer's estimate to set the one
//! encoder's rate.

pub mod estimator;
pub mod feedback;
pub mod meter;
pub mod pacer;
pub mod retransmit;
pub mod send_time;
#[cfg(test)]
mod sim;
pub mod stats;

use crate::sdp::CongestionFeedback;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The lowest estimate campeer acts on: below this no useful video fits, and an estimator that
/// went lower would take long to climb back.
pub const MIN_ESTIMATE_BPS: f64 = 60_000.0;

/// Where a viewer's estimate starts before any feedback: enough for a fair first picture,
/// little enough that a slow link is not flooded while the estimator learns it.
pub const INITIAL_ESTIMATE_BPS: f64 = 600_000.0;

/// A rate from bytes added at moments, averaged exponentially over about a second: it falls
/// back to zero by itself when nothing is added, so a reader never sees a stale burst.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecayingRate {
    bps: f64,
    at: Option<Instant>,
}

/// The time constant of [`DecayingRate`].
const RATE_TIME_CONSTANT: Duration = Duration::from_secs(1);

impl DecayingRate {
    pub fn add(&mut self, now: Instant, bytes: usize) {
        self.bps =
            self.bits_per_second(now) + bytes as f64 * 8.0 / RATE_TIME_CONSTANT.as_secs_f64();
        self.at = Some(now);
    }

    pub fn bits_per_second(&self, now: Instant) -> f64 {
        let Some(at) = self.at else { return 0.0 };
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        self.bps * (-elapsed / RATE_TIME_CONSTANT.as_secs_f64()).exp()
    }
}

/// What is known about one viewer's link.
#[derive(Debug, Clone)]
pub struct LinkState {
    pub feedback: CongestionFeedback,
    /// What the link carries, in bits per second (all media, with packet overhead).
    pub estimate_bps: f64,
    /// The highest estimate the estimator may give: more than campeer would ever send is of no
    /// use and only delays the reaction when the link shrinks.
    pub max_estimate_bps: f64,
    pub rtt: Option<Duration>,
    /// Fraction of packets lost, as the viewer last reported (0.0 to 1.0).
    pub loss: Option<f64>,
    /// When feedback about this link last arrived (receiver report, TWCC or REMB).
    pub last_feedback_at: Option<Instant>,
    /// RTP bytes that left, first transmissions and retransmissions, with their headers.
    pub sent_bytes: u64,
    pub sent_packets: u64,
    pub retransmitted_bytes: u64,
    pub retransmitted_packets: u64,
    /// NACKed packets not resent: already resent within the round trip, over the budget, or
    /// gone from the history.
    pub retransmissions_refused: u64,
    /// How long the packets waiting in the pacer will take to leave at the pacing rate.
    pub pacer_delay: Duration,
    /// How long packets now wait in the network's queues (one-way delay above its minimum,
    /// from transport-wide feedback): a round trip measured with an empty queue says nothing
    /// about how long a retransmission sent now takes to arrive.
    pub queue_delay: Duration,
    /// The viewer's own estimate, from its latest REMB (REMB viewers only).
    pub remb_bps: Option<f64>,
    /// The recent rate of retransmissions: they share the link with the media, so the encoder
    /// gets the estimate less this.
    pub retransmit_rate: DecayingRate,
    /// Packets the pacer refused because its queue was full.
    pub pacer_dropped: u64,
    /// The candidate pair the media takes, as the session last read it from the peer
    /// connection.
    pub ice_path: Option<stats::IcePath>,
}

impl LinkState {
    fn new(feedback: CongestionFeedback, initial_bps: f64, max_bps: f64) -> Self {
        let max_estimate_bps = max_bps.max(MIN_ESTIMATE_BPS);
        Self {
            feedback,
            estimate_bps: initial_bps.clamp(MIN_ESTIMATE_BPS, max_estimate_bps),
            max_estimate_bps,
            rtt: None,
            loss: None,
            last_feedback_at: None,
            sent_bytes: 0,
            sent_packets: 0,
            retransmitted_bytes: 0,
            retransmitted_packets: 0,
            retransmissions_refused: 0,
            pacer_delay: Duration::ZERO,
            queue_delay: Duration::ZERO,
            remb_bps: None,
            retransmit_rate: DecayingRate::default(),
            pacer_dropped: 0,
            ice_path: None,
        }
    }

    /// What the media may use of the link now: the estimate less the retransmissions.
    pub fn media_estimate_bps(&self, now: Instant) -> f64 {
        (self.estimate_bps - self.retransmit_rate.bits_per_second(now)).max(MIN_ESTIMATE_BPS)
    }

    /// Sets the estimate within its bounds.
    pub fn set_estimate(&mut self, bps: f64) {
        if bps.is_finite() {
            self.estimate_bps = bps.clamp(MIN_ESTIMATE_BPS, self.max_estimate_bps);
        }
    }
}

/// What the link's interceptors ask of the session, which alone acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// Loss went beyond what retransmission may repair: the viewer needs a keyframe (the
    /// session asks the encoder, which rate-limits keyframes for everyone).
    KeyframeWanted,
}

/// Events waiting for the session at most: one waiting says all a second would.
const LINK_EVENT_QUEUE: usize = 4;

/// One viewer's link, shared by its interceptors and its session: the measurements in
/// [`LinkState`], each written by one interceptor, and the [`LinkEvent`]s they raise for the
/// session. Cheap to clone; locked only for a few field reads or writes at a time.
#[derive(Clone)]
pub struct Link {
    state: Arc<Mutex<LinkState>>,
    events: Option<tokio::sync::mpsc::Sender<LinkEvent>>,
}

impl Link {
    /// A link whose events nobody hears (for measuring parts on their own).
    pub fn new(feedback: CongestionFeedback, initial_bps: f64, max_bps: f64) -> Self {
        Self {
            state: Arc::new(Mutex::new(LinkState::new(feedback, initial_bps, max_bps))),
            events: None,
        }
    }

    /// A link and the receiver of its events, for the session that serves it.
    pub fn with_events(
        feedback: CongestionFeedback,
        initial_bps: f64,
        max_bps: f64,
    ) -> (Self, tokio::sync::mpsc::Receiver<LinkEvent>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(LINK_EVENT_QUEUE);
        let link = Self {
            events: Some(sender),
            ..Self::new(feedback, initial_bps, max_bps)
        };
        (link, receiver)
    }

    /// Tells the session, without waiting: a full queue already holds what it needs to know.
    pub fn raise(&self, event: LinkEvent) {
        if let Some(events) = &self.events {
            let _ = events.try_send(event);
        }
    }

    /// The state, for a short read or update. A panic while it was held elsewhere leaves
    /// plain numbers behind, so a poisoned lock is taken over rather than spreading the panic.
    pub fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn snapshot(&self) -> LinkState {
        self.lock().clone()
    }
}

/// The compact NTP timestamp (middle 32 bits) RTCP uses to match a receiver report to the
/// sender report it answers.
pub fn compact_ntp(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_decaying_rate_reads_its_bytes_per_second_and_fades_without_more() {
        let start = Instant::now();
        let mut rate = DecayingRate::default();
        assert_eq!(rate.bits_per_second(start), 0.0);
        // 125 bytes every 10 ms: 100 kbit/s, for five time constants.
        for tick in 0..500 {
            rate.add(start + Duration::from_millis(tick * 10), 125);
        }
        let end = start + Duration::from_millis(4_990);
        let steady = rate.bits_per_second(end);
        assert!((95_000.0..=106_000.0).contains(&steady), "{steady}");
        let later = rate.bits_per_second(end + Duration::from_secs(5));
        assert!(later < 1_000.0, "{later}");
    }

    #[test]
    fn the_media_gets_the_estimate_less_the_retransmissions() {
        let link = Link::new(CongestionFeedback::TransportCc, 600_000.0, 2_000_000.0);
        let now = Instant::now();
        let mut state = link.lock();
        assert_eq!(state.media_estimate_bps(now), 600_000.0);
        for tick in 0..300 {
            state
                .retransmit_rate
                .add(now - Duration::from_millis(3_000 - tick * 10), 125);
        }
        let media = state.media_estimate_bps(now);
        assert!((490_000.0..=510_000.0).contains(&media), "{media}");
    }

    use super::*;

    #[test]
    fn the_estimate_stays_within_its_bounds() {
        let link = Link::new(CongestionFeedback::TransportCc, 10.0, 2_000_000.0);
        assert_eq!(link.snapshot().estimate_bps, MIN_ESTIMATE_BPS);
        link.lock().set_estimate(5_000_000.0);
        assert_eq!(link.snapshot().estimate_bps, 2_000_000.0);
        link.lock().set_estimate(f64::NAN);
        assert_eq!(link.snapshot().estimate_bps, 2_000_000.0);
    }

    #[test]
    fn compact_ntp_is_the_middle_of_the_timestamp() {
        assert_eq!(compact_ntp(0x1122_3344_5566_7788), 0x3344_5566);
    }
}
