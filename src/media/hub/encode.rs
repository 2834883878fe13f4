//! The pipeline thread's work on each captured picture: encode it once per stream that has
//! viewers (openh264 or the board's encoder for H.264, libvpx for VP8), or pass the camera's
//! own H.264 through, at the rate the viewers' links allow; payload it into RTP once; keep it
//! for late joiners and send it to the stream's viewers.

use super::{
    EncodedFrame, FrameSize, Inner, LiveVideo, MAX_UNUSABLE_IN_A_ROW, RATE_PERIOD, RTP_PAYLOAD_MTU,
    RTP_VIDEO_CLOCK, SourceState, Stream,
};
use crate::config::VideoConfig;
use crate::media::encoder::{AccessUnit, EncoderError, ParameterSets};
use crate::media::encoding::{EncoderKind, Encoding};
use crate::media::rate::RateAllocator;
use crate::media::vp8::{Vp8Encoder, Vp8Error};
use crate::media::worker::{RunFlag, lock};
use crate::media::{CapturedFrame, I420Frame, SourceError, VideoSource};
use bytes::Bytes;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::codec::vp8::Vp8Payloader;
use rtc::rtp::packetizer::Payloader;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
/// How often a camera that encodes H.264 itself may be asked for a keyframe: requests from the
/// policy repeat every frame until a keyframe arrives, the camera needs only one.
const CAMERA_KEYFRAME_REQUEST_GAP: Duration = Duration::from_millis(250);

/// What a passed-through H.264 stream needs between frames.
pub(super) struct PassthroughState {
    parameter_sets: ParameterSets,
    last_request: Option<Instant>,
    /// The camera said it cannot force keyframes; not asked again for this stream.
    cannot_force: bool,
    /// The rate last asked of the camera; `None` once it said it has no such control.
    camera_bitrate: Option<u32>,
    /// The last frame was the camera's own H.264.
    active: bool,
}

impl Default for PassthroughState {
    fn default() -> Self {
        Self {
            parameter_sets: ParameterSets::default(),
            last_request: None,
            cannot_force: false,
            camera_bitrate: Some(0),
            active: false,
        }
    }
}

/// A stream's rate: what its viewers' links allow, reconsidered every [`RATE_PERIOD`].
struct RateControl {
    allocator: RateAllocator,
    target_bps: u32,
    next_check: Instant,
}

impl RateControl {
    fn new(allocator: RateAllocator, configured_bps: u32) -> Self {
        Self {
            allocator,
            target_bps: configured_bps,
            next_check: Instant::now(),
        }
    }

