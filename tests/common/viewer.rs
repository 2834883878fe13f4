//! A test viewer that joins over MQTT exactly as a browser would (recvonly offer, trickle ICE),
//! receives RTP, reassembles H.264 or VP8 and decodes it, and the checks on what it decoded.

use crate::broker::{
    Broker, PREFIX, TopicWatcher, status_topic, subscribe_json_at, wait_until_online_at,
};
use crate::{fakecam, jitter, unix_ms_now, wait_for};
use openh264::formats::YUVSource;
use rtc::peer_connection::configuration::RTCOfferOptions;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
    register_default_interceptors,
};

/// The amplitude of one frequency in 48 kHz mono samples: the magnitude of a single DFT bin,
/// normalised so that a full sine of amplitude A reads about A/2. Written here, apart from
/// the daemon's code, so the tests check the sound independently.
pub fn tone_amplitude(samples: &[f32], frequency: f64) -> f64 {
    let step = std::f64::consts::TAU * frequency / 48_000.0;
    let (mut re, mut im) = (0.0f64, 0.0f64);
    for (n, &sample) in samples.iter().enumerate() {
        let angle = step * n as f64;
        re += f64::from(sample) * angle.cos();
        im -= f64::from(sample) * angle.sin();
    }
    (re * re + im * im).sqrt() / samples.len().max(1) as f64
}

/// Asserts that `frequency` dominates the last second of what the viewer decoded: louder than
/// silence and ten times stronger than any of a spread of other frequencies.
pub fn assert_tone(viewer: &TestViewer, frequency: f64) {
    let samples = viewer.snapshot(|s| {
        let n = s.audio_samples.len();
        s.audio_samples[n.saturating_sub(48_000)..].to_vec()
    });
    assert!(
        samples.len() >= 24_000,
        "only {} samples decoded",
        samples.len()
    );
    let wanted = tone_amplitude(&samples, frequency);
    assert!(wanted > 300.0, "{frequency} Hz is too quiet: {wanted:.1}");
    for other in [220.0, 330.0, 660.0, 880.0, 1500.0, 2000.0, 3000.0, 5000.0] {
        if (other - frequency).abs() < 50.0 {
            continue;
        }
        let strength = tone_amplitude(&samples, other);
        assert!(
            wanted > 10.0 * strength,
            "{frequency} Hz ({wanted:.1}) does not dominate {other} Hz ({strength:.1})"
        );
    }
}

