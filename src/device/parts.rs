//! How the daemon's shared parts are built from the configuration: the broker it connects to
//! (its own embedded one, or an external one, over TLS when its URL says so), the cameras it
//! serves, and the HTTP server with the page, each camera's WHEP endpoint and the metrics.

use crate::config::{BrokerAddress, Config, IceConfig, VideoConfig};
use crate::media::audio_hub::AudioHub;
use crate::media::hub::VideoHub;
use crate::metrics::{MetricsBoard, RtspFigures};
use crate::protocol::Segment;
use crate::publish::client::WhipClient;
use crate::publish::schedule::PublicationStatus;
use crate::publish::task::PublicationParts;
use crate::rtsp::digest::Credentials;
use crate::rtsp::server::{RtspDevice, RtspServer, RtspSettings};
use crate::session::SessionTasks;
use crate::web;
use crate::web::broker::EmbeddedBroker;
use crate::web::http::{Endpoints, HttpServer, PageConfig};
use crate::web::metrics::{Access, MetricsEndpoint};
use crate::web::recordings::RecordingsEndpoint;
use crate::web::snapshot::SnapshotEndpoint;
use crate::web::whep_server::{WhepCommand, WhepEndpoints};
use anyhow::Context;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Where campeer's MQTT connection goes, and as whom.
pub(super) struct BrokerEndpoint {
    /// The brokers, tried in turn (the embedded broker alone when campeer runs its own).
    pub(super) addresses: Vec<BrokerAddress>,
    /// The MQTT settings campeer connects with (the embedded broker's credentials when it
    /// runs its own).
    pub(super) login: crate::config::MqttConfig,
    /// The broker campeer runs itself, when no external one is configured.
    pub(super) embedded: Option<EmbeddedBroker>,
}

/// The external broker, or the embedded one started here on `public`.
pub(super) async fn connect_to_broker(
    config: &Config,
    public: Option<tokio::net::TcpListener>,
) -> anyhow::Result<BrokerEndpoint> {
    let mut login = config.mqtt.clone();
    match (config.mqtt.brokers.is_empty(), &config.embedded_broker) {
        (false, _) => Ok(BrokerEndpoint {
            addresses: config.mqtt.brokers.clone(),
            login,
            embedded: None,
        }),
        (true, Some(settings)) => {
            let Some(public) = public else {
                anyhow::bail!("the embedded broker's listener was not handed in (Listeners::bind)");
            };
            let broker = web::broker::start(settings, public).await?;
            // campeer logs in to its own broker like any client.
            login.username = settings.username.clone();
            login.password = settings.password.clone();
            let (host, port) = broker.client_address();
            Ok(BrokerEndpoint {
                addresses: vec![BrokerAddress {
                    host,
                    port,
                    tls: false,
                }],
                login,
                embedded: Some(broker),
            })
        }
        (true, None) => anyhow::bail!("no MQTT broker configured"),
    }
}

