//! The RTSP listener: one task per reader carries out what its [`Exchange`] decides, and sends
//! it the one encode's frames (and the microphone's Opus) stamped by its own [`TrackSender`]s.
//! Every reader is bounded: at most `rtsp.max_readers` are served at once (one more is answered
//! 503), a message may take 16 KiB, and a reader that takes no bytes for [`WRITE_STALL`] is
//! dropped; what it did not take waits in its socket's buffer, never in campeer's memory.

use super::describe::{AUDIO_PAYLOAD_TYPE, ParameterSets, VIDEO_PAYLOAD_TYPE, describe};
use super::digest::{Credentials, DigestAuth};
use super::exchange::{self, Action, Exchange, Lower, Offer, Track};
use super::framing::{FramingError, Incoming, MessageReader};
use super::sender::{Outgoing, TrackSender};
use crate::media::audio_hub::{AudioHub, AudioSubscription};
use crate::media::hub::{Subscription, VideoHub};
use crate::metrics::RtspFigures;
use crate::protocol::VideoCodec;
use rtsp_types::{Method, Request, Response};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

/// A reader that takes none of what it is sent for this long is dropped.
pub const WRITE_STALL: Duration = Duration::from_secs(5);
/// How long a DESCRIBE waits for a keyframe, to give the stream's parameter sets, when the
/// camera was idle: about what it takes to open one. Past it the description goes without
/// them (they come in band with every keyframe anyway).
const FIRST_KEYFRAME_WAIT: Duration = Duration::from_secs(3);
/// A connection turned away is read this long for a request to answer 503 to.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);
/// Connections being turned away at once; past that they are closed unanswered, so a flood of
/// them costs no more than this many tasks.
const MAX_REFUSING: usize = 32;
/// The kernel's send buffer for each reader's connection: over a second of video at the
/// rates campeer sends, fixed so that a reader that stops reading holds no more than this (the
/// kernel would otherwise let it grow to megabytes) and is found out within seconds.
const SEND_BUFFER: usize = 256 * 1024;
/// How much is read from a connection at a time.
const READ_CHUNK: usize = 4096;
/// A connection that has not sent one whole request by then is closed: it would hold a
/// reader's place (a flood of idle connections, a port scanner) for a session's timeout.
pub const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(10);
/// How often a reader's session is checked for having timed out.
const TIMEOUT_CHECK: Duration = Duration::from_secs(1);

/// A device RTSP serves, as `rtsp://HOST:PORT/<id>`.
#[derive(Clone)]
pub struct RtspDevice {
    pub id: String,
    pub video: VideoHub,
    pub audio: Option<AudioHub>,
}

/// What the listener needs besides its socket.
pub struct RtspSettings {
    pub max_readers: usize,
    /// Digest credentials readers must give, if any.
    pub credentials: Option<Credentials>,
}

/// A running RTSP listener; dropping it stops accepting (readers being served finish their
/// current write and end as their tasks see the listener gone).
pub struct RtspServer {
    pub local_addr: SocketAddr,
    /// The RTP and RTCP ports readers over UDP are sent from.
    pub udp_ports: Option<(u16, u16)>,
    /// Accepts connections and owns every reader's task: ending it ends them all.
    task: JoinHandle<()>,
    drain: Option<JoinHandle<()>>,
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(drain) = &self.drain {
            drain.abort();
        }
    }
}