/// A viewer as quick as can be: it sends `offer_sdp` as session `session` from its MQTT event
/// loop the instant the device's status says online, and counts the answers it gets.
pub struct QuickOfferer {
    pub answers: Arc<Mutex<usize>>,
    pub offered: Arc<Mutex<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl QuickOfferer {
    pub async fn start(broker: &Broker, device: &str, session: &str, offer_sdp: String) -> Self {
        let id = format!("quick-{}", rand::random::<u32>());
        let mut options = MqttOptions::new(id, "127.0.0.1", broker.port);
        options.set_max_packet_size(Some(256 * 1024));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let status = status_topic(device);
        let outbound = format!("{PREFIX}/{device}/out/{session}");
        let inbound = format!("{PREFIX}/{device}/in/{session}");
        for topic in [&status, &outbound] {
            client
                .subscribe(topic.as_str(), QoS::AtLeastOnce)
                .await
                .expect("queue subscribe");
        }
        let offer = json!({"type": "offer", "sdp": offer_sdp}).to_string();
        let answers = Arc::new(Mutex::new(0));
        let offered = Arc::new(Mutex::new(false));
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let (answers_sink, offered_sink) = (Arc::clone(&answers), Arc::clone(&offered));
        let task = tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            let mut subacks = 0;
            for _ in 0..10_000_000 {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subacks += 1;
                        if subacks == 2
                            && let Some(tx) = subscribed_tx.take()
                        {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Ok(value) = serde_json::from_slice::<Value>(&p.payload) else {
                            continue;
                        };
                        let mut offered = offered_sink.lock().unwrap();
                        if p.topic == status.as_bytes() && value["state"] == "online" && !*offered {
                            // No await: the offer leaves with the next write of this loop.
                            client
                                .try_publish(
                                    inbound.as_str(),
                                    QoS::AtLeastOnce,
                                    false,
                                    offer.clone(),
                                )
                                .expect("queue the offer");
                            *offered = true;
                        } else if p.topic == outbound.as_bytes() && value["type"] == "answer" {
                            *answers_sink.lock().unwrap() += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .expect("the broker acknowledges the subscriptions")
            .expect("subscriptions acknowledged");
        Self {
            answers,
            offered,
            task,
        }
    }

    pub fn answers(&self) -> usize {
        *self.answers.lock().unwrap()
    }

    pub fn offered(&self) -> bool {
        *self.offered.lock().unwrap()
    }
}

impl Drop for QuickOfferer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A decoded frame as the test viewer saw it.
#[derive(Debug, Clone)]
pub struct DecodedFrame {
    pub width: usize,
    pub height: usize,
    /// The capture time read from the timestamp squares.
    pub capture_ms: u64,
    /// Mean (Y, U, V) of each cell of an 8x6 grid over the picture, row by row.
    pub grid: Vec<(u8, u8, u8)>,
    pub decoded_at: Instant,
    /// The picture's RTP timestamp (90 kHz), which campeer derives from its capture time.
    pub rtp_timestamp: u32,
    /// Wall-clock time of decoding, to compare with `capture_ms` (same machine, same clock).
    pub decoded_unix_ms: u64,
}

#[derive(Debug, Default)]
pub struct ViewerState {
    pub frames: Vec<DecodedFrame>,
    pub decode_errors: usize,
    pub rtp_packets: usize,
    pub rtp_payload_bytes: usize,
    pub answers: usize,
    pub remote_candidates: usize,
    pub end_of_candidates: bool,
    pub errors: Vec<(String, String)>,
    pub hangups: usize,
    pub connected_at: Option<Instant>,
    pub offer_sent_at: Option<Instant>,
    pub answered_at: Option<Instant>,
    pub connection_states: Vec<String>,
    /// Every ICE connection state, in order (an ICE restart goes through checking again).
    pub ice_states: Vec<String>,
    pub payload_types: Vec<u8>,
    /// Opus packets received, and their decoded samples (mixed to mono, 48 kHz).
    pub audio_packets: usize,
    pub audio_samples: Vec<f32>,
    pub audio_decode_errors: usize,
    pub audio_payload_types: Vec<u8>,
    pub audio_rtp_timestamps: Vec<u32>,
    pub first_audio_at: Option<Instant>,
    /// The media stream ids of the tracks received, by kind.
    pub stream_ids: Vec<(String, String)>,
    /// Every candidate line campeer trickled.
    pub remote_candidate_lines: Vec<String>,
    /// How many of campeer's candidates came in its answer rather than trickled.
    pub answer_candidates: usize,
    /// Every candidate line this viewer gathered (and sent).
    pub local_candidate_lines: Vec<String>,
    /// Keyframe requests this viewer sent after giving up on a gap.
    pub plis_sent: usize,
    /// The video codec campeer answered with ("video/H264", "video/VP8"), once media flows.
    pub video_codec: Option<String>,
}

/// What any test viewer (the MQTT one, the WHEP player) has decoded so far, read the same
/// way whichever signaling brought it.
pub trait Watching {
    /// The state its receiving tasks fill in.
    fn seen(&self) -> &Mutex<ViewerState>;

    fn frames(&self) -> usize {
        self.seen().lock().unwrap().frames.len()
    }

    fn snapshot<T>(&self, read: impl FnOnce(&ViewerState) -> T) -> T
    where
        Self: Sized,
    {
        read(&self.seen().lock().unwrap())
    }

    /// Waits until `count` more frames than now have been decoded.
    fn wait_for_more_frames(&self, count: usize, limit: Duration) -> impl Future<Output = bool> {
        let start = self.frames();
        wait_for(limit, move || self.frames() >= start + count)
    }
}

/// What the test viewer offers.
#[derive(Debug, Clone)]
pub struct ViewerOptions {
    /// H.264 profile-level-ids to offer, in order (packetization-mode 1); empty, with no
    /// `other_video`, offers VP8 only.
    pub h264_profiles: Vec<&'static str>,
    /// Other video codecs to offer after the H.264 ones, by MIME type ("video/VP8",
    /// "video/AV1").
    pub other_video: Vec<&'static str>,
    /// Publish every gathered candidate before the offer.
    pub candidates_before_offer: bool,
    /// Drop the device's trickled candidates, so that only the candidates this viewer sent
    /// can connect the two (the viewer then learns the device's address from its checks).
    pub ignore_device_candidates: bool,
    /// Also offer a recvonly audio section with Opus, as the page does when the device has
    /// audio.
    pub audio: bool,
    /// Where the viewer's ICE sockets bind; `None`: 127.0.0.1 with loopback candidates only,
    /// and every candidate campeer sends must be loopback.
    pub bind_ip: Option<String>,
    /// The broker's host as the viewer reaches it (127.0.0.1 when `None`).
    pub broker_host: Option<String>,
    /// The viewer's STUN and TURN servers.
    pub ice_servers: Vec<webrtc::peer_connection::RTCIceServer>,
    /// Gather and use relay candidates only, as a browser with `iceTransportPolicy: "relay"`.
    pub relay_only: bool,
    /// Hide host addresses behind mDNS `.local` names and answer queries for them, as
    /// browsers do.
    pub mdns: bool,
}

impl Default for ViewerOptions {
    fn default() -> Self {
        Self {
            h264_profiles: vec!["42001f", "42e01f"],
            other_video: Vec::new(),
            candidates_before_offer: false,
            ignore_device_candidates: false,
            audio: false,
            bind_ip: None,
            broker_host: None,
            ice_servers: Vec::new(),
            relay_only: false,
            mdns: false,
        }
    }
}

impl ViewerOptions {
    pub fn with_audio() -> Self {
        Self {
            audio: true,
            ..Self::default()
        }
    }
}

/// A WebRTC viewer built with the webrtc crate that signals over MQTT like a browser.
pub struct TestViewer {
    pub session: String,
    pub state: Arc<Mutex<ViewerState>>,
    track: Arc<Mutex<Option<Arc<dyn TrackRemote>>>>,
    peer: Arc<dyn PeerConnection>,
    mqtt: AsyncClient,
    in_topic: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watching for TestViewer {
    fn seen(&self) -> &Mutex<ViewerState> {
        &self.state
    }
}

pub(crate) enum ViewerEvent {
    Candidate(Option<String>),
    Mqtt(Value),
}

struct ViewerHandler {
    events: mpsc::UnboundedSender<ViewerEvent>,
    state: Arc<Mutex<ViewerState>>,
    track: Arc<Mutex<Option<Arc<dyn TrackRemote>>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ViewerHandler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            self.state
                .lock()
                .unwrap()
                .local_candidate_lines
                .push(init.candidate.clone());
            let _ = self
                .events
                .send(ViewerEvent::Candidate(Some(init.candidate)));
        }
    }

    async fn on_ice_gathering_state_change(
        &self,
        state: webrtc::peer_connection::RTCIceGatheringState,
    ) {
        if state == webrtc::peer_connection::RTCIceGatheringState::Complete {
            let _ = self.events.send(ViewerEvent::Candidate(None));
        }
    }

    async fn on_ice_connection_state_change(
        &self,
        state: webrtc::peer_connection::RTCIceConnectionState,
    ) {
        self.state
            .lock()
            .unwrap()
            .ice_states
            .push(state.to_string());
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let mut s = self.state.lock().unwrap();
        s.connection_states.push(state.to_string());
        if state == RTCPeerConnectionState::Connected && s.connected_at.is_none() {
            s.connected_at = Some(Instant::now());
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let kind = track.kind().await;
        let stream_id = track.stream_id().await.to_string();
        let state = Arc::clone(&self.state);
        state
            .lock()
            .unwrap()
            .stream_ids
            .push((kind.to_string(), stream_id));
        if kind == RtpCodecKind::Audio {
            tokio::spawn(receive_audio(track, state));
        } else {
            *self.track.lock().unwrap() = Some(Arc::clone(&track));
            tokio::spawn(receive_video(track, state));
        }
    }
}

/// A decoded picture's planes, whichever codec it came in.
struct Picture<'a> {
    width: usize,
    height: usize,
    y: &'a [u8],
    u: &'a [u8],
    v: &'a [u8],
    y_stride: usize,
    uv_stride: usize,
}

/// The viewer's decoder: openh264 for H.264, libvpx (through campeer's own binding) for VP8,
/// picked from the codec campeer answered with.
enum VideoDecoder {
    H264(H264Packet, Box<openh264::decoder::Decoder>),
    Vp8(Vp8Packet, Box<campeer::media::vp8::Vp8Decoder>),
}

impl VideoDecoder {
    fn for_mime_type(mime_type: &str) -> Self {
        if mime_type.eq_ignore_ascii_case("video/VP8") {
            VideoDecoder::Vp8(
                Vp8Packet::default(),
                Box::new(campeer::media::vp8::Vp8Decoder::new().expect("a VP8 decoder")),
            )
        } else {
            VideoDecoder::H264(
                H264Packet::default(),
                Box::new(openh264::decoder::Decoder::new().expect("openh264 decoder")),
            )
        }
    }

    /// Depacketises one picture's payloads and decodes it; `Err` for a broken or undecodable
    /// picture, `Ok(None)` for one that shows nothing.
    fn decode(
        &mut self,
        payloads: &[bytes::Bytes],
        seen: impl FnOnce(Picture<'_>) -> DecodedFrame,
    ) -> Result<Option<DecodedFrame>, ()> {
        let mut data = Vec::new();
        match self {
            VideoDecoder::H264(depacketizer, decoder) => {
                for payload in payloads {
                    data.extend_from_slice(&depacketizer.depacketize(payload).map_err(|_| ())?);
                }
                match decoder.decode(&data) {
                    Ok(Some(yuv)) => {
                        let (width, height) = yuv.dimensions();
                        let (y_stride, uv_stride, _) = yuv.strides();
                        Ok(Some(seen(Picture {
                            width,
                            height,
                            y: yuv.y(),
                            u: yuv.u(),
                            v: yuv.v(),
                            y_stride,
                            uv_stride,
                        })))
                    }
                    Ok(None) => Ok(None),
                    Err(_) => Err(()),
                }
            }
            VideoDecoder::Vp8(depacketizer, decoder) => {
                for payload in payloads {
                    data.extend_from_slice(&depacketizer.depacketize(payload).map_err(|_| ())?);
                }
                match decoder.decode(&data) {
                    Ok(Some(picture)) => Ok(Some(seen(Picture {
                        width: picture.width,
                        height: picture.height,
                        y: &picture.y,
                        u: &picture.u,
                        v: &picture.v,
                        y_stride: picture.width,
                        uv_stride: picture.width.div_ceil(2),
                    }))),
                    Ok(None) => Ok(None),
                    Err(_) => Err(()),
                }
            }
        }
    }
}

/// Puts packets back in order, reassembles pictures, decodes them, and asks for a keyframe
/// (PLI, at most every half second) when a gap is given up on, as a browser does.
async fn receive_video(track: Arc<dyn TrackRemote>, state: Arc<Mutex<ViewerState>>) {
    let mut decoder: Option<VideoDecoder> = None;
    let mut reassembler = jitter::Reassembler::default();
    let mut last_pli: Option<Instant> = None;
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            continue;
        };
        if decoder.is_none() {
            let mime_type = track
                .codec(packet.header.ssrc)
                .await
                .map(|codec| codec.mime_type)
                .filter(|mime_type| !mime_type.is_empty())
                // webrtc may not know the codec by SSRC yet: this viewer registers H.264 at
                // 102 and up, its other codecs from 96.
                .unwrap_or_else(|| {
                    if packet.header.payload_type < 102 {
                        "video/VP8".to_owned()
                    } else {
                        "video/H264".to_owned()
                    }
                });
            state.lock().unwrap().video_codec = Some(mime_type.clone());
            if mime_type.eq_ignore_ascii_case("video/VP8") {
                reassembler = jitter::Reassembler::vp8();
            }
            decoder = Some(VideoDecoder::for_mime_type(&mime_type));
        }
        let Some(decoder) = decoder.as_mut() else {
            continue;
        };
        {
            let mut s = state.lock().unwrap();
            s.rtp_packets += 1;
            s.rtp_payload_bytes += packet.payload.len();
            if !s.payload_types.contains(&packet.header.payload_type) {
                s.payload_types.push(packet.header.payload_type);
            }
        }
        let now = Instant::now();
        let outputs = reassembler.push(
            now,
            packet.header.sequence_number,
            packet.header.marker,
            packet.header.timestamp,
            packet.payload.clone(),
        );
        for output in outputs {
            let (rtp_timestamp, payloads) = match output {
                jitter::Output::Frame {
                    timestamp,
                    payloads,
                } => (timestamp, payloads),
                jitter::Output::NeedKeyframe => {
                    if last_pli.is_none_or(|at| now.duration_since(at) > Duration::from_millis(500))
                    {
                        last_pli = Some(now);
                        state.lock().unwrap().plis_sent += 1;
                        send_pli(&track, packet.header.ssrc).await;
                    }
                    continue;
                }
            };
            let decoded = decoder.decode(&payloads, |picture| DecodedFrame {
                width: picture.width,
                height: picture.height,
                capture_ms: read_timestamp_squares(
                    picture.y,
                    picture.y_stride,
                    picture.width,
                    picture.height,
                ),
                grid: grid_means(&picture),
                decoded_at: Instant::now(),
                rtp_timestamp,
                decoded_unix_ms: unix_ms_now(),
            });
            match decoded {
                Ok(Some(frame)) => state.lock().unwrap().frames.push(frame),
                Ok(None) => {}
                Err(()) => state.lock().unwrap().decode_errors += 1,
            }
        }
    }
}

async fn send_pli(track: &Arc<dyn TrackRemote>, media_ssrc: u32) {
    let pli = rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
        sender_ssrc: 1,
        media_ssrc,
    };
    let _ = track.write_rtcp(vec![Box::new(pli)]).await;
}

/// Decodes every Opus packet (48 kHz stereo, as WebRTC signals Opus) and keeps the samples
/// mixed to mono.
async fn receive_audio(track: Arc<dyn TrackRemote>, state: Arc<Mutex<ViewerState>>) {
    let mut decoder =
        opus2::Decoder::new(48_000, opus2::Channels::Stereo).expect("an Opus decoder");
    let mut pcm = vec![0i16; 2 * 5760];
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            continue;
        };
        let decoded = decoder.decode(&packet.payload, &mut pcm, false);
        let mut s = state.lock().unwrap();
        s.audio_packets += 1;
        s.first_audio_at.get_or_insert_with(Instant::now);
        s.audio_rtp_timestamps.push(packet.header.timestamp);
        if !s.audio_payload_types.contains(&packet.header.payload_type) {
            s.audio_payload_types.push(packet.header.payload_type);
        }
        match decoded {
            Ok(frames) => {
                let mono = pcm[..2 * frames]
                    .chunks(2)
                    .map(|pair| (f32::from(pair[0]) + f32::from(pair[1])) / 2.0);
                s.audio_samples.extend(mono);
            }
            Err(_) => s.audio_decode_errors += 1,
        }
    }
}

