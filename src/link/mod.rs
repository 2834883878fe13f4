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
//! Each part publishes what it measures through its own [`Publisher`] (one writer per figure:
//! the estimate's is the estimator for transport-cc viewers and the feedback reader for the
//! others), and raises [`LinkEvent`]s for the session, which alone acts on them. The session,
//! the video hub and the parts that follow each other read the figures through the [`Link`].

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

/// One part's measurements of a link. That part holds the only [`Publisher`] and alone writes
/// them; whoever holds the [`Link`] reads the latest through a [`Published`]. Writer and readers
/// never wait on each other for longer than a copy.
pub struct Publisher<T>(Arc<Mutex<T>>);

/// The reading end of a [`Publisher`].
pub struct Published<T>(Arc<Mutex<T>>);

impl<T> Clone for Published<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

/// A panic while the value was held leaves plain numbers behind, so a poisoned lock is taken
/// over rather than spreading the panic.
fn hold<T>(value: &Mutex<T>) -> MutexGuard<'_, T> {
    value
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn publish<T>(initial: T) -> (Publisher<T>, Published<T>) {
    let shared = Arc::new(Mutex::new(initial));
    (Publisher(Arc::clone(&shared)), Published(shared))
}

impl<T: Clone> Publisher<T> {
    pub fn update(&self, change: impl FnOnce(&mut T)) {
        change(&mut hold(&self.0));
    }

    pub fn get(&self) -> T {
        hold(&self.0).clone()
    }
}

impl<T: Clone> Published<T> {
    pub fn get(&self) -> T {
        hold(&self.0).clone()
    }
}

/// The estimate's one writer: the TWCC estimator for viewers that send transport-wide
/// feedback, the feedback reader (REMB, or the loss backstop) for the others. Keeps every
/// estimate within the link's bounds.
pub struct EstimateWriter {
    estimate: Publisher<f64>,
    max_bps: f64,
}

impl EstimateWriter {
    /// Sets the estimate within its bounds; a value that is not a number changes nothing.
    pub fn set(&self, bps: f64) {
        if bps.is_finite() {
            let bounded = bps.clamp(MIN_ESTIMATE_BPS, self.max_bps);
            self.estimate.update(|estimate| *estimate = bounded);
        }
    }

    pub fn get(&self) -> f64 {
        self.estimate.get()
    }

    /// The highest estimate allowed: more than campeer would ever send is of no use and only
    /// delays the reaction when the link shrinks.
    pub fn max_bps(&self) -> f64 {
        self.max_bps
    }
}

/// What the viewer's receiver reports and REMBs say; written by the feedback reader.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiverFeedback {
    pub rtt: Option<Duration>,
    /// Fraction of packets lost, as the viewer last reported (0.0 to 1.0).
    pub loss: Option<f64>,
    /// When any feedback (receiver report, REMB or TWCC) last reached the reader.
    pub last_at: Option<Instant>,
    /// The viewer's own estimate, from its latest REMB (REMB viewers only).
    pub remb_bps: Option<f64>,
}

/// What transport-wide feedback says; written by the estimator.
#[derive(Debug, Clone, Copy, Default)]
pub struct CongestionReport {
    /// Fraction of packets lost, averaged over recent feedback.
    pub loss: Option<f64>,
    /// How long packets now wait in the network's queues (one-way delay above its minimum):
    /// a round trip measured with an empty queue says nothing about how long a
    /// retransmission sent now takes to arrive.
    pub queue_delay: Duration,
    pub last_at: Option<Instant>,
}

/// RTP that left, first transmissions and retransmissions, with their headers; written by
/// the meter.
#[derive(Debug, Clone, Copy, Default)]
pub struct WireCount {
    pub sent_bytes: u64,
    pub sent_packets: u64,
    pub retransmitted_bytes: u64,
    pub retransmitted_packets: u64,
}

/// What the retransmitter did with NACKs; written by the retransmitter.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetransmitReport {
    /// NACKed packets not resent: already resent within the round trip, over the budget, or
    /// gone from the history.
    pub refused: u64,
    /// The recent rate of retransmissions: they share the link with the media, so the encoder
    /// gets the estimate less this.
    pub rate: DecayingRate,
}

/// The pacer's queue; written by the pacer.
#[derive(Debug, Clone, Copy, Default)]
pub struct PacerReport {
    /// How long the packets waiting in the pacer will take to leave at the pacing rate.
    pub delay: Duration,
    /// Packets refused because the queue was full.
    pub dropped: u64,
}

