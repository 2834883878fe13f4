//! The device: routes viewer messages to sessions, enforces the viewer limit, holds candidates
//! that arrive before their offer, keeps the status topic current, and shuts everything down
//! cleanly.

use crate::config::{AudioConfig, AudioSourceKind, Config, SourceKind};
use crate::media::VideoSource;
use crate::media::audio::{AudioSource, TestTone};
use crate::media::audio_hub::{AudioHub, AudioSettings, AudioStats};
use crate::media::camera::V4l2Camera;
use crate::media::hub::{HubStats, SourceState, VideoHub};
use crate::media::microphone::{self, AlsaMicrophone};
use crate::media::negotiate::Wanted;
use crate::media::pattern::TestPattern;
use crate::media::worker;
use crate::media::worker::Heartbeat;
use crate::mqtt::{LinkEvent, MqttLink, Publisher};
use crate::protocol::{
    AudioDescription, Candidate, DeviceMessage, DeviceTopics, ErrorCode, Segment, Status,
    VideoDescription, ViewerMessage,
};
use crate::session::{self, SessionCommand, SessionContext, SessionEnded, SessionHandle};
use crate::web;
use crate::web::broker::EmbeddedBroker;
use crate::web::http::{HttpServer, PageConfig};
use anyhow::Context;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How long sessions and MQTT get to wind down on shutdown.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// How often held early candidates are checked for expiry.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(5);
/// The device loop goes round at least this often, so its heartbeat shows it is alive: well
/// inside half of any sensible systemd watchdog time (a second or more), at no real cost.
const HEARTBEAT_PERIOD: Duration = Duration::from_millis(200);
/// How often the link figures of the viewers go out on the stats topic.
const STATS_PERIOD: Duration = Duration::from_secs(2);

/// What the service manager is told: whether campeer is connected to its broker, and how many
/// viewers it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub broker_connected: bool,
    pub viewers: usize,
}

/// Whether the daemon's loops are still going round: the device loop, and each media pipeline
/// while it runs. Cheap to clone; read by the systemd watchdog.
#[derive(Clone)]
pub struct DeviceHealth {
    device_loop: Arc<Heartbeat>,
    video: VideoHub,
    audio: Option<AudioHub>,
    summary: watch::Receiver<Summary>,
}

impl DeviceHealth {
    /// The loops that have not gone round for `max_age`; empty when all is well.
    pub fn stalled(&self, max_age: Duration) -> Vec<&'static str> {
        let mut stalled = Vec::new();
        if self.device_loop.age() > max_age {
            stalled.push("the device loop");
        }
        if self.video.is_stalled(max_age) {
            stalled.push("the video pipeline");
        }
        if self.audio.as_ref().is_some_and(|a| a.is_stalled(max_age)) {
            stalled.push("the audio pipeline");
        }
        stalled
    }

    /// Follows the broker connection and the viewer count.
    pub fn summary(&self) -> watch::Receiver<Summary> {
        self.summary.clone()
    }
}

/// Candidates that arrived before their session's offer (MQTT does not order messages across
/// a viewer's publishes strictly enough to rely on, and browsers trickle fast). Bounded in
/// every dimension, so an anonymous flood cannot grow memory.
pub struct EarlyCandidates {
    by_session: HashMap<Segment, (Instant, Vec<Candidate>)>,
    max_sessions: usize,
    max_per_session: usize,
    ttl: Duration,
}

impl EarlyCandidates {
    pub fn new(max_sessions: usize, max_per_session: usize, ttl: Duration) -> Self {
        Self {
            by_session: HashMap::new(),
            max_sessions,
            max_per_session,
            ttl,
        }
    }

    /// Holds a candidate; `false` when a limit refused it.
    pub fn hold(&mut self, session: &Segment, candidate: Candidate, now: Instant) -> bool {
        if !self.by_session.contains_key(session) && self.by_session.len() >= self.max_sessions {
            return false;
        }
        let (_, held) = self
            .by_session
            .entry(session.clone())
            .or_insert_with(|| (now, Vec::new()));
        if held.len() >= self.max_per_session {
            return false;
        }
        held.push(candidate);
        true
    }

