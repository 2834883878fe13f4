//! The fan-out hub: one source and one encoder serve every viewer.
//!
//! The pipeline (source → encoder → RTP payloader) runs on its own thread only while someone
//! watches: it starts with the first subscription and stops a grace period after the last one
//! is dropped, so a viewer who reloads the page does not pay for a camera restart. Each encoded
//! frame is payloaded once and broadcast; a viewer that cannot keep up loses frames and then
//! waits for the next keyframe instead of stalling the others.

use super::encoder::{AccessUnit, ParameterSets};
use super::encoding::{EncoderKind, Encoding};
use super::keyframe::KeyframePolicy;
use super::rate::{RateAllocator, ViewerLink};
use super::worker::{OnDemand, RunFlag, StateReporter, lock, supervise};
use super::{CapturedFrame, SourceError, VideoSource};
use crate::config::VideoConfig;
use crate::link::Link;
use bytes::Bytes;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// RTP payload size. Leaves room for RTP, SRTP, UDP and IP headers within a 1280-byte path
/// MTU (IPv6's minimum), so packets never fragment.
pub const RTP_PAYLOAD_MTU: usize = 1160;

/// Frames a viewer may fall behind before it starts dropping: about a quarter second at 30 fps.
/// More would only add latency for a viewer on a slow link.
const FRAME_BACKLOG: usize = 8;

/// 90 kHz, the RTP clock of every video payload format.
const RTP_VIDEO_CLOCK: u64 = 90_000;

/// How often the encoder's rate is reconsidered from the viewers' links.
const RATE_PERIOD: Duration = Duration::from_millis(200);
/// Unusable frames in a row after which the source counts as failed and is reopened: a
/// second of them at 30 fps. One now and then (a flaky USB link) is skipped.
pub const MAX_UNUSABLE_IN_A_ROW: u32 = 30;

/// One encoded picture, ready to send.
#[derive(Debug)]
pub struct EncodedFrame {
    /// Counts frames since the hub was created (not reset by pipeline restarts).
    pub sequence: u64,
    pub capture_unix_ms: u64,
    /// Capture time on the 90 kHz RTP clock, since the hub was created.
    pub rtp_ticks: u64,
    pub is_keyframe: bool,
    /// 0: the base layer; above: frames nothing refers to, which a viewer whose link cannot
    /// take the whole stream is not sent.
    pub temporal_id: u8,
    /// RTP payloads (FU-A fragments, STAP-A with SPS/PPS), in order; the last ends the frame.
    pub payloads: Vec<Bytes>,
    pub encoded_bytes: usize,
}

/// The size of the picture a live video source streams (a camera may not offer the
/// configured one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSize {
    pub width: u32,
    pub height: u32,
}

/// What a live pipeline streams: the picture size and the encoder making the stream (a
/// change of either is news for the status topic, a fallback to openh264 included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveVideo {
    pub size: FrameSize,
    /// `None` for a camera's own H.264 passed through.
    pub encoder: EncoderKind,
}

/// What the video source is doing, for the status topic.
pub type SourceState = super::worker::SourceState<LiveVideo>;

/// Creates a source each time the pipeline starts.
pub type SourceFactory = Box<dyn Fn() -> Result<Box<dyn VideoSource>, SourceError> + Send + Sync>;