/// Mean Y, U and V over each cell of an 8x6 grid (the colour bars are 8 wide).
fn grid_means(picture: &Picture<'_>) -> Vec<(u8, u8, u8)> {
    let (width, height) = (picture.width, picture.height);
    let (ys, us) = (picture.y_stride, picture.uv_stride);
    let mut cells = Vec::with_capacity(48);
    for gy in 0..6 {
        for gx in 0..8 {
            let (x0, x1) = (gx * width / 8 + 4, (gx + 1) * width / 8 - 4);
            let (y0, y1) = (gy * height / 6 + 4, (gy + 1) * height / 6 - 4);
            let (mut sy, mut su, mut sv, mut n, mut nc) = (0u64, 0u64, 0u64, 0u64, 0u64);
            for y in y0..y1 {
                for x in x0..x1 {
                    sy += u64::from(picture.y[y * ys + x]);
                    n += 1;
                    if x % 2 == 0 && y % 2 == 0 {
                        su += u64::from(picture.u[(y / 2) * us + x / 2]);
                        sv += u64::from(picture.v[(y / 2) * us + x / 2]);
                        nc += 1;
                    }
                }
            }
            cells.push((
                (sy / n.max(1)) as u8,
                (su / nc.max(1)) as u8,
                (sv / nc.max(1)) as u8,
            ));
        }
    }
    cells
}

