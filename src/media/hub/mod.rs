//! The fan-out hub: one source, and one encoder per codec, serve every viewer.
//!
//! The pipeline (source → encoders → RTP payloaders) runs on its own thread only while someone
//! watches: it starts with the first subscription and stops a grace period after the last one
//! is dropped, so a viewer who reloads the page does not pay for a camera restart. Each codec
//! is a stream of its own (H.264 for most viewers, VP8 for those that cannot take H.264): its
//! encoder runs while it has viewers and for the same grace after the last, each picture is
//! encoded and payloaded once per stream and broadcast to that stream's viewers. A viewer that
//! cannot keep up loses frames and then waits for the next keyframe instead of stalling the
//! others.
//!
//! `encode` turns each captured picture into every stream's frames; `subscription` is a
//! viewer's side of a stream.

mod encode;
mod subscription;
mod taps;

use encode::{H264Stage, PassthroughState, Vp8Stage, encode_frames};
pub use subscription::{KeyframeRequester, Subscription, ViewerGate};
pub use taps::{GrabError, MAX_TAPS, PictureTap, TapGuard};

use super::encoding::EncoderKind;
use super::keyframe::KeyframePolicy;
use super::rate::ViewerLink;
use super::worker::{OnDemand, RunFlag, StateReporter, lock, supervise};
use super::{SourceError, VideoSource};
use crate::config::VideoConfig;
use crate::link::Link;
use crate::protocol::VideoCodec;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Counts the stream's frames since the hub was created (not reset by pipeline restarts).
    pub sequence: u64,
    pub capture_unix_ms: u64,
    /// Capture time on the 90 kHz RTP clock, since the hub was created.
    pub rtp_ticks: u64,
    pub is_keyframe: bool,
    /// 0: the base layer; above: frames nothing refers to, which a viewer whose link cannot
    /// take the whole stream is not sent.
    pub temporal_id: u8,
    /// RTP payloads (H.264: FU-A fragments, STAP-A with SPS/PPS; VP8: descriptor and
    /// partition fragments), in order; the last ends the frame.
    pub payloads: Vec<Bytes>,
    /// The same picture as the encoder made it (H.264: Annex B, parameter sets before each
    /// keyframe), for the recorder and snapshots of a camera's own H.264.
    pub access_unit: Bytes,
    pub encoded_bytes: usize,
}

/// The size of the picture a live video source streams (a camera may not offer the
/// configured one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSize {
    pub width: u32,
    pub height: u32,
}

/// What a live pipeline streams: the picture size, the encoder making the H.264 stream and
/// which codecs are being sent (a change of any is news for the status topic, a fallback to
/// openh264 included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveVideo {
    pub size: FrameSize,
    /// `None` for a camera's own H.264 passed through, or while no H.264 viewer watches.
    pub encoder: EncoderKind,
    /// H.264 is being sent (encoded, or the camera's own).
    pub sending_h264: bool,
    pub sending_vp8: bool,
}

impl LiveVideo {
    /// The codecs being sent, by their SDP names.
    pub fn codecs_sent(&self) -> Vec<&'static str> {
        [
            (self.sending_h264, VideoCodec::H264),
            (self.sending_vp8, VideoCodec::Vp8),
        ]
        .into_iter()
        .filter_map(|(sending, codec)| sending.then_some(codec.sdp_name()))
        .collect()
    }
}

/// What the video source is doing, for the status topic.
pub type SourceState = super::worker::SourceState<LiveVideo>;

/// Creates a source each time the pipeline starts.
pub type SourceFactory = Box<dyn Fn() -> Result<Box<dyn VideoSource>, SourceError> + Send + Sync>;

/// The source's counters and the H.264 encoder's, shared by the streams.
#[derive(Debug, Default)]
struct SourceCounters {
    frames_passed_through: AtomicU64,
    frames_unusable: AtomicU64,
    source_opens: AtomicU64,
    /// The H.264 encoder at work ([`EncoderKind`] as a number) and how often hardware failed
    /// over.
    encoder_kind: std::sync::atomic::AtomicU8,
    encoder_fallbacks: AtomicU64,
    pictures_in_place: AtomicU64,
    pictures_copied: AtomicU64,
}

