//! The embedded MQTT broker (rumqttd), for a zero-configuration first run: one plain MQTT
//! port that takes MQTT 3.1.1 and MQTT 5 alike, for campeer itself and any other client, and
//! a WebSocket listener (MQTT 3.1.1) for the page. Retained messages and last wills work on
//! it, which the status topic needs.
//!
//! rumqttd serves each MQTT version on a listener of its own; those two stay on loopback, and
//! the public port reads the start of each client's CONNECT ([`super::mqtt_version`]) and
//! splices the connection onto the listener for its version.

use super::mqtt_version::{self, MqttVersion};
use crate::config::EmbeddedBrokerConfig;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest MQTT payload the embedded broker accepts: the signaling limit plus framing.
const MAX_PAYLOAD: usize = 80 * 1024;
/// Connections the broker takes at once, on its public port as in its router.
const MAX_CONNECTIONS: usize = 256;
/// How long a new client may take to send the start of its CONNECT; the broker gives a
/// client as long for the whole of it.
const CONNECT_WAIT: Duration = Duration::from_millis(CONNECTION_TIMEOUT_MS as u64);
const CONNECTION_TIMEOUT_MS: u16 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "the embedded MQTT broker cannot listen on {addr}: {source} (is another broker \
         running there? Use it with --broker mqtt://HOST:PORT, or move this one with \
         --embedded-broker-listen / --embedded-broker-ws-listen)"
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the embedded MQTT broker thread: {0}")]
    Thread(std::io::Error),
}

/// The broker's own listeners, one per MQTT version, on loopback.
#[derive(Debug, Clone, Copy)]
struct VersionListeners {
    v311: SocketAddr,
    v5: SocketAddr,
}

impl VersionListeners {
    fn for_version(&self, version: MqttVersion) -> SocketAddr {
        match version {
            MqttVersion::V31 | MqttVersion::V311 => self.v311,
            MqttVersion::V5 => self.v5,
        }
    }
}

/// Where the running embedded broker listens.
#[derive(Debug, Clone)]
pub struct EmbeddedBroker {
    pub listen: SocketAddr,
    pub ws_listen: SocketAddr,
}

impl EmbeddedBroker {
    /// The address campeer's own MQTT client connects to.
    pub fn client_address(&self) -> (String, u16) {
        let ip = if self.listen.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            self.listen.ip().to_string()
        };
        (ip, self.listen.port())
    }
}

/// A free port on `addr`'s interface: rumqttd takes only a fixed address, so port 0 becomes a
/// port found here (taken from the kernel and released).
fn free_address(addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    TcpListener::bind(addr)
        .and_then(|listener| listener.local_addr())
        .map_err(|source| BrokerError::Listen { addr, source })
}

/// Starts the broker on its own threads (rumqttd runs its own runtimes), and its public port
/// on the caller's runtime; both run for the rest of the process. rumqttd's listeners come up
/// moments later; clients retry until they do.
pub async fn start(config: &EmbeddedBrokerConfig) -> Result<EmbeddedBroker, BrokerError> {
    let listen_error = |source| BrokerError::Listen {
        addr: config.listen,
        source,
    };
    let public = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(listen_error)?;
    let listen = public.local_addr().map_err(listen_error)?;
    let ws_listen = free_address(config.ws_listen)?;
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let versions = VersionListeners {
        v311: free_address(loopback)?,
        v5: free_address(loopback)?,
    };
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: CONNECTION_TIMEOUT_MS,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 256,
        auth: match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                Some(HashMap::from([(user.clone(), password.0.clone())]))
            }
            _ => None,
        },
        external_auth: None,
        dynamic_filters: true,
    };
    let server = |name: &str, listen: SocketAddr| rumqttd::ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: connections.clone(),
    };
    let broker_config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: MAX_CONNECTIONS,
            max_outgoing_packet_count: 200,
            // Signaling is small and short-lived; keep the commit log small for a Pi.
            max_segment_size: 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([(
            "mqtt311".to_owned(),
            server("campeer-mqtt-311", versions.v311),
        )])),
        v5: Some(HashMap::from([(
            "mqtt5".to_owned(),
            server("campeer-mqtt-5", versions.v5),
        )])),
        ws: Some(HashMap::from([(
            "ws".to_owned(),
            server("campeer-mqtt-ws", ws_listen),
        )])),
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::Builder::new()
        .name("campeer-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(broker_config);
            if let Err(e) = broker.start() {
                tracing::error!("the embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(BrokerError::Thread)?;
    tokio::spawn(serve_public_port(public, versions));
    tracing::info!(
        "embedded MQTT broker on mqtt://{} (MQTT 3.1.1 and 5) and ws://{}{}",
        listen,
        ws_listen,
        if config.username.is_some() {
            " (password required)"
        } else {
            ""
        }
    );
    Ok(EmbeddedBroker { listen, ws_listen })
}

/// Takes clients on the public port, at most [`MAX_CONNECTIONS`] at once; each is handed to
/// the broker's listener for the MQTT version it asks for.
async fn serve_public_port(public: tokio::net::TcpListener, versions: VersionListeners) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused: u64 = 0;
    loop {
        let (client, peer) = match public.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!("the embedded broker could not accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refused += 1;
            // Logged at 1, 2, 4, 8 ... so that a flood of connections cannot flood the log.
            if refused.is_power_of_two() {
                tracing::warn!(
                    "the embedded broker refused {peer}: it holds {MAX_CONNECTIONS} connections \
                     already ({refused} refused so far)"
                );
            }
            continue;
        };
        tokio::spawn(async move {
            if let Err(e) = splice_by_version(client, versions).await {
                tracing::debug!("embedded broker connection from {peer}: {e}");
            }
            drop(slot);
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum SpliceError {
    #[error("no CONNECT within {0:?}")]
    Slow(Duration),
    #[error("closed before its CONNECT")]
    Closed,
    #[error(transparent)]
    Sniff(#[from] mqtt_version::SniffError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads enough of a client's CONNECT to know its version, then joins the client to the
/// broker's listener for that version until either side closes.
async fn splice_by_version(
    mut client: TcpStream,
    versions: VersionListeners,
) -> Result<(), SpliceError> {
    client.set_nodelay(true)?;
    let mut start = [0u8; mqtt_version::ENOUGH_BYTES];
    let mut read = 0;
    let version = tokio::time::timeout(CONNECT_WAIT, async {
        loop {
            if let Some(version) = mqtt_version::sniff(start.get(..read).unwrap_or_default())? {
                return Ok(version);
            }
            let Some(free) = start.get_mut(read..).filter(|free| !free.is_empty()) else {
                return Err(SpliceError::Closed);
            };
            match client.read(free).await? {
                0 => return Err(SpliceError::Closed),
                n => read += n,
            }
        }
    })
    .await
    .map_err(|_| SpliceError::Slow(CONNECT_WAIT))??;
    let mut broker = TcpStream::connect(versions.for_version(version)).await?;
    broker.set_nodelay(true)?;
    broker
        .write_all(start.get(..read).unwrap_or_default())
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut broker).await?;
    Ok(())
}
