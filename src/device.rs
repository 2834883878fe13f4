//! The device task: carries out what the signaling core decides (start, feed and stop
//! sessions, reply, publish the status), runs the media hubs, and shuts everything down
//! cleanly. The decisions themselves live in [`crate::signaling`].

use crate::config::{AudioConfig, AudioSourceKind, Config, SessionConfig, SourceKind, VideoConfig};
use crate::media::VideoSource;
use crate::media::audio::{AudioSource, TestTone};
use crate::media::audio_hub::{AudioHub, AudioSettings, AudioStats};
use crate::media::camera::V4l2Camera;
use crate::media::hub::{HubStats, SourceState, VideoHub};
use crate::media::microphone::{self, AlsaMicrophone};
use crate::media::negotiate::Wanted;
use crate::media::pattern::TestPattern;
use crate::media::rpicam::{self, RpicamCamera};
use crate::media::worker;
use crate::media::worker::Heartbeat;
use crate::mqtt::{Inbound, MqttLink, Publisher};
use crate::outbox::Outbox;
use crate::protocol::{
    AudioDescription, Candidate, DeviceMessage, DeviceTopics, ErrorCode, OFFLINE_STATUS, Segment,
    Status, VideoDescription, ViewerMessage,
};
use crate::session::{self, SessionContext, SessionHandle};
use crate::signaling::sessions::{SessionCommand, SessionEvent, SessionReport};
use crate::signaling::{Action, Limits, Signaling};
use crate::web;
use crate::web::broker::EmbeddedBroker;
use crate::web::http::{HttpServer, PageConfig};
use crate::web::whep::{self, WhepError};
use crate::web::whep_ice::{PatchPlan, WhepIce, WhepIceBook};
use crate::web::whep_server::{Patched, WhepAnswer, WhepCommand, WhepEndpoints};
use anyhow::Context;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How long sessions and MQTT get to wind down on shutdown.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// The device loop goes round at least this often, so its heartbeat shows it is alive: well
/// inside half of any sensible systemd watchdog time (a second or more), at no real cost.
const HEARTBEAT_PERIOD: Duration = Duration::from_millis(200);
/// How long the embedded broker is kept after campeer's own client disconnected from it at
/// shutdown, to pass on what that client sent last.
const EMBEDDED_BROKER_DRAIN: Duration = Duration::from_millis(500);
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
    /// One loop per camera served.
    device_loops: Vec<Arc<Heartbeat>>,
    video: Vec<VideoHub>,
    audio: Option<AudioHub>,
    summary: watch::Receiver<Summary>,
}