    /// Follows the stream's viewers' links.
    fn update(&mut self, stream: &Stream, now: Instant) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + RATE_PERIOD;
        let allocation = self.allocator.decide(now, &stream.viewer_links());
        stream.assign_layers(&allocation.base_layer_only);
        if let Some(bps) = allocation.encoder_bps {
            tracing::debug!("{} target {} kbit/s", stream.codec.sdp_name(), bps / 1000);
            self.target_bps = bps;
            stream
                .counters
                .target_bitrate_bps
                .store(u64::from(bps), Ordering::Relaxed);
            stream
                .counters
                .bitrate_changes
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Everything between a captured frame and the H.264 stream's access units.
pub(super) struct H264Stage {
    /// Sets its encoder up at the first raw frame: a camera that sends H.264 never needs one.
    encoding: Encoding,
    pub(super) passthrough: PassthroughState,
    out: StreamOut,
}

impl H264Stage {
    pub(super) fn new(video: &VideoConfig) -> Self {
        Self {
            encoding: Encoding::new(video),
            passthrough: PassthroughState::default(),
            out: StreamOut::new(
                RateAllocator::new(crate::media::encoder::MIN_BITRATE_BPS, video.bitrate_bps()),
                video.bitrate_bps(),
                Box::new(H264Payloader::default()),
            ),
        }
    }

    /// Encodes a raw picture.
    fn encode(
        &mut self,
        inner: &Inner,
        frame: &I420Frame,
        force_keyframe: bool,
    ) -> Result<Option<AccessUnit>, EncoderError> {
        self.passthrough.active = false;
        let encoded = self
            .encoding
            .encode(frame, force_keyframe, self.out.rate.target_bps);
        self.publish_encoder(inner);
        encoded
    }

    /// The encoder at work and its counters, for the stats.
    fn publish_encoder(&self, inner: &Inner) {
        let kind = match self.encoding.kind() {
            EncoderKind::None => 0,
            EncoderKind::OpenH264 => 1,
            EncoderKind::V4l2M2m => 2,
        };
        let counters = &inner.counters;
        counters.encoder_kind.store(kind, Ordering::Relaxed);
        counters
            .encoder_fallbacks
            .store(self.encoding.fallbacks(), Ordering::Relaxed);
        let (in_place, copied) = self.encoding.pictures_in_place_and_copied();
        counters
            .pictures_in_place
            .store(in_place, Ordering::Relaxed);
        counters.pictures_copied.store(copied, Ordering::Relaxed);
    }

    /// Lets the encoder go (nobody watches in H.264): a hardware encoder's buffers and
    /// device are given back.
    fn stop(&mut self, inner: &Inner) {
        if self.encoding.kind() != EncoderKind::None {
            tracing::info!("H.264 encoder stopped: no H.264 viewer left");
            self.encoding.stop();
            self.publish_encoder(inner);
        }
    }

    /// Passes on a camera's own H.264 frame, asking the camera for what the viewers need.
    fn pass_through(
        &mut self,
        inner: &Inner,
        source: &mut dyn VideoSource,
        data: Bytes,
        force_keyframe: bool,
    ) -> Result<AccessUnit, EncoderError> {
        let target_bps = self.out.rate.target_bps;
        let state = &mut self.passthrough;
        state.active = true;
        if let Some(asked) = state.camera_bitrate
            && asked != target_bps
        {
            // Through the camera's V4L2 control, like the keyframe requests.
            state.camera_bitrate = if source.set_bitrate(target_bps) {
                Some(target_bps)
            } else {
                tracing::warn!(
                    "the camera's bitrate cannot be changed: viewers on slower links \
                     get its stream at the rate it was set up with"
                );
                None
            };
        }
        let now = Instant::now();
        let asked_lately = state
            .last_request
            .is_some_and(|at| now.saturating_duration_since(at) < CAMERA_KEYFRAME_REQUEST_GAP);
        if force_keyframe && !asked_lately && !state.cannot_force {
            state.last_request = Some(now);
            if !source.request_keyframe() {
                state.cannot_force = true;
                tracing::warn!(
                    "the camera cannot be asked for keyframes: new viewers wait for its \
                     next periodic keyframe"
                );
            }
        }
        let unit = state.parameter_sets.complete(data)?;
        inner
            .counters
            .frames_passed_through
            .fetch_add(1, Ordering::Relaxed);
        Ok(unit)
    }
}

/// The VP8 stream's encoder, set up while VP8 viewers watch.
pub(super) struct Vp8Stage {
    encoder: Option<Vp8Encoder>,
    out: StreamOut,
    fps: u32,
}

impl Vp8Stage {
    pub(super) fn new(video: &VideoConfig) -> Self {
        let mut payloader = Vp8Payloader::default();
        // Picture ids let a receiver tell a lost frame from a late one.
        payloader.enable_picture_id = true;
        Self {
            encoder: None,
            // VP8 is encoded in one layer: the rate comes down to the slowest VP8 viewer.
            out: StreamOut::new(
                RateAllocator::single_layer(
                    crate::media::vp8::MIN_BITRATE_BPS,
                    video.bitrate_bps(),
                ),
                video.bitrate_bps(),
                Box::new(payloader),
            ),
            fps: video.fps,
        }
    }

    fn encode(
        &mut self,
        stream: &Stream,
        frame: &I420Frame,
        pts: u64,
        force_keyframe: bool,
    ) -> Result<Option<AccessUnit>, Vp8Error> {
        let size = (frame.width(), frame.height());
        if self.encoder.as_ref().is_some_and(|e| e.size() != size) {
            // A camera back in another mode: a new encoder, from a keyframe.
            self.encoder = None;
            stream.restart();
        }
        let encoder = match &mut self.encoder {
            Some(encoder) => encoder,
            None => {
                let encoder =
                    Vp8Encoder::new(size.0, size.1, self.fps, self.out.rate.target_bps, None)?;
                tracing::info!("VP8 encoder started ({}x{})", size.0, size.1);
                stream.counters.running.store(true, Ordering::Relaxed);
                self.encoder.insert(encoder)
            }
        };
        encoder.set_bitrate(self.out.rate.target_bps);
        encoder.encode(frame, pts, force_keyframe)
    }

    fn stop(&mut self, stream: &Stream) {
        if self.encoder.take().is_some() {
            tracing::info!("VP8 encoder stopped: no VP8 viewer left");
            stream.counters.running.store(false, Ordering::Relaxed);
        }
    }
}

/// A frame's capture times, carried to every stream.
#[derive(Clone, Copy)]
struct CaptureTimes {
    unix_ms: u64,
    /// On the 90 kHz RTP clock, since the hub was created.
    rtp_ticks: u64,
}

/// Encodes (or passes through) frames from `source` until stopped (`Ok`) or the source fails
/// (`Err`).
pub(super) fn encode_frames(
    inner: &Inner,
    run: &RunFlag,
    source: &mut dyn VideoSource,
    h264: &mut H264Stage,
    vp8: &mut Vp8Stage,
) -> Result<(), SourceError> {
    let mut unusable_in_a_row = 0u32;
    while run.keep_going() {
        let frame = match source.next_frame() {
            Ok(frame) => {
                unusable_in_a_row = 0;
                frame
            }
            Err(SourceError::Transient(e)) => {
                unusable_in_a_row += 1;
                let total = inner
                    .counters
                    .frames_unusable
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                if unusable_in_a_row >= MAX_UNUSABLE_IN_A_ROW {
                    return Err(SourceError::Fatal(format!(
                        "{unusable_in_a_row} unusable frames in a row, the last: {e}"
                    )));
                }
                if total.is_power_of_two() {
                    tracing::warn!("skipped an unusable frame ({total} so far): {e}");
                }
                continue;
            }
            Err(fatal) => return Err(fatal),
        };
        let now = Instant::now();
        let want_h264 = inner.h264.wanted(now, inner.idle_grace);
        let want_vp8 = inner.vp8.wanted(now, inner.idle_grace);
        let mut size = None;
        match frame {
            CapturedFrame::Raw(frame) => {
                size = Some(FrameSize {
                    width: frame.width() as u32,
                    height: frame.height() as u32,
                });
                let times = CaptureTimes {
                    unix_ms: frame.capture_unix_ms,
                    rtp_ticks: rtp_ticks(inner, frame.captured_at),
                };
                // Taps and VP8 first: a hardware H.264 encoder may take the frame's buffer.
                lock(&inner.taps).show(&frame);
                if want_vp8 {
                    take_turn(vp8, &inner.vp8, times, now, |vp8, force| {
                        vp8.encode(&inner.vp8, &frame, times.rtp_ticks, force)
                    });
                } else {
                    vp8.stop(&inner.vp8);
                }
                if want_h264 {
                    take_turn(h264, &inner.h264, times, now, |h264, force| {
                        h264.encode(inner, &frame, force)
                    });
                } else {
                    h264.stop(inner);
                }
                // The source makes its next frames in the encoder's own buffers when it lends
                // them (and in its own again when it stops).
                if let Some(pool) = source.frame_pool() {
                    pool.lend_from(h264.encoding.picture_buffers().as_ref());
                }
            }
            CapturedFrame::H264(frame) => {
                // A camera's own H.264 serves the H.264 stream only (VP8 is not offered with
                // passthrough: see `VideoHub::codecs`).
                vp8.stop(&inner.vp8);
                if want_h264 {
                    size = Some(FrameSize {
                        width: frame.width,
                        height: frame.height,
                    });
                    let times = CaptureTimes {
                        unix_ms: frame.capture_unix_ms,
                        rtp_ticks: rtp_ticks(inner, frame.captured_at),
                    };
                    take_turn(h264, &inner.h264, times, now, |h264, force| {
                        h264.pass_through(inner, source, frame.data, force)
                            .map(Some)
                    });
                }
            }
        }
        inner.h264.counters.running.store(
            want_h264 && (h264.passthrough.active || h264.encoding.kind() != EncoderKind::None),
            Ordering::Relaxed,
        );
        if let Some(size) = size {
            let encoder = if h264.passthrough.active {
                EncoderKind::None
            } else {
                h264.encoding.kind()
            };
            inner.source_state.set(SourceState::Live(LiveVideo {
                size,
                encoder,
                sending_h264: inner.h264.counters.running.load(Ordering::Relaxed),
                sending_vp8: vp8.encoder.is_some(),
            }));
        }
    }
    Ok(())
}

/// A capture time on the 90 kHz RTP clock, since the hub was created.
fn rtp_ticks(inner: &Inner, captured_at: Instant) -> u64 {
    let since_epoch = captured_at.saturating_duration_since(inner.epoch);
    (since_epoch.as_micros() as u64) * RTP_VIDEO_CLOCK / 1_000_000
}

/// What every codec's stage has: a rate, a payloader and a count of frames that failed.
/// [`take_turn`] drives any of them through a frame the same way.
struct StreamOut {
    rate: RateControl,
    payloader: Box<dyn Payloader + Send>,
    failures: u64,
}

impl StreamOut {
    fn new(
        allocator: RateAllocator,
        initial_bps: u32,
        payloader: Box<dyn Payloader + Send>,
    ) -> Self {
        Self {
            rate: RateControl::new(allocator, initial_bps),
            payloader,
            failures: 0,
        }
    }
}

/// A codec's stage: what it makes frames with, and its [`StreamOut`].
trait Stage {
    type Error: std::fmt::Display;
    fn out(&mut self) -> &mut StreamOut;
}

impl Stage for H264Stage {
    type Error = EncoderError;
    fn out(&mut self) -> &mut StreamOut {
        &mut self.out
    }
}

impl Stage for Vp8Stage {
    type Error = Vp8Error;
    fn out(&mut self) -> &mut StreamOut {
        &mut self.out
    }
}

/// One stream's turn with a frame: its rate and keyframe decisions, then `make` (an encode, or
/// a camera's own frame passed on) with them, then the send. One path for every codec, so a
/// rule changed here holds for all of them.
fn take_turn<S: Stage>(
    stage: &mut S,
    stream: &Stream,
    times: CaptureTimes,
    now: Instant,
    make: impl FnOnce(&mut S, bool) -> Result<Option<AccessUnit>, S::Error>,
) {
    stage.out().rate.update(stream, now);
    let target_bps = stage.out().rate.target_bps;
    let force_keyframe = lock(&stream.keyframes).decide(now);
    let started = Instant::now();
    let made = make(stage, force_keyframe);
    let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match made {
        Ok(Some(unit)) => {
            stream
                .counters
                .encode_micros
                .fetch_add(took, Ordering::Relaxed);
            let payloader = stage.out().payloader.as_mut();
            send_unit(stream, payloader, unit, times, target_bps, now)
        }
        Ok(None) => {}
        Err(e) => {
            stream
                .counters
                .encode_failures
                .fetch_add(1, Ordering::Relaxed);
            let failures = &mut stage.out().failures;
            *failures += 1;
            if failures.is_power_of_two() {
                tracing::error!(
                    "a frame could not be encoded in {} ({} so far): {e}",
                    stream.codec.sdp_name(),
                    *failures
                );
            }
        }
    }
}

/// Payloads an encoded picture and broadcasts it to the stream's viewers.
fn send_unit(
    stream: &Stream,
    payloader: &mut dyn Payloader,
    unit: AccessUnit,
    times: CaptureTimes,
    target_bps: u32,
    now: Instant,
) {
    {
        let mut keyframes = lock(&stream.keyframes);
        keyframes.on_encoded(unit.is_keyframe, now);
        if unit.is_keyframe {
            // Its time on the wire at the current rate, with room for the pacer and a round
            // trip; the next requested keyframe waits for it.
            let seconds = (unit.data.len() * 8) as f64 / f64::from(target_bps.max(1));
            tracing::debug!(
                "{} keyframe of {} bytes at {} kbit/s",
                stream.codec.sdp_name(),
                unit.data.len(),
                target_bps / 1000
            );
            keyframes.set_airtime(Duration::from_secs_f64((seconds * 1.5).min(3.0)));
        }
    }
    let payloads = match payloader.payload(RTP_PAYLOAD_MTU, &unit.data) {
        Ok(payloads) if !payloads.is_empty() => payloads,
        Ok(_) => return,
        Err(e) => {
            tracing::error!("RTP payloading failed: {e}");
            return;
        }
    };
    let counters = &stream.counters;
    counters.frames_encoded.fetch_add(1, Ordering::Relaxed);
    counters
        .bytes_encoded
        .fetch_add(unit.data.len() as u64, Ordering::Relaxed);
    if unit.is_keyframe {
        counters.keyframes_encoded.fetch_add(1, Ordering::Relaxed);
    }
    let encoded = Arc::new(EncodedFrame {
        sequence: stream.next_sequence.fetch_add(1, Ordering::Relaxed),
        capture_unix_ms: times.unix_ms,
        rtp_ticks: times.rtp_ticks,
        is_keyframe: unit.is_keyframe,
        temporal_id: unit.temporal_id,
        payloads,
        encoded_bytes: unit.data.len(),
        access_unit: unit.data,
    });
    // Kept before it is sent: a viewer that subscribes in between gets it from one or the
    // other, and skips the copy by its sequence number.
    lock(&stream.gop).push(&encoded, now);
    // No receivers is fine: everyone may have left during the grace period.
    let _ = stream.frames.send(encoded);
}