/// Everything known about one viewer's link at one moment, for the stats topic and tests: a
/// copy, assembled from what each part published.
#[derive(Debug, Clone)]
pub struct LinkSnapshot {
    pub feedback: CongestionFeedback,
    /// What the link carries, in bits per second (all media, with packet overhead).
    pub estimate_bps: f64,
    pub max_estimate_bps: f64,
    pub rtt: Option<Duration>,
    /// Fraction of packets lost (0.0 to 1.0): from transport-wide feedback when the viewer
    /// sends it, from its receiver reports otherwise.
    pub loss: Option<f64>,
    /// When feedback about this link last arrived (receiver report, TWCC or REMB).
    pub last_feedback_at: Option<Instant>,
    pub sent_bytes: u64,
    pub sent_packets: u64,
    pub retransmitted_bytes: u64,
    pub retransmitted_packets: u64,
    pub retransmissions_refused: u64,
    pub pacer_delay: Duration,
    pub queue_delay: Duration,
    pub remb_bps: Option<f64>,
    pub retransmit_rate: DecayingRate,
    pub pacer_dropped: u64,
    /// The candidate pair the media takes, as the session last read it from the peer
    /// connection.
    pub ice_path: Option<stats::IcePath>,
}

impl LinkSnapshot {
    /// What the media may use of the link now: the estimate less the retransmissions.
    pub fn media_estimate_bps(&self, now: Instant) -> f64 {
        media_share(self.estimate_bps, &self.retransmit_rate, now)
    }
}

fn loss(congestion: &CongestionReport, receiver: &ReceiverFeedback) -> Option<f64> {
    congestion.loss.or(receiver.loss)
}

fn last_feedback_at(congestion: &CongestionReport, receiver: &ReceiverFeedback) -> Option<Instant> {
    receiver.last_at.max(congestion.last_at)
}

