//! Paces what leaves for one viewer: video (and retransmissions) go out at a multiple of the
//! link's estimate instead of in bursts, so a keyframe does not arrive at the bottleneck as one
//! 20 KB block that overflows its queue; sound is never held behind video.
//!
//! The multiple lets a frame leave well within its frame interval while the encoder's rate
//! control keeps the average at the estimate; it is lower than libwebrtc's 2.5 because a
//! keyframe sent at 2.5 times a slow link's rate overflows a small bottleneck buffer (measured
//! with tbf's 200 ms queue at 600 kbit/s) before the estimator can react. The queue is bounded;
//! how long it would take to drain is published on the [`Link`], and the session stops
//! feeding a viewer whose queue has grown (see `session`).

use super::{Link, PacerReport, Publisher};
use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::marshal::MarshalSize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Packets leave at this multiple of the estimate.
pub const PACING_FACTOR: f64 = 1.5;
/// The most the pacer releases at once, in time at the pacing rate.
const BURST: Duration = Duration::from_millis(15);
/// Packets held at most: a few seconds of video at any rate campeer sends.
const QUEUE_LIMIT: usize = 2_000;

/// The token bucket, in bits, over the pacing rate. Pure: every instant is handed in.
#[derive(Debug, Clone)]
pub struct Budget {
    rate_bps: f64,
    bits: f64,
    last_refill: Option<Instant>,
}

impl Budget {
    pub fn new(rate_bps: f64) -> Self {
        let mut budget = Self {
            rate_bps,
            bits: 0.0,
            last_refill: None,
        };
        budget.bits = budget.burst();
        budget
    }

    fn burst(&self) -> f64 {
        (self.rate_bps * BURST.as_secs_f64()).max(rtc::interceptor::PACER_MIN_BURST_BITS)
    }

    pub fn set_rate(&mut self, rate_bps: f64) {
        self.rate_bps = rate_bps.max(1.0);
        self.bits = self.bits.min(self.burst());
    }

    pub fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last_refill {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.bits = (self.bits + elapsed * self.rate_bps).min(self.burst());
        }
        self.last_refill = Some(now);
    }

    /// A packet may leave when the budget is positive: a packet larger than what is left
    /// drives it negative and the next waits for it to recover, so the average holds.
    pub fn can_send(&self) -> bool {
        self.bits > 0.0
    }

    pub fn spend(&mut self, bits: f64) {
        self.bits -= bits;
    }

    /// When the budget is next positive.
    pub fn next_send(&self) -> Option<Instant> {
        let last = self.last_refill?;
        if self.bits > 0.0 {
            return Some(last);
        }
        let wait = (-self.bits + 1.0) / self.rate_bps;
        Some(last + Duration::from_secs_f64(wait))
    }

    pub fn rate_bps(&self) -> f64 {
        self.rate_bps
    }
}

pub struct Pacer {
    /// Read for the estimate to pace at.
    link: Link,
    report: Publisher<PacerReport>,
    budget: Budget,
    /// SSRCs of audio streams: never queued.
    audio_ssrcs: Vec<u32>,
    /// Retransmissions leave before new video: the viewer is waiting for them.
    retransmissions: VecDeque<TaggedPacket>,
    video: VecDeque<TaggedPacket>,
    queued_bits: f64,
    released: VecDeque<TaggedPacket>,
    read_queue: VecDeque<TaggedPacket>,
}

impl Pacer {
    pub fn new(link: Link, report: Publisher<PacerReport>) -> Self {
        let rate = link.estimate_bps() * PACING_FACTOR;
        Self {
            link,
            report,
            budget: Budget::new(rate),
            audio_ssrcs: Vec::new(),
            retransmissions: VecDeque::new(),
            video: VecDeque::new(),
            queued_bits: 0.0,
            released: VecDeque::new(),
            read_queue: VecDeque::new(),
        }
    }

    fn bits_of(packet: &TaggedPacket) -> f64 {
        match &packet.message.packet {
            Packet::Rtp(rtp) => (rtp.marshal_size() * 8) as f64,
            _ => 0.0,
        }
    }

    fn follow_estimate(&mut self) {
        let estimate = self.link.estimate_bps();
        let rate = estimate * PACING_FACTOR;
        if (rate - self.budget.rate_bps()).abs() > 1.0 {
            self.budget.set_rate(rate);
        }
    }

    fn publish_queue(&self) {
        let delay = Duration::from_secs_f64(self.queued_bits.max(0.0) / self.budget.rate_bps());
        self.report.update(|report| report.delay = delay);
    }