impl DeviceHealth {
    /// The loops that have not gone round for `max_age`; empty when all is well.
    pub fn stalled(&self, max_age: Duration) -> Vec<&'static str> {
        let mut stalled = Vec::new();
        if self.device_loops.iter().any(|l| l.age() > max_age) {
            stalled.push("the device loop");
        }
        if self.video.iter().any(|v| v.is_stalled(max_age)) {
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

/// A running daemon, for the binary, tests and benchmarks.
pub struct DeviceHandle {
    /// Each camera's hub, by device id; the first is the first camera's.
    hubs: Vec<(Segment, VideoHub)>,
    audio: Option<AudioHub>,
    health: DeviceHealth,
    tasks: Arc<crate::session::SessionTasks>,
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

    /// The first camera's pipeline counters.
    pub fn hub_stats(&self) -> HubStats {
        self.hubs
            .first()
            .map(|(_, hub)| hub.stats())
            .unwrap_or_default()
    }

    /// The pipeline counters of the camera served as `device`.
    pub fn hub_stats_of(&self, device: &str) -> Option<HubStats> {
        self.hubs
            .iter()
            .find(|(id, _)| id.as_str() == device)
            .map(|(_, hub)| hub.stats())
    }

    /// The audio pipeline's counters; `None` when the device has no audio.
    pub fn audio_stats(&self) -> Option<AudioStats> {
        self.audio.as_ref().map(AudioHub::stats)
    }

    /// Session tasks running now, and the most that ever ran at once.
    pub fn session_tasks(&self) -> (usize, usize) {
        (self.tasks.running(), self.tasks.peak())
    }

    /// Session tasks started since the daemon started: each one a peer connection.
    pub fn sessions_started(&self) -> usize {
        self.tasks.started_total()
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
        // The embedded broker ends with the process: its subscribers (the pages) get a moment
        // to be sent the last messages, the hangups and the offline status, which campeer's
        // client has handed it by now.
        if self.embedded.is_some() {
            tokio::time::sleep(EMBEDDED_BROKER_DRAIN).await;
        }
    }

    /// Resolves if the device task ends by itself (it only should on shutdown).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// The ports campeer serves others on: the viewer page's (with WHEP and the page's way to the
/// embedded broker), and the embedded broker's when campeer runs one. Bound before anything
/// starts, so a port already taken fails at once; the caller binds them (as mini-redis'
/// `server::run` takes its listener), so a test or a service manager may hand in its own.
pub struct Listeners {
    pub http: tokio::net::TcpListener,
    /// Only with the embedded broker.
    pub broker: Option<tokio::net::TcpListener>,
}

impl Listeners {
    /// Binds the ports `config` names.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let http = tokio::net::TcpListener::bind(config.web.listen)
            .await
            .with_context(|| format!("cannot serve the viewer page on {}", config.web.listen))?;
        // The configuration has embedded-broker settings only when no external broker is set.
        let broker = match &config.embedded_broker {
            Some(settings) => Some(web::broker::bind(settings).await?),
            None => None,
        };
        Ok(Self { http, broker })
    }
}

/// Serves until `shutdown` resolves, then hangs up on every viewer, publishes the offline
/// status and returns (mini-redis' `server::run`): the binary passes its signals, a test any
/// future. Keeps the service manager told (systemd's notify protocol) meanwhile. An error if
/// campeer cannot start, or if the device stops by itself.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut device = start_on(config, listeners).await?;
    let service = crate::systemd::spawn(device.health());
    let stopped_by_itself = tokio::select! {
        () = shutdown => false,
        () = device.stopped() => true,
    };
    service.abort();
    if stopped_by_itself {
        anyhow::bail!("the device stopped unexpectedly");
    }
    crate::systemd::stopping();
    device.shutdown().await;
    Ok(())
}

/// Binds the ports `config` names and starts the daemon on them (see [`start_on`]).
pub async fn start(config: Config) -> anyhow::Result<DeviceHandle> {
    let listeners = Listeners::bind(&config).await?;
    start_on(config, listeners).await
}

/// Starts the daemon on `listeners`: the embedded broker when no external one is configured,
/// the viewer page, and the device itself, which serves viewers until shut down. Each part is
/// built by a function of its own; this only wires them together.
pub async fn start_on(config: Config, listeners: Listeners) -> anyhow::Result<DeviceHandle> {
    // webrtc is told about bridges in place of TURN servers it cannot reach itself.
    let (ice, turn_bridges) = crate::turn_stream::start(&config.ice).await?;
    let broker = connect_to_broker(&config, listeners.broker).await?;
    let cameras = cameras(&config);
    let page = page_config(&config, broker.embedded.is_some());
    let (http, whep_inboxes) = start_http(&config, listeners.http, page, &broker, &cameras)?;
    warn_if_public(&config, broker.embedded.is_some());
    let tls = mqtt_tls(&config).await?;
    let inbound_filters = cameras
        .iter()
        .map(|(id, _)| DeviceTopics::new(config.mqtt.prefix.clone(), id.clone()).inbound_filter())
        .collect();
    let first_topics = DeviceTopics::new(config.mqtt.prefix.clone(), config.device_id.clone());
    let link = MqttLink::start(
        &broker.login,
        &broker.host,
        broker.port,
        tls,
        first_topics,
        inbound_filters,
    );
    // Sources named in the configuration, which `auto` must not take for the first camera.
    let claimed: Vec<SourceKind> = cameras
        .iter()
        .map(|(_, video)| video.source.clone())
        .filter(|source| *source != SourceKind::Auto)
        .collect();
    let board = Arc::new(SummaryBoard::new(cameras.len()));
    let session_tasks = Arc::<crate::session::SessionTasks>::default();
    let mut hubs = Vec::new();
    let mut heartbeats = Vec::new();
    let mut devices = Vec::new();
    let mut routes = Vec::new();
    let mut first_audio = None;
    for ((index, (id, video)), whep) in cameras.into_iter().enumerate().zip(whep_inboxes) {
        let hub = make_hub(&video, &config.sessions, &claimed);
        // The microphone goes with the first camera.
        let audio = if index == 0 {
            first_audio = make_audio_hub(&config.audio, config.sessions.idle_grace());
            first_audio.clone()
        } else {
            None
        };
        let publisher = link
            .publisher
            .for_device(DeviceTopics::new(config.mqtt.prefix.clone(), id.clone()));
        tracing::info!(
            "campeer {} serving device {:?} on {} under {}",
            env!("CARGO_PKG_VERSION"),
            id.as_str(),
            match &config.mqtt.broker {
                Some(address) => address.to_string(),
                None => format!("mqtt://{}:{}", broker.host, broker.port),
            },
            publisher.topics().status()
        );
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        routes.push((publisher.clone(), inbound_tx));
        let parts = DeviceParts {
            config: &config,
            index,
            publisher,
            hub: hub.clone(),
            audio,
            ice: ice.clone(),
            video: &video,
            board: Arc::clone(&board),
            tasks: Arc::clone(&session_tasks),
        };
        let (device, reports) = parts.build();
        heartbeats.push(Arc::clone(&device.heartbeat));
        hubs.push((id, hub));
        devices.push((device, inbound, reports, whep));
    }
    let health = DeviceHealth {
        device_loops: heartbeats,
        video: hubs.iter().map(|(_, hub)| hub.clone()).collect(),
        audio: first_audio.clone(),
        summary: board.subscribe(),
    };
    if config.ice.loopback_only {
        tracing::info!("ICE is loopback-only: media stays on 127.0.0.0/8");
    }
    let (stop_tx, stop) = oneshot::channel();
    let task = tokio::spawn(serve(link, devices, routes, stop));
    Ok(DeviceHandle {
        tasks: session_tasks,
        hubs,
        audio: first_audio,
        health,
        http,
        embedded: broker.embedded,
        _turn_bridges: turn_bridges,
        stop: Some(stop_tx),
        task,
    })
}

/// Where campeer's MQTT connection goes, and as whom.
struct BrokerEndpoint {
    host: String,
    port: u16,
    /// The MQTT settings campeer connects with (the embedded broker's credentials when it
    /// runs its own).
    login: crate::config::MqttConfig,
    /// The broker campeer runs itself, when no external one is configured.
    embedded: Option<EmbeddedBroker>,
}

/// The external broker, or the embedded one started here on `public`.
async fn connect_to_broker(
    config: &Config,
    public: Option<tokio::net::TcpListener>,
) -> anyhow::Result<BrokerEndpoint> {
    let mut login = config.mqtt.clone();
    match (&config.mqtt.broker, &config.embedded_broker) {
        (Some(broker), _) => Ok(BrokerEndpoint {
            host: broker.host.clone(),
            port: broker.port,
            login,
            embedded: None,
        }),
        (None, Some(settings)) => {
            let Some(public) = public else {
                anyhow::bail!("the embedded broker's listener was not handed in (Listeners::bind)");
            };
            let broker = web::broker::start(settings, public).await?;
            // campeer logs in to its own broker like any client.
            login.username = settings.username.clone();
            login.password = settings.password.clone();
            let (host, port) = broker.client_address();
            Ok(BrokerEndpoint {
                host,
                port,
                login,
                embedded: Some(broker),
            })
        }
        (None, None) => anyhow::bail!("no MQTT broker configured"),
    }
}

/// Every camera served, the first one first. One broker connection serves them all; its last
/// will covers the first camera's status, and the others' statuses say that they go with it
/// (`via`).
fn cameras(config: &Config) -> Vec<(Segment, VideoConfig)> {
    std::iter::once((config.device_id.clone(), config.video.clone()))
        .chain(
            config
                .cameras
                .iter()
                .map(|c| (c.device_id.clone(), c.video.clone())),
        )
        .collect()
}

/// What the viewer page is told about this deployment.
fn page_config(config: &Config, embedded_broker: bool) -> PageConfig {
    let page = PageConfig {
        prefix: config.mqtt.prefix.to_string(),
        device: config.device_id.to_string(),
        broker_url: config.web.broker_ws_url.clone(),
        broker_ws_path: embedded_broker.then(|| web::ws_proxy::MQTT_PATH.to_owned()),
        ice_servers: config.web.ice_servers.iter().map(Into::into).collect(),
    };
    if page.broker_url.is_none() && page.broker_ws_path.is_none() {
        tracing::warn!(
            "the viewer page does not know how browsers reach the external broker: set \
             web.broker_ws_url (--broker-ws-url) to its WebSocket URL"
        );
    }
    page
}

/// The HTTP server: the page, WHEP and the page's way to the embedded broker. Each camera's
/// WHEP endpoint hands its requests to that camera's device task, through the receiver
/// returned for it (in the cameras' order).
fn start_http(
    config: &Config,
    listener: tokio::net::TcpListener,
    page: PageConfig,
    broker: &BrokerEndpoint,
    cameras: &[(Segment, VideoConfig)],
) -> anyhow::Result<(HttpServer, Vec<mpsc::Receiver<WhepCommand>>)> {
    let mut whep_inboxes = Vec::new();
    let mut whep_routes = HashMap::new();
    for (id, _) in cameras {
        let (sender, receiver) = mpsc::channel(web::whep_server::COMMAND_QUEUE);
        whep_routes.insert(id.to_string(), sender);
        whep_inboxes.push(receiver);
    }
    let whep = WhepEndpoints::new(
        whep_routes,
        config.web.whep_token.as_ref().map(|t| t.0.clone()),
        &page.ice_servers,
    );
    let http = HttpServer::start(
        listener,
        page,
        broker.embedded.as_ref().map(|b| b.ws_listen),
        whep,
    )
    .with_context(|| format!("cannot serve the viewer page on {}", config.web.listen))?;
    Ok((http, whep_inboxes))
}

/// Says loudly what `--public` opens, and whether the embedded broker is open to all.
fn warn_if_public(config: &Config, embedded_broker: bool) {
    if !config.web.public {
        return;
    }
    let open_broker = config
        .embedded_broker
        .as_ref()
        .is_some_and(|b| b.password.is_none());
    tracing::warn!(
        "public: the viewer page{} listen on every interface; anyone on the network can \
         watch{}",
        if embedded_broker {
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

/// TLS to an mqtts:// broker, with the configured CA and client certificate. Reading the
/// files blocks, so it runs off the async workers.
async fn mqtt_tls(
    config: &Config,
) -> anyhow::Result<Option<Arc<tokio_rustls::rustls::ClientConfig>>> {
    if !config.mqtt.broker.as_ref().is_some_and(|broker| broker.tls) {
        return Ok(None);
    }
    let ca_file = config.mqtt.ca_file.clone();
    let client_certificate = config.mqtt.client_certificate();
    let tls = tokio::task::spawn_blocking(move || {
        crate::tls::client_config(
            "mqtt.ca_file",
            ca_file.as_deref(),
            client_certificate
                .as_ref()
                .map(|(cert, key)| (cert.as_path(), key.as_path())),
        )
    })
    .await
    .context("reading the MQTT TLS certificates failed")?
    .context("cannot set up TLS to the MQTT broker")?;
    Ok(Some(tls))
}

/// What one camera's device task is made of.
struct DeviceParts<'a> {
    config: &'a Config,
    /// The camera's place: 0 is the first.
    index: usize,
    publisher: Publisher,
    hub: VideoHub,
    audio: Option<AudioHub>,
    ice: crate::config::IceConfig,
    video: &'a VideoConfig,
    board: Arc<SummaryBoard>,
    tasks: Arc<crate::session::SessionTasks>,
}

impl DeviceParts<'_> {
    /// The device, and the receiver of its sessions' reports.
    fn build(self) -> (Device, mpsc::UnboundedReceiver<SessionReport>) {
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let sessions = &self.config.sessions;
        let outbox = Outbox::new(self.publisher.clone());
        let context = SessionContext {
            hub: self.hub.clone(),
            audio: self.audio.clone(),
            ice: self.ice,
            timeout: sessions.timeout(),
            connect_timeout: sessions.connect_timeout(),
            outbox: outbox.clone(),
            reports: reports_tx,
            tasks: self.tasks,
        };
        let device = Device {
            publisher: self.publisher,
            outbox,
            whep_ice: WhepIceBook::default(),
            whep_restarts: mpsc::channel(WHEP_RESTARTS_QUEUE),
            via: (self.index > 0).then(|| self.config.device_id.clone()),
            video: VideoDescription {
                codec: "H264".into(),
                codecs: self
                    .hub
                    .codecs()
                    .iter()
                    .map(|codec| codec.sdp_name().to_owned())
                    .collect(),
                sending: Vec::new(),
                width: self.video.width,
                height: self.video.height,
                fps: self.video.fps,
                state: None,
                error: None,
                encoder: None,
            },
            source_state: self.hub.source_state(),
            audio_state: self.audio.as_ref().map(AudioHub::source_state),
            signaling: Signaling::new(
                Limits::new(sessions.max_viewers, sessions.timeout()),
                self.audio.is_some(),
            )
            .with_video_codecs(self.hub.codecs()),
            sessions: HashMap::new(),
            context,
            board: self.board,
            index: self.index,
            heartbeat: Arc::new(Heartbeat::new()),
        };
        (device, reports)
    }
}

/// How long a WHEP offer waits for its session's answer.
const WHEP_ANSWER_WAIT: Duration = web::whep_server::ANSWER_WAIT;

/// Waits (bounded) for the session's answer to a WHEP offer, or its refusal.
async fn wait_for_whep_answer(
    answer: oneshot::Receiver<DeviceMessage>,
) -> Result<String, WhepError> {
    match tokio::time::timeout(WHEP_ANSWER_WAIT, answer).await {
        Ok(Ok(DeviceMessage::Answer { sdp })) => Ok(sdp),
        Ok(Ok(DeviceMessage::Error { code, message })) => Err(match code {
            ErrorCode::Busy => WhepError::Busy(message),
            ErrorCode::RateLimited => WhepError::RateLimited(message),
            _ => WhepError::Refused(message),
        }),
        Ok(_) => Err(WhepError::Unavailable),
        Err(_) => Err(WhepError::AnswerTimeout),
    }
}

type PatchReply = oneshot::Sender<Result<Patched, WhepError>>;

/// A restart the session answered, back to the device task to commit and reply.
struct WhepRestarted {
    session: Segment,
    restarted: WhepIce,
    fragment: String,
    reply: PatchReply,
}

/// Restarts answered but not yet committed, per device (one per waiting answer at most).
const WHEP_RESTARTS_QUEUE: usize = crate::outbox::MAX_WAITING_ANSWERS;

/// A session id for a WHEP player: unguessable, so that nobody else can PATCH or DELETE it.
fn new_whep_session() -> Option<Segment> {
    Segment::parse(&format!(
        "{}{:032x}",
        crate::protocol::WHEP_SESSION_PREFIX,
        rand::random::<u128>()
    ))
    .ok()
}

/// A camera's device and what feeds its task: its MQTT messages, its sessions' ends and its
/// WHEP requests.
type DeviceTask = (
    Device,
    mpsc::Receiver<Inbound>,
    mpsc::UnboundedReceiver<SessionReport>,
    mpsc::Receiver<WhepCommand>,
);

/// Messages waiting for one camera's device task.
const INBOUND_QUEUE: usize = 256;

/// Runs every camera's device task over the one broker connection: hands each inbound message
/// to the camera whose topic it came on, and on stop lets every camera hang up and say it is
/// offline before disconnecting.
async fn serve(
    mut link: MqttLink,
    devices: Vec<DeviceTask>,
    routes: Vec<(Publisher, mpsc::Sender<Inbound>)>,
    mut stop: oneshot::Receiver<()>,
) {
    let (stopping_tx, stopping) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for (device, inbound, reports, whep) in devices {
        tasks.spawn(device.run(
            link.connection.clone(),
            inbound,
            reports,
            whep,
            stopping.clone(),
        ));
    }
    loop {
        tokio::select! {
            _ = &mut stop => break,
            inbound = link.inbound.recv() => match inbound {
                Some(message) => route(&routes, message).await,
                None => {
                    tracing::error!("the MQTT driver stopped unexpectedly");
                    break;
                }
            },
            // A device task that ends by itself (it should not) ends the service.
            Some(ended) = tasks.join_next() => {
                if let Err(e) = ended {
                    tracing::error!("a device task failed: {e}");
                }
                tracing::error!("a device task stopped unexpectedly");
                break;
            }
        }
    }
    let _ = stopping_tx.send(true);
    while let Some(ended) = tasks.join_next().await {
        if let Err(e) = ended {
            tracing::error!("a device task failed: {e}");
        }
    }
    link.shutdown(SHUTDOWN_WAIT).await;
    tracing::info!("stopped");
}

/// Hands a message to the camera whose inbound topics it came on, waiting (bounded) for room
/// in its queue: a burst is taken whole, hangups included, rather than cut short.
async fn route(routes: &[(Publisher, mpsc::Sender<Inbound>)], message: Inbound) {
    let Some((_, to)) = routes
        .iter()
        .find(|(publisher, _)| publisher.topics().session_of(&message.topic).is_ok())
    else {
        tracing::debug!("ignoring a message on {:?}", message.topic);
        return;
    };
    if let Err(e) = to.send_timeout(message, crate::mqtt::INBOUND_WAIT).await {
        tracing::warn!("dropping an MQTT message: a camera is not keeping up ({e})");
    }
}

/// The service-wide summary: one viewer count per camera, added up.
struct SummaryBoard {
    viewers: Vec<std::sync::atomic::AtomicUsize>,
    summary: watch::Sender<Summary>,
}

impl SummaryBoard {
    fn new(cameras: usize) -> Self {
        Self {
            viewers: (0..cameras).map(|_| Default::default()).collect(),
            summary: watch::channel(Summary::default()).0,
        }
    }

    fn subscribe(&self) -> watch::Receiver<Summary> {
        self.summary.subscribe()
    }

    fn set_broker_connected(&self, connected: bool) {
        self.summary.send_if_modified(|s| {
            std::mem::replace(&mut s.broker_connected, connected) != connected
        });
    }

    fn set_viewers(&self, camera: usize, viewers: usize) {
        use std::sync::atomic::Ordering;
        if let Some(slot) = self.viewers.get(camera) {
            slot.store(viewers, Ordering::Relaxed);
        }
        let total = self.viewers.iter().map(|v| v.load(Ordering::Relaxed)).sum();
        self.summary
            .send_if_modified(|s| std::mem::replace(&mut s.viewers, total) != total);
    }
}

fn make_hub(video: &VideoConfig, sessions: &SessionConfig, claimed: &[SourceKind]) -> VideoHub {
    let video = video.clone();
    let rpicam_vid = video.rpicam_vid.clone();
    let source = match video.source.clone() {
        SourceKind::Auto => auto_source(rpicam_vid.as_deref(), claimed),
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
                bitrate_bps: video.bitrate_bps(),
                keyframe_interval: video.keyframe_interval(),
            };
            Box::new(move || {
                V4l2Camera::open(&path, wanted)
                    .map(|camera| Box::new(camera) as Box<dyn VideoSource>)
                    .map_err(|e| crate::media::SourceError::Fatal(e.to_string()))
            })
        }
        SourceKind::CameraModule(index) => {
            tracing::info!("video source: camera module {index}");
            let (w, h, fps) = (video.width, video.height, video.fps);
            Box::new(move || {
                // Looked for at each start, so that installing rpicam-apps while campeer
                // runs is enough.
                let program = rpicam::find_program(rpicam_vid.as_deref())
                    .ok_or(rpicam::RpicamError::NotInstalled)
                    .map_err(|e| crate::media::SourceError::Fatal(e.to_string()))?;
                RpicamCamera::open(&program, index, w, h, fps)
                    .map(|camera| Box::new(camera) as Box<dyn VideoSource>)
                    .map_err(|e| crate::media::SourceError::Fatal(e.to_string()))
            })
        }
    };
    VideoHub::new(
        video,
        sessions.idle_grace(),
        sessions.keyframe_min_interval(),
        factory,
    )
}