fn media_share(estimate_bps: f64, retransmit_rate: &DecayingRate, now: Instant) -> f64 {
    (estimate_bps - retransmit_rate.bits_per_second(now)).max(MIN_ESTIMATE_BPS)
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

/// Where the link's parts raise [`LinkEvent`]s for the session.
#[derive(Clone, Default)]
pub struct LinkEvents(Option<tokio::sync::mpsc::Sender<LinkEvent>>);

impl LinkEvents {
    /// Tells the session, without waiting: a full queue already holds what it needs to know.
    pub fn raise(&self, event: LinkEvent) {
        if let Some(events) = &self.0 {
            let _ = events.try_send(event);
        }
    }
}

/// The writing ends of one link's interceptors, each for the one part that owns it.
pub struct LinkWriters {
    pub estimate: EstimateWriter,
    pub receiver: Publisher<ReceiverFeedback>,
    pub congestion: Publisher<CongestionReport>,
    pub wire: Publisher<WireCount>,
    pub retransmissions: Publisher<RetransmitReport>,
    pub pacer: Publisher<PacerReport>,
    pub events: LinkEvents,
}

/// Where the session publishes the candidate pair the media takes, which it reads from its
/// peer connection.
pub type PathWriter = Publisher<Option<stats::IcePath>>;

/// A link for a session to serve: what reads it, what writes it, and the events its parts
/// raise for the session.
pub struct ServedLink {
    pub link: Link,
    pub writers: LinkWriters,
    pub path: PathWriter,
    pub events: tokio::sync::mpsc::Receiver<LinkEvent>,
}

/// One viewer's link as its readers see it: the session (to report the link and decide which
/// frames this viewer gets), the video hub (every viewer's estimate sets the one encoder's
/// rate) and the parts that follow each other (the pacer paces at the estimate, the
/// retransmitter waits a round trip). Cheap to clone.
#[derive(Clone)]
pub struct Link {
    feedback: CongestionFeedback,
    max_estimate_bps: f64,
    estimate: Published<f64>,
    receiver: Published<ReceiverFeedback>,
    congestion: Published<CongestionReport>,
    wire: Published<WireCount>,
    retransmissions: Published<RetransmitReport>,
    pacer: Published<PacerReport>,
    path: Published<Option<stats::IcePath>>,
}

impl Link {
    /// A link and its interceptors' writers, whose events nobody hears (for measuring parts on
    /// their own).
    pub fn new(
        feedback: CongestionFeedback,
        initial_bps: f64,
        max_bps: f64,
    ) -> (Self, LinkWriters) {
        let (link, writers, _) = Self::with_path(feedback, initial_bps, max_bps);
        (link, writers)
    }

    fn with_path(
        feedback: CongestionFeedback,
        initial_bps: f64,
        max_bps: f64,
    ) -> (Self, LinkWriters, PathWriter) {
        let max_estimate_bps = max_bps.max(MIN_ESTIMATE_BPS);
        let (estimate, estimate_reader) =
            publish(initial_bps.clamp(MIN_ESTIMATE_BPS, max_estimate_bps));
        let (receiver, receiver_reader) = publish(ReceiverFeedback::default());
        let (congestion, congestion_reader) = publish(CongestionReport::default());
        let (wire, wire_reader) = publish(WireCount::default());
        let (retransmissions, retransmissions_reader) = publish(RetransmitReport::default());
        let (pacer, pacer_reader) = publish(PacerReport::default());
        let (path, path_reader) = publish(None);
        let link = Self {
            feedback,
            max_estimate_bps,
            estimate: estimate_reader,
            receiver: receiver_reader,
            congestion: congestion_reader,
            wire: wire_reader,
            retransmissions: retransmissions_reader,
            pacer: pacer_reader,
            path: path_reader,
        };
        let writers = LinkWriters {
            estimate: EstimateWriter {
                estimate,
                max_bps: max_estimate_bps,
            },
            receiver,
            congestion,
            wire,
            retransmissions,
            pacer,
            events: LinkEvents::default(),
        };
        (link, writers, path)
    }

    /// A link for the session that serves it, whose parts' events it hears.
    pub fn served(feedback: CongestionFeedback, initial_bps: f64, max_bps: f64) -> ServedLink {
        let (sender, events) = tokio::sync::mpsc::channel(LINK_EVENT_QUEUE);
        let (link, mut writers, path) = Self::with_path(feedback, initial_bps, max_bps);
        writers.events = LinkEvents(Some(sender));
        ServedLink {
            link,
            writers,
            path,
            events,
        }
    }

    /// What the link carries, in bits per second (all media, with packet overhead).
    pub fn estimate_bps(&self) -> f64 {
        self.estimate.get()
    }

    /// What the media may use of the link now: the estimate less the retransmissions.
    pub fn media_estimate_bps(&self, now: Instant) -> f64 {
        media_share(self.estimate_bps(), &self.retransmissions.get().rate, now)
    }

    pub fn rtt(&self) -> Option<Duration> {
        self.receiver.get().rtt
    }

    /// How long packets now wait in the network's queues (transport-wide feedback only).
    pub fn queue_delay(&self) -> Duration {
        self.congestion.get().queue_delay
    }

    pub fn pacer_delay(&self) -> Duration {
        self.pacer.get().delay
    }

    /// Fraction of packets lost (0.0 to 1.0): from transport-wide feedback when there is
    /// some, from receiver reports otherwise.
    pub fn loss(&self) -> Option<f64> {
        loss(&self.congestion.get(), &self.receiver.get())
    }

    /// When feedback about this link last arrived, of any kind.
    pub fn last_feedback_at(&self) -> Option<Instant> {
        last_feedback_at(&self.congestion.get(), &self.receiver.get())
    }

    pub fn snapshot(&self) -> LinkSnapshot {
        let receiver = self.receiver.get();
        let congestion = self.congestion.get();
        let wire = self.wire.get();
        let retransmissions = self.retransmissions.get();
        let pacer = self.pacer.get();
        LinkSnapshot {
            feedback: self.feedback,
            estimate_bps: self.estimate_bps(),
            max_estimate_bps: self.max_estimate_bps,
            rtt: receiver.rtt,
            loss: loss(&congestion, &receiver),
            last_feedback_at: last_feedback_at(&congestion, &receiver),
            sent_bytes: wire.sent_bytes,
            sent_packets: wire.sent_packets,
            retransmitted_bytes: wire.retransmitted_bytes,
            retransmitted_packets: wire.retransmitted_packets,
            retransmissions_refused: retransmissions.refused,
            pacer_delay: pacer.delay,
            queue_delay: congestion.queue_delay,
            remb_bps: receiver.remb_bps,
            retransmit_rate: retransmissions.rate,
            pacer_dropped: pacer.dropped,
            ice_path: self.path.get(),
        }
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
        let (link, writers) = Link::new(CongestionFeedback::TransportCc, 600_000.0, 2_000_000.0);
        let now = Instant::now();
        assert_eq!(link.media_estimate_bps(now), 600_000.0);
        writers.retransmissions.update(|report| {
            for tick in 0..300 {
                report
                    .rate
                    .add(now - Duration::from_millis(3_000 - tick * 10), 125);
            }
        });
        let media = link.media_estimate_bps(now);
        assert!((490_000.0..=510_000.0).contains(&media), "{media}");
        assert_eq!(link.snapshot().media_estimate_bps(now), media);
    }

    use super::*;

    #[test]
    fn the_estimate_stays_within_its_bounds() {
        let (link, writers) = Link::new(CongestionFeedback::TransportCc, 10.0, 2_000_000.0);
        assert_eq!(link.estimate_bps(), MIN_ESTIMATE_BPS);
        writers.estimate.set(5_000_000.0);
        assert_eq!(link.estimate_bps(), 2_000_000.0);
        writers.estimate.set(f64::NAN);
        assert_eq!(link.snapshot().estimate_bps, 2_000_000.0);
    }

    #[test]
    fn loss_comes_from_transport_wide_feedback_when_there_is_some() {
        let (link, writers) = Link::new(CongestionFeedback::TransportCc, 600_000.0, 2_000_000.0);
        let start = Instant::now();
        assert_eq!((link.loss(), link.last_feedback_at()), (None, None));
        writers.receiver.update(|r| {
            r.loss = Some(0.1);
            r.last_at = Some(start);
        });
        assert_eq!(link.loss(), Some(0.1));
        let later = start + Duration::from_millis(50);
        writers.congestion.update(|c| {
            c.loss = Some(0.02);
            c.last_at = Some(later);
        });
        assert_eq!(link.loss(), Some(0.02));
        assert_eq!(link.last_feedback_at(), Some(later));
        assert_eq!(link.snapshot().loss, Some(0.02));
    }

    #[test]
    fn compact_ntp_is_the_middle_of_the_timestamp() {
        assert_eq!(compact_ntp(0x1122_3344_5566_7788), 0x3344_5566);
    }
}