/// Counters for tests, benchmarks and operators.
#[derive(Debug, Default)]
struct Counters {
    frames_encoded: AtomicU64,
    keyframes_encoded: AtomicU64,
    bytes_encoded: AtomicU64,
    keyframe_requests: AtomicU64,
    frames_passed_through: AtomicU64,
    frames_unusable: AtomicU64,
    source_opens: AtomicU64,
    target_bitrate_bps: AtomicU64,
    bitrate_changes: AtomicU64,
    /// The encoder at work ([`EncoderKind`] as a number) and how often hardware failed over.
    encoder_kind: std::sync::atomic::AtomicU8,
    encoder_fallbacks: AtomicU64,
    pictures_in_place: AtomicU64,
    pictures_copied: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubStats {
    /// Frames sent to viewers, whether campeer encoded them or passed a camera's H.264 on.
    pub frames_encoded: u64,
    /// Of those, frames a camera encoded itself.
    pub frames_passed_through: u64,
    /// Frames the source delivered that could not be used (skipped, the source kept open).
    pub frames_unusable: u64,
    /// How often the source was opened: once, unless it failed and was reopened.
    pub source_opens: u64,
    pub keyframes_encoded: u64,
    pub bytes_encoded: u64,
    pub pipeline_starts: u64,
    pub keyframe_requests: u64,
    pub subscribers: usize,
    pub pipeline_running: bool,
    /// What the encoder (or the camera's) works to now, set from the viewers' links.
    pub target_bitrate_bps: u64,
    pub bitrate_changes: u64,
    /// Which encoder makes the stream (none yet, or a camera's own H.264 passed through).
    pub encoder: EncoderKind,
    /// How often the hardware encoder was missing or failed and openh264 took over.
    pub encoder_fallbacks: u64,
    /// Pictures the hardware encoder took where the source captured them (no copy), and
    /// pictures copied into its buffers (its layout pads rows or height, or none was free).
    pub pictures_in_place: u64,
    pub pictures_copied: u64,
}

/// The links of the viewers being served, which the pipeline reads to set the encoder's rate.
#[derive(Default)]
struct ViewerLinks {
    next_id: u64,
    links: HashMap<u64, (Link, f64)>,
}

struct Inner {
    video: VideoConfig,
    frames: broadcast::Sender<Arc<EncodedFrame>>,
    keyframes: Mutex<KeyframePolicy>,
    counters: Counters,
    epoch: Instant,
    next_sequence: AtomicU64,
    make_source: SourceFactory,
    source_state: StateReporter<LiveVideo>,
    viewers: Mutex<ViewerLinks>,
    /// The latest keyframe and the frames since, for a viewer that connects now.
    gop: Mutex<RecentGop>,
}

/// How old the latest keyframe may be for a connecting viewer to start from it (with the
/// frames since, sent at once) rather than wait for a new one: a few frames' burst.
const MAX_BACKLOG_AGE: Duration = Duration::from_millis(500);
/// Frames kept after a keyframe at most.
const MAX_GOP_FRAMES: usize = 30;

/// The stream since its latest keyframe, while that is recent enough to start a viewer on.
#[derive(Default)]
struct RecentGop {
    keyframe_at: Option<Instant>,
    frames: Vec<Arc<EncodedFrame>>,
}

impl RecentGop {
    fn push(&mut self, frame: &Arc<EncodedFrame>, now: Instant) {
        if frame.is_keyframe {
            self.frames.clear();
            self.keyframe_at = Some(now);
            self.frames.push(Arc::clone(frame));
        } else if !self.frames.is_empty() && self.frames.len() < MAX_GOP_FRAMES {
            self.frames.push(Arc::clone(frame));
        } else {
            // Too long since the keyframe to be worth a burst: nobody starts from it.
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.keyframe_at = None;
    }

    /// The keyframe and the frames since, if the keyframe is recent.
    fn recent(&self, now: Instant) -> Option<Vec<Arc<EncodedFrame>>> {
        let at = self.keyframe_at?;
        (now.saturating_duration_since(at) <= MAX_BACKLOG_AGE && !self.frames.is_empty())
            .then(|| self.frames.clone())
    }
}

impl Inner {
    /// Every viewer's link as the allocator sees it, keyed by subscription.
    fn viewer_links(&self) -> Vec<(u64, ViewerLink)> {
        let now = Instant::now();
        lock(&self.viewers)
            .links
            .iter()
            .map(|(id, (link, audio_bps))| {
                let state = link.lock();
                (
                    *id,
                    ViewerLink {
                        estimate_bps: state.media_estimate_bps(now),
                        audio_bps: *audio_bps,
                        base_layer_only: state.base_layer_only,
                    },
                )
            })
            .collect()
    }

