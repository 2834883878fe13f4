//! Answers a viewer's NACKs, within bounds: a link that loses packets because it is full must
//! not be sent more. Each packet is resent at most once per round trip (a NACK repeated before
//! the resend could have arrived asks for nothing new), retransmissions may use only a share of
//! the link's estimate, and the history covers a second, not the stream. When loss is beyond
//! what retransmission may repair, a keyframe (rate-limited by the encoder's keyframe policy)
//! repairs it instead.

use super::{Link, LinkEvent, LinkEvents, Publisher, RetransmitReport};
use rtc::interceptor::{
    Attribute, AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket,
};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::sansio::Protocol;
use rtc::shared::TransportContext;
use rtc::shared::marshal::MarshalSize;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a sent packet can be asked for again.
pub const HISTORY_AGE: Duration = Duration::from_secs(1);
/// Packets kept per stream at most, whatever the rate.
const HISTORY_PACKETS: usize = 4_096;
/// The share of the link's estimate retransmissions may use.
pub const RETRANSMIT_SHARE: f64 = 0.25;
/// The retransmission budget holds at most this long a stretch of its rate.
const BUDGET_WINDOW: Duration = Duration::from_secs(1);
/// The round trip assumed before the viewer's reports have measured one.
const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// A packet is not resent again sooner than this, however short the round trip.
const MIN_RESEND_GAP: Duration = Duration::from_millis(10);
/// This many packets refused within [`REFUSAL_WINDOW`] means the loss is beyond repair.
const REFUSALS_FOR_KEYFRAME: usize = 8;
const REFUSAL_WINDOW: Duration = Duration::from_secs(2);
/// Refused sequence numbers remembered, so that repeated NACKs count once.
const REFUSALS_REMEMBERED: usize = 256;

/// What to do with one NACKed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Resend,
    /// Resent less than a round trip ago: the copy may still be on its way.
    TooSoon,
    /// Over the retransmission budget.
    OverBudget,
    /// Older than the history.
    Gone,
}

struct Sent {
    sequence_number: u16,
    sent_at: Instant,
    packet: rtp::Packet,
    last_resent: Option<Instant>,
}

/// The packets sent on one stream within [`HISTORY_AGE`], oldest first; sequence numbers are
/// consecutive, so a lookup is arithmetic, not a search.
#[derive(Default)]
struct History {
    sent: VecDeque<Sent>,
}

impl History {
    fn add(&mut self, now: Instant, packet: rtp::Packet) {
        let sequence_number = packet.header.sequence_number;
        if let Some(last) = self.sent.back()
            && sequence_number != last.sequence_number.wrapping_add(1)
        {
            // A jump (a new stream after renegotiation): the old numbers mean nothing now.
            self.sent.clear();
        }
        self.sent.push_back(Sent {
            sequence_number,
            sent_at: now,
            packet,
            last_resent: None,
        });
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        while let Some(oldest) = self.sent.front() {
            let too_old = now.saturating_duration_since(oldest.sent_at) > HISTORY_AGE;
            if !too_old && self.sent.len() <= HISTORY_PACKETS {
                break;
            }
            self.sent.pop_front();
        }
    }

    fn get_mut(&mut self, sequence_number: u16) -> Option<&mut Sent> {
        let first = self.sent.front()?.sequence_number;
        let index = usize::from(sequence_number.wrapping_sub(first));
        self.sent
            .get_mut(index)
            .filter(|sent| sent.sequence_number == sequence_number)
    }
}

/// Bytes retransmissions may still use, refilled at [`RETRANSMIT_SHARE`] of the estimate.
#[derive(Debug, Clone)]
struct Budget {
    bytes: f64,
    last_refill: Option<Instant>,
}