/// One codec's stream.
#[derive(Debug, Default)]
struct StreamCounters {
    frames_encoded: AtomicU64,
    keyframes_encoded: AtomicU64,
    bytes_encoded: AtomicU64,
    keyframe_requests: AtomicU64,
    target_bitrate_bps: AtomicU64,
    bitrate_changes: AtomicU64,
    /// Time spent encoding (or passing on) the pictures that went out, in microseconds.
    encode_micros: AtomicU64,
    /// Pictures the encoder failed on: nobody was sent them.
    encode_failures: AtomicU64,
    /// Its encoder exists (it has viewers, or had them within the grace).
    running: std::sync::atomic::AtomicBool,
}

/// One codec's stream, for tests, benchmarks and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamStats {
    pub frames_encoded: u64,
    pub keyframes_encoded: u64,
    pub bytes_encoded: u64,
    pub keyframe_requests: u64,
    pub subscribers: usize,
    pub target_bitrate_bps: u64,
    pub bitrate_changes: u64,
    /// Time spent encoding (or passing on) the pictures that went out, in microseconds.
    pub encode_micros: u64,
    /// Pictures the encoder failed on: nobody was sent them.
    pub encode_failures: u64,
    /// The stream's encoder is set up.
    pub running: bool,
}

/// The hub as a whole; the flat fields are the H.264 stream's (every viewer that can take
/// H.264 is on it), `vp8` the VP8 stream's.
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
    /// Subscriptions of every codec.
    pub subscribers: usize,
    pub pipeline_running: bool,
    /// What the encoder (or the camera's) works to now, set from the viewers' links.
    pub target_bitrate_bps: u64,
    pub bitrate_changes: u64,
    /// Time spent encoding (or passing on) the pictures that went out, in microseconds.
    pub encode_micros: u64,
    /// Pictures the encoder failed on: nobody was sent them.
    pub encode_failures: u64,
    /// Which encoder makes the stream (none yet, or a camera's own H.264 passed through).
    pub encoder: EncoderKind,
    /// How often the hardware encoder was missing or failed and openh264 took over.
    pub encoder_fallbacks: u64,
    /// Pictures the hardware encoder took where the source captured them (no copy), and
    /// pictures copied into its buffers (its layout pads rows or height, or none was free).
    pub pictures_in_place: u64,
    pub pictures_copied: u64,
    pub vp8: StreamStats,
}

/// The links of the viewers being served, which the pipeline reads to set the encoder's rate.
#[derive(Default)]
struct ViewerLinks {
    next_id: u64,
    links: HashMap<u64, FollowedLink>,
}

/// One viewer's link as the stream follows it, and what the stream decided for it.
struct FollowedLink {
    link: Link,
    /// The codec rate of the sound this viewer is sent beside the video.
    audio_bps: f64,
    /// The allocator's decision, owned here: this viewer is sent the base layer only (the
    /// encoder works to a faster viewer's rate). Its session reads it through its
    /// [`Subscription`].
    base_layer_only: bool,
}

/// One codec's stream: its viewers, their keyframe requests and links, and what it sent.
struct Stream {
    codec: VideoCodec,
    frames: broadcast::Sender<Arc<EncodedFrame>>,
    keyframes: Mutex<KeyframePolicy>,
    counters: StreamCounters,
    next_sequence: AtomicU64,
    viewers: Mutex<ViewerLinks>,
    /// The latest keyframe and the frames since, for a viewer that connects now.
    gop: Mutex<RecentGop>,
    /// Live subscriptions, and when the last one went (the encoder stays for the grace).
    subscribers: AtomicUsize,
    last_left: Mutex<Option<Instant>>,
}

impl Stream {
    fn new(codec: VideoCodec, video: &VideoConfig, keyframe_min_interval: Duration) -> Self {
        let (frames, _) = broadcast::channel(FRAME_BACKLOG);
        let stream = Self {
            codec,
            frames,
            keyframes: Mutex::new(KeyframePolicy::new(
                video.keyframe_interval(),
                keyframe_min_interval,
            )),
            counters: StreamCounters::default(),
            next_sequence: AtomicU64::new(0),
            viewers: Mutex::new(ViewerLinks::default()),
            gop: Mutex::new(RecentGop::default()),
            subscribers: AtomicUsize::new(0),
            last_left: Mutex::new(None),
        };
        stream
            .counters
            .target_bitrate_bps
            .store(u64::from(video.bitrate_bps()), Ordering::Relaxed);
        stream
    }

