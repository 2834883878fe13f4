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
use std::collections::{HashMap, HashSet};
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
/// How long rumqttd's listeners get to come up once its thread started.
const LISTENERS_WAIT: Duration = Duration::from_secs(5);
/// Brokers started before giving up when one's listeners do not come up (a port found free
/// and taken by someone else before rumqttd bound it). A broker given up on keeps its thread.
const BROKER_ATTEMPTS: u32 = 3;

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
    #[error(
        "the embedded MQTT broker did not come to listen on {addr} ({attempts} attempts): \
         is something else there?"
    )]
    NotListening { addr: SocketAddr, attempts: u32 },
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

/// Binds the broker's public port (`config.listen`), for [`start`].
pub async fn bind(config: &EmbeddedBrokerConfig) -> Result<tokio::net::TcpListener, BrokerError> {
    tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| BrokerError::Listen {
            addr: config.listen,
            source,
        })
}

/// Starts the broker on its own threads (rumqttd runs its own runtimes), and its public port
/// (`public`, bound by the caller) on the caller's runtime; both run for the rest of the
/// process. Returns once rumqttd listens: a client turned away before then (campeer's own,
/// say) would take the broker for one that refuses its MQTT version.
pub async fn start(
    config: &EmbeddedBrokerConfig,
    public: tokio::net::TcpListener,
) -> Result<EmbeddedBroker, BrokerError> {
    let listen = public.local_addr().map_err(|source| BrokerError::Listen {
        addr: config.listen,
        source,
    })?;
    let mut attempt = 1;
    let (versions, ws_listen) = loop {
        let (versions, ws_listen) = start_rumqttd(config)?;
        let listeners = [versions.v311, versions.v5, ws_listen];
        match wait_until_listening(&listeners, LISTENERS_WAIT).await {
            None => break (versions, ws_listen),
            Some(addr) if attempt >= BROKER_ATTEMPTS => {
                return Err(BrokerError::NotListening {
                    addr,
                    attempts: attempt,
                });
            }
            Some(addr) => {
                tracing::warn!(
                    "the embedded MQTT broker did not come to listen on {addr}: starting it again"
                );
                attempt += 1;
            }
        }
    };
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

/// Starts a rumqttd on a thread of its own, with its listeners for each MQTT version on free
/// loopback ports and its WebSocket listener where configured. Its listeners come up moments
/// later, on rumqttd's own runtimes.
fn start_rumqttd(
    config: &EmbeddedBrokerConfig,
) -> Result<(VersionListeners, SocketAddr), BrokerError> {
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
    Ok((versions, ws_listen))
}

/// Waits until this process listens on every one of `addrs` (rumqttd, the only part of it
/// that binds them, has bound them): the first one it does not after `limit`, else `None`.
/// Reads the kernel's socket tables rather than connecting, which rumqttd would log as a
/// client that sent no CONNECT; where they cannot be read, it does not wait.
async fn wait_until_listening(addrs: &[SocketAddr], limit: Duration) -> Option<SocketAddr> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        // The tables once per look, for every address.
        let Ok(ports) = ports_listening_here() else {
            return None;
        };
        let missing = addrs
            .iter()
            .find(|addr| !ports.contains(&addr.port()))
            .copied();
        match missing {
            None => return None,
            Some(addr) if tokio::time::Instant::now() >= deadline => return Some(addr),
            Some(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The ports sockets of this process listen on (Linux: LISTEN entries in the calling
/// thread's network namespace whose inodes are among /proc/self/fd's sockets). The thread's
/// own tables, not /proc/net's, which are the main thread's: a thread may have entered a
/// namespace of its own (the tests' network lab does), and rumqttd's threads, started from
/// this one, are in its namespace.
fn ports_listening_here() -> std::io::Result<HashSet<u16>> {
    /// A TCP socket in the LISTEN state, in the table's `st` column.
    const TCP_LISTEN: &str = "0A";
    // Listening sockets in this namespace, by inode.
    let mut listening: HashMap<String, u16> = HashMap::new();
    for table in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        let table = match std::fs::read_to_string(table) {
            Ok(table) => table,
            // No IPv6 on this machine.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        listening.extend(table.lines().skip(1).filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (*state == TCP_LISTEN).then(|| (format!("socket:[{inode}]"), port))
        }));
    }
    let mut ours = HashSet::new();
    if listening.is_empty() {
        return Ok(ours);
    }
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        if let Some(port) = target.to_str().and_then(|target| listening.get(target)) {
            ours.insert(*port);
        }
    }
    Ok(ours)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_counts_as_ours_only_while_we_listen_on_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(ports_listening_here().unwrap().contains(&addr.port()));
        drop(listener);
        assert!(!ports_listening_here().unwrap().contains(&addr.port()));
        // Connected, not listening: a client's socket does not count.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let client_addr = client.local_addr().unwrap();
        assert!(
            !ports_listening_here()
                .unwrap()
                .contains(&client_addr.port())
        );
    }

    #[tokio::test]
    async fn the_broker_listens_once_started() {
        let config = EmbeddedBrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let public = bind(&config).await.expect("a free port");
        let broker = start(&config, public).await.expect("the broker starts");
        // rumqttd's own listeners are up before `start` returns: a client at once is served
        // by the broker, not turned away by the public port.
        let mut client = TcpStream::connect(broker.listen).await.unwrap();
        // MQTT 5 CONNECT: client id "t", clean start, keep-alive 10 s, no properties.
        let connect = [
            0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 10, 0, 0, 1, b't',
        ];
        client.write_all(&connect).await.unwrap();
        let mut connack = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut connack))
            .await
            .expect("an answer within 5 s")
            .expect("a CONNACK, not a closed connection");
        assert_eq!(connack[0], 0x20, "CONNACK");
        assert!(
            ports_listening_here()
                .unwrap()
                .contains(&broker.ws_listen.port())
        );
    }
}