    /// Tells each viewer's link which layers it is sent.
    fn assign_layers(&self, base_only: &[(u64, bool)]) {
        let viewers = lock(&self.viewers);
        for (id, base) in base_only {
            if let Some((link, _)) = viewers.links.get(id) {
                link.lock().base_layer_only = *base;
            }
        }
    }
}

/// Cheap to clone; all clones are the same hub.
#[derive(Clone)]
pub struct VideoHub {
    inner: Arc<Inner>,
    pipeline: OnDemand,
}

impl VideoHub {
    pub fn new(
        video: VideoConfig,
        idle_grace: Duration,
        keyframe_min_interval: Duration,
        make_source: SourceFactory,
    ) -> Self {
        let (frames, _) = broadcast::channel(FRAME_BACKLOG);
        let keyframes = KeyframePolicy::new(video.keyframe_interval, keyframe_min_interval);
        let inner = Arc::new(Inner {
            video,
            frames,
            keyframes: Mutex::new(keyframes),
            gop: Mutex::new(RecentGop::default()),
            counters: Counters::default(),
            epoch: Instant::now(),
            next_sequence: AtomicU64::new(0),
            make_source,
            source_state: StateReporter::new(),
            viewers: Mutex::new(ViewerLinks::default()),
        });
        inner
            .counters
            .target_bitrate_bps
            .store(u64::from(inner.video.bitrate_bps), Ordering::Relaxed);
        let body = Arc::clone(&inner);
        let pipeline = OnDemand::new("video", idle_grace, move |run| run_pipeline(&body, run));
        Self { inner, pipeline }
    }

    pub fn video(&self) -> &VideoConfig {
        &self.inner.video
    }

    /// Follows what the source is doing.
    pub fn source_state(&self) -> tokio::sync::watch::Receiver<SourceState> {
        self.inner.source_state.subscribe()
    }

    /// Starts watching: the pipeline runs while at least one subscription lives. The first
    /// frame the subscription yields is a keyframe; a viewer that joins a running pipeline
    /// gets one through [`Subscription::resync`] once it can receive it.
    pub fn subscribe(&self) -> Subscription {
        let receiver = self.inner.frames.subscribe();
        self.pipeline.acquire();
        Subscription {
            hub: self.clone(),
            receiver,
            gate: ViewerGate::new(),
            link_id: None,
            backlog: VecDeque::new(),
            skip_through: None,
        }
    }

    /// Asks for an IDR soon; coalesced and rate-limited by the keyframe policy.
    pub fn request_keyframe(&self) {
        self.inner
            .counters
            .keyframe_requests
            .fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.keyframes).request();
    }

    /// Asks for the IDR a viewer that has just connected needs to show anything.
    fn request_keyframe_for_new_viewer(&self) {
        self.inner
            .counters
            .keyframe_requests
            .fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.keyframes).request_for_new_viewer();
    }

    /// Whether the pipeline thread is stuck (see [`OnDemand::is_stalled`]).
    pub fn is_stalled(&self, max_age: Duration) -> bool {
        self.pipeline.is_stalled(max_age)
    }

    pub fn stats(&self) -> HubStats {
        let c = &self.inner.counters;
        HubStats {
            frames_encoded: c.frames_encoded.load(Ordering::Relaxed),
            frames_passed_through: c.frames_passed_through.load(Ordering::Relaxed),
            frames_unusable: c.frames_unusable.load(Ordering::Relaxed),
            source_opens: c.source_opens.load(Ordering::Relaxed),
            keyframes_encoded: c.keyframes_encoded.load(Ordering::Relaxed),
            bytes_encoded: c.bytes_encoded.load(Ordering::Relaxed),
            pipeline_starts: self.pipeline.starts(),
            keyframe_requests: c.keyframe_requests.load(Ordering::Relaxed),
            subscribers: self.pipeline.subscribers(),
            pipeline_running: self.pipeline.is_running(),
            target_bitrate_bps: c.target_bitrate_bps.load(Ordering::Relaxed),
            bitrate_changes: c.bitrate_changes.load(Ordering::Relaxed),
            encoder: match c.encoder_kind.load(Ordering::Relaxed) {
                1 => EncoderKind::OpenH264,
                2 => EncoderKind::V4l2M2m,
                _ => EncoderKind::None,
            },
            encoder_fallbacks: c.encoder_fallbacks.load(Ordering::Relaxed),
            pictures_in_place: c.pictures_in_place.load(Ordering::Relaxed),
            pictures_copied: c.pictures_copied.load(Ordering::Relaxed),
        }
    }