    /// Whether the stream's encoder should run: someone watches, or watched within `grace`.
    fn wanted(&self, now: Instant, grace: Duration) -> bool {
        self.subscribers.load(Ordering::Acquire) > 0
            || lock(&self.last_left).is_some_and(|left| now.saturating_duration_since(left) < grace)
    }

    fn request_keyframe(&self) {
        self.counters
            .keyframe_requests
            .fetch_add(1, Ordering::Relaxed);
        lock(&self.keyframes).request();
    }

    fn request_keyframe_for_new_viewer(&self) {
        self.counters
            .keyframe_requests
            .fetch_add(1, Ordering::Relaxed);
        lock(&self.keyframes).request_for_new_viewer();
    }

    /// Every viewer's link as the allocator sees it, keyed by subscription.
    fn viewer_links(&self) -> Vec<(u64, ViewerLink)> {
        let now = Instant::now();
        lock(&self.viewers)
            .links
            .iter()
            .map(|(id, followed)| {
                let link = &followed.link;
                (
                    *id,
                    ViewerLink {
                        estimate_bps: link.media_estimate_bps(now),
                        audio_bps: followed.audio_bps,
                        loss: link.loss().unwrap_or(0.0),
                        queued: link.pacer_delay(),
                    },
                )
            })
            .collect()
    }

    /// Notes which layers each viewer is sent.
    fn assign_layers(&self, base_only: &[(u64, bool)]) {
        let mut viewers = lock(&self.viewers);
        for (id, base) in base_only {
            if let Some(followed) = viewers.links.get_mut(id) {
                followed.base_layer_only = *base;
            }
        }
    }

    /// A (re)started encoder: the next frame must be a keyframe, and nobody starts from the
    /// old one's.
    fn restart(&self) {
        lock(&self.keyframes).reset();
        lock(&self.gop).clear();
    }

    fn stats(&self) -> StreamStats {
        let c = &self.counters;
        StreamStats {
            frames_encoded: c.frames_encoded.load(Ordering::Relaxed),
            keyframes_encoded: c.keyframes_encoded.load(Ordering::Relaxed),
            bytes_encoded: c.bytes_encoded.load(Ordering::Relaxed),
            keyframe_requests: c.keyframe_requests.load(Ordering::Relaxed),
            subscribers: self.subscribers.load(Ordering::Relaxed),
            target_bitrate_bps: c.target_bitrate_bps.load(Ordering::Relaxed),
            bitrate_changes: c.bitrate_changes.load(Ordering::Relaxed),
            encode_micros: c.encode_micros.load(Ordering::Relaxed),
            encode_failures: c.encode_failures.load(Ordering::Relaxed),
            running: c.running.load(Ordering::Relaxed),
        }
    }
}

struct Inner {
    video: VideoConfig,
    idle_grace: Duration,
    counters: SourceCounters,
    epoch: Instant,
    make_source: SourceFactory,
    source_state: StateReporter<LiveVideo>,
    h264: Stream,
    vp8: Stream,
    /// Those looking at the raw pictures (motion detection, snapshots).
    taps: Mutex<taps::Taps>,
}