    fn release(&mut self, now: Instant) {
        self.budget.refill(now);
        while self.budget.can_send() {
            let Some(mut packet) = self
                .retransmissions
                .pop_front()
                .or_else(|| self.video.pop_front())
            else {
                break;
            };
            let bits = Self::bits_of(&packet);
            self.budget.spend(bits);
            self.queued_bits -= bits;
            // It leaves now: what records departures wire-ward must see this instant.
            packet.now = now;
            self.released.push_back(packet);
        }
        if self.retransmissions.is_empty() && self.video.is_empty() {
            self.queued_bits = 0.0;
        }
        self.publish_queue();
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for Pacer {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let now = msg.now;
        let audio = match &msg.message.packet {
            Packet::Rtp(rtp) => self.audio_ssrcs.contains(&rtp.header.ssrc),
            // Control traffic is only useful while fresh.
            _ => {
                self.released.push_back(msg);
                return Ok(());
            }
        };
        self.follow_estimate();
        self.budget.refill(now);
        if audio {
            // Sound first: it is small, and a gap in it is heard at once.
            self.budget.spend(Self::bits_of(&msg));
            self.released.push_back(msg);
            return Ok(());
        }
        if self.retransmissions.len() + self.video.len() >= QUEUE_LIMIT {
            self.report.update(|report| report.dropped += 1);
            return Ok(());
        }
        self.queued_bits += Self::bits_of(&msg);
        if msg.message.has(&Attribute::Retransmission) {
            self.retransmissions.push_back(msg);
        } else {
            self.video.push_back(msg);
        }
        self.release(now);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.released.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.follow_estimate();
        self.release(now);
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        if self.retransmissions.is_empty() && self.video.is_empty() {
            return None;
        }
        self.budget.next_send()
    }
}

impl Interceptor for Pacer {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if info.mime_type.to_ascii_lowercase().starts_with("audio/")
            && !self.audio_ssrcs.contains(&info.ssrc)
        {
            self.audio_ssrcs.push(info.ssrc);
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.audio_ssrcs.retain(|ssrc| *ssrc != info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::CongestionFeedback;
    use bytes::Bytes;
    use rtc::interceptor::AttributedPacket;
    use rtc::rtp;
    use rtc::shared::TransportContext;

    fn rtp_packet(now: Instant, ssrc: u32, sequence_number: u16, size: usize) -> TaggedPacket {
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    ssrc,
                    sequence_number,
                    ..Default::default()
                },
                payload: Bytes::from(vec![0u8; size]),
            })),
        }
    }

    fn pacer(estimate: f64) -> (Link, Pacer) {
        let (link, writers) = Link::new(CongestionFeedback::TransportCc, estimate, 10_000_000.0);
        let mut pacer = Pacer::new(link.clone(), writers.pacer);
        pacer.bind_local_stream(&StreamInfo {
            ssrc: 2,
            mime_type: "audio/opus".into(),
            ..Default::default()
        });
        (link, pacer)
    }

    /// Drives the pacer to `until`, waking when it asks; the instants packets left at.
    fn drain(pacer: &mut Pacer, until: Instant) -> Vec<(Instant, u32, u16)> {
        let mut left = Vec::new();
        for _ in 0..100_000 {
            while let Some(packet) = pacer.poll_write() {
                if let Packet::Rtp(rtp) = &packet.message.packet {
                    left.push((packet.now, rtp.header.ssrc, rtp.header.sequence_number));
                }
            }
            match pacer.poll_timeout() {
                Some(at) if at <= until => pacer.handle_timeout(at).unwrap(),
                _ => break,
            }
        }
        left
    }

    #[test]
    fn a_keyframe_leaves_at_the_pacing_rate_not_in_one_burst() {
        let (link, mut pacer) = pacer(400_000.0);
        let start = Instant::now();
        // A 24 KB keyframe in 20 packets.
        for seq in 0..20 {
            pacer.handle_write(rtp_packet(start, 1, seq, 1200)).unwrap();
        }
        assert!(link.snapshot().pacer_delay > Duration::from_millis(100));
        let left = drain(&mut pacer, start + Duration::from_secs(2));
        assert_eq!(left.len(), 20);
        let span = left.last().unwrap().0 - left.first().unwrap().0;
        // 20 × ~1212 bytes at 1.5 × 400 kbit/s ≈ 320 ms, less the first burst.
        assert!(
            (Duration::from_millis(260)..Duration::from_millis(340)).contains(&span),
            "{span:?}"
        );
        let sequence: Vec<u16> = left.iter().map(|p| p.2).collect();
        assert_eq!(sequence, (0..20).collect::<Vec<_>>(), "order kept");
        assert_eq!(link.snapshot().pacer_delay, Duration::ZERO);
    }

    #[test]
    fn sound_and_retransmissions_overtake_queued_video() {
        let (_, mut pacer) = pacer(200_000.0);
        let start = Instant::now();
        for seq in 0..10 {
            pacer.handle_write(rtp_packet(start, 1, seq, 1200)).unwrap();
        }
        let at = start + Duration::from_millis(1);
        pacer.handle_write(rtp_packet(at, 2, 500, 100)).unwrap();
        let mut retransmission = rtp_packet(at, 1, 900, 1200);
        retransmission.message.add(Attribute::Retransmission);
        pacer.handle_write(retransmission).unwrap();
        let left = drain(&mut pacer, start + Duration::from_secs(3));
        let audio = left.iter().position(|p| p.1 == 2).unwrap();
        let resent = left.iter().position(|p| p.2 == 900).unwrap();
        let last_video = left.iter().rposition(|p| p.1 == 1 && p.2 < 100).unwrap();
        assert!(audio < 3, "sound left at once: {left:?}");
        assert!(
            resent < last_video,
            "the retransmission went before queued video"
        );
    }

    #[test]
    fn the_queue_is_bounded() {
        let (link, mut pacer) = pacer(100_000.0);
        let now = Instant::now();
        for seq in 0..(QUEUE_LIMIT as u16 + 50) {
            pacer.handle_write(rtp_packet(now, 1, seq, 1200)).unwrap();
        }
        assert!(link.snapshot().pacer_dropped >= 40);
    }
}