    /// Stops the pipeline now, whoever is subscribed (daemon shutdown).
    pub fn shutdown(&self) {
        self.pipeline.shutdown();
    }
}

/// Runs the source and encoder until told to stop. A source that fails (a camera unplugged)
/// is reopened with backoff while viewers stay connected; frames resume when it is back.
fn run_pipeline(inner: &Inner, run: &RunFlag) {
    let mut encoding = Encoding::new(&inner.video);
    let mut payloader = H264Payloader::default();
    supervise(
        run,
        "video source",
        &inner.source_state,
        || {
            inner.counters.source_opens.fetch_add(1, Ordering::Relaxed);
            (inner.make_source)()
        },
        |source| {
            tracing::info!(
                "video pipeline started: {} (H.264 target {} kbit/s)",
                source.describe(),
                inner.video.bitrate_bps / 1000
            );
            // A (re)started source needs a keyframe before anything else decodes.
            lock(&inner.keyframes).reset();
            lock(&inner.gop).clear();
            let mut stage = FrameStage {
                encoding: &mut encoding,
                passthrough: PassthroughState::default(),
                payloader: &mut payloader,
                target_bps: inner.video.bitrate_bps,
            };
            encode_frames(inner, run, source.as_mut(), &mut stage)
        },
    );
    tracing::info!("video pipeline stopped");
}

/// How often a camera that encodes H.264 itself may be asked for a keyframe: requests from the
/// policy repeat every frame until a keyframe arrives, the camera needs only one.
const CAMERA_KEYFRAME_REQUEST_GAP: Duration = Duration::from_millis(250);

/// What a passed-through H.264 stream needs between frames.
struct PassthroughState {
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

/// Everything between a captured frame and its RTP payloads.
struct FrameStage<'a> {
    /// Sets its encoder up at the first raw frame: a camera that sends H.264 never needs one.
    encoding: &'a mut Encoding,
    passthrough: PassthroughState,
    payloader: &'a mut H264Payloader,
    /// The rate the viewers' links allow, for whichever encoder makes the stream.
    target_bps: u32,
}

impl FrameStage<'_> {
    /// The access unit to send for a captured frame, with its size and capture times;
    /// `Ok(None)` when there is nothing to send for it.
    fn access_unit(
        &mut self,
        inner: &Inner,
        source: &mut dyn VideoSource,
        frame: CapturedFrame,
        force_keyframe: bool,
    ) -> Result<Option<(AccessUnit, FrameSize, u64, Instant)>, String> {
        match frame {
            CapturedFrame::Raw(frame) => {
                self.passthrough.active = false;
                let size = FrameSize {
                    width: frame.width() as u32,
                    height: frame.height() as u32,
                };
                let encoded = self
                    .encoding
                    .encode(&frame, force_keyframe, self.target_bps)
                    .map_err(|e| e.to_string());
                let kind = match self.encoding.kind() {
                    EncoderKind::None => 0,
                    EncoderKind::OpenH264 => 1,
                    EncoderKind::V4l2M2m => 2,
                };
                inner.counters.encoder_kind.store(kind, Ordering::Relaxed);
                inner
                    .counters
                    .encoder_fallbacks
                    .store(self.encoding.fallbacks(), Ordering::Relaxed);
                let (in_place, copied) = self.encoding.pictures_in_place_and_copied();
                inner
                    .counters
                    .pictures_in_place
                    .store(in_place, Ordering::Relaxed);
                inner
                    .counters
                    .pictures_copied
                    .store(copied, Ordering::Relaxed);
                // The source makes its next frames in the encoder's own buffers when it lends
                // them (and in its own again when it stops).
                if let Some(pool) = source.frame_pool() {
                    pool.lend_from(self.encoding.picture_buffers().as_ref());
                }
                Ok(encoded?.map(|unit| (unit, size, frame.capture_unix_ms, frame.captured_at)))
            }
            CapturedFrame::H264(frame) => {
                let state = &mut self.passthrough;
                state.active = true;
                if let Some(asked) = state.camera_bitrate
                    && asked != self.target_bps
                {
                    // Through the camera's V4L2 control, like the keyframe requests.
                    state.camera_bitrate = if source.set_bitrate(self.target_bps) {
                        Some(self.target_bps)
                    } else {
                        tracing::warn!(
                            "the camera's bitrate cannot be changed: viewers on slower links \
                             get its stream at the rate it was set up with"
                        );
                        None
                    };
                }
                let now = Instant::now();
                let asked_lately = state.last_request.is_some_and(|at| {
                    now.saturating_duration_since(at) < CAMERA_KEYFRAME_REQUEST_GAP
                });
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
                let size = FrameSize {
                    width: frame.width,
                    height: frame.height,
                };
                let unit = state
                    .parameter_sets
                    .complete(frame.data)
                    .map_err(|e| e.to_string())?;
                inner
                    .counters
                    .frames_passed_through
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Some((unit, size, frame.capture_unix_ms, frame.captured_at)))
            }
        }
    }
}