/// Reads the test pattern's timestamp as the README specifies it, independently of the
/// daemon's code: 48 bits, MSB first, 16x16 squares row-major from the top-left, wrapping at
/// the frame width, bright (235) for 1 and dark (16) for 0. Uses the mean of each square's
/// central 8x8 pixels against the mid-level.
pub fn read_timestamp_squares(y: &[u8], stride: usize, width: usize, height: usize) -> u64 {
    let per_row = width / 16;
    let mut value = 0u64;
    for bit in 0..48 {
        let (row, col) = (bit / per_row, bit % per_row);
        let (y0, x0) = (row * 16 + 4, col * 16 + 4);
        if y0 + 8 > height {
            return 0;
        }
        let mut sum = 0u32;
        for dy in 0..8 {
            for dx in 0..8 {
                sum += u32::from(y[(y0 + dy) * stride + x0 + dx]);
            }
        }
        value = (value << 1) | u64::from(sum / 64 > (235 + 16) / 2);
    }
    value
}

impl TestViewer {
    pub async fn join(broker: &Broker, device: &str, session: &str) -> Self {
        Self::join_with(broker, device, session, ViewerOptions::default()).await
    }

    pub async fn join_with(
        broker: &Broker,
        device: &str,
        session: &str,
        options: ViewerOptions,
    ) -> Self {
        Self::join_port(broker.port, device, session, options).await
    }

