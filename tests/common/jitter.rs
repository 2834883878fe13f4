//! The test viewer's receive buffer, as a browser has one: RTP packets are put back in
//! sequence order (retransmissions arrive late and out of order), a picture is handed to the
//! decoder only when all its packets are there, and when a gap is not filled in time the
//! viewer gives up on it, waits for a keyframe and asks for one (PLI). Without it, every lost
//! packet would spoil the pictures up to the next periodic keyframe, which says nothing about
//! campeer.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a missing packet is waited for: a retransmission needs a round trip, through the
/// bottleneck queue, and on a slow link a keyframe takes a while to arrive whole.
const GAP_WAIT: Duration = Duration::from_millis(600);
/// Packets held at most before a gap is given up on whatever the time.
const MAX_HELD: usize = 3_000;

pub enum Output {
    /// One picture's RTP payloads, in order, with its RTP timestamp.
    Frame {
        timestamp: u32,
        payloads: Vec<Bytes>,
    },
    /// A gap was given up on: ask the sender for a keyframe.
    NeedKeyframe,
}

struct Held {
    marker: bool,
    timestamp: u32,
    payload: Bytes,
    arrived: Instant,
}

pub struct Reassembler {
    held: BTreeMap<u64, Held>,
    /// The next sequence number (extended to 64 bits) to hand on.
    next: Option<u64>,
    highest: Option<u64>,
    awaiting_keyframe: bool,
    /// The payloads are VP8 (RFC 7741), not H.264.
    vp8: bool,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self {
            held: BTreeMap::new(),
            next: None,
            vp8: false,
            highest: None,
            awaiting_keyframe: true,
        }
    }
}

/// Whether a VP8 RTP payload (RFC 7741) begins a keyframe: the first packet of a partition
/// (S set, partition 0) whose VP8 frame header has the P bit clear.
pub fn starts_vp8_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    if first & 0x10 == 0 || first & 0x0f != 0 {
        return false;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        let Some(&ext) = payload.get(1) else {
            return false;
        };
        at = 2;
        if ext & 0x80 != 0 {
            let Some(&pid) = payload.get(at) else {
                return false;
            };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1;
        }
        if ext & 0x30 != 0 {
            at += 1;
        }
    }
    payload.get(at).is_some_and(|header| header & 0x01 == 0)
}

/// Whether an H.264 RTP payload begins a keyframe: SPS alone, in a STAP-A, or the first
/// fragment of an IDR.
pub fn starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        7 | 5 => true,
        24 => payload
            .get(3)
            .is_some_and(|nal| matches!(nal & 0x1f, 7 | 5)),
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && matches!(fu & 0x1f, 5 | 7)),
        _ => false,
    }
}

impl Reassembler {
    /// For a VP8 stream.
    pub fn vp8() -> Self {
        Self {
            vp8: true,
            ..Self::default()
        }
    }

    fn extend(&mut self, sequence: u16) -> u64 {
        let Some(highest) = self.highest else {
            let first = u64::from(sequence) + (1 << 32);
            self.highest = Some(first);
            return first;
        };
        let base = highest & !0xffff;
        let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
        let extended = candidates
            .into_iter()
            .map(|b| b + u64::from(sequence))
            .min_by_key(|c| c.abs_diff(highest))
            .unwrap_or(highest);
        self.highest = Some(highest.max(extended));
        extended
    }

    pub fn push(
        &mut self,
        now: Instant,
        sequence: u16,
        marker: bool,
        timestamp: u32,
        payload: Bytes,
    ) -> Vec<Output> {
        let extended = self.extend(sequence);
        let next = *self.next.get_or_insert(extended);
        if extended >= next {
            self.held.insert(
                extended,
                Held {
                    marker,
                    timestamp,
                    payload,
                    arrived: now,
                },
            );
        }
        self.drain(now)
    }

    fn drain(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        for _ in 0..MAX_HELD {
            let Some(next) = self.next else { break };
            // Is there a complete picture from `next` on?
            let mut end = None;
            let mut sequence = next;
            while let Some(held) = self.held.get(&sequence) {
                if held.marker {
                    end = Some(sequence);
                    break;
                }
                sequence += 1;
            }
            if let Some(end) = end {
                let packets: Vec<Held> =
                    (next..=end).filter_map(|s| self.held.remove(&s)).collect();
                let timestamp = packets.last().map_or(0, |h| h.timestamp);
                let payloads: Vec<Bytes> = packets.into_iter().map(|h| h.payload).collect();
                self.next = Some(end + 1);
                let keyframe = payloads.first().is_some_and(|p| {
                    if self.vp8 {
                        starts_vp8_keyframe(p)
                    } else {
                        starts_keyframe(p)
                    }
                });
                if self.awaiting_keyframe && !keyframe {
                    // Still waiting: ask again (the viewer spaces its requests out).
                    out.push(Output::NeedKeyframe);
                    continue;
                }
                self.awaiting_keyframe = false;
                out.push(Output::Frame {
                    timestamp,
                    payloads,
                });
                continue;
            }
            // Incomplete: a gap, if anything later is held. It is given up on once the packet
            // after it has waited long enough for the missing one to be resent.
            let Some((&later, after)) = self.held.range(next..).find(|(s, _)| **s > sequence)
            else {
                break;
            };
            let waited = now.saturating_duration_since(after.arrived);
            if waited < GAP_WAIT && self.held.len() < MAX_HELD {
                break;
            }
            // Give up on the gap: skip to what is held after it and wait for a keyframe.
            self.held.retain(|s, _| *s >= later);
            self.next = Some(later);
            self.awaiting_keyframe = true;
            out.push(Output::NeedKeyframe);
        }
        out
    }
}