    pub fn take(&mut self, session: &Segment) -> Vec<Candidate> {
        self.by_session
            .remove(session)
            .map(|(_, held)| held)
            .unwrap_or_default()
    }

    pub fn forget(&mut self, session: &Segment) {
        self.by_session.remove(session);
    }

    pub fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.by_session
            .retain(|_, (first, _)| now.saturating_duration_since(*first) < ttl);
    }

    pub fn sessions(&self) -> usize {
        self.by_session.len()
    }
}

/// A running daemon, for the binary, tests and benchmarks.
pub struct DeviceHandle {
    hub: VideoHub,
    audio: Option<AudioHub>,
    health: DeviceHealth,
    http: HttpServer,
    embedded: Option<EmbeddedBroker>,
    /// Kept for as long as the device serves: dropping them stops them.
    _turn_bridges: crate::turn_stream::Bridges,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl DeviceHandle {
    /// Where the viewer page is served.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.http.local_addr
    }

    /// The embedded broker, when campeer runs one.
    pub fn embedded_broker(&self) -> Option<&EmbeddedBroker> {
        self.embedded.as_ref()
    }

    pub fn hub_stats(&self) -> HubStats {
        self.hub.stats()
    }

    /// The audio pipeline's counters; `None` when the device has no audio.
    pub fn audio_stats(&self) -> Option<AudioStats> {
        self.audio.as_ref().map(AudioHub::stats)
    }

    /// Sessions currently served.
    pub fn viewers(&self) -> usize {
        self.health.summary.borrow().viewers
    }

    /// Liveness and status, for the service manager.
    pub fn health(&self) -> DeviceHealth {
        self.health.clone()
    }

    /// Hangs up on every viewer, stops the pipeline, publishes the offline status and
    /// disconnects from the broker.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut self.task).await {
            tracing::error!("the device task failed: {e}");
        }
    }

    /// Resolves if the device task ends by itself (it only should on shutdown).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Starts the daemon: the embedded broker when no external one is configured, the viewer