/// Encodes (or passes through) frames from `source` until stopped (`Ok`) or the source fails
/// (`Err`).
fn encode_frames(
    inner: &Inner,
    run: &RunFlag,
    source: &mut dyn VideoSource,
    stage: &mut FrameStage<'_>,
) -> Result<(), SourceError> {
    let mut failures = 0u64;
    let mut unusable_in_a_row = 0u32;
    let mut rates = RateAllocator::new(super::encoder::MIN_BITRATE_BPS, inner.video.bitrate_bps);
    let mut next_rate_check = Instant::now();
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
        if now >= next_rate_check {
            next_rate_check = now + RATE_PERIOD;
            let allocation = rates.decide(now, &inner.viewer_links());
            inner.assign_layers(&allocation.base_layer_only);
            if let Some(bps) = allocation.encoder_bps {
                tracing::debug!("video target {} kbit/s", bps / 1000);
                stage.target_bps = bps;
                inner
                    .counters
                    .target_bitrate_bps
                    .store(u64::from(bps), Ordering::Relaxed);
                inner
                    .counters
                    .bitrate_changes
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        let force = lock(&inner.keyframes).decide(now);
        let (unit, size, capture_unix_ms, captured_at) =
            match stage.access_unit(inner, source, frame, force) {
                Ok(Some(done)) => done,
                Ok(None) => continue,
                Err(e) => {
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::error!("a frame could not be encoded ({failures} so far): {e}");
                    }
                    continue;
                }
            };
        {
            let mut keyframes = lock(&inner.keyframes);
            keyframes.on_encoded(unit.is_keyframe, now);
            if unit.is_keyframe {
                // Its time on the wire at the current rate, with room for the pacer and a
                // round trip; the next requested keyframe waits for it.
                let seconds = (unit.data.len() * 8) as f64 / f64::from(stage.target_bps.max(1));
                tracing::debug!(
                    "keyframe of {} bytes at {} kbit/s",
                    unit.data.len(),
                    stage.target_bps / 1000
                );
                keyframes.set_airtime(Duration::from_secs_f64((seconds * 1.5).min(3.0)));
            }
        }
        let payloads = match stage.payloader.payload(RTP_PAYLOAD_MTU, &unit.data) {
            Ok(payloads) if !payloads.is_empty() => payloads,
            Ok(_) => continue,
            Err(e) => {
                tracing::error!("RTP payloading failed: {e}");
                continue;
            }
        };
        let counters = &inner.counters;
        counters.frames_encoded.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes_encoded
            .fetch_add(unit.data.len() as u64, Ordering::Relaxed);
        if unit.is_keyframe {
            counters.keyframes_encoded.fetch_add(1, Ordering::Relaxed);
        }
        let since_epoch = captured_at.saturating_duration_since(inner.epoch);
        let encoded = EncodedFrame {
            sequence: inner.next_sequence.fetch_add(1, Ordering::Relaxed),
            capture_unix_ms,
            rtp_ticks: (since_epoch.as_micros() as u64) * RTP_VIDEO_CLOCK / 1_000_000,
            is_keyframe: unit.is_keyframe,
            temporal_id: unit.temporal_id,
            payloads,
            encoded_bytes: unit.data.len(),
        };
        let encoded = Arc::new(encoded);
        // Kept before it is sent: a viewer that subscribes in between gets it from one or the
        // other, and skips the copy by its sequence number.
        lock(&inner.gop).push(&encoded, now);
        // No receivers is fine: everyone may have left during the grace period.
        let _ = inner.frames.send(encoded);
        let encoder = if stage.passthrough.active {
            EncoderKind::None
        } else {
            stage.encoding.kind()
        };
        inner
            .source_state
            .set(SourceState::Live(LiveVideo { size, encoder }));
    }
    Ok(())
}