/// What `auto` streams: a camera module when the board has one (the camera a Raspberry Pi
/// is bought with), else the first V4L2 camera that gives a usable picture, else the test
/// pattern.
fn auto_source(rpicam_vid: Option<&std::path::Path>, claimed: &[SourceKind]) -> SourceKind {
    let modules = rpicam::available_camera_modules(rpicam_vid);
    let free_module = modules
        .iter()
        .find(|m| !claimed.contains(&SourceKind::CameraModule(m.index)));
    if let Some(module) = free_module {
        tracing::info!(
            "found camera module {} ({}, {})",
            module.index,
            module.model,
            module.sensor
        );
        return SourceKind::CameraModule(module.index);
    }
    match crate::media::camera::first_capture_device(|path| {
        claimed.contains(&SourceKind::Camera(path.to_owned()))
    }) {
        Some(path) => {
            tracing::info!("found camera {}", path.display());
            SourceKind::Camera(path)
        }
        None => {
            tracing::info!("no camera found: streaming the test pattern instead");
            SourceKind::TestPattern
        }
    }
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
                    .map_err(|e| crate::media::SourceError::Fatal(e.to_string()))
            })
        }
    };
    let settings = AudioSettings {
        channels,
        bitrate_bps: audio.bitrate_bps(),
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
    /// Replies to viewers: on MQTT, or to the WHEP request waiting for its answer.
    outbox: Outbox,
    /// Each WHEP session's offer and ICE state, and the decisions made from it. Whether the
    /// session exists is the signaling core's to say; this only adds what WHEP needs.
    whep_ice: WhepIceBook,
    /// Restarts answered by their sessions, to commit before the player is told.
    whep_restarts: (mpsc::Sender<WhepRestarted>, mpsc::Receiver<WhepRestarted>),
    /// For a camera besides the first: the device whose status carries the connection's last
    /// will, so that viewers know this one is gone when that one is.
    via: Option<Segment>,
    video: VideoDescription,
    source_state: tokio::sync::watch::Receiver<SourceState>,
    audio_state: Option<tokio::sync::watch::Receiver<worker::SourceState>>,
    signaling: Signaling,
    sessions: HashMap<Segment, SessionHandle>,
    context: SessionContext,
    board: Arc<SummaryBoard>,
    /// This camera's place on the board.
    index: usize,
    heartbeat: Arc<Heartbeat>,
}

