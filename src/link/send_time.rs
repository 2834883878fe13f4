//! Stamps every outgoing RTP packet with the moment it leaves (the abs-send-time header
//! extension), for viewers that estimate their link themselves and report it with REMB
//! (aiortc, some SFUs): their estimators read the queueing delay from how these stamps and
//! the arrival times drift apart, and without the stamps they never send a REMB at all. It
//! sits wire-ward of the pacer, so the stamp is the real departure, not the enqueueing.

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtp::extension::abs_send_time_extension::AbsSendTimeExtension;
use rtc::sansio::Protocol;
use rtc::shared::marshal::Marshal;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

pub const ABS_SEND_TIME_URI: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";

/// Streams remembered at most (a peer connection has two: video and sound).
const MAX_STREAMS: usize = 16;

pub struct SendTimeStamper {
    /// The extension id the viewer negotiated, per outgoing SSRC.
    ids: HashMap<u32, u8>,
    /// Stamps count from here; receivers use only their differences.
    epoch: Option<Instant>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl SendTimeStamper {
    pub fn new() -> Self {
        Self {
            ids: HashMap::new(),
            epoch: None,
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }

    /// `now` as a 64-bit NTP-format time (32.32 fixed point) from the epoch: the form the
    /// extension takes its 6.18 seconds from.
    fn ntp(&mut self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(*self.epoch.get_or_insert(now));
        let fraction = (u64::from(elapsed.subsec_nanos()) << 32) / 1_000_000_000;
        (elapsed.as_secs() << 32) | fraction
    }
}

impl Default for SendTimeStamper {
    fn default() -> Self {
        Self::new()
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for SendTimeStamper {
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

    fn handle_write(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        let id = match &msg.message.packet {
            Packet::Rtp(rtp) => self.ids.get(&rtp.header.ssrc).copied(),
            _ => None,
        };
        if let Some(id) = id {
            let stamp = AbsSendTimeExtension::new(self.ntp(msg.now));
            if let (Ok(bytes), Packet::Rtp(rtp)) = (stamp.marshal(), &mut msg.message.packet) {
                // A packet that cannot take the extension goes out without it.
                let _ = rtp.header.set_extension(id, bytes.freeze());
            }
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for SendTimeStamper {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        let negotiated = info
            .rtp_header_extensions
            .iter()
            .find(|ext| ext.uri == ABS_SEND_TIME_URI)
            .and_then(|ext| u8::try_from(ext.id).ok());
        if let Some(id) = negotiated
            && self.ids.len() < MAX_STREAMS
        {
            self.ids.insert(info.ssrc, id);
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.ids.remove(&info.ssrc);
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::{AttributedPacket, RTPHeaderExtension};
    use rtc::shared::TransportContext;
    use rtc::shared::marshal::Unmarshal;
    use std::time::Duration;

    fn packet(now: Instant, ssrc: u32) -> TaggedPacket {
        let mut rtp = rtc::rtp::Packet::default();
        rtp.header.ssrc = ssrc;
        rtp.payload = bytes::Bytes::from_static(&[1, 2, 3]);
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(rtp)),
        }
    }

    fn stamp_of(msg: &TaggedPacket, id: u8) -> Option<u32> {
        let Packet::Rtp(rtp) = &msg.message.packet else {
            return None;
        };
        let mut raw = rtp.header.get_extension(id)?;
        let ext = AbsSendTimeExtension::unmarshal(&mut raw).ok()?;
        u32::try_from(ext.timestamp).ok()
    }

    #[test]
    fn packets_of_a_negotiated_stream_carry_their_departure_in_6_18_seconds() {
        let mut stamper = SendTimeStamper::new();
        let info = StreamInfo {
            ssrc: 7,
            rtp_header_extensions: vec![RTPHeaderExtension {
                uri: ABS_SEND_TIME_URI.to_owned(),
                id: 3,
            }],
            ..Default::default()
        };
        stamper.bind_local_stream(&info);
        let start = Instant::now();
        stamper.handle_write(packet(start, 7)).unwrap();
        stamper
            .handle_write(packet(start + Duration::from_millis(250), 7))
            .unwrap();
        stamper.handle_write(packet(start, 8)).unwrap();
        let first = stamper.poll_write().unwrap();
        let second = stamper.poll_write().unwrap();
        let other = stamper.poll_write().unwrap();
        let (a, b) = (stamp_of(&first, 3).unwrap(), stamp_of(&second, 3).unwrap());
        // 250 ms is 0.25 × 2^18 in 6.18 fixed point.
        assert_eq!(b - a, 1 << 16);
        assert_eq!(
            stamp_of(&other, 3),
            None,
            "a stream without the extension is untouched"
        );
    }
}
