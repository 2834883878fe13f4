//! The daemon's shell, as quinn's `ConnectionDriver` and mini-redis' `server::run` are: binds
//! or takes its listeners, builds each part in a function of its own (`parts`, `sources`),
//! runs one device task per camera over the one broker connection (`task`), and shuts
//! everything down cleanly when told. Every decision is the signaling core's
//! ([`crate::signaling`]); these only carry them out.

mod health;
mod parts;
mod sources;
mod task;

use health::SummaryBoard;
pub use health::{DeviceHealth, Summary};
use parts::{
    Publications, cameras, connect_to_broker, mqtt_tls, page_config, start_http,
    start_publications, start_rtsp, warn_if_public,
};
use sources::{make_audio_hub, make_hub};
use task::{Device, DeviceParts};

use crate::config::{Config, SourceKind};
use crate::media::audio_hub::{AudioHub, AudioStats};
use crate::media::hub::{HubStats, VideoHub};
use crate::metrics::{DeviceFigures, MetricsBoard, RtspFigures};
use crate::mqtt::{Inbound, MqttLink, Publisher};
use crate::protocol::{DeviceTopics, Segment};
use crate::publish::schedule::PublicationStatus;
use crate::rtsp::server::{RtspDevice, RtspServer};
use crate::signaling::sessions::SessionReport;
use crate::web;
use crate::web::broker::EmbeddedBroker;
use crate::web::http::HttpServer;
use crate::web::whep_server::WhepCommand;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How long sessions and MQTT get to wind down on shutdown.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// How long the embedded broker is kept after campeer's own client disconnected from it at
/// shutdown, to pass on what that client sent last.
const EMBEDDED_BROKER_DRAIN: Duration = Duration::from_millis(500);

/// A running daemon, for the binary, tests and benchmarks.
pub struct DeviceHandle {
    /// Each camera's hub, by device id; the first is the first camera's.
    hubs: Vec<(Segment, VideoHub)>,
    audio: Option<AudioHub>,
    health: DeviceHealth,
    tasks: Arc<crate::session::SessionTasks>,
    http: HttpServer,
    embedded: Option<EmbeddedBroker>,
    rtsp: Option<RtspServer>,
    publications: Publications,
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

    /// Each publication's course, in the order of the `[[publish]]` entries.
    pub fn publications(&self) -> Vec<PublicationStatus> {
        self.publications.statuses()
    }

    /// Where RTSP readers connect, when campeer serves RTSP.
    pub fn rtsp_addr(&self) -> Option<std::net::SocketAddr> {
        self.rtsp.as_ref().map(|rtsp| rtsp.local_addr)
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
        // Publications end first: each DELETEs its session on its server.
        self.publications.stop(SHUTDOWN_WAIT).await;
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
    /// Only with `rtsp.listen`.
    pub rtsp: Option<tokio::net::TcpListener>,
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
        let rtsp = match config.rtsp.listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot serve RTSP on {addr}"))?,
            ),
            None => None,
        };
        Ok(Self { http, broker, rtsp })
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
    let tls = mqtt_tls(&config).await?;
    let inbound_filters = cameras
        .iter()
        .map(|(id, _)| DeviceTopics::new(config.mqtt.prefix.clone(), id.clone()).inbound_filter())
        .collect();
    let first_topics = DeviceTopics::new(config.mqtt.prefix.clone(), config.device_id.clone());
    let link = MqttLink::start(
        &broker.login,
        broker.addresses.clone(),
        tls,
        first_topics,
        inbound_filters,
    )?;
    // Each camera's figures, which its device task keeps and /metrics reads.
    let (figures, figures_read): (Vec<_>, Vec<_>) = cameras
        .iter()
        .map(|(id, _)| watch::channel(DeviceFigures::new(id.to_string())))
        .unzip();
    let (publication_status, publication_status_read): (Vec<_>, Vec<_>) = config
        .publish
        .iter()
        .map(|target| watch::channel(PublicationStatus::starting(target)))
        .unzip();
    let metrics = MetricsBoard::new(figures_read, link.connection.clone())
        .with_publications(publication_status_read.clone());
    let (rtsp_figures, metrics) = match listeners.rtsp {
        Some(_) => {
            let (sender, receiver) = watch::channel(RtspFigures::default());
            (Some(sender), metrics.with_rtsp(receiver))
        }
        None => (None, metrics),
    };
    let page = page_config(&config, broker.embedded.is_some());
    // Sources named in the configuration, which `auto` must not take for the first camera.
    let claimed: Vec<SourceKind> = cameras
        .iter()
        .map(|(_, video)| video.source.clone())
        .filter(|source| *source != SourceKind::Auto)
        .collect();
    let camera_hubs: Vec<VideoHub> = cameras
        .iter()
        .map(|(_, video)| make_hub(video, &config.sessions, &claimed))
        .collect();
    let (http, whep_inboxes) = start_http(
        &config,
        listeners.http,
        page,
        &broker,
        &cameras,
        &camera_hubs,
        metrics,
    )?;
    warn_if_public(&config, broker.embedded.is_some());
    let board = Arc::new(SummaryBoard::new(cameras.len()));
    let session_tasks = Arc::<crate::session::SessionTasks>::default();
    let mut hubs = Vec::new();
    let mut heartbeats = Vec::new();
    let mut devices = Vec::new();
    let mut routes = Vec::new();
    let mut first_audio = None;
    let mut rtsp_devices = Vec::new();
    let each_camera = cameras
        .into_iter()
        .zip(camera_hubs)
        .zip(whep_inboxes)
        .zip(figures);
    for (index, ((((id, video), hub), whep), figures)) in each_camera.enumerate() {
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
            broker
                .addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" or "),
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
            figures,
            publications: config
                .publish
                .iter()
                .zip(&publication_status_read)
                .filter(|(target, _)| target.device == id)
                .map(|(_, status)| status.clone())
                .collect(),
        };
        let (device, reports) = parts.build();
        heartbeats.push(Arc::clone(&device.heartbeat));
        rtsp_devices.push(RtspDevice {
            id: id.to_string(),
            video: hub.clone(),
            audio: if index == 0 {
                first_audio.clone()
            } else {
                None
            },
        });
        hubs.push((id, hub));
        devices.push((device, inbound, reports, whep));
    }
    let health = DeviceHealth {
        device_loops: heartbeats,
        video: hubs.iter().map(|(_, hub)| hub.clone()).collect(),
        audio: first_audio.clone(),
        summary: board.subscribe(),
    };
    let rtsp = match (listeners.rtsp, rtsp_figures) {
        (Some(listener), Some(figures)) => {
            Some(start_rtsp(&config, listener, rtsp_devices, figures).await?)
        }
        _ => None,
    };
    let publications = start_publications(
        &config,
        &hubs,
        first_audio.as_ref(),
        &ice,
        &session_tasks,
        publication_status,
    )
    .await?
    .with_statuses(publication_status_read);
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
        rtsp,
        publications,
        _turn_bridges: turn_bridges,
        stop: Some(stop_tx),
        task,
    })
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