impl Budget {
    fn refill(&mut self, now: Instant, estimate_bps: f64) {
        let rate = estimate_bps * RETRANSMIT_SHARE / 8.0;
        let cap = (rate * BUDGET_WINDOW.as_secs_f64()).max(1_500.0);
        let elapsed = self
            .last_refill
            .map_or(BUDGET_WINDOW, |last| now.saturating_duration_since(last));
        self.bytes = (self.bytes + rate * elapsed.as_secs_f64()).min(cap);
        self.last_refill = Some(now);
    }
}

pub struct Retransmitter {
    /// Read for the estimate and the round trip.
    link: Link,
    report: Publisher<RetransmitReport>,
    events: LinkEvents,
    streams: HashMap<u32, History>,
    budget: Budget,
    refusals: VecDeque<Instant>,
    /// Sequence numbers refused lately: a viewer asks for a lost packet again and again, and
    /// it is one loss, not many.
    refused_lately: VecDeque<u16>,
    write_queue: VecDeque<TaggedPacket>,
    read_queue: VecDeque<TaggedPacket>,
}

impl Retransmitter {
    pub fn new(link: Link, report: Publisher<RetransmitReport>, events: LinkEvents) -> Self {
        Self {
            link,
            report,
            events,
            streams: HashMap::new(),
            budget: Budget {
                bytes: 0.0,
                last_refill: None,
            },
            refusals: VecDeque::new(),
            refused_lately: VecDeque::new(),
            write_queue: VecDeque::new(),
            read_queue: VecDeque::new(),
        }
    }

    /// Decides on one NACKed packet and, when it is resent, accounts for it.
    fn decide(
        &mut self,
        now: Instant,
        ssrc: u32,
        sequence_number: u16,
        resend_gap: Duration,
    ) -> Verdict {
        let Some(sent) = self
            .streams
            .get_mut(&ssrc)
            .and_then(|history| history.get_mut(sequence_number))
        else {
            return Verdict::Gone;
        };
        let gap = resend_gap.max(MIN_RESEND_GAP);
        if sent
            .last_resent
            .is_some_and(|at| now.saturating_duration_since(at) < gap)
        {
            return Verdict::TooSoon;
        }
        let size = sent.packet.marshal_size() as f64;
        if self.budget.bytes < size {
            return Verdict::OverBudget;
        }
        self.budget.bytes -= size;
        sent.last_resent = Some(now);
        Verdict::Resend
    }