/// The server's UDP sockets, shared by every reader over UDP.
struct UdpPair {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

/// What every reader's task shares.
struct Shared {
    devices: HashMap<String, RtspDevice>,
    auth: Option<Arc<DigestAuth>>,
    udp: Option<UdpPair>,
    figures: watch::Sender<RtspFigures>,
}

impl RtspServer {
    /// Serves `devices` on `listener` until dropped, keeping `figures` told of its readers.
    pub async fn start(
        listener: TcpListener,
        devices: Vec<RtspDevice>,
        settings: RtspSettings,
        figures: watch::Sender<RtspFigures>,
    ) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let udp = match bind_udp_pair(local_addr).await {
            Ok(pair) => Some(pair),
            Err(e) => {
                tracing::warn!("RTSP over UDP is off: cannot bind its ports ({e}); TCP serves");
                None
            }
        };
        let udp_ports = match &udp {
            Some(pair) => Some((
                pair.rtp.local_addr()?.port(),
                pair.rtcp.local_addr()?.port(),
            )),
            None => None,
        };
        figures.send_modify(|f| {
            f.readers = devices.iter().map(|d| (d.id.clone(), 0)).collect();
        });
        let mut secret = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut secret);
        let shared = Arc::new(Shared {
            devices: devices.into_iter().map(|d| (d.id.clone(), d)).collect(),
            auth: settings
                .credentials
                .map(|credentials| Arc::new(DigestAuth::new(credentials, &secret))),
            udp,
            figures,
        });
        // Readers' RTCP over UDP is read and let go: sessions stay alive by their keep-alives,
        // which every reader sends, so nothing piles up in the socket.
        let drain = shared
            .udp
            .is_some()
            .then(|| tokio::spawn(drain(Arc::clone(&shared))));
        let task = tokio::spawn(accept(
            listener,
            shared,
            Arc::new(Semaphore::new(settings.max_readers)),
            udp_ports,
        ));
        Ok(Self {
            local_addr,
            udp_ports,
            task,
            drain,
        })
    }
}

/// An even port for RTP and the next one for RTCP, as RFC 3550 §11 asks (some readers assume
/// it), on the listener's address.
async fn bind_udp_pair(listener: SocketAddr) -> std::io::Result<UdpPair> {
    let mut last_error = None;
    for _ in 0..16 {
        let rtp = UdpSocket::bind(SocketAddr::new(listener.ip(), 0)).await?;
        let port = rtp.local_addr()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        match UdpSocket::bind(SocketAddr::new(listener.ip(), port + 1)).await {
            Ok(rtcp) => return Ok(UdpPair { rtp, rtcp }),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no free pair of ports")))
}

async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    readers: Arc<Semaphore>,
    udp_ports: Option<(u16, u16)>,
) {
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut refusals = RefusalLog::default();
    // Every reader's and refusal's task: dropped with this task, they end with it.
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = tasks.join_next() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!("RTSP: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match Arc::clone(&readers).try_acquire_owned() {
            Ok(permit) => {
                let reader = Reader::new(Arc::clone(&shared), peer, udp_ports);
                tasks.spawn(reader.serve(stream, permit));
            }
            Err(_) => {
                shared.figures.send_modify(|f| f.refused += 1);
                refusals.turned_away(peer, Instant::now());
                if let Ok(permit) = Arc::clone(&refusing).try_acquire_owned() {
                    tasks.spawn(refuse(stream, permit));
                }
            }
        }
    }
}

/// How often turning readers away is logged: a flood of connections must not flood the log.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Says that readers are being turned away, once per [`REFUSAL_LOG_INTERVAL`] with how many.
#[derive(Default)]
struct RefusalLog {
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    fn turned_away(&mut self, peer: SocketAddr, now: Instant) {
        let due = self
            .logged_at
            .is_none_or(|at| now.saturating_duration_since(at) >= REFUSAL_LOG_INTERVAL);
        if !due {
            self.unlogged += 1;
            return;
        }
        let others = std::mem::take(&mut self.unlogged);
        self.logged_at = Some(now);
        tracing::warn!(
            "RTSP: turning {peer} away ({others} more since the last such message): serving as \
             many readers as rtsp.max_readers allows"
        );
    }
}