/// page, and the device itself, which serves viewers until shut down.
pub async fn start(config: Config) -> anyhow::Result<DeviceHandle> {
    // webrtc is told about bridges in place of TURN servers it cannot reach itself.
    let (ice, turn_bridges) = crate::turn_stream::start(&config.ice).await?;
    let mut mqtt = config.mqtt.clone();
    let (host, port, embedded) = match (&config.mqtt.broker, &config.embedded_broker) {
        (Some(broker), _) => (broker.host.clone(), broker.port, None),
        (None, Some(settings)) => {
            let broker = web::broker::start(settings)?;
            // campeer logs in to its own broker like any client.
            mqtt.username = settings.username.clone();
            mqtt.password = settings.password.clone();
            let (host, port) = broker.client_address();
            (host, port, Some(broker))
        }
        (None, None) => anyhow::bail!("no MQTT broker configured"),
    };
    let page = PageConfig {
        prefix: config.mqtt.prefix.to_string(),
        device: config.device_id.to_string(),
        broker_url: config.web.broker_ws_url.clone(),
        broker_ws_port: embedded.as_ref().map(|b| b.ws_listen.port()),
        ice_servers: config.web.ice_servers.iter().map(Into::into).collect(),
    };
    if page.broker_url.is_none() && page.broker_ws_port.is_none() {
        tracing::warn!(
            "the viewer page does not know how browsers reach the external broker: set \
             web.broker_ws_url (--broker-ws-url) to its WebSocket URL"
        );
    }
    let http = HttpServer::start(config.web.listen, page)
        .await
        .with_context(|| format!("cannot serve the viewer page on {}", config.web.listen))?;
    if config.public {
        let open_broker = config
            .embedded_broker
            .as_ref()
            .is_some_and(|b| b.password.is_none());
        tracing::warn!(
            "public: the viewer page{} listen on every interface; anyone on the network can \
             watch{}",
            if embedded.is_some() {
                " and the embedded broker"
            } else {
                ""
            },
            if open_broker {
                " (the embedded broker requires no password: set broker.username and broker.password)"
            } else {
                ""
            }
        );
    }

    let topics = DeviceTopics::new(config.mqtt.prefix.clone(), config.device_id.clone());
    let hub = make_hub(&config);
    let audio = make_audio_hub(&config.audio, config.sessions.idle_grace);
    let link = MqttLink::start(&mqtt, &host, port, topics);
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let context = SessionContext {
        hub: hub.clone(),
        audio: audio.clone(),
        ice,
        timeout: config.sessions.timeout,
        publisher: link.publisher.clone(),
        ended: ended_tx,
    };
    let (summary, summary_rx) = watch::channel(Summary::default());
    let device_loop = Arc::new(Heartbeat::new());
    let health = DeviceHealth {
        device_loop: Arc::clone(&device_loop),
        video: hub.clone(),
        audio: audio.clone(),
        summary: summary_rx,
    };
    let device = Device {
        publisher: link.publisher.clone(),
        video: VideoDescription {
            codec: "H264".into(),
            width: config.video.width,
            height: config.video.height,
            fps: config.video.fps,
            state: None,
            error: None,
        },
        source_state: hub.source_state(),
        audio_state: audio.as_ref().map(AudioHub::source_state),
        max_viewers: config.sessions.max_viewers,
        sessions: HashMap::new(),
        early: EarlyCandidates::new(64, 32, config.sessions.timeout),
        context,
        next_serial: 0,
        summary,
        heartbeat: device_loop,
    };
    tracing::info!(
        "campeer {} serving device {:?} on mqtt://{host}:{port} under {}",
        env!("CARGO_PKG_VERSION"),
        config.device_id.as_str(),
        device.publisher.topics().status()
    );
    if config.ice.loopback_only {
        tracing::info!("ICE is loopback-only: media stays on 127.0.0.0/8");
    }
    let (stop_tx, stop) = oneshot::channel();
    let task = tokio::spawn(device.run(link, ended, stop));
    Ok(DeviceHandle {
        hub,
        audio,
        health,
        http,
        embedded,
        _turn_bridges: turn_bridges,
        stop: Some(stop_tx),
        task,
    })
}

fn make_hub(config: &Config) -> VideoHub {
    let video = config.video.clone();
    let source = match video.source.clone() {
        SourceKind::Auto => match crate::media::camera::first_capture_device() {
            Some(path) => {
                tracing::info!("found camera {}", path.display());
                SourceKind::Camera(path)
            }
            None => {
                tracing::info!("no camera found: streaming the test pattern instead");
                SourceKind::TestPattern
            }
        },
        other => other,
    };
    let factory: crate::media::hub::SourceFactory = match source {
        SourceKind::Auto | SourceKind::TestPattern => {
            tracing::info!(
                "video source: test pattern {}x{}@{}",
                video.width,
                video.height,
                video.fps
            );
            let (w, h, fps) = (video.width, video.height, video.fps);
            Box::new(move || Ok(Box::new(TestPattern::new(w, h, fps)) as Box<dyn VideoSource>))
        }
        SourceKind::Camera(path) => {
            tracing::info!("video source: camera {}", path.display());
            let wanted = Wanted {
                width: video.width,
                height: video.height,
                fps: video.fps,
                passthrough: video.h264_passthrough,
                bitrate_bps: video.bitrate_bps,
                keyframe_interval: video.keyframe_interval,
            };
            Box::new(move || {
                V4l2Camera::open(&path, wanted)
                    .map(|camera| Box::new(camera) as Box<dyn VideoSource>)
                    .map_err(|e| crate::media::SourceError::Device(e.to_string()))
            })
        }
    };
    VideoHub::new(
        video,
        config.sessions.idle_grace,
        config.sessions.keyframe_min_interval,
        factory,
    )
}