    fn on_nack(&mut self, now: Instant, nack: &TransportLayerNack) {
        if !self.streams.contains_key(&nack.media_ssrc) {
            return;
        }
        // A resent packet is seen only after it has waited in the pacer and in the network's
        // queue: asking again sooner is no sign that it was lost again.
        let link = &self.link;
        let resend_gap =
            link.rtt().unwrap_or(DEFAULT_RTT).max(link.queue_delay()) + link.pacer_delay();
        let estimate = link.estimate_bps();
        self.budget.refill(now, estimate);
        let mut refused = 0u64;
        let mut resent_bytes = 0usize;
        for sequence_number in nack.nacks.iter().flat_map(|pair| pair.packet_list()) {
            let verdict = self.decide(now, nack.media_ssrc, sequence_number, resend_gap);
            match verdict {
                Verdict::Resend => {
                    let packet = self
                        .streams
                        .get_mut(&nack.media_ssrc)
                        .and_then(|history| history.get_mut(sequence_number))
                        .map(|sent| sent.packet.clone());
                    if let Some(packet) = packet {
                        resent_bytes += packet.marshal_size();
                        // Tagged, so the pacer sends it first and the meter counts it apart.
                        self.write_queue.push_back(TaggedPacket {
                            now,
                            transport: TransportContext::default(),
                            message: AttributedPacket::new(Packet::Rtp(packet))
                                .with(Attribute::Retransmission),
                        });
                    }
                }
                Verdict::TooSoon => {}
                Verdict::OverBudget | Verdict::Gone => {
                    if !self.refused_lately.contains(&sequence_number) {
                        if self.refused_lately.len() >= REFUSALS_REMEMBERED {
                            self.refused_lately.pop_front();
                        }
                        self.refused_lately.push_back(sequence_number);
                        refused += 1;
                        self.refusals.push_back(now);
                    }
                }
            }
        }
        while self
            .refusals
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > REFUSAL_WINDOW)
        {
            self.refusals.pop_front();
        }
        if refused == 0 && resent_bytes == 0 {
            return;
        }
        self.report.update(|report| {
            if resent_bytes > 0 {
                report.rate.add(now, resent_bytes);
            }
            report.refused += refused;
        });
        if refused > 0 && self.refusals.len() >= REFUSALS_FOR_KEYFRAME {
            self.events.raise(LinkEvent::KeyframeWanted);
            self.refusals.clear();
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for Retransmitter {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for packet in packets {
                if let Some(nack) = packet.as_any().downcast_ref::<TransportLayerNack>() {
                    self.on_nack(msg.now, nack);
                }
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(rtp) = &msg.message.packet
            && !msg.message.has(&Attribute::Retransmission)
            && let Some(history) = self.streams.get_mut(&rtp.header.ssrc)
        {
            history.add(msg.now, rtp.clone());
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for Retransmitter {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        let nack = info
            .rtcp_feedback
            .iter()
            .any(|fb| fb.typ == "nack" && fb.parameter.is_empty());
        if nack {
            self.streams.entry(info.ssrc).or_default();
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.streams.remove(&info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::CongestionFeedback;
    use bytes::Bytes;
    use rtc::interceptor::RTCPFeedback;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;

    const SSRC: u32 = 5;

    /// A retransmitter, its link, and the other parts' writers a test plays.
    struct Fixture {
        link: Link,
        receiver: Publisher<crate::link::ReceiverFeedback>,
        congestion: Publisher<crate::link::CongestionReport>,
        pacer: Publisher<crate::link::PacerReport>,
        r: Retransmitter,
        events: tokio::sync::mpsc::Receiver<LinkEvent>,
    }

    fn retransmitter(estimate: f64) -> Fixture {
        let crate::link::ServedLink {
            link,
            writers,
            events,
            ..
        } = Link::served(CongestionFeedback::TransportCc, estimate, 10_000_000.0);
        let mut r = Retransmitter::new(link.clone(), writers.retransmissions, writers.events);
        r.bind_local_stream(&StreamInfo {
            ssrc: SSRC,
            rtcp_feedback: vec![RTCPFeedback {
                typ: "nack".into(),
                parameter: String::new(),
            }],
            ..Default::default()
        });
        Fixture {
            link,
            receiver: writers.receiver,
            congestion: writers.congestion,
            pacer: writers.pacer,
            r,
            events,
        }
    }

    fn send(r: &mut Retransmitter, now: Instant, sequence_number: u16) {
        r.handle_write(TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    ssrc: SSRC,
                    sequence_number,
                    ..Default::default()
                },
                payload: Bytes::from(vec![0u8; 1188]),
            })),
        })
        .unwrap();
        while r.poll_write().is_some() {}
    }

    /// NACKs `sequence_numbers`; the sequence numbers resent.
    fn nack(r: &mut Retransmitter, now: Instant, sequence_numbers: &[u16]) -> Vec<u16> {
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: SSRC,
            nacks: sequence_numbers
                .iter()
                .map(|&packet_id| NackPair {
                    packet_id,
                    lost_packets: 0,
                })
                .collect(),
        };
        r.handle_read(TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(vec![Box::new(nack)])),
        })
        .unwrap();
        while r.poll_read().is_some() {}
        let mut resent = Vec::new();
        while let Some(packet) = r.poll_write() {
            assert!(packet.message.has(&Attribute::Retransmission));
            if let Packet::Rtp(rtp) = packet.message.packet {
                resent.push(rtp.header.sequence_number);
            }
        }
        resent
    }

    #[test]
    fn a_packet_is_resent_once_per_round_trip() {
        let Fixture {
            receiver, mut r, ..
        } = retransmitter(2_000_000.0);
        receiver.update(|report| report.rtt = Some(Duration::from_millis(80)));
        let start = Instant::now();
        for seq in 100..110 {
            send(&mut r, start, seq);
        }
        assert_eq!(nack(&mut r, start, &[103]), vec![103]);
        let soon = start + Duration::from_millis(40);
        assert_eq!(
            nack(&mut r, soon, &[103]),
            Vec::<u16>::new(),
            "within the round trip"
        );
        let later = start + Duration::from_millis(90);
        assert_eq!(nack(&mut r, later, &[103]), vec![103]);
    }

    #[test]
    fn a_full_queue_delays_the_next_resend_however_short_the_measured_round_trip() {
        let Fixture {
            link,
            receiver,
            congestion,
            pacer,
            mut r,
            ..
        } = retransmitter(2_000_000.0);
        // Measured while the queue was empty; now the bottleneck holds 200 ms.
        receiver.update(|report| report.rtt = Some(Duration::from_millis(2)));
        congestion.update(|report| report.queue_delay = Duration::from_millis(200));
        pacer.update(|report| report.delay = Duration::from_millis(30));
        let start = Instant::now();
        for seq in 100..110 {
            send(&mut r, start, seq);
        }
        assert_eq!(nack(&mut r, start, &[105]), vec![105]);
        for ms in [100, 200] {
            let asked_again = start + Duration::from_millis(ms);
            assert_eq!(
                nack(&mut r, asked_again, &[105]),
                Vec::<u16>::new(),
                "{ms} ms"
            );
        }
        let arrived = start + Duration::from_millis(240);
        assert_eq!(nack(&mut r, arrived, &[105]), vec![105]);
        let rate = link.snapshot().retransmit_rate.bits_per_second(arrived);
        assert!(rate > 0.0, "resends count in the retransmission rate");
    }

    #[test]
    fn retransmissions_stay_within_their_share_of_the_estimate() {
        // 400 kbit/s: the budget is 12.5 kB/s, at most a second of it (12.5 kB) at once.
        let Fixture {
            link,
            mut r,
            mut events,
            ..
        } = retransmitter(400_000.0);
        let start = Instant::now();
        for seq in 0..300u16 {
            send(&mut r, start, seq);
        }
        // A NACK storm: the viewer asks for everything every 10 ms for half a second.
        let mut resent_bytes = 0usize;
        for step in 0..50u64 {
            let now = start + Duration::from_millis(step * 10);
            let all: Vec<u16> = (0..300).collect();
            resent_bytes += nack(&mut r, now, &all).len() * 1200;
        }
        let rate = 400_000.0 * RETRANSMIT_SHARE / 8.0;
        let allowed = rate * 0.5 + rate * BUDGET_WINDOW.as_secs_f64() + 1_200.0;
        assert!(
            (resent_bytes as f64) <= allowed,
            "{resent_bytes} bytes resent in 0.5 s, allowed {allowed}"
        );
        let state = link.snapshot();
        assert!(state.retransmissions_refused > 0);
        assert_eq!(
            events.try_recv().ok(),
            Some(LinkEvent::KeyframeWanted),
            "unrepairable loss asks for a keyframe"
        );
    }

    #[test]
    fn the_history_covers_a_second() {
        let Fixture { link, mut r, .. } = retransmitter(2_000_000.0);
        let start = Instant::now();
        send(&mut r, start, 1);
        for (i, seq) in (2..40u16).enumerate() {
            send(&mut r, start + Duration::from_millis(50 * i as u64), seq);
        }
        let now = start + Duration::from_millis(50 * 38);
        assert_eq!(nack(&mut r, now, &[1]), Vec::<u16>::new(), "gone");
        assert_eq!(nack(&mut r, now, &[38]), vec![38]);
        assert!(r.streams[&SSRC].sent.len() <= 22);
        assert_eq!(link.snapshot().retransmissions_refused, 1);
        // Unknown streams and sequence numbers never panic.
        assert_eq!(nack(&mut r, now, &[u16::MAX, 0, 39, 40]), vec![39]);
    }
}