impl Inner {
    fn stream(&self, codec: VideoCodec) -> &Stream {
        match codec {
            VideoCodec::H264 => &self.h264,
            VideoCodec::Vp8 => &self.vp8,
        }
    }
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
        let inner = Arc::new(Inner {
            h264: Stream::new(VideoCodec::H264, &video, keyframe_min_interval),
            vp8: Stream::new(VideoCodec::Vp8, &video, keyframe_min_interval),
            video,
            idle_grace,
            counters: SourceCounters::default(),
            epoch: Instant::now(),
            make_source,
            source_state: StateReporter::new(),
            taps: Mutex::new(taps::Taps::default()),
        });
        let body = Arc::clone(&inner);
        let pipeline = OnDemand::new("video", idle_grace, move |run| run_pipeline(&body, run));
        Self { inner, pipeline }
    }

    pub fn video(&self) -> &VideoConfig {
        &self.inner.video
    }

    /// The codecs this hub can send, best first. A camera's own H.264 passed through cannot
    /// be turned into VP8 (that would take a decoder as well as an encoder).
    pub fn codecs(&self) -> &'static [VideoCodec] {
        if self.inner.video.h264_passthrough {
            &[VideoCodec::H264]
        } else {
            &[VideoCodec::H264, VideoCodec::Vp8]
        }
    }

    /// Follows what the source is doing.
    pub fn source_state(&self) -> tokio::sync::watch::Receiver<SourceState> {
        self.inner.source_state.subscribe()
    }

    /// Starts watching in `codec`: the pipeline runs while at least one subscription lives,
    /// and the codec's encoder while one of its own does. The first frame the subscription
    /// yields is a keyframe; a viewer that joins a running stream gets one through
    /// [`Subscription::resync`] once it can receive it.
    pub fn subscribe(&self, codec: VideoCodec) -> Subscription {
        let stream = self.inner.stream(codec);
        let receiver = stream.frames.subscribe();
        stream.subscribers.fetch_add(1, Ordering::AcqRel);
        self.pipeline.acquire();
        Subscription {
            hub: self.clone(),
            codec,
            receiver,
            gate: ViewerGate::new(),
            link_id: None,
            backlog: VecDeque::new(),
            skip_through: None,
        }
    }

    /// Asks the H.264 stream for an IDR soon; coalesced and rate-limited by the keyframe
    /// policy.
    pub fn request_keyframe(&self) {
        self.inner.h264.request_keyframe();
    }

    /// Whether the pipeline thread is stuck (see [`OnDemand::is_stalled`]).
    pub fn is_stalled(&self, max_age: Duration) -> bool {
        self.pipeline.is_stalled(max_age)
    }

    /// One codec's stream.
    pub fn stream_stats(&self, codec: VideoCodec) -> StreamStats {
        match codec {
            VideoCodec::H264 => self.inner.h264.stats(),
            VideoCodec::Vp8 => self.inner.vp8.stats(),
        }
    }

    pub fn stats(&self) -> HubStats {
        let c = &self.inner.counters;
        let h264 = self.inner.h264.stats();
        HubStats {
            frames_encoded: h264.frames_encoded,
            frames_passed_through: c.frames_passed_through.load(Ordering::Relaxed),
            frames_unusable: c.frames_unusable.load(Ordering::Relaxed),
            source_opens: c.source_opens.load(Ordering::Relaxed),
            keyframes_encoded: h264.keyframes_encoded,
            bytes_encoded: h264.bytes_encoded,
            pipeline_starts: self.pipeline.starts(),
            keyframe_requests: h264.keyframe_requests,
            subscribers: self.pipeline.subscribers(),
            pipeline_running: self.pipeline.is_running(),
            target_bitrate_bps: h264.target_bitrate_bps,
            bitrate_changes: h264.bitrate_changes,
            encode_micros: h264.encode_micros,
            encode_failures: h264.encode_failures,
            encoder: match c.encoder_kind.load(Ordering::Relaxed) {
                1 => EncoderKind::OpenH264,
                2 => EncoderKind::V4l2M2m,
                _ => EncoderKind::None,
            },
            encoder_fallbacks: c.encoder_fallbacks.load(Ordering::Relaxed),
            pictures_in_place: c.pictures_in_place.load(Ordering::Relaxed),
            pictures_copied: c.pictures_copied.load(Ordering::Relaxed),
            vp8: self.inner.vp8.stats(),
        }
    }

    /// Stops the pipeline now, whoever is subscribed (daemon shutdown).
    pub fn shutdown(&self) {
        self.pipeline.shutdown();
    }
}