    /// Joins through the broker on `port` (at `options.broker_host`).
    pub async fn join_port(port: u16, device: &str, session: &str, options: ViewerOptions) -> Self {
        let state = Arc::new(Mutex::new(ViewerState::default()));
        let in_topic = format!("{PREFIX}/{device}/in/{session}");
        let out_topic = format!("{PREFIX}/{device}/out/{session}");

        // MQTT: the client id is the session id, as the README recommends.
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let mqtt_events = events_tx.clone();
        let host = options.broker_host.as_deref().unwrap_or("127.0.0.1");
        let (mqtt, mqtt_task) =
            subscribe_json_at(host, port, session, None, &out_topic, move |_, value| {
                let _ = mqtt_events.send(ViewerEvent::Mqtt(value));
            })
            .await;

        // As the page does: offer only once the device says it is online, which it says only
        // after the broker confirmed its subscription. An offer sent sooner is simply lost.
        wait_until_online_at(host, port, device).await;

        let track = Arc::new(Mutex::new(None));
        let peer =
            build_viewer_peer(&options, events_tx, Arc::clone(&state), Arc::clone(&track)).await;
        let offer = recvonly_offer(&peer, options.audio).await;
        peer.set_local_description(offer)
            .await
            .expect("apply the offer");

        let mut viewer = Self {
            session: session.to_owned(),
            state,
            track,
            peer,
            mqtt,
            in_topic,
            tasks: vec![mqtt_task],
        };

        if options.candidates_before_offer {
            // Hold the offer back until every candidate has been published.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, events.recv()).await {
                    Ok(Some(ViewerEvent::Candidate(candidate))) => {
                        let done = candidate.is_none();
                        viewer.send_candidate(candidate).await;
                        if done {
                            break;
                        }
                    }
                    Ok(Some(ViewerEvent::Mqtt(_))) => {}
                    _ => panic!("the viewer never finished gathering"),
                }
            }
            // As a trickling browser would: the offer itself carries no candidates.
            viewer.send_offer_without_candidates().await;
        } else {
            viewer.send_offer().await;
        }

        let peer = Arc::clone(&viewer.peer);
        let state = Arc::clone(&viewer.state);
        let mqtt = viewer.mqtt.clone();
        let in_topic = viewer.in_topic.clone();
        let ignore_device_candidates = options.ignore_device_candidates;
        let loopback_only = options.bind_ip.is_none();
        viewer.tasks.push(tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    ViewerEvent::Candidate(candidate) => {
                        let payload = candidate_message(candidate);
                        let _ = mqtt
                            .publish(&in_topic, QoS::AtLeastOnce, false, payload.to_string())
                            .await;
                    }
                    ViewerEvent::Mqtt(message) => {
                        if ignore_device_candidates {
                            match message["type"].as_str() {
                                Some("candidate") => continue,
                                Some("answer") => {
                                    let sdp = message["sdp"].as_str().unwrap_or_default();
                                    let message =
                                        json!({"type": "answer", "sdp": strip_candidates(sdp)});
                                    handle_device_message(&peer, &state, message, loopback_only)
                                        .await;
                                    continue;
                                }
                                _ => {}
                            }
                        }
                        handle_device_message(&peer, &state, message, loopback_only).await;
                    }
                }
            }
        }));
        viewer
    }

    async fn send_offer(&self) {
        let local = self
            .peer
            .local_description()
            .await
            .expect("a local description");
        self.publish(json!({"type": "offer", "sdp": local.sdp}))
            .await;
        self.state
            .lock()
            .unwrap()
            .offer_sent_at
            .get_or_insert_with(Instant::now);
    }

    async fn send_offer_without_candidates(&self) {
        let local = self
            .peer
            .local_description()
            .await
            .expect("a local description");
        let sdp = strip_candidates(&local.sdp);
        self.publish(json!({"type": "offer", "sdp": sdp})).await;
    }

    async fn send_candidate(&self, candidate: Option<String>) {
        self.publish(candidate_message(candidate)).await;
    }

    pub async fn publish(&self, message: Value) {
        self.publish_raw(message.to_string().into_bytes()).await;
    }

    pub async fn publish_raw(&self, payload: Vec<u8>) {
        self.mqtt
            .publish(&self.in_topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("queue a publish");
    }

    /// Renegotiates with an ICE restart on the same session.
    pub async fn restart_ice(&self) {
        apply_restart_offer(&self.peer).await;
        self.send_offer().await;
    }

    /// This viewer's current local description: an offer SDP a browser would send.
    pub async fn local_sdp(&self) -> String {
        self.peer
            .local_description()
            .await
            .expect("a local description")
            .sdp
    }

    /// Sends a picture loss indication for the received video, as a decoder does when it
    /// lost its reference.
    pub async fn send_pli(&self) {
        self.send_video_feedback(|media_ssrc| {
            Box::new(
                rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                    sender_ssrc: 1,
                    media_ssrc,
                },
            )
        })
        .await;
    }

    /// Asks for packets again with a NACK: sixteen after each of `first_sequence_numbers`
    /// besides it.
    pub async fn send_nack(&self, first_sequence_numbers: &[u16]) {
        use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
        self.send_video_feedback(|media_ssrc| {
            Box::new(TransportLayerNack {
                sender_ssrc: 1,
                media_ssrc,
                nacks: first_sequence_numbers
                    .iter()
                    .map(|&packet_id| NackPair {
                        packet_id,
                        lost_packets: u16::MAX,
                    })
                    .collect(),
            })
        })
        .await;
    }

    /// Sends RTCP feedback about the received video, made for its SSRC.
    async fn send_video_feedback(&self, feedback: impl FnOnce(u32) -> Box<dyn rtc::rtcp::Packet>) {
        let track = self.track.lock().unwrap().clone().expect("a video track");
        let media_ssrc = track.ssrcs().await.first().copied().expect("an SSRC");
        track
            .write_rtcp(vec![feedback(media_ssrc)])
            .await
            .expect("send RTCP feedback");
    }

    pub async fn hangup(&self) {
        self.publish(json!({"type": "hangup"})).await;
    }

    /// Closes the peer connection and the MQTT connection, after flushing what was queued
    /// (a hangup, say). Without a hangup first, the device only notices through ICE.
    pub async fn close(mut self) {
        let _ = self.peer.close().await;
        let _ = self.mqtt.disconnect().await;
        let mqtt_task = self.tasks.remove(0);
        let _ = tokio::time::timeout(Duration::from_secs(2), mqtt_task).await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Hangs up and closes every viewer, then waits until the device's status counts none.
pub async fn leave_all(viewers: impl IntoIterator<Item = TestViewer>, status: &TopicWatcher) {
    for viewer in viewers {
        viewer.hangup().await;
        viewer.close().await;
    }
    assert!(
        status
            .wait_for_last(Duration::from_secs(10), |s| s["viewers"] == 0)
            .await,
        "the device still counts viewers after they all left"
    );
}

/// Creates and applies an offer with new ICE credentials, which either kind of test viewer
/// then sends its own way.
pub(crate) async fn apply_restart_offer(peer: &Arc<dyn PeerConnection>) {
    let offer = peer
        .create_offer(Some(RTCOfferOptions { ice_restart: true }))
        .await
        .expect("create a restart offer");
    peer.set_local_description(offer)
        .await
        .expect("apply the restart offer");
}

fn strip_candidates(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .filter(|line| {
            !line.starts_with("a=candidate:") && !line.starts_with("a=end-of-candidates")
        })
        .collect()
}

fn candidate_message(candidate: Option<String>) -> Value {
    match candidate {
        Some(line) => json!({
            "type": "candidate",
            "candidate": {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}
        }),
        None => json!({"type": "candidate", "candidate": null}),
    }
}

async fn handle_device_message(
    peer: &Arc<dyn PeerConnection>,
    state: &Arc<Mutex<ViewerState>>,
    message: Value,
    loopback_only: bool,
) {
    match message["type"].as_str() {
        Some("answer") => {
            let sdp = message["sdp"].as_str().unwrap_or_default().to_owned();
            // campeer's host candidates come in the answer; the rest are trickled.
            let inline = campeer::sdp::candidate_lines(&sdp);
            for line in &inline {
                assert!(
                    !loopback_only || campeer::sdp::is_loopback_candidate(line),
                    "campeer's answer has a non-loopback candidate under --ice-loopback-only: {line}"
                );
            }
            let answer = RTCSessionDescription::answer(sdp).expect("a well-formed answer");
            peer.set_remote_description(answer)
                .await
                .expect("apply the answer");
            let mut s = state.lock().unwrap();
            s.answers += 1;
            s.answered_at.get_or_insert_with(Instant::now);
            s.answer_candidates += inline.len();
            s.remote_candidates += inline.len();
            s.remote_candidate_lines.extend(inline);
        }
        Some("candidate") => {
            if message["candidate"].is_null() {
                state.lock().unwrap().end_of_candidates = true;
                return;
            }
            let c = &message["candidate"];
            let line = c["candidate"].as_str().unwrap_or_default().to_owned();
            assert!(
                !loopback_only || campeer::sdp::is_loopback_candidate(&line),
                "campeer sent a non-loopback candidate under --ice-loopback-only: {line}"
            );
            state
                .lock()
                .unwrap()
                .remote_candidate_lines
                .push(line.clone());
            let init = RTCIceCandidateInit {
                candidate: line,
                sdp_mid: c["sdpMid"].as_str().map(str::to_owned),
                sdp_mline_index: c["sdpMLineIndex"].as_u64().map(|n| n as u16),
                username_fragment: c["usernameFragment"].as_str().map(str::to_owned),
                url: None,
            };
            let _ = peer.add_ice_candidate(init).await;
            state.lock().unwrap().remote_candidates += 1;
        }
        Some("hangup") => state.lock().unwrap().hangups += 1,
        Some("error") => state.lock().unwrap().errors.push((
            message["code"].as_str().unwrap_or_default().to_owned(),
            message["message"].as_str().unwrap_or_default().to_owned(),
        )),
        _ => {}
    }
}

pub(crate) async fn build_viewer_peer(
    options: &ViewerOptions,
    events: mpsc::UnboundedSender<ViewerEvent>,
    state: Arc<Mutex<ViewerState>>,
    track: Arc<Mutex<Option<Arc<dyn TrackRemote>>>>,
) -> Arc<dyn PeerConnection> {
    let mut media_engine = MediaEngine::default();
    let mut payload_type = 102u8;
    for profile in &options.h264_profiles {
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: RTCRtpCodec {
                        mime_type: "video/H264".to_owned(),
                        clock_rate: 90_000,
                        channels: 0,
                        sdp_fmtp_line: format!(
                            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"
                        ),
                        rtcp_feedback: vec![],
                    },
                    payload_type,
                },
                RtpCodecKind::Video,
            )
            .expect("register H.264");
        payload_type += 2;
    }
    let others = if options.h264_profiles.is_empty() && options.other_video.is_empty() {
        vec!["video/VP8"]
    } else {
        options.other_video.clone()
    };
    for (i, mime_type) in others.into_iter().enumerate() {
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: RTCRtpCodec {
                        mime_type: mime_type.to_owned(),
                        clock_rate: 90_000,
                        channels: 0,
                        sdp_fmtp_line: String::new(),
                        rtcp_feedback: vec![],
                    },
                    payload_type: 96 + i as u8,
                },
                RtpCodecKind::Video,
            )
            .expect("register a video codec");
    }
    if options.audio {
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: RTCRtpCodec {
                        mime_type: "audio/opus".to_owned(),
                        clock_rate: 48_000,
                        channels: 2,
                        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                        rtcp_feedback: vec![],
                    },
                    payload_type: 111,
                },
                RtpCodecKind::Audio,
            )
            .expect("register Opus");
    }
    let registry =
        register_default_interceptors(Registry::new(), &mut media_engine).expect("interceptors");
    let loopback = options.bind_ip.is_none();
    let mdns = if options.mdns {
        rtc::ice::mdns::MulticastDnsMode::QueryAndGather
    } else {
        rtc::ice::mdns::MulticastDnsMode::Disabled
    };
    let mut settings = SettingEngineBuilder::new();
    if options.mdns {
        // One name per viewer, standing for its one bound address, as a browser does it.
        let name = format!("campeer-viewer-{}.local", rand::random::<u32>());
        let address = options.bind_ip.as_deref().and_then(|ip| ip.parse().ok());
        settings = settings
            .with_multicast_dns_local_name(name)
            .with_multicast_dns_local_ip(address);
    }
    let settings = settings
        .with_multicast_dns_mode(mdns)
        .with_include_loopback_candidate(loopback)
        .build();
    let bind = format!("{}:0", options.bind_ip.as_deref().unwrap_or("127.0.0.1"));
    let policy = if options.relay_only {
        rtc::peer_connection::configuration::RTCIceTransportPolicy::Relay
    } else {
        rtc::peer_connection::configuration::RTCIceTransportPolicy::All
    };
    let configuration = RTCConfigurationBuilder::new()
        .with_ice_servers(options.ice_servers.clone())
        .with_ice_transport_policy(policy)
        .build();
    let peer = PeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_media_engine(media_engine)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(ViewerHandler {
            events,
            state,
            track,
        }))
        .with_udp_addrs(vec![bind])
        .build()
        .await
        .expect("build the viewer's peer connection");
    Arc::new(peer)
}