/// The audio hub the configuration asks for: `None` for no audio.
fn make_audio_hub(audio: &AudioConfig, idle_grace: Duration) -> Option<AudioHub> {
    let channels = audio.channels;
    let factory: crate::media::audio_hub::AudioSourceFactory = match &audio.source {
        AudioSourceKind::None => {
            tracing::info!("audio: none (configured)");
            return None;
        }
        AudioSourceKind::Auto if !microphone::has_capture_hardware() => {
            tracing::info!("audio: none (no sound card that can capture was found)");
            return None;
        }
        AudioSourceKind::TestTone => {
            tracing::info!("audio source: test tone");
            Box::new(move || Ok(Box::new(TestTone::new(channels)) as Box<dyn AudioSource>))
        }
        AudioSourceKind::Auto | AudioSourceKind::Alsa(_) => {
            let device = match &audio.source {
                AudioSourceKind::Alsa(name) => name.clone(),
                // Auto with capture hardware: ALSA's own default device.
                _ => "default".to_owned(),
            };
            tracing::info!("audio source: ALSA capture device {device:?}");
            Box::new(move || {
                AlsaMicrophone::open(&device, channels)
                    .map(|mic| Box::new(mic) as Box<dyn AudioSource>)
                    .map_err(|e| crate::media::SourceError::Device(e.to_string()))
            })
        }
    };
    let settings = AudioSettings {
        channels,
        bitrate_bps: audio.bitrate_bps,
    };
    Some(AudioHub::new(settings, idle_grace, factory))
}

/// Waits for the next change of an optional source state; never resolves without one.
async fn state_changed<L>(
    state: &mut Option<tokio::sync::watch::Receiver<worker::SourceState<L>>>,
) {
    let alive = match state {
        Some(state) => state.changed().await.is_ok(),
        None => false,
    };
    if !alive {
        std::future::pending::<()>().await;
    }
}

struct Device {
    publisher: Publisher,
    video: VideoDescription,
    source_state: tokio::sync::watch::Receiver<SourceState>,
    audio_state: Option<tokio::sync::watch::Receiver<worker::SourceState>>,
    max_viewers: usize,
    sessions: HashMap<Segment, SessionHandle>,
    early: EarlyCandidates,
    context: SessionContext,
    next_serial: u64,
    summary: watch::Sender<Summary>,
    heartbeat: Arc<Heartbeat>,
}