/// Runs the source and encoders until told to stop. A source that fails (a camera unplugged)
/// is reopened with backoff while viewers stay connected; frames resume when it is back.
fn run_pipeline(inner: &Inner, run: &RunFlag) {
    let mut h264 = H264Stage::new(&inner.video);
    let mut vp8 = Vp8Stage::new(&inner.video);
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
                "video pipeline started: {} (target {} kbit/s)",
                source.describe(),
                inner.video.bitrate_kbps
            );
            // A (re)started source needs a keyframe before anything else decodes.
            inner.h264.restart();
            inner.vp8.restart();
            h264.passthrough = PassthroughState::default();
            encode_frames(inner, run, source.as_mut(), &mut h264, &mut vp8)
        },
    );
    tracing::info!("video pipeline stopped");
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
            bitrate_kbps: 300,
            keyframe_interval_secs: 0.0,
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
        let mut a = hub.subscribe(VideoCodec::H264);
        let mut b = hub.subscribe(VideoCodec::H264);
        b.resync();
        let mut first_a = a.next_frame().await.unwrap();
        let mut first_b = b.next_frame().await.unwrap();
        assert!(first_a.is_keyframe && first_b.is_keyframe);
        // The resync asks for a keyframe of its own, which may come one frame after the
        // stream's first: each viewer starts at a keyframe, and from the later start on they
        // are sent the very same frames.
        for _ in 0..3 {
            if first_a.sequence < first_b.sequence {
                first_a = a.next_frame().await.unwrap();
            } else if first_b.sequence < first_a.sequence {
                first_b = b.next_frame().await.unwrap();
            }
        }
        assert_eq!(
            first_a.sequence, first_b.sequence,
            "the starts are a frame or two apart"
        );
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
        let resumed = hub.subscribe(VideoCodec::H264);
        assert!(wait_until(|| hub.stats().pipeline_running).await);
        assert_eq!(hub.stats().pipeline_starts, 2);
        drop(resumed);
    }

    #[tokio::test]
    async fn each_codec_has_one_encoder_running_while_it_has_viewers() {
        use rtc::rtp::codec::vp8::Vp8Packet;
        use rtc::rtp::packetizer::Depacketizer;
        let hub = hub(Duration::from_millis(300));
        let mut h264 = hub.subscribe(VideoCodec::H264);
        let mut vp8_a = hub.subscribe(VideoCodec::Vp8);
        let mut vp8_b = hub.subscribe(VideoCodec::Vp8);
        let mut decoder = crate::media::vp8::Vp8Decoder::new().unwrap();
        let mut pictures = 0;
        for i in 0..10 {
            let a = vp8_a.next_frame().await.unwrap();
            let b = vp8_b.next_frame().await.unwrap();
            assert_eq!(
                a.sequence, b.sequence,
                "both VP8 viewers get the same frames"
            );
            assert_eq!(a.is_keyframe, i == 0, "a VP8 viewer starts at a keyframe");
            let mut depacketizer = Vp8Packet::default();
            let mut data = Vec::new();
            for payload in &a.payloads {
                data.extend_from_slice(&depacketizer.depacketize(payload).unwrap());
            }
            let picture = decoder.decode(&data).unwrap().expect("a VP8 picture");
            assert_eq!((picture.width, picture.height), (160, 120));
            pictures += 1;
            assert!(h264.next_frame().await.is_some());
        }
        assert_eq!(pictures, 10);
        let stats = hub.stats();
        assert!(stats.vp8.running && stats.vp8.subscribers == 2);
        assert!(stats.vp8.frames_encoded >= 10 && stats.frames_encoded >= 10);
        assert_eq!(stats.pipeline_starts, 1, "one source for both codecs");
        drop(vp8_a);
        drop(vp8_b);
        // The VP8 encoder goes after the grace; H.264 goes on.
        assert!(wait_until(|| !hub.stats().vp8.running).await);
        let encoded = hub.stats().frames_encoded;
        assert!(h264.next_frame().await.is_some());
        assert!(hub.stats().frames_encoded > encoded);
        let vp8_frames = hub.stats().vp8.frames_encoded;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            hub.stats().vp8.frames_encoded,
            vp8_frames,
            "no VP8 without viewers"
        );
    }

    #[tokio::test]
    async fn a_camera_that_sends_h264_offers_no_vp8() {
        let mut video = hub(Duration::ZERO).video().clone();
        assert_eq!(
            hub(Duration::ZERO).codecs(),
            &[VideoCodec::H264, VideoCodec::Vp8]
        );
        video.h264_passthrough = true;
        let passthrough = VideoHub::new(
            video,
            Duration::ZERO,
            Duration::from_millis(100),
            Box::new(|| Ok(Box::new(TestPattern::new(160, 120, 30)) as Box<dyn VideoSource>)),
        );
        assert_eq!(passthrough.codecs(), &[VideoCodec::H264]);
    }

    #[tokio::test]
    async fn a_viewer_back_within_the_grace_keeps_the_pipeline() {
        let hub = hub(Duration::from_secs(5));
        let a = hub.subscribe(VideoCodec::H264);
        drop(a);
        let mut b = hub.subscribe(VideoCodec::H264);
        b.resync();
        assert!(b.next_frame().await.unwrap().is_keyframe);
        assert_eq!(hub.stats().pipeline_starts, 1);
    }

    #[tokio::test]
    async fn a_slow_viewer_skips_to_a_keyframe_without_holding_back_others() {
        let hub = hub(Duration::ZERO);
        let mut fast = hub.subscribe(VideoCodec::H264);
        let mut slow = hub.subscribe(VideoCodec::H264);
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