/// Asserts that frames were decoded at the configured size with a capture time close to now.
pub fn assert_live_frames(viewer: &TestViewer, width: usize, height: usize) {
    viewer.snapshot(|s| {
        assert!(!s.frames.is_empty(), "no frame was decoded");
        let now = unix_ms_now();
        for frame in &s.frames {
            assert_eq!((frame.width, frame.height), (width, height));
            let age = now as i64 - frame.capture_ms as i64;
            assert!(
                (-2_000..10_000).contains(&age),
                "the timestamp squares read {} ms, {age} ms from now",
                frame.capture_ms
            );
        }
    });
}

/// A real offer from a peer that is closed right after making it: whoever answers it will
/// never complete ICE.
pub async fn offer_from_vanished_peer() -> String {
    let (events, _events_rx) = mpsc::unbounded_channel();
    let state = Arc::new(Mutex::new(ViewerState::default()));
    let peer = build_viewer_peer(
        &ViewerOptions::default(),
        events,
        state,
        Arc::new(Mutex::new(None)),
    )
    .await;
    let sdp = recvonly_offer(&peer, false).await.sdp;
    let _ = peer.close().await;
    sdp
}

/// Adds recvonly transceivers (video, and audio when asked) and creates the offer, as a
/// browser viewer does.
pub(crate) async fn recvonly_offer(
    peer: &Arc<dyn PeerConnection>,
    audio: bool,
) -> RTCSessionDescription {
    let kinds: &[RtpCodecKind] = if audio {
        &[RtpCodecKind::Video, RtpCodecKind::Audio]
    } else {
        &[RtpCodecKind::Video]
    };
    for kind in kinds {
        peer.add_transceiver_from_kind(
            *kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )
        .await
        .expect("add a recvonly transceiver");
    }
    peer.create_offer(None).await.expect("create an offer")
}