/// Reads and forgets what readers send to the RTCP port, for as long as the server runs.
async fn drain(shared: Arc<Shared>) {
    let Some(udp) = &shared.udp else {
        return;
    };
    let mut buffer = [0u8; 1500];
    loop {
        if udp.rtcp.recv_from(&mut buffer).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Answers a turned-away connection's first request with 503, then closes it.
async fn refuse(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let answer = async {
        let mut messages = MessageReader::default();
        let mut buffer = [0u8; READ_CHUNK];
        loop {
            let read = stream.read(&mut buffer).await.ok()?;
            messages.push(buffer.get(..read)?).ok()?;
            if let Some(Incoming::Request(request)) = messages.next_message().ok()? {
                return Some(request);
            }
            if read == 0 {
                return None;
            }
        }
    };
    if let Ok(Some(request)) = tokio::time::timeout(REFUSAL_WAIT, answer).await {
        let mut bytes = Vec::new();
        if exchange::busy(&request).write(&mut bytes).is_ok() {
            let _ = tokio::time::timeout(REFUSAL_WAIT, stream.write_all(&bytes)).await;
        }
    }
}

/// Why a reader's connection ended.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("it hung up")]
    HungUp,
    #[error("its session timed out")]
    TimedOut,
    #[error("it sent no request within {}s", FIRST_REQUEST_WAIT.as_secs())]
    Silent,
    #[error("it stopped reading for {}s", WRITE_STALL.as_secs())]
    Stalled,
    #[error("{0}")]
    Framing(#[from] FramingError),
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the camera's stream ended")]
    StreamGone,
}

/// The device a reader described or set up, and its claim on the device's video.
struct Feed {
    device: RtspDevice,
    video: Subscription,
    offer: Offer,
    /// Counts the reader among the device's while it lives.
    _counted: Counted,
}

/// One reader among a device's, for the metrics, while it lives.
struct Counted {
    shared: Arc<Shared>,
    device: String,
}

impl Counted {
    fn new(shared: Arc<Shared>, device: String) -> Self {
        shared
            .figures
            .send_modify(|f| adjust(f, &device, |n| n + 1));
        Self { shared, device }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let device = &self.device;
        self.shared
            .figures
            .send_modify(|f| adjust(f, device, |n| n.saturating_sub(1)));
    }
}

fn adjust(figures: &mut RtspFigures, device: &str, change: impl Fn(u64) -> u64) {
    if let Some((_, readers)) = figures.readers.iter_mut().find(|(id, _)| id == device) {
        *readers = change(*readers);
    }
}

/// What a playing reader is sent.
#[derive(Default)]
struct Senders {
    video: Option<TrackSender>,
    audio: Option<(TrackSender, Option<AudioSubscription>)>,
    playing: bool,
}

/// One reader's connection.
struct Reader {
    shared: Arc<Shared>,
    peer: SocketAddr,
    exchange: Exchange,
    feed: Option<Feed>,
    senders: Senders,
}

impl Reader {
    fn new(shared: Arc<Shared>, peer: SocketAddr, udp_ports: Option<(u16, u16)>) -> Self {
        let session = format!("{:016x}", rand::random::<u64>());
        let exchange = Exchange::new(session, Instant::now(), shared.auth.clone(), udp_ports);
        Self {
            shared,
            peer,
            exchange,
            feed: None,
            senders: Senders::default(),
        }
    }

    async fn serve(mut self, stream: TcpStream, _permit: OwnedSemaphorePermit) {
        let peer = self.peer;
        let _ = stream.set_nodelay(true);
        if let Err(e) = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER) {
            tracing::debug!("RTSP: cannot size {peer}'s send buffer: {e}");
        }
        let (mut read_half, mut write_half) = stream.into_split();
        let ended = self.run(&mut read_half, &mut write_half).await;
        match ended {
            Ended::HungUp => tracing::debug!("RTSP reader {peer} hung up"),
            // Players close without reading the TEARDOWN's answer: that is hanging up too.
            Ended::Io(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                tracing::debug!("RTSP reader {peer} hung up ({e})");
            }
            other => tracing::info!("RTSP reader {peer} dropped: {other}"),
        }
    }

    async fn run(
        &mut self,
        read_half: &mut tokio::net::tcp::OwnedReadHalf,
        write_half: &mut OwnedWriteHalf,
    ) -> Ended {
        let mut messages = MessageReader::default();
        let mut buffer = vec![0u8; READ_CHUNK];
        let mut check = tokio::time::interval(TIMEOUT_CHECK);
        let connected = Instant::now();
        let mut requests = 0u64;
        loop {
            tokio::select! {
                read = read_half.read(&mut buffer) => {
                    let read = match read {
                        Ok(0) => return Ended::HungUp,
                        Ok(read) => read,
                        Err(e) => return e.into(),
                    };
                    let Some(bytes) = buffer.get(..read) else {
                        return Ended::HungUp;
                    };
                    if let Err(e) = messages.push(bytes) {
                        return e.into();
                    }
                    loop {
                        match messages.next_message() {
                            Ok(None) => break,
                            Ok(Some(Incoming::Data { .. })) => self.exchange.heard(Instant::now()),
                            Ok(Some(Incoming::Request(request))) => {
                                requests += 1;
                                if let Err(ended) = self.answer(&request, write_half).await {
                                    return ended;
                                }
                            }
                            Err(e) => return e.into(),
                        }
                    }
                }
                frame = next_frame(&mut self.feed, self.senders.playing && self.senders.video.is_some()) => {
                    let Some(frame) = frame else {
                        return Ended::StreamGone;
                    };
                    let Some(sender) = &mut self.senders.video else {
                        continue;
                    };
                    let out = sender.frame(
                        Instant::now(),
                        frame.rtp_ticks,
                        frame.capture_unix_ms.saturating_mul(1000),
                        &frame.payloads,
                        true,
                    );
                    if let Err(ended) = self.send(out, write_half).await {
                        return ended;
                    }
                }
                packet = next_packet(&mut self.senders) => {
                    let Some(packet) = packet else {
                        // The microphone's hub is gone (shutdown): video goes on.
                        if let Some((_, subscription)) = &mut self.senders.audio {
                            *subscription = None;
                        }
                        continue;
                    };
                    let Some((sender, _)) = &mut self.senders.audio else {
                        continue;
                    };
                    let captured = unix_micros(SystemTime::now())
                        .saturating_sub(u64::try_from(packet.capture_to_send.as_micros()).unwrap_or(0));
                    let payloads = std::slice::from_ref(&packet.payload);
                    let out = sender.frame(Instant::now(), packet.rtp_ticks, captured, payloads, false);
                    if let Err(ended) = self.send(out, write_half).await {
                        return ended;
                    }
                }
                _ = check.tick() => {
                    let now = Instant::now();
                    if requests == 0 && now.saturating_duration_since(connected) >= FIRST_REQUEST_WAIT {
                        return Ended::Silent;
                    }
                    if self.exchange.timed_out(now) {
                        return Ended::TimedOut;
                    }
                }
            }
        }
    }

    /// Answers one request and carries out what the exchange decided.
    async fn answer(
        &mut self,
        request: &Request<Vec<u8>>,
        write_half: &mut OwnedWriteHalf,
    ) -> Result<(), Ended> {
        let now_secs = unix_micros(SystemTime::now()) / 1_000_000;
        if matches!(request.method(), Method::Describe | Method::Setup)
            && self.exchange.admits(request, now_secs)
            && let Some((device, _)) = exchange::target(request)
        {
            self.prepare(&device, write_half).await;
        }
        let offer = self
            .feed
            .as_ref()
            .map(|feed| (feed.device.id.clone(), feed.offer.clone()));
        let (response, action) =
            self.exchange
                .handle(request, Instant::now(), now_secs, &|device: &str| {
                    offer
                        .as_ref()
                        .filter(|(id, _)| id == device)
                        .map(|(_, offer)| offer.clone())
                });
        write_response(&response, write_half).await?;
        match action {
            Action::None => {}
            Action::Play { tracks, .. } => self.play(&tracks),
            Action::Pause => {
                self.senders.playing = false;
                if let Some((_, subscription)) = &mut self.senders.audio {
                    *subscription = None;
                }
            }
            Action::Stop => {
                self.senders = Senders::default();
                self.feed = None;
            }
        }
        Ok(())
    }

    /// Claims `device`'s video for this reader, unless it already has, and describes it with
    /// the stream's parameter sets (waiting briefly for a keyframe if the camera was idle).
    async fn prepare(&mut self, device: &str, write_half: &OwnedWriteHalf) {
        if self
            .feed
            .as_ref()
            .is_some_and(|feed| feed.device.id == device)
        {
            return;
        }
        if self.senders.playing {
            // One device per session: another one's description is not this reader's to have.
            return;
        }
        let Some(found) = self.shared.devices.get(device).cloned() else {
            self.feed = None;
            return;
        };
        let mut video = found.video.subscribe(VideoCodec::H264);
        video.start_viewing();
        let keyframe = tokio::time::timeout(FIRST_KEYFRAME_WAIT, video.next_frame()).await;
        let parameter_sets = match keyframe {
            Ok(Some(frame)) => ParameterSets::from_payloads(&frame.payloads),
            _ => {
                tracing::info!(
                    "RTSP: no keyframe of {device:?} within {}s: describing it without its \
                     parameter sets",
                    FIRST_KEYFRAME_WAIT.as_secs()
                );
                None
            }
        };
        let origin = write_half
            .local_addr()
            .map(|addr| addr.ip())
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        let channels = found.audio.as_ref().map(|audio| audio.settings().channels);
        let offer = describe(device, origin, parameter_sets.as_ref(), channels);
        let counted = Counted::new(Arc::clone(&self.shared), device.to_owned());
        self.feed = Some(Feed {
            device: found,
            video,
            offer,
            _counted: counted,
        });
    }

    /// Starts (or resumes) sending the tracks set up, from a keyframe.
    fn play(&mut self, tracks: &[(Track, Lower)]) {
        let Some(feed) = &mut self.feed else {
            return;
        };
        for (track, lower) in tracks {
            match track {
                Track::Video => {
                    if self.senders.video.is_none() {
                        self.senders.video = Some(TrackSender::new(VIDEO_PAYLOAD_TYPE, *lower));
                    }
                }
                Track::Audio => {
                    let Some(hub) = &feed.device.audio else {
                        continue;
                    };
                    let (_, subscription) = self.senders.audio.get_or_insert_with(|| {
                        (TrackSender::new(AUDIO_PAYLOAD_TYPE, *lower), None)
                    });
                    if subscription.is_none() {
                        *subscription = Some(hub.subscribe());
                    }
                }
            }
        }
        feed.video.start_viewing();
        self.senders.playing = true;
        let over = if tracks
            .iter()
            .any(|(_, lower)| matches!(lower, Lower::Udp { .. }))
        {
            "UDP"
        } else {
            "TCP"
        };
        tracing::info!(
            "RTSP reader {} plays {:?} over {over}",
            self.peer,
            feed.device.id
        );
    }

    /// Writes packets to the connection, or sends them as datagrams to the reader's address.
    async fn send(&self, out: Vec<Outgoing>, write_half: &mut OwnedWriteHalf) -> Result<(), Ended> {
        let mut interleaved = Vec::new();
        for packet in out {
            match packet {
                Outgoing::Interleaved(bytes) => interleaved.extend_from_slice(&bytes),
                Outgoing::Rtp { port, packet } => self.datagram(false, port, &packet),
                Outgoing::Rtcp { port, packet } => self.datagram(true, port, &packet),
            }
        }
        if interleaved.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(WRITE_STALL, write_half.write_all(&interleaved)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(Ended::Stalled),
        }
    }

    /// A datagram to the reader's own address (never elsewhere, whatever ports it named);
    /// one the socket cannot take now is dropped, as UDP would.
    fn datagram(&self, rtcp: bool, port: u16, packet: &[u8]) {
        let Some(udp) = &self.shared.udp else {
            return;
        };
        let socket = if rtcp { &udp.rtcp } else { &udp.rtp };
        let _ = socket.try_send_to(packet, SocketAddr::new(self.peer.ip(), port));
    }
}

/// The next frame for a reader playing video; never, for one that is not.
async fn next_frame(
    feed: &mut Option<Feed>,
    playing: bool,
) -> Option<Arc<crate::media::hub::EncodedFrame>> {
    match feed {
        Some(feed) if playing => feed.video.next_frame().await,
        _ => std::future::pending().await,
    }
}

/// The next Opus packet for a reader playing audio; never, for one that is not.
async fn next_packet(senders: &mut Senders) -> Option<Arc<crate::media::audio_hub::EncodedAudio>> {
    match &mut senders.audio {
        Some((_, Some(subscription))) if senders.playing => subscription.next_packet().await,
        _ => std::future::pending().await,
    }
}

async fn write_response(
    response: &Response<Vec<u8>>,
    write_half: &mut OwnedWriteHalf,
) -> Result<(), Ended> {
    let mut bytes = Vec::new();
    if response.write(&mut bytes).is_err() {
        return Err(Ended::Io(std::io::Error::other("cannot write a response")));
    }
    match tokio::time::timeout(WRITE_STALL, write_half.write_all(&bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(Ended::Stalled),
    }
}

fn unix_micros(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
