//! What one RTSP reader is sent on one track, pure: the hub's shared payloads stamped with the
//! reader's own RTP headers, each packet framed for its way out (`$`-interleaved on the RTSP
//! connection, or a datagram), and an RTCP sender report now and then, which readers need to
//! line audio up with video and to show the capture time (RFC 3550 §6.4.1).

use super::exchange::Lower;
use crate::media::rtp::RtpStamper;
use bytes::{BufMut, Bytes, BytesMut};
use rtc::shared::marshal::Marshal;
use std::time::{Duration, Instant};

/// How often each track's sender report goes out (and with its first packet).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Seconds from 1900 (NTP's era) to 1970 (Unix's).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// One packet on its way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Bytes to write to the RTSP connection as they are (`$`, channel, length, packet).
    Interleaved(Bytes),
    /// A datagram to this port of the reader, from the server's RTP or RTCP socket.
    Rtp {
        port: u16,
        packet: Bytes,
    },
    Rtcp {
        port: u16,
        packet: Bytes,
    },
}

/// One track's RTP towards one reader.
pub struct TrackSender {
    stamper: RtpStamper,
    lower: Lower,
    packets: u32,
    octets: u32,
    last_report: Option<Instant>,
}

impl TrackSender {
    pub fn new(payload_type: u8, lower: Lower) -> Self {
        Self {
            stamper: RtpStamper::new(payload_type),
            lower,
            packets: 0,
            octets: 0,
            last_report: None,
        }
    }

    /// The packets for one frame (or one audio packet) captured at `rtp_ticks` on the track's
    /// clock and at `capture_unix_micros` on the wall clock, preceded by a sender report when
    /// one is due. `mark_last`: the last packet ends a picture.
    pub fn frame(
        &mut self,
        now: Instant,
        rtp_ticks: u64,
        capture_unix_micros: u64,
        payloads: &[Bytes],
        mark_last: bool,
    ) -> Vec<Outgoing> {
        let mut out = Vec::with_capacity(payloads.len() + 1);
        let due = self
            .last_report
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_INTERVAL);
        for packet in self.stamper.packets(rtp_ticks, payloads, mark_last) {
            let Ok(bytes) = packet.marshal() else {
                continue;
            };
            self.packets = self.packets.wrapping_add(1);
            self.octets = self
                .octets
                .wrapping_add(u32::try_from(packet.payload.len()).unwrap_or(u32::MAX));
            out.extend(self.wrap(bytes.freeze(), false));
        }
        // The report follows the frame's packets, so that its counts include them and a
        // reader sees the stream before the report about it.
        if due {
            self.last_report = Some(now);
            let report = rtc::rtcp::sender_report::SenderReport {
                ssrc: self.stamper.ssrc(),
                ntp_time: ntp_time(capture_unix_micros),
                rtp_time: self.stamper.timestamp(rtp_ticks),
                packet_count: self.packets,
                octet_count: self.octets,
                ..Default::default()
            };
            if let Ok(bytes) = report.marshal() {
                out.extend(self.wrap(bytes.freeze(), true));
            }
        }
        out
    }

    fn wrap(&self, packet: Bytes, rtcp: bool) -> Option<Outgoing> {
        match self.lower {
            Lower::Interleaved {
                rtp: rtp_channel,
                rtcp: rtcp_channel,
            } => {
                let channel = if rtcp { rtcp_channel } else { rtp_channel };
                let len = u16::try_from(packet.len()).ok()?;
                let mut framed = BytesMut::with_capacity(packet.len() + 4);
                framed.put_u8(b'$');
                framed.put_u8(channel);
                framed.put_u16(len);
                framed.put_slice(&packet);
                Some(Outgoing::Interleaved(framed.freeze()))
            }
            Lower::Udp { rtcp: port, .. } if rtcp => Some(Outgoing::Rtcp { port, packet }),
            Lower::Udp { rtp: port, .. } => Some(Outgoing::Rtp { port, packet }),
        }
    }
}

/// A wall-clock time (microseconds since 1970) as RTCP's 64-bit NTP timestamp.
fn ntp_time(unix_micros: u64) -> u64 {
    let seconds = unix_micros / 1_000_000 + NTP_UNIX_OFFSET_SECS;
    let fraction = ((unix_micros % 1_000_000) << 32) / 1_000_000;
    (seconds << 32) | fraction
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::shared::marshal::Unmarshal;

    fn payloads() -> Vec<Bytes> {
        vec![Bytes::from_static(b"first"), Bytes::from_static(b"last")]
    }

    #[test]
    fn interleaved_packets_are_framed_numbered_and_marked() {
        let start = Instant::now();
        let lower = Lower::Interleaved { rtp: 2, rtcp: 3 };
        let mut sender = TrackSender::new(96, lower);
        let first = sender.frame(start, 9_000, 1_000_000, &payloads(), true);
        // Two RTP packets on channel 2, then the first sender report on channel 3.
        assert_eq!(first.len(), 3);
        let mut sequences = Vec::new();
        for (i, out) in first.iter().take(2).enumerate() {
            let Outgoing::Interleaved(bytes) = out else {
                panic!("not interleaved: {out:?}");
            };
            assert_eq!(bytes.first(), Some(&b'$'));
            assert_eq!(bytes.get(1), Some(&2));
            let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            assert_eq!(len, bytes.len() - 4);
            let packet = rtc::rtp::Packet::unmarshal(&mut bytes.slice(4..)).unwrap();
            assert_eq!(packet.header.payload_type, 96);
            assert_eq!(packet.header.marker, i == 1);
            sequences.push(packet.header.sequence_number);
        }
        assert_eq!(sequences[1], sequences[0].wrapping_add(1));
        let Outgoing::Interleaved(report) = &first[2] else {
            panic!("no report");
        };
        assert_eq!(report.get(1), Some(&3));
        let report =
            rtc::rtcp::sender_report::SenderReport::unmarshal(&mut report.slice(4..)).unwrap();
        assert_eq!(report.packet_count, 2);
        assert_eq!(report.octet_count, 9);
        // 1970-01-01T00:00:01 on the NTP clock.
        assert_eq!(report.ntp_time >> 32, NTP_UNIX_OFFSET_SECS + 1);

        // The next frame soon after: no report; one interval later: a report again.
        let soon = sender.frame(
            start + Duration::from_millis(33),
            12_000,
            0,
            &payloads(),
            true,
        );
        assert_eq!(soon.len(), 2);
        let later = sender.frame(start + REPORT_INTERVAL, 9_000 * 50, 0, &payloads(), true);
        assert_eq!(later.len(), 3);
    }

    #[test]
    fn udp_packets_go_to_the_readers_ports() {
        let lower = Lower::Udp {
            rtp: 5000,
            rtcp: 5001,
        };
        let mut sender = TrackSender::new(97, lower);
        let out = sender.frame(Instant::now(), 960, 0, &payloads()[..1], false);
        assert!(matches!(
            out.first(),
            Some(Outgoing::Rtp { port: 5000, .. })
        ));
        assert!(matches!(
            out.get(1),
            Some(Outgoing::Rtcp { port: 5001, .. })
        ));
    }

    #[test]
    fn ntp_time_splits_seconds_and_fraction() {
        let half_past = ntp_time(1_500_000);
        assert_eq!(half_past >> 32, NTP_UNIX_OFFSET_SECS + 1);
        assert_eq!(half_past & 0xffff_ffff, 1 << 31);
    }
}
