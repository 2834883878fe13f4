//! campeer's own relay through TURN servers it reaches only over TCP or TLS.
//!
//! webrtc 0.21 allocates relays from its UDP sockets only, yet many networks a camera sits on
//! let no UDP out, and TURN over TCP (port 3478) or TLS (`turns:`, often port 443) is how
//! media still gets through. So for every such URL in `ice.servers` campeer runs a small
//! bridge: a UDP socket on 127.0.0.1 that webrtc is told is the TURN server
//! (`turn:127.0.0.1:PORT?transport=udp`), and behind it one TCP (or TLS) connection to the real
//! server per local client, carrying the same STUN and ChannelData messages in stream framing
//! ([`framing`]). The server sees an ordinary TURN-over-TCP client; the allocation it grants
//! is relayed UDP as always, so viewers reach it like any relay candidate.
//!
//! Which URL goes which way is [`route_url`]; which client owns which connection is
//! [`clients::Clients`]; this module only moves bytes.

pub mod clients;
pub mod framing;

use crate::config::{IceConfig, IceServer};
use clients::{Clients, Route};
use rtc::ice::url::{ProtoType, SchemeType, Url};
use rustls_pki_types::ServerName;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// Connections one bridge keeps at most: a few local sockets per viewer, for the most viewers
/// campeer serves, with room to spare.
const MAX_CLIENTS: usize = 512;
/// A client quiet this long is gone: a live TURN client refreshes its allocation every five
/// minutes at the latest.
const CLIENT_IDLE_LIMIT: Duration = Duration::from_secs(6 * 60);
/// How often quiet clients are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Datagrams waiting for one connection (while it connects, or behind a slow write). A TURN
/// client retransmits its requests and media tolerates loss, so beyond this they are dropped.
const CONNECTION_QUEUE: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A write the server has not taken in this long means the connection is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection failures logged at most once per this long per bridge (each viewer's
/// allocation retries on its own, and one line per retry would drown the log).
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A TURN server campeer reaches over a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTarget {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl std::fmt::Display for StreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let transport = if self.tls { "TLS" } else { "TCP" };
        if self.host.contains(':') {
            write!(f, "[{}]:{} over {transport}", self.host, self.port)
        } else {
            write!(f, "{}:{} over {transport}", self.host, self.port)
        }
    }
}

/// How campeer's WebRTC stack can use one ICE server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlRoute {
    /// webrtc uses it as it is (STUN, TURN over UDP).
    Direct,
    /// Through a bridge to this server.
    Bridged(StreamTarget),
    /// Not at all, for this reason.
    Unusable(String),
}