impl Device {
    async fn run(
        mut self,
        mut link: MqttLink,
        mut ended: mpsc::UnboundedReceiver<SessionEnded>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_PERIOD);
        let mut heartbeat = tokio::time::interval(HEARTBEAT_PERIOD);
        let mut stats = tokio::time::interval(STATS_PERIOD);
        loop {
            self.heartbeat.beat();
            tokio::select! {
                _ = &mut stop => break,
                event = link.events.recv() => match event {
                    Some(LinkEvent::Connected) => {
                        self.summary.send_modify(|s| s.broker_connected = true);
                        if let Err(e) = self.publisher.subscribe_inbound() {
                            tracing::error!("cannot subscribe to viewer messages: {e}");
                        }
                        self.publish_status();
                    }
                    Some(LinkEvent::Disconnected(_)) => {
                        self.summary.send_modify(|s| s.broker_connected = false);
                    }
                    Some(LinkEvent::Inbound { topic, payload }) => {
                        self.on_inbound(&topic, &payload);
                    }
                    None => {
                        tracing::error!("the MQTT driver stopped unexpectedly");
                        break;
                    }
                },
                Some(done) = ended.recv() => self.on_session_ended(done),
                Ok(()) = self.source_state.changed() => self.publish_status(),
                () = state_changed(&mut self.audio_state) => self.publish_status(),
                _ = housekeeping.tick() => self.early.expire(Instant::now()),
                _ = heartbeat.tick() => {}
                _ = stats.tick() => self.publish_stats(),
            }
        }
        self.shutdown(link, ended).await;
    }

    fn on_inbound(&mut self, topic: &str, payload: &[u8]) {
        let session = match self.publisher.topics().session_of(topic) {
            Ok(session) => session,
            Err(e) => {
                tracing::warn!("ignoring a message on {topic:?}: {e}");
                return;
            }
        };
        let message = match ViewerMessage::parse(payload) {
            Ok(message) => message,
            Err(e) => {
                tracing::info!(session = %session, "bad request: {e}");
                self.reply(
                    &session,
                    DeviceMessage::error(ErrorCode::BadRequest, e.to_string()),
                );
                return;
            }
        };
        match message {
            ViewerMessage::Offer { sdp } => match self.sessions.get(&session) {
                Some(handle) => {
                    if !handle.send(SessionCommand::Offer(sdp)) {
                        tracing::warn!(session = %session, "session busy; dropped a renegotiation");
                    }
                }
                None => self.open_session(session, sdp),
            },
            ViewerMessage::Candidate(candidate) => match self.sessions.get(&session) {
                Some(handle) => {
                    if !handle.send(SessionCommand::Candidate(candidate)) {
                        tracing::debug!(session = %session, "session busy; dropped a candidate");
                    }
                }
                None => {
                    if let Some(candidate) = candidate
                        && !self.early.hold(&session, candidate, Instant::now())
                    {
                        tracing::debug!(session = %session, "too many early candidates; dropped one");
                    }
                }
            },
            ViewerMessage::Hangup => {
                self.early.forget(&session);
                if let Some(handle) = self.sessions.remove(&session) {
                    handle.send(SessionCommand::Hangup);
                    tracing::info!(session = %session, "viewer hung up");
                    self.publish_status();
                }
            }
        }
    }

    fn open_session(&mut self, session: Segment, sdp: String) {
        if self.sessions.len() >= self.max_viewers {
            self.early.forget(&session);
            tracing::info!(session = %session, "refused: {} viewers already", self.max_viewers);
            self.reply(
                &session,
                DeviceMessage::error(
                    ErrorCode::Busy,
                    format!("this device serves at most {} viewers", self.max_viewers),
                ),
            );
            return;
        }
        let choice = match session::offer::negotiate(&sdp, self.context.audio.is_some()) {
            Ok(choice) => choice,
            Err(e) => {
                self.early.forget(&session);
                tracing::info!(session = %session, "refused: {e}");
                self.reply(
                    &session,
                    DeviceMessage::error(ErrorCode::Unsupported, e.to_string()),
                );
                return;
            }
        };
        tracing::info!(
            session = %session,
            "new viewer; answering with H.264 payload type {} ({}){}",
            choice.video.payload_type,
            choice.video.fmtp,
            match &choice.audio {
                Some(opus) => format!(" and Opus payload type {}", opus.payload_type),
                None => String::new(),
            }
        );
        let early = self.early.take(&session);
        self.next_serial += 1;
        let handle = session::spawn(
            self.context.clone(),
            session.clone(),
            self.next_serial,
            choice,
            sdp,
            early,
        );
        self.sessions.insert(session, handle);
        self.publish_status();
    }

    fn on_session_ended(&mut self, done: SessionEnded) {
        let current = self
            .sessions
            .get(&done.id)
            .is_some_and(|handle| handle.serial == done.serial);
        if !current {
            return;
        }
        self.sessions.remove(&done.id);
        if done.reason.notify_viewer() {
            self.reply(&done.id, DeviceMessage::Hangup);
        }
        self.publish_status();
    }

    fn reply(&self, session: &Segment, message: DeviceMessage) {
        if let Err(e) = self.publisher.to_viewer(session, &message) {
            tracing::warn!(session = %session, "could not reply: {e}");
        }
    }

    /// Each viewer's estimate, sent rate, round trip and loss, and the encoder's target, while
    /// anyone watches.
    fn publish_stats(&mut self) {
        if self.sessions.is_empty() {
            return;
        }
        let now = Instant::now();
        let viewers: Vec<_> = self
            .sessions
            .iter_mut()
            .map(|(id, handle)| {
                let state = handle.link.snapshot();
                handle.sampler.sample(now, id.as_str(), &state)
            })
            .collect();
        let message = serde_json::json!({
            "encoder_kbps": self.context.hub.stats().target_bitrate_bps / 1000,
            "viewers": viewers,
        });
        if let Err(e) = self.publisher.stats(message.to_string()) {
            tracing::debug!("stats not published: {e}");
        }
    }

    fn publish_status(&self) {
        let viewers = self.sessions.len();
        self.summary.send_if_modified(|s| {
            let changed = s.viewers != viewers;
            s.viewers = viewers;
            changed
        });
        let mut video = self.video.clone();
        let source = self.source_state.borrow().clone();
        video.state = Some(source.name().to_owned());
        match source {
            SourceState::Failed(reason) => video.error = Some(reason),
            SourceState::Live(size) => (video.width, video.height) = (size.width, size.height),
            SourceState::Idle | SourceState::Starting => {}
        }
        let audio = self
            .context
            .audio
            .as_ref()
            .zip(self.audio_state.as_ref())
            .map(|(hub, state)| {
                let state = state.borrow().clone();
                AudioDescription {
                    codec: "opus".into(),
                    sample_rate: crate::media::audio::SAMPLE_RATE,
                    channels: hub.settings().channels,
                    state: Some(state.name().to_owned()),
                    error: match state {
                        worker::SourceState::Failed(reason) => Some(reason),
                        _ => None,
                    },
                }
            });
        let status = Status::online(video, audio, self.sessions.len());
        if let Err(e) = self.publisher.status(status.to_json()) {
            tracing::warn!("could not publish the status: {e}");
        }
    }

    async fn shutdown(mut self, link: MqttLink, mut ended: mpsc::UnboundedReceiver<SessionEnded>) {
        tracing::info!(
            "shutting down: hanging up on {} viewer(s)",
            self.sessions.len()
        );
        let mut remaining = self.sessions.len();
        for id in self.sessions.keys() {
            self.reply(id, DeviceMessage::Hangup);
        }
        // Dropping the handles ends each session task, which closes its peer connection.
        self.sessions.clear();
        self.summary.send_modify(|s| s.viewers = 0);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        while remaining > 0 {
            match tokio::time::timeout_at(deadline, ended.recv()).await {
                Ok(Some(_)) => remaining -= 1,
                Ok(None) | Err(_) => break,
            }
        }
        self.context.hub.shutdown();
        if let Some(audio) = &self.context.audio {
            audio.shutdown();
        }
        link.shutdown(SHUTDOWN_WAIT).await;
        tracing::info!("stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(n: u32) -> Candidate {
        Candidate {
            candidate: format!("candidate:{n} 1 udp 1 127.0.0.1 {n} typ host"),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: None,
        }
    }

    fn seg(s: &str) -> Segment {
        Segment::parse(s).unwrap()
    }

    #[test]
    fn early_candidates_are_held_in_order_and_taken_once() {
        let mut early = EarlyCandidates::new(4, 4, Duration::from_secs(30));
        let now = Instant::now();
        assert!(early.hold(&seg("a"), candidate(1), now));
        assert!(early.hold(&seg("a"), candidate(2), now));
        assert_eq!(early.take(&seg("a")), vec![candidate(1), candidate(2)]);
        assert!(early.take(&seg("a")).is_empty());
    }

    #[test]
    fn early_candidates_are_bounded() {
        let mut early = EarlyCandidates::new(2, 3, Duration::from_secs(30));
        let now = Instant::now();
        for n in 0..3 {
            assert!(early.hold(&seg("a"), candidate(n), now));
        }
        assert!(
            !early.hold(&seg("a"), candidate(9), now),
            "per-session limit"
        );
        assert!(early.hold(&seg("b"), candidate(1), now));
        assert!(!early.hold(&seg("c"), candidate(1), now), "session limit");
        assert_eq!(early.sessions(), 2);
    }

    #[test]
    fn early_candidates_expire() {
        let mut early = EarlyCandidates::new(4, 4, Duration::from_secs(30));
        let now = Instant::now();
        early.hold(&seg("old"), candidate(1), now);
        early.hold(&seg("new"), candidate(2), now + Duration::from_secs(20));
        early.expire(now + Duration::from_secs(31));
        assert!(early.take(&seg("old")).is_empty());
        assert_eq!(early.take(&seg("new")), vec![candidate(2)]);
    }
}