impl Device {
    async fn run(
        mut self,
        mut connection: watch::Receiver<crate::mqtt::Connection>,
        mut inbound: mpsc::Receiver<Inbound>,
        mut reports: mpsc::UnboundedReceiver<SessionReport>,
        mut whep: mpsc::Receiver<WhepCommand>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut heartbeat = tokio::time::interval(HEARTBEAT_PERIOD);
        let mut stats = tokio::time::interval(STATS_PERIOD);
        let mut connects = 0;
        loop {
            self.heartbeat.beat();
            let wake = self.signaling.poll_timeout();
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                changed = connection.changed() => {
                    if changed.is_err() {
                        tracing::error!("the MQTT driver stopped unexpectedly");
                        break;
                    }
                    let connection = *connection.borrow_and_update();
                    self.board.set_broker_connected(connection.connected);
                    // Connection changes are a state, not a queue: a reconnect is never missed
                    // however busy the inbound queue is.
                    if connection.connected && connection.connects != connects {
                        connects = connection.connects;
                        self.signaling.broker_connected(Instant::now());
                    }
                }
                message = inbound.recv() => match message {
                    Some(Inbound { topic, payload }) => {
                        self.on_inbound(&topic, &payload);
                        // Everything already queued goes to the signaling core before any
                        // of it is carried out: an offer whose hangup waits behind it is
                        // never started.
                        for _ in 1..INBOUND_QUEUE {
                            let Ok(Inbound { topic, payload }) = inbound.try_recv() else {
                                break;
                            };
                            self.on_inbound(&topic, &payload);
                        }
                    }
                    None => {
                        tracing::error!("the MQTT driver stopped unexpectedly");
                        break;
                    }
                },
                Some(command) = whep.recv() => self.on_whep(command),
                Some(done) = self.whep_restarts.1.recv() => self.on_whep_restarted(done),
                Some(report) = reports.recv() => self.on_session_report(report),
                Ok(()) = self.source_state.changed() => self.signaling.status_changed(Instant::now()),
                () = state_changed(&mut self.audio_state) => self.signaling.status_changed(Instant::now()),
                () = sleep_until(wake) => {}
                _ = heartbeat.tick() => {}
                _ = stats.tick() => self.publish_stats(),
            }
            self.signaling.handle_timeout(Instant::now());
            self.carry_out();
            // The service manager and tests see the count at once; the status topic may lag
            // it by the coalescing interval.
            self.board.set_viewers(self.index, self.signaling.viewers());
        }
        self.shutdown(reports).await;
    }

    fn on_session_report(&mut self, report: SessionReport) {
        let SessionReport { id, serial, event } = report;
        let now = Instant::now();
        match event {
            SessionEvent::Answered => self.signaling.session_answered(now, &id, serial),
            SessionEvent::Connected => self.signaling.session_connected(&id, serial),
            SessionEvent::Ended(reason) => self.signaling.session_ended(now, id, serial, &reason),
        }
    }

    /// A WHEP player's request: an offer becomes a session like an MQTT viewer's (the same
    /// admission and limits), its answer or refusal going back to the request; a PATCH's
    /// candidates (or ICE restart) and a DELETE go to that session.
    fn on_whep(&mut self, command: WhepCommand) {
        match command {
            WhepCommand::Offer { sdp, reply } => self.on_whep_offer(sdp, reply),
            WhepCommand::Trickle {
                session,
                if_match,
                fragment,
                reply,
            } => {
                let result = self.on_whep_patch(&session, if_match.as_deref(), fragment, reply);
                if let Err((error, reply)) = result {
                    let _ = reply.send(Err(error));
                }
            }
            WhepCommand::Delete { session, reply } => {
                let served = self.signaling.serves(&session);
                let result = self.whep_ice.on_delete(&session, served);
                if result.is_ok() {
                    self.signaling
                        .handle_viewer(Instant::now(), session, ViewerMessage::Hangup);
                }
                let _ = reply.send(result);
            }
        }
    }

    fn on_whep_offer(
        &mut self,
        sdp: String,
        reply: oneshot::Sender<Result<WhepAnswer, WhepError>>,
    ) {
        let Some(session) = new_whep_session() else {
            let _ = reply.send(Err(WhepError::Unavailable));
            return;
        };
        let Some(answer) = self.outbox.wait_for_answer(session.clone()) else {
            let _ = reply.send(Err(WhepError::Unavailable));
            return;
        };
        self.signaling.handle_viewer(
            Instant::now(),
            session.clone(),
            ViewerMessage::Offer { sdp: sdp.clone() },
        );
        let served = self.signaling.serves(&session);
        self.whep_ice.on_offer(session.clone(), sdp, served);
        tokio::spawn(async move {
            let result = wait_for_whep_answer(answer).await.map(|sdp| WhepAnswer {
                etag: whep::etag(session.as_str(), 0),
                session,
                sdp,
            });
            let _ = reply.send(result);
        });
    }

    /// A PATCH: candidates for the session, or, when it names new ICE credentials, an ICE
    /// restart (RFC 9725 §4.3.2), answered once the session has answered the restart offer.
    /// A refusal hands the reply back to be sent.
    fn on_whep_patch(
        &mut self,
        session: &Segment,
        if_match: Option<&str>,
        fragment: whep::SdpFragment,
        reply: PatchReply,
    ) -> Result<(), (WhepError, PatchReply)> {
        let served = self.signaling.serves(session);
        let room = self.signaling.candidate_room(session);
        let plan = self
            .whep_ice
            .plan_patch(session, served, if_match, &fragment, room);
        let now = Instant::now();
        let (offer, restarted) = match plan {
            Err(error) => return Err((error, reply)),
            Ok(PatchPlan::Trickle) => {
                self.forward_whep_candidates(now, session, fragment);
                let _ = reply.send(Ok(Patched::Trickled));
                return Ok(());
            }
            Ok(PatchPlan::Restart { offer, restarted }) => (offer, restarted),
        };
        let Some(answer) = self.outbox.wait_for_answer(session.clone()) else {
            return Err((WhepError::Unavailable, reply));
        };
        self.signaling
            .handle_viewer(now, session.clone(), ViewerMessage::Offer { sdp: offer });
        self.forward_whep_candidates(now, session, fragment);
        let restarts = self.whep_restarts.0.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let result = wait_for_whep_answer(answer).await.and_then(|sdp| {
                whep::restart_fragment(&sdp).ok_or_else(|| {
                    WhepError::Refused("the answer to the restart had no ICE credentials".into())
                })
            });
            match result {
                // The device commits the new credentials before the player hears of them, so
                // that its next PATCH finds them.
                Ok(fragment) => {
                    let done = WhepRestarted {
                        session,
                        restarted,
                        fragment,
                        reply,
                    };
                    if let Err(mpsc::error::SendError(done)) = restarts.send(done).await {
                        let _ = done.reply.send(Err(WhepError::Unavailable));
                    }
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            }
        });
        Ok(())
    }

    /// A restart the session answered: its credentials and generation become the session's.
    fn on_whep_restarted(&mut self, done: WhepRestarted) {
        let WhepRestarted {
            session,
            restarted,
            fragment,
            reply,
        } = done;
        let served = self.signaling.serves(&session);
        let result = self
            .whep_ice
            .commit_restart(session, restarted, served)
            .map(|etag| Patched::Restarted { fragment, etag });
        let _ = reply.send(result);
    }

    fn forward_whep_candidates(
        &mut self,
        now: Instant,
        session: &Segment,
        fragment: whep::SdpFragment,
    ) {
        for line in fragment.candidates {
            let candidate = Candidate {
                candidate: line,
                sdp_mid: fragment.mid.clone(),
                sdp_mline_index: fragment.mid.is_none().then_some(0),
                username_fragment: fragment.ufrag.clone(),
            };
            self.signaling.handle_viewer(
                now,
                session.clone(),
                ViewerMessage::Candidate(Some(candidate)),
            );
        }
    }

    fn on_inbound(&mut self, topic: &str, payload: &[u8]) {
        match self.publisher.topics().session_of(topic) {
            Ok(session) => self
                .signaling
                .handle_message(Instant::now(), session, payload),
            Err(e) => tracing::debug!("ignoring a message on {topic:?}: {e}"),
        }
    }

    /// Does what the signaling core decided.
    fn carry_out(&mut self) {
        while let Some(action) = self.signaling.poll_action() {
            match action {
                Action::Reply { to, message } => {
                    if let Err(e) = self.outbox.send(&to, &message) {
                        tracing::warn!(session = %to, "could not reply: {e}");
                    }
                }
                Action::Start(start) => {
                    let handle = session::spawn(
                        self.context.clone(),
                        start.id.clone(),
                        start.serial,
                        start.choice,
                        start.offer,
                        start.early,
                    );
                    self.sessions.insert(start.id, handle);
                }
                Action::Forward { to, command } => {
                    let offer = matches!(command, SessionCommand::Offer(_));
                    let delivered = self
                        .sessions
                        .get(&to)
                        .is_some_and(|handle| handle.send(command));
                    if delivered {
                        continue;
                    }
                    // Every offer gets a reply: one its session cannot take is refused here.
                    if offer {
                        tracing::info!(session = %to, "session busy or ending; refused a renegotiation");
                        let refusal = DeviceMessage::error(
                            ErrorCode::Busy,
                            "the session cannot take a new offer now; offer again",
                        );
                        if let Err(e) = self.outbox.send(&to, &refusal) {
                            tracing::warn!(session = %to, "could not reply: {e}");
                        }
                    } else {
                        tracing::debug!(session = %to, "session busy or gone; dropped a message");
                    }
                }
                Action::Stop { session } => {
                    self.whep_ice.on_ended(&session);
                    // Dropping the handle ends the task too; the hangup says why.
                    if let Some(handle) = self.sessions.remove(&session) {
                        handle.send(SessionCommand::Hangup);
                    }
                }
                Action::Forget { session } => {
                    self.sessions.remove(&session);
                    self.whep_ice.on_ended(&session);
                }
                Action::PublishStatus { viewers } => self.publish_status(viewers),
            }
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

    fn publish_status(&self, viewers: usize) {
        let mut video = self.video.clone();
        let source = self.source_state.borrow().clone();
        video.state = Some(source.name().to_owned());
        match source {
            SourceState::Failed(reason) => video.error = Some(reason),
            SourceState::Live(live) => {
                (video.width, video.height) = (live.size.width, live.size.height);
                video.encoder = live.encoder.name().map(str::to_owned);
                video.sending = live.codecs_sent().into_iter().map(str::to_owned).collect();
            }
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
        let mut status = Status::online(video, audio, viewers);
        status.via = self.via.as_ref().map(|via| via.to_string());
        if let Err(e) = self.publisher.status(status.to_json()) {
            tracing::warn!("could not publish the status: {e}");
        }
    }

    async fn shutdown(mut self, mut reports: mpsc::UnboundedReceiver<SessionReport>) {
        tracing::info!(
            "shutting down: hanging up on {} viewer(s)",
            self.signaling.viewers()
        );
        let mut remaining = self.signaling.shutdown();
        self.carry_out();
        // Dropping the handles ends each session task, which closes its peer connection.
        self.sessions.clear();
        self.board.set_viewers(self.index, 0);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        while remaining > 0 {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(SessionReport {
                    event: SessionEvent::Ended(_),
                    ..
                })) => remaining -= 1,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.context.hub.shutdown();
        if let Some(audio) = &self.context.audio {
            audio.shutdown();
        }
        if let Err(e) = self.publisher.status(OFFLINE_STATUS.to_owned()) {
            tracing::warn!("could not queue the offline status: {e}");
        }
    }
}

/// Sleeps until `deadline`; never wakes without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileConfig, Overrides};

    fn config(toml_text: &str) -> Config {
        let file = FileConfig::parse(toml_text).expect("a valid file");
        Config::resolve(file, Overrides::default()).expect("a valid configuration")
    }

    #[test]
    fn the_first_camera_comes_first_then_each_entry_in_order() {
        let config = config(
            "[device]\nid = \"porch\"\n[video]\nsource = \"test\"\nwidth = 1280\nheight = 720\n\
             [[cameras]]\nid = \"garden\"\nsource = \"test\"\nwidth = 640\nheight = 480\n\
             [[cameras]]\nid = \"bench\"\nsource = \"test\"\n",
        );
        let listed: Vec<(String, u32)> = cameras(&config)
            .into_iter()
            .map(|(id, video)| (id.to_string(), video.width))
            .collect();
        assert_eq!(
            listed,
            [
                ("porch".to_owned(), 1280),
                ("garden".to_owned(), 640),
                ("bench".to_owned(), 1280)
            ]
        );
    }

    #[test]
    fn the_page_learns_how_to_reach_the_broker() {
        // The embedded broker: through the page's own origin.
        let embedded = page_config(&config("[device]\nid = \"porch\"\n"), true);
        assert_eq!(embedded.device, "porch");
        assert_eq!(embedded.broker_url, None);
        assert_eq!(
            embedded.broker_ws_path.as_deref(),
            Some(web::ws_proxy::MQTT_PATH)
        );
        // An external broker: the WebSocket URL the operator gave, and the page's ICE servers.
        let external = page_config(
            &config(
                "[mqtt]\nbroker = \"mqtt://broker.example\"\nprefix = \"home/cams\"\n\
                 [web]\nbroker_ws_url = \"wss://broker.example/mqtt\"\n\
                 ice_servers = [{urls = [\"stun:stun.example:3478\"]}]\n",
            ),
            false,
        );
        assert_eq!(external.prefix, "home/cams");
        assert_eq!(
            external.broker_url.as_deref(),
            Some("wss://broker.example/mqtt")
        );
        assert_eq!(external.broker_ws_path, None);
        let urls: Vec<&[String]> = external
            .ice_servers
            .iter()
            .map(|s| s.urls.as_slice())
            .collect();
        assert_eq!(urls, [["stun:stun.example:3478".to_owned()]]);
    }

    #[test]
    fn the_summary_adds_up_every_camera_and_tells_only_changes() {
        let board = SummaryBoard::new(2);
        let mut summary = board.subscribe();
        board.set_viewers(0, 2);
        board.set_viewers(1, 3);
        assert!(summary.has_changed().unwrap());
        assert_eq!(summary.borrow_and_update().viewers, 5);
        // The same count again, or a camera that does not exist: nobody is woken.
        board.set_viewers(1, 3);
        board.set_viewers(7, 9);
        assert!(!summary.has_changed().unwrap());
        board.set_broker_connected(true);
        board.set_broker_connected(true);
        assert_eq!(
            *summary.borrow_and_update(),
            Summary {
                broker_connected: true,
                viewers: 5
            }
        );
        board.set_viewers(0, 0);
        assert_eq!(summary.borrow_and_update().viewers, 3);
    }

    #[test]
    fn whep_sessions_are_unguessable_and_valid_topic_segments() {
        let first = new_whep_session().expect("a valid segment");
        let second = new_whep_session().expect("a valid segment");
        assert_ne!(first, second);
        let random = first
            .as_str()
            .strip_prefix(crate::protocol::WHEP_SESSION_PREFIX)
            .expect("the WHEP prefix");
        assert_eq!(random.len(), 32, "128 random bits in hex");
        assert!(random.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