/// A viewer's claim on the stream. Dropping it releases the pipeline.
pub struct Subscription {
    hub: VideoHub,
    receiver: broadcast::Receiver<Arc<EncodedFrame>>,
    gate: ViewerGate,
    /// This viewer's entry among the links the encoder's rate follows.
    link_id: Option<u64>,
    /// Frames to send before the live ones: the recent keyframe a viewer starts on.
    backlog: VecDeque<Arc<EncodedFrame>>,
    /// Live frames up to this sequence number came in the backlog already.
    skip_through: Option<u64>,
}

impl Subscription {
    /// Lets this viewer's link limit the encoder's rate from now on (see `media::rate`);
    /// `audio_bps` is the sound this viewer is sent beside the video.
    pub fn follow_link(&mut self, link: Link, audio_bps: f64) {
        let mut viewers = lock(&self.hub.inner.viewers);
        let id = match self.link_id {
            Some(id) => id,
            None => {
                viewers.next_id += 1;
                viewers.next_id
            }
        };
        viewers.links.insert(id, (link, audio_bps));
        self.link_id = Some(id);
    }

    /// The next frame this viewer should send. After falling behind, frames up to the next
    /// keyframe are skipped (they would not decode), and a keyframe is requested.
    pub async fn next_frame(&mut self) -> Option<Arc<EncodedFrame>> {
        while let Some(frame) = self.backlog.pop_front() {
            if self.gate.admit(frame.is_keyframe) {
                return Some(frame);
            }
        }
        loop {
            match self.receiver.recv().await {
                Ok(frame) => {
                    if self.skip_through.is_some_and(|last| frame.sequence <= last) {
                        continue;
                    }
                    if self.gate.admit(frame.is_keyframe) {
                        return Some(frame);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!("viewer fell {skipped} frames behind; waiting for a keyframe");
                    self.gate.lost_frames();
                    self.hub.request_keyframe();
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Skips whatever is queued and restarts from the next keyframe, requested now. For a
    /// viewer whose decoder has just (re)connected.
    pub fn resync(&mut self) {
        self.receiver = self.receiver.resubscribe();
        self.gate.lost_frames();
        self.backlog.clear();
        self.skip_through = None;
        self.hub.request_keyframe();
    }

    /// Asks for the keyframe a viewer about to connect will start on, so that it is ready
    /// (with a frame or two after it) by the time the connection is.
    pub fn prepare_first_keyframe(&self) {
        self.hub.request_keyframe_for_new_viewer();
    }

    /// For a viewer whose decoder has just connected: starts at the latest keyframe when it
    /// is recent, sending it and the frames since at once, so the first picture does not wait
    /// for the next frame to be captured and encoded (measured with Chromium: 216 ms from
    /// offer to picture before); else from a new keyframe, asked for now.
    pub fn start_viewing(&mut self) {
        // Subscribed before the backlog is read: a frame kept meanwhile is not missed, only
        // received twice, and skipped by its sequence number.
        self.receiver = self.receiver.resubscribe();
        self.gate.lost_frames();
        match lock(&self.hub.inner.gop).recent(Instant::now()) {
            Some(frames) => {
                self.skip_through = frames.last().map(|f| f.sequence);
                self.backlog = frames.into();
            }
            None => {
                self.backlog.clear();
                self.skip_through = None;
                self.hub.request_keyframe_for_new_viewer();
            }
        }
    }

    /// Forwards a viewer's PLI/FIR.
    pub fn request_keyframe(&self) {
        self.hub.request_keyframe();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(id) = self.link_id {
            lock(&self.hub.inner.viewers).links.remove(&id);
        }
        self.hub.pipeline.release();
    }
}

/// Decides which frames one viewer gets: nothing until a keyframe after a gap, since
/// predicted frames without their reference only show garbage.
#[derive(Debug, Clone, Copy)]
pub struct ViewerGate {
    awaiting_keyframe: bool,
}

impl ViewerGate {
    pub fn new() -> Self {
        Self {
            awaiting_keyframe: true,
        }
    }

    pub fn admit(&mut self, is_keyframe: bool) -> bool {
        if is_keyframe {
            self.awaiting_keyframe = false;
        }
        !self.awaiting_keyframe
    }

    pub fn lost_frames(&mut self) {
        self.awaiting_keyframe = true;
    }
}

impl Default for ViewerGate {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceKind;
    use crate::media::pattern::TestPattern;

    #[test]
    fn gate_starts_at_a_keyframe_and_resumes_at_the_next_after_a_loss() {
        let mut gate = ViewerGate::new();
        assert!(!gate.admit(false));
        assert!(gate.admit(true));
        assert!(gate.admit(false));
        gate.lost_frames();
        assert!(!gate.admit(false));
        assert!(!gate.admit(false));
        assert!(gate.admit(true));
        assert!(gate.admit(false));
    }

    fn hub(grace: Duration) -> VideoHub {
        let video = VideoConfig {
            source: SourceKind::TestPattern,
            width: 160,
            height: 120,
            fps: 30,
            bitrate_bps: 300_000,
            keyframe_interval: None,
            h264_passthrough: false,
            rpicam_vid: None,
            encoder: crate::config::EncoderChoice::OpenH264,
        };
        VideoHub::new(
            video,
            grace,
            Duration::from_millis(100),
            Box::new(|| Ok(Box::new(TestPattern::new(160, 120, 30)) as Box<dyn VideoSource>)),
        )
    }

    async fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn one_pipeline_serves_every_subscriber_and_stops_after_the_grace() {
        let hub = hub(Duration::from_millis(200));
        assert!(!hub.stats().pipeline_running);
        let mut a = hub.subscribe();
        let mut b = hub.subscribe();
        b.resync();
        let first_a = a.next_frame().await.unwrap();
        let first_b = b.next_frame().await.unwrap();
        assert!(first_a.is_keyframe && first_b.is_keyframe);
        let mut seen_a = vec![];
        let mut seen_b = vec![];
        for _ in 0..10 {
            seen_a.push(a.next_frame().await.unwrap().sequence);
            seen_b.push(b.next_frame().await.unwrap().sequence);
        }
        assert_eq!(seen_a, seen_b, "both viewers get the very same frames");
        let stats = hub.stats();
        assert_eq!(stats.pipeline_starts, 1);
        assert_eq!(stats.subscribers, 2);
        // One encode per frame: the frames seen are all the frames encoded (give or take
        // the ones produced before the first keyframe and after the last read).
        assert!(stats.frames_encoded <= seen_a.last().unwrap() + 3);
        drop(a);
        drop(b);
        assert!(wait_until(|| !hub.stats().pipeline_running).await);
        let resumed = hub.subscribe();
        assert!(wait_until(|| hub.stats().pipeline_running).await);
        assert_eq!(hub.stats().pipeline_starts, 2);
        drop(resumed);
    }

    #[tokio::test]
    async fn a_viewer_back_within_the_grace_keeps_the_pipeline() {
        let hub = hub(Duration::from_secs(5));
        let a = hub.subscribe();
        drop(a);
        let mut b = hub.subscribe();
        b.resync();
        assert!(b.next_frame().await.unwrap().is_keyframe);
        assert_eq!(hub.stats().pipeline_starts, 1);
    }

    #[tokio::test]
    async fn a_slow_viewer_skips_to_a_keyframe_without_holding_back_others() {
        let hub = hub(Duration::ZERO);
        let mut fast = hub.subscribe();
        let mut slow = hub.subscribe();
        assert!(slow.next_frame().await.unwrap().is_keyframe);
        // The slow viewer reads nothing while the fast one reads a second's worth.
        for _ in 0..30 {
            fast.next_frame().await.unwrap();
        }
        let requests_before = hub.stats().keyframe_requests;
        let next = slow.next_frame().await.unwrap();
        assert!(
            next.is_keyframe,
            "after lagging, the next frame sent must be a keyframe"
        );
        assert!(hub.stats().keyframe_requests > requests_before);
    }
}
