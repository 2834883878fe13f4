//! RTP headers for the one encode's shared payloads: each receiver of them (a WebRTC viewer,
//! an RTSP reader) stamps them with its own SSRC, sequence numbers and timestamp offset.

use bytes::Bytes;
use rtc::rtp;

/// Per-viewer RTP header state: the shared payloads get this viewer's SSRC, sequence numbers
/// and timestamp offset (random, as RFC 3550 asks).
pub struct RtpStamper {
    ssrc: u32,
    payload_type: u8,
    next_sequence: u16,
    timestamp_offset: u32,
}

impl RtpStamper {
    pub fn new(payload_type: u8) -> Self {
        Self {
            ssrc: rand::random(),
            payload_type,
            next_sequence: rand::random(),
            timestamp_offset: rand::random(),
        }
    }

    /// RTP packets for one frame's payloads. Video marks the last packet of a picture; an
    /// audio packet is never marked (the mark would mean the start of a talk spurt).
    pub fn packets(
        &mut self,
        rtp_ticks: u64,
        payloads: &[Bytes],
        mark_last: bool,
    ) -> Vec<rtp::Packet> {
        let timestamp = self.timestamp(rtp_ticks);
        let last = payloads.len().saturating_sub(1);
        payloads
            .iter()
            .enumerate()
            .map(|(i, payload)| {
                let sequence_number = self.next_sequence;
                self.next_sequence = self.next_sequence.wrapping_add(1);
                rtp::Packet {
                    header: rtp::header::Header {
                        version: 2,
                        marker: mark_last && i == last,
                        payload_type: self.payload_type,
                        sequence_number,
                        timestamp,
                        ssrc: self.ssrc,
                        ..Default::default()
                    },
                    payload: payload.clone(),
                }
            })
            .collect()
    }
}

impl RtpStamper {
    /// This stream's SSRC, for its sender reports.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The RTP timestamp a capture at `rtp_ticks` carries, for a sender report mapping it to
    /// the wall clock.
    pub fn timestamp(&self, rtp_ticks: u64) -> u32 {
        self.timestamp_offset.wrapping_add(rtp_ticks as u32)
    }
}