/// Every camera served, the first one first. One broker connection serves them all; its last
/// will covers the first camera's status, and the others' statuses say that they go with it
/// (`via`).
pub(super) fn cameras(config: &Config) -> Vec<(Segment, VideoConfig)> {
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
pub(super) fn page_config(config: &Config, embedded_broker: bool) -> PageConfig {
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
/// returned for it (in the cameras' order). `metrics`: what Prometheus reads.
pub(super) fn start_http(
    config: &Config,
    listener: tokio::net::TcpListener,
    page: PageConfig,
    broker: &BrokerEndpoint,
    cameras: &[(Segment, VideoConfig)],
    hubs: &[VideoHub],
    metrics: MetricsBoard,
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
    let token = config.web.whep_token.as_ref().map(|t| t.0.as_str());
    let access = Access::decide(config.web.metrics, listener.local_addr()?, token);
    let snapshots = SnapshotEndpoint::new(
        cameras
            .iter()
            .zip(hubs)
            .map(|((id, _), hub)| (id.to_string(), hub.clone()))
            .collect(),
        token.map(str::to_owned),
    );
    let recordings = RecordingsEndpoint::new(
        if config.record.enabled() {
            cameras
                .iter()
                .map(|(id, _)| (id.to_string(), config.record.path.join(id.as_str())))
                .collect()
        } else {
            HashMap::new()
        },
        token.map(str::to_owned),
    );
    let http = HttpServer::start(
        listener,
        page,
        broker.embedded.as_ref().map(|b| b.ws_listen),
        Endpoints {
            whep,
            metrics: MetricsEndpoint::new(metrics, access),
            snapshots,
            recordings,
        },
    )
    .with_context(|| format!("cannot serve the viewer page on {}", config.web.listen))?;
    Ok((http, whep_inboxes))
}

/// Serves RTSP on `listener` for every camera, with the configured credentials.
pub(super) async fn start_rtsp(
    config: &Config,
    listener: tokio::net::TcpListener,
    devices: Vec<RtspDevice>,
    figures: tokio::sync::watch::Sender<RtspFigures>,
) -> anyhow::Result<RtspServer> {
    let credentials = match (&config.rtsp.username, &config.rtsp.password) {
        (Some(username), Some(password)) => Some(Credentials {
            username: username.clone(),
            password: password.0.clone(),
        }),
        _ => None,
    };
    let settings = RtspSettings {
        max_readers: config.rtsp.max_readers,
        credentials,
    };
    let server = RtspServer::start(listener, devices, settings, figures)
        .await
        .context("cannot serve RTSP")?;
    let login = if config.rtsp.password.is_some() {
        "with Digest credentials"
    } else {
        "without credentials (loopback only)"
    };
    tracing::info!(
        "serving RTSP on rtsp://{}/<device>, {login}, to at most {} readers",
        server.local_addr,
        config.rtsp.max_readers
    );
    Ok(server)
}

/// The publications' tasks, and how to stop them.
pub struct Publications {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    statuses: Vec<watch::Receiver<PublicationStatus>>,
}

impl Publications {
    pub(super) fn with_statuses(self, statuses: Vec<watch::Receiver<PublicationStatus>>) -> Self {
        Self { statuses, ..self }
    }

    pub(super) fn statuses(&self) -> Vec<PublicationStatus> {
        self.statuses.iter().map(|s| s.borrow().clone()).collect()
    }

    /// Tells every publication to end (each DELETEs its session) and waits up to `limit`.
    pub(super) async fn stop(&mut self, limit: std::time::Duration) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let all = futures_join_all(tasks);
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("publications did not end within {limit:?}");
        }
    }
}

async fn futures_join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// Starts a task for each `[[publish]]` entry, on its device's hub (the microphone goes with
/// the first device, as for viewers).
pub(super) async fn start_publications(
    config: &Config,
    hubs: &[(Segment, VideoHub)],
    first_audio: Option<&AudioHub>,
    ice: &IceConfig,
    tasks: &Arc<SessionTasks>,
    statuses: Vec<watch::Sender<PublicationStatus>>,
) -> anyhow::Result<Publications> {
    let (stop, stopping) = watch::channel(false);
    let needs_tls = config.publish.iter().any(|t| t.url.scheme() == "https");
    let tls = if needs_tls {
        let config =
            tokio::task::spawn_blocking(|| crate::tls::client_config("publish.url", None, None))
                .await
                .context("reading the system's certificates")??;
        Some(config)
    } else {
        None
    };
    let client = WhipClient::new(tls);
    let mut handles = Vec::new();
    for (number, (target, status)) in (1..).zip(config.publish.iter().zip(statuses)) {
        let Some(index) = hubs.iter().position(|(id, _)| *id == target.device) else {
            continue;
        };
        let Some((_, hub)) = hubs.get(index) else {
            continue;
        };
        tracing::info!(
            "publishing {} to {} (WHIP)",
            target.device,
            target.shown_url()
        );
        let parts = PublicationParts {
            target: target.clone(),
            number,
            hub: hub.clone(),
            audio: if index == 0 {
                first_audio.cloned()
            } else {
                None
            },
            ice: ice.clone(),
            sessions: config.sessions.clone(),
            tasks: Arc::clone(tasks),
            client: client.clone(),
            status,
        };
        handles.push(tokio::spawn(crate::publish::task::run(
            parts,
            stopping.clone(),
        )));
    }
    Ok(Publications {
        stop,
        tasks: handles,
        statuses: Vec::new(),
    })
}

/// Says loudly what `--public` opens, and whether the embedded broker is open to all.
pub(super) fn warn_if_public(config: &Config, embedded_broker: bool) {
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
pub(super) async fn mqtt_tls(
    config: &Config,
) -> anyhow::Result<Option<Arc<tokio_rustls::rustls::ClientConfig>>> {
    if !config.mqtt.brokers.iter().any(|broker| broker.tls) {
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
}