pub fn route_url(url: &str) -> UrlRoute {
    let parsed = match Url::parse_url(url) {
        Ok(parsed) => parsed,
        Err(e) => return UrlRoute::Unusable(format!("it cannot be parsed: {e}")),
    };
    match (parsed.scheme, parsed.proto) {
        (SchemeType::Stun, _) | (SchemeType::Turn, ProtoType::Udp) => UrlRoute::Direct,
        (SchemeType::Stuns, _) => UrlRoute::Unusable(
            "STUN over TLS finds no UDP address, and campeer's media is UDP".into(),
        ),
        (SchemeType::Turn | SchemeType::Turns, ProtoType::Tcp) => UrlRoute::Bridged(StreamTarget {
            host: parsed.host,
            port: parsed.port,
            tls: parsed.scheme == SchemeType::Turns,
        }),
        (SchemeType::Turns, _) => UrlRoute::Unusable("TURN over DTLS is not supported".into()),
        _ => UrlRoute::Unusable("its scheme or transport is unknown".into()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the local socket for TURN to {target}: {source}")]
    Bind {
        target: StreamTarget,
        source: io::Error,
    },
    #[error("TLS for turns: servers: {0}")]
    Tls(#[from] crate::tls::TlsSetupError),
    #[error("reading the TLS certificates failed: {0}")]
    Reading(#[from] tokio::task::JoinError),
}

/// The bridges campeer runs; they stop when this is dropped.
#[derive(Debug, Default)]
pub struct Bridges {
    tasks: Vec<JoinHandle<()>>,
}

impl Bridges {
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

impl Drop for Bridges {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts a bridge for every TURN URL campeer can reach only over a stream, and returns the
/// ICE configuration as webrtc is to see it: those URLs pointing at their bridges, unusable
/// URLs left out (each logged once, with why).
pub async fn start(ice: &IceConfig) -> Result<(IceConfig, Bridges), StartError> {
    let mut bridges = Bridges::default();
    if ice.loopback_only {
        return Ok((ice.clone(), bridges));
    }
    let mut tls: Option<TlsConnector> = None;
    let mut servers = Vec::with_capacity(ice.servers.len());
    for server in &ice.servers {
        let mut urls = Vec::with_capacity(server.urls.len());
        for url in &server.urls {
            match route_url(url) {
                UrlRoute::Direct => urls.push(url.clone()),
                UrlRoute::Unusable(why) => {
                    tracing::warn!("ICE server {url} is skipped: {why}");
                }
                UrlRoute::Bridged(target) => {
                    // One TLS setup (reading the certificates) serves every turns: URL.
                    if target.tls && tls.is_none() {
                        tls = Some(tls_connector(ice.tls_ca_file.clone()).await?);
                    }
                    let connector = tls.clone().filter(|_| target.tls);
                    let (local, task) = Bridge::start(target.clone(), connector).await?;
                    tracing::info!(
                        "TURN server {url}: campeer relays through it over {} (bridged at \
                         {local})",
                        if target.tls { "TLS" } else { "TCP" }
                    );
                    bridges.tasks.push(task);
                    urls.push(format!("turn:{local}?transport=udp"));
                }
            }
        }
        if !urls.is_empty() {
            servers.push(IceServer {
                urls,
                username: server.username.clone(),
                credential: server.credential.clone(),
            });
        }
    }
    let rewritten = IceConfig {
        servers,
        ..ice.clone()
    };
    Ok((rewritten, bridges))
}

/// TLS to `turns:` servers, checked against the system's certificates and those in
/// `ice.tls_ca_file`. Reading the files blocks, so it runs off the async workers.
async fn tls_connector(ca_file: Option<PathBuf>) -> Result<TlsConnector, StartError> {
    let config = tokio::task::spawn_blocking(move || {
        crate::tls::client_config("ice.tls_ca_file", ca_file.as_deref(), None)
    })
    .await??;
    Ok(TlsConnector::from(config))
}

/// Why one connection to the TURN server ended.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("no connection within {} s", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout,
    #[error("{0:?} is not a name a TLS certificate can be checked against")]
    ServerName(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
    #[error("the server stopped taking data for {} s", WRITE_TIMEOUT.as_secs())]
    WriteTimeout,
    #[error("the server closed the connection")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the server's stream is out of step: {0}")]
    Framing(#[from] framing::FramingError),
}

/// A connection that ended, named by its client and generation.
struct Ended {
    client: SocketAddr,
    generation: u64,
    outcome: Result<(), ConnectionError>,
}

struct Bridge {
    socket: Arc<UdpSocket>,
    target: StreamTarget,
    tls: Option<TlsConnector>,
    clients: Clients<mpsc::Sender<Vec<u8>>>,
    ended_tx: mpsc::Sender<Ended>,
    last_failure_logged: Option<Instant>,
    dropped: u64,
}

impl Bridge {
    async fn start(
        target: StreamTarget,
        tls: Option<TlsConnector>,
    ) -> Result<(SocketAddr, JoinHandle<()>), StartError> {
        let bind = |source| StartError::Bind {
            target: target.clone(),
            source,
        };
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(bind)?;
        let local = socket.local_addr().map_err(bind)?;
        // Every connection reports its end; the capacity of the table bounds them.
        let (ended_tx, ended_rx) = mpsc::channel(MAX_CLIENTS);
        let bridge = Self {
            socket: Arc::new(socket),
            target,
            tls,
            clients: Clients::new(MAX_CLIENTS, CLIENT_IDLE_LIMIT),
            ended_tx,
            last_failure_logged: None,
            dropped: 0,
        };
        Ok((local, tokio::spawn(bridge.run(ended_rx))))
    }

    async fn run(mut self, mut ended_rx: mpsc::Receiver<Ended>) {
        let mut datagram = vec![0u8; framing::MAX_MESSAGE];
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tokio::select! {
                received = self.socket.recv_from(&mut datagram) => match received {
                    Ok((len, from)) => {
                        if let Some(bytes) = datagram.get(..len) {
                            self.on_datagram(bytes, from);
                        }
                    }
                    Err(e) => {
                        // Nothing on a loopback UDP socket fails for long; do not spin.
                        tracing::debug!("TURN bridge to {}: {e}", self.target);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(ended) = ended_rx.recv() => self.on_ended(ended),
                _ = sweep.tick() => {
                    for (client, _connection) in self.clients.expire(Instant::now()) {
                        tracing::debug!("TURN bridge to {}: {client} went quiet", self.target);
                    }
                }
            }
        }
    }

    fn on_datagram(&mut self, datagram: &[u8], client: SocketAddr) {
        let now = Instant::now();
        match self.clients.route(client, now) {
            Route::Existing(connection) => {
                if connection.try_send(datagram.to_vec()).is_err() {
                    self.dropped += 1;
                    if self.dropped.is_power_of_two() {
                        tracing::debug!(
                            "TURN bridge to {}: {} datagrams dropped behind slow connections",
                            self.target,
                            self.dropped
                        );
                    }
                }
            }
            Route::Full => {
                self.log_failure(now, format_args!("{client} refused: {MAX_CLIENTS} clients"));
            }
            Route::Open => {
                let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
                // The first datagram waits in the queue while the connection opens.
                let _ = tx.try_send(datagram.to_vec());
                let generation = self.clients.insert(client, tx, now);
                let connection = Connection {
                    target: self.target.clone(),
                    tls: self.tls.clone(),
                    socket: Arc::clone(&self.socket),
                    client,
                };
                let ended_tx = self.ended_tx.clone();
                tokio::spawn(async move {
                    let outcome = connection.carry(rx).await;
                    // The bridge is gone when this fails: nothing left to tell.
                    let _ = ended_tx
                        .send(Ended {
                            client,
                            generation,
                            outcome,
                        })
                        .await;
                });
            }
        }
    }

    fn on_ended(&mut self, ended: Ended) {
        self.clients.ended(ended.client, ended.generation);
        match ended.outcome {
            Ok(()) | Err(ConnectionError::Closed) => tracing::debug!(
                "TURN bridge to {}: the connection for {} ended",
                self.target,
                ended.client
            ),
            Err(e) => {
                let now = Instant::now();
                self.log_failure(now, format_args!("{e}"));
            }
        }
    }

    fn log_failure(&mut self, now: Instant, what: std::fmt::Arguments<'_>) {
        let due = self
            .last_failure_logged
            .is_none_or(|at| now.saturating_duration_since(at) >= FAILURE_LOG_INTERVAL);
        if due {
            self.last_failure_logged = Some(now);
            tracing::warn!(
                "TURN server {}: {what} (campeer has no relay through it until this clears; \
                 logged at most once a minute)",
                self.target
            );
        } else {
            tracing::debug!("TURN server {}: {what}", self.target);
        }
    }
}

/// One local client's connection to the server.
struct Connection {
    target: StreamTarget,
    tls: Option<TlsConnector>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
}

impl Connection {
    async fn carry(self, outbound: mpsc::Receiver<Vec<u8>>) -> Result<(), ConnectionError> {
        let address = (self.target.host.as_str(), self.target.port);
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| ConnectionError::ConnectTimeout)?
            .map_err(ConnectionError::Connect)?;
        // Small messages (binding checks, audio) must not wait for Nagle.
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => self.pump(tcp, outbound).await,
            Some(connector) => {
                let name = ServerName::try_from(self.target.host.clone())
                    .map_err(|_| ConnectionError::ServerName(self.target.host.clone()))?;
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| ConnectionError::ConnectTimeout)?
                    .map_err(ConnectionError::Handshake)?;
                self.pump(stream, outbound).await
            }
        }
    }

    /// Moves messages both ways until either side ends: the client's datagrams framed onto the
    /// stream, the server's messages off it as datagrams to the client.
    async fn pump<S: AsyncRead + AsyncWrite>(
        &self,
        stream: S,
        mut outbound: mpsc::Receiver<Vec<u8>>,
    ) -> Result<(), ConnectionError> {
        let (mut reader, mut writer) = tokio::io::split(stream);
        // Grows to the largest message seen; most are under a packet.
        let mut framed = Vec::with_capacity(2048);
        let mut incoming = framing::StreamReader::default();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                datagram = outbound.recv() => {
                    let Some(datagram) = datagram else {
                        // The client went quiet and was forgotten.
                        let _ = writer.shutdown().await;
                        return Ok(());
                    };
                    framed.clear();
                    if let Err(e) = framing::to_stream(&datagram, &mut framed) {
                        tracing::debug!("not sent to TURN server {}: {e}", self.target);
                        continue;
                    }
                    tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&framed))
                        .await
                        .map_err(|_| ConnectionError::WriteTimeout)??;
                }
                read = reader.read(&mut chunk) => {
                    let len = read?;
                    if len == 0 {
                        return Err(ConnectionError::Closed);
                    }
                    incoming.push(chunk.get(..len).unwrap_or_default());
                    while let Some(message) = incoming.next_message()? {
                        self.socket.send_to(&message, self.client).await?;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn each_url_goes_the_way_campeer_can_use_it() {
        let bridged = |host: &str, port, tls| {
            UrlRoute::Bridged(StreamTarget {
                host: host.into(),
                port,
                tls,
            })
        };
        for (url, route) in [
            ("stun:10.0.0.1:3478", UrlRoute::Direct),
            ("turn:10.0.0.1:3478", UrlRoute::Direct),
            ("turn:10.0.0.1:3478?transport=udp", UrlRoute::Direct),
            (
                "turn:10.0.0.1:3478?transport=tcp",
                bridged("10.0.0.1", 3478, false),
            ),
            ("turns:turn.example:443", bridged("turn.example", 443, true)),
            (
                "turns:turn.example?transport=tcp",
                bridged("turn.example", 5349, true),
            ),
        ] {
            assert_eq!(route_url(url), route, "{url}");
        }
        for url in [
            "stuns:10.0.0.1:5349",
            "turns:10.0.0.1:5349?transport=udp",
            "turn:",
        ] {
            assert!(
                matches!(route_url(url), UrlRoute::Unusable(_)),
                "{url}: {:?}",
                route_url(url)
            );
        }
    }

    #[tokio::test]
    async fn bridged_urls_point_webrtc_at_their_bridges_and_unusable_ones_go() {
        let ice = IceConfig {
            servers: vec![
                IceServer {
                    urls: vec!["stun:10.0.0.1:3478".into(), "stuns:10.0.0.1:5349".into()],
                    username: None,
                    credential: None,
                },
                IceServer {
                    urls: vec![
                        "turn:10.0.0.1:3478?transport=udp".into(),
                        "turn:10.0.0.1:3478?transport=tcp".into(),
                    ],
                    username: Some("u".into()),
                    credential: Some(Secret("p".into())),
                },
            ],
            interfaces: vec![],
            loopback_only: false,
            tls_ca_file: None,
        };
        let (rewritten, bridges) = start(&ice).await.unwrap();
        assert_eq!(bridges.len(), 1);
        assert_eq!(rewritten.servers.len(), 2);
        assert_eq!(rewritten.servers[0].urls, ["stun:10.0.0.1:3478"]);
        let turn = &rewritten.servers[1];
        assert_eq!(turn.urls[0], "turn:10.0.0.1:3478?transport=udp");
        assert!(
            turn.urls[1].starts_with("turn:127.0.0.1:") && turn.urls[1].ends_with("?transport=udp"),
            "{:?}",
            turn.urls[1]
        );
        assert_eq!(turn.username.as_deref(), Some("u"));
        assert_eq!(
            turn.credential.as_ref().map(|c| c.0.as_str()),
            Some("p"),
            "the credential goes with the URL"
        );

        let loopback = IceConfig {
            loopback_only: true,
            ..ice
        };
        let (unchanged, none) = start(&loopback).await.unwrap();
        assert!(none.is_empty(), "no bridges when ICE stays on loopback");
        assert_eq!(unchanged.servers.len(), 2);
    }

    #[tokio::test]
    async fn a_ca_file_without_certificates_is_a_clear_error() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "not a certificate\n").unwrap();
        let Err(error) = tls_connector(Some(file.path().to_owned())).await else {
            panic!("a CA file without certificates was accepted");
        };
        assert!(
            matches!(
                error,
                StartError::Tls(crate::tls::TlsSetupError::CaFile { .. })
            ),
            "{error}"
        );
    }
}