/// Asserts that the viewer decoded the fake camera's colour bars at `width`x`height`: every
/// cell of the plain rows matches its bar within codec tolerance, and the marker moved.
pub fn assert_shows_the_bars(viewer: &TestViewer, width: usize, height: usize) {
    use fakecam::BARS;
    let (size, grid, markers) = viewer.snapshot(|s| {
        let last = s.frames.last().expect("a frame");
        // Where the moving marker sits in the top grid row, frame by frame: the cell
        // brightest compared with its bar.
        let markers: Vec<usize> = s
            .frames
            .iter()
            .map(|f| {
                (0..8)
                    .max_by_key(|&i| i16::from(f.grid[i].0) - i16::from(BARS[i].0))
                    .unwrap_or(0)
            })
            .collect();
        ((last.width, last.height), last.grid.clone(), markers)
    });
    assert_eq!(size, (width, height));
    // Rows 2..6 of the grid are plain bars: each cell matches its bar's colour.
    for row in 2..6 {
        for (col, &(y, u, v)) in BARS.iter().enumerate() {
            let got = grid[row * 8 + col];
            let close = |a: u8, b: u8| (i16::from(a) - i16::from(b)).abs() <= 12;
            assert!(
                close(got.0, y) && close(got.1, u) && close(got.2, v),
                "bar {col} in row {row}: got {got:?}, expected {:?}",
                (y, u, v)
            );
        }
    }
    let distinct: std::collections::HashSet<_> = markers.iter().collect();
    assert!(distinct.len() > 1, "the marker never moved: {markers:?}");
}
