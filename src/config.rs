//! Configuration: a TOML file, CAMPEER_* environment variables and command-line flags, merged
//! with flags winning over the environment, the environment over the file, and the file over
//! the defaults. Everything is validated once at start; a bad value fails with the key's name
//! and the reason, so an operator can fix it without reading code.

use crate::protocol::{Prefix, Segment};
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn ice_server_list(sections: Vec<IceServerSection>) -> Vec<IceServer> {
    sections
        .into_iter()
        .map(|s| IceServer {
            urls: s.urls,
            username: s.username,
            credential: s.credential.map(Secret),
        })
        .collect()
}

/// Every server has a URL, every URL a STUN or TURN scheme, every TURN server a credential.
fn check_ice_servers(key: &'static str, servers: &[IceServer]) -> Result<(), ConfigError> {
    for server in servers {
        if server.urls.is_empty() {
            return Err(invalid(key, "every server needs at least one URL"));
        }
        for url in &server.urls {
            let scheme_ok = ["stun:", "stuns:", "turn:", "turns:"]
                .iter()
                .any(|scheme| url.starts_with(scheme));
            if !scheme_ok {
                return Err(invalid(
                    key,
                    format!("{url:?} must start with stun:, stuns:, turn: or turns:"),
                ));
            }
            if url.starts_with("turn") && (server.username.is_none() || server.credential.is_none())
            {
                return Err(invalid(
                    key,
                    format!("TURN server {url:?} needs a username and a credential"),
                ));
            }
        }
    }
    Ok(())
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// The TOML file, as written by an operator. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub mqtt: MqttSection,
    pub device: DeviceSection,
    pub video: VideoSection,
    pub audio: AudioSection,
    pub sessions: SessionsSection,
    pub ice: IceSection,
    pub web: WebSection,
    pub broker: BrokerSection,
    /// More cameras, each served as a device of its own by this one campeer.
    pub cameras: Vec<CameraSection>,
}

/// A `[[cameras]]` entry: a camera served as its own device, with its own id, status,
/// sessions and encoder. Settings it leaves out are the `[video]` ones.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraSection {
    pub id: Option<String>,
    pub source: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    pub bitrate_kbps: Option<u32>,
    pub keyframe_interval_secs: Option<f64>,
    pub h264_passthrough: Option<bool>,
    pub encoder: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSection {
    pub listen: Option<String>,
    pub public: Option<bool>,
    pub public_without_password: Option<bool>,
    pub broker_ws_url: Option<String>,
    pub ice_servers: Option<Vec<IceServerSection>>,
    pub whep_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSection {
    pub listen: Option<String>,
    pub ws_listen: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSection {
    pub broker: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub prefix: Option<String>,
    pub client_id: Option<String>,
    pub keep_alive_secs: Option<u64>,
    /// PEM certificates trusted for an mqtts:// broker, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and private key campeer presents to an mqtts:// broker that
    /// asks for client certificates.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceSection {
    pub id: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoSection {
    pub source: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    pub bitrate_kbps: Option<u32>,
    pub keyframe_interval_secs: Option<f64>,
    pub h264_passthrough: Option<bool>,
    pub rpicam_vid: Option<PathBuf>,
    pub encoder: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioSection {
    pub source: Option<String>,
    pub channels: Option<u8>,
    pub bitrate_kbps: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsSection {
    pub max_viewers: Option<usize>,
    pub timeout_secs: Option<u64>,
    pub connect_timeout_secs: Option<u64>,
    pub idle_grace_secs: Option<u64>,
    pub keyframe_min_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IceSection {
    pub servers: Option<Vec<IceServerSection>>,
    pub interfaces: Option<Vec<String>>,
    pub loopback_only: Option<bool>,
    pub tls_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServerSection {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

/// Flags and CAMPEER_* environment variables. clap gives flags precedence over the
/// environment; [`Config::resolve`] gives both precedence over the file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// External MQTT broker, mqtt://host[:port] (port 1883 when omitted) or
    /// mqtts://host[:port] for TLS (port 8883). Without one, campeer runs its own embedded
    /// broker.
    #[arg(long, env = "CAMPEER_BROKER", value_name = "URL")]
    pub broker: Option<String>,
    /// Address of the built-in viewer page. Default: 127.0.0.1:8080.
    #[arg(long, env = "CAMPEER_HTTP_LISTEN", value_name = "ADDR:PORT")]
    pub http_listen: Option<String>,
    /// Open the viewer page and the embedded broker to the network (all interfaces). The
    /// embedded broker must then require a password, unless --public-without-password says
    /// that anyone who can reach this machine may watch.
    #[arg(long, env = "CAMPEER_PUBLIC")]
    pub public: bool,
    /// With --public and the embedded broker: allow it to run without a password, so anyone
    /// on the network can watch, read every viewer's signaling and hang up on it.
    #[arg(long, env = "CAMPEER_PUBLIC_WITHOUT_PASSWORD")]
    pub public_without_password: bool,
    /// The WebSocket URL browsers use to reach the broker (ws:// or wss://). Needed with an
    /// external broker; with the embedded one the page works it out.
    #[arg(long, env = "CAMPEER_BROKER_WS_URL", value_name = "URL")]
    pub broker_ws_url: Option<String>,
    /// WHEP players must send this bearer token (`Authorization: Bearer TOKEN`). Without one,
    /// anyone who can reach the viewer page can watch through WHEP too. Prefer the
    /// environment or the config file over a flag.
    #[arg(long, env = "CAMPEER_WHEP_TOKEN", value_name = "TOKEN")]
    pub whep_token: Option<String>,
    /// Embedded broker: plain MQTT listener. Default: 127.0.0.1:1883.
    #[arg(long, env = "CAMPEER_EMBEDDED_BROKER_LISTEN", value_name = "ADDR:PORT")]
    pub embedded_broker_listen: Option<String>,
    /// Embedded broker: MQTT-over-WebSocket listener for the page. Default: 127.0.0.1:8083.
    #[arg(
        long,
        env = "CAMPEER_EMBEDDED_BROKER_WS_LISTEN",
        value_name = "ADDR:PORT"
    )]
    pub embedded_broker_ws_listen: Option<String>,
    /// Embedded broker: require this user name (with --embedded-broker-password).
    #[arg(long, env = "CAMPEER_EMBEDDED_BROKER_USERNAME", value_name = "NAME")]
    pub embedded_broker_username: Option<String>,
    /// Embedded broker: the password that goes with --embedded-broker-username.
    #[arg(
        long,
        env = "CAMPEER_EMBEDDED_BROKER_PASSWORD",
        value_name = "PASSWORD"
    )]
    pub embedded_broker_password: Option<String>,
    /// MQTT user name.
    #[arg(long, env = "CAMPEER_MQTT_USERNAME", value_name = "NAME")]
    pub mqtt_username: Option<String>,
    /// MQTT password (prefer the environment or the config file over a flag).
    #[arg(long, env = "CAMPEER_MQTT_PASSWORD", value_name = "PASSWORD")]
    pub mqtt_password: Option<String>,
    /// Topic prefix: one or more segments of [A-Za-z0-9_-] joined by '/'. Default: campeer.
    #[arg(long, env = "CAMPEER_PREFIX")]
    pub prefix: Option<String>,
    /// MQTT client id. Default: campeer-<device id>-<8 random hex digits>, which no other
    /// client can guess and take over.
    #[arg(long, env = "CAMPEER_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Device id, one topic segment. Default: the host name.
    #[arg(long, env = "CAMPEER_DEVICE_ID", value_name = "ID")]
    pub device_id: Option<String>,
    /// Video source: "auto" (a camera module, else the first V4L2 camera that gives a
    /// picture, else the test pattern), "test" (a moving test pattern with a machine-readable
    /// timestamp), "rpicam" or "rpicam:N" (camera module N through rpicam-vid) or a V4L2
    /// camera's device path such as /dev/video0. Default: auto.
    #[arg(long, env = "CAMPEER_SOURCE", value_name = "SOURCE")]
    pub source: Option<String>,
    /// Frame width in pixels (even). Default: 640.
    #[arg(long, env = "CAMPEER_WIDTH")]
    pub width: Option<u32>,
    /// Frame height in pixels (even). Default: 480.
    #[arg(long, env = "CAMPEER_HEIGHT")]
    pub height: Option<u32>,
    /// Frames per second. Default: 30.
    #[arg(long, env = "CAMPEER_FPS")]
    pub fps: Option<u32>,
    /// Encoder target bitrate in kbit/s. Default: 1500.
    #[arg(long, env = "CAMPEER_BITRATE_KBPS", value_name = "KBPS")]
    pub bitrate_kbps: Option<u32>,
    /// Seconds between periodic keyframes; 0 sends keyframes only when a viewer needs one.
    /// Default: 2.
    #[arg(long, env = "CAMPEER_KEYFRAME_INTERVAL", value_name = "SECS")]
    pub keyframe_interval: Option<f64>,
    /// Audio source: "auto" (the ALSA "default" device when the machine has a sound card that
    /// can capture, else no audio), "none", "test" (a 440 Hz tone) or an ALSA capture device
    /// name such as "default" or "plughw:CARD=Device". Default: auto.
    #[arg(long, env = "CAMPEER_AUDIO_SOURCE", value_name = "SOURCE")]
    pub audio_source: Option<String>,
    /// Audio channels: 1 (mono) or 2 (stereo). Default: 1.
    #[arg(long, env = "CAMPEER_AUDIO_CHANNELS")]
    pub audio_channels: Option<u8>,
    /// Opus target bitrate in kbit/s. Default: 32.
    #[arg(long, env = "CAMPEER_AUDIO_BITRATE_KBPS", value_name = "KBPS")]
    pub audio_bitrate_kbps: Option<u32>,
    /// Take H.264 from a camera that encodes it and send it as it is, without re-encoding
    /// (far less CPU; the camera then decides the bitrate and keyframes unless it accepts
    /// campeer's requests). Other cameras are encoded as usual.
    #[arg(long, env = "CAMPEER_H264_PASSTHROUGH")]
    pub h264_passthrough: bool,
    /// H.264 encoder: "auto" (the board's V4L2 hardware encoder when it has one, else
    /// openh264), "openh264", "v4l2m2m" (the first hardware encoder found) or
    /// "v4l2m2m:/dev/videoN". Default: auto.
    #[arg(long, env = "CAMPEER_ENCODER", value_name = "ENCODER")]
    pub encoder: Option<String>,
    /// The rpicam-vid program that streams camera modules: a name on PATH or a path.
    /// Default: rpicam-vid, else libcamera-vid (its name before Raspberry Pi OS Bookworm).
    #[arg(long, env = "CAMPEER_RPICAM_VID", value_name = "PROGRAM")]
    pub rpicam_vid: Option<PathBuf>,
    /// Most viewers served at once; an offer beyond it is answered "busy". Default: 4.
    #[arg(long, env = "CAMPEER_MAX_VIEWERS")]
    pub max_viewers: Option<usize>,
    /// Seconds a session may spend unconnected (never connected, or disconnected or failed)
    /// before it is torn down. Default: 30.
    #[arg(long, env = "CAMPEER_SESSION_TIMEOUT", value_name = "SECS")]
    pub session_timeout: Option<u64>,
    /// Seconds a new viewer has from its offer to a connected peer connection before its
    /// slot is given back (never more than the session timeout). Default: 10.
    #[arg(long, env = "CAMPEER_CONNECT_TIMEOUT", value_name = "SECS")]
    pub connect_timeout: Option<u64>,
    /// Seconds the camera and encoder keep running after the last viewer leaves. Default: 10.
    #[arg(long, env = "CAMPEER_IDLE_GRACE", value_name = "SECS")]
    pub idle_grace: Option<u64>,
    /// Fewest milliseconds between two keyframes forced by viewer requests (PLI/FIR).
    /// Default: 500.
    #[arg(long, env = "CAMPEER_KEYFRAME_MIN_INTERVAL_MS", value_name = "MS")]
    pub keyframe_min_interval_ms: Option<u64>,
    /// STUN or TURN server URL; repeat for several. Replaces the config file's list.
    #[arg(
        long = "ice-server",
        env = "CAMPEER_ICE_SERVERS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub ice_servers: Vec<String>,
    /// Interface name or IP address to gather host candidates on; repeat for several.
    /// Default: every non-loopback interface.
    #[arg(
        long = "ice-interface",
        env = "CAMPEER_ICE_INTERFACES",
        value_delimiter = ',',
        value_name = "IFACE"
    )]
    pub ice_interfaces: Vec<String>,
    /// Gather only 127.0.0.1 host candidates, ignore remote candidates outside 127.0.0.0/8,
    /// no STUN, no mDNS: no media packet leaves the machine. For tests and local viewing.
    #[arg(long, env = "CAMPEER_ICE_LOOPBACK_ONLY")]
    pub ice_loopback_only: bool,
}

/// Where the MQTT broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    /// mqtts://: TLS, the broker's certificate checked against the system's roots and
    /// `mqtt.ca_file`.
    pub tls: bool,
}

impl BrokerAddress {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (rest, true, 8883)
        } else if let Some(rest) = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
        {
            (rest, false, 1883)
        } else {
            return Err(format!("{url:?} must start with mqtt:// or mqtts://"));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('@') {
            return Err(format!(
                "{url:?}: give only host and port; credentials go in mqtt.username and mqtt.password"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port.parse::<u16>().map_err(|_| {
                    format!("{url:?}: port {port:?} is not a number from 1 to 65535")
                })?;
                (host, port)
            }
            _ => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(format!("{url:?} needs a host and a port from 1 to 65535"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// A secret that never appears in logs or Debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub broker: Option<BrokerAddress>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub prefix: Prefix,
    pub client_id: String,
    pub keep_alive: Duration,
    pub tls: MqttTls,
}

/// Certificates for an mqtts:// broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttTls {
    pub ca_file: Option<PathBuf>,
    /// Certificate chain and key, both or neither.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// At start: a camera module when there is one, else the first V4L2 camera that gives a
    /// picture, else the test pattern.
    Auto,
    TestPattern,
    /// A V4L2 capture device.
    Camera(std::path::PathBuf),
    /// A camera module (CSI), by its libcamera index, streamed through rpicam-vid.
    CameraModule(u32),
}

/// A camera served besides the first.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    pub device_id: Segment,
    pub video: VideoConfig,
}

/// The most cameras one campeer serves besides the first: each costs an encoder, and a board
/// has few camera ports.
pub const MAX_EXTRA_CAMERAS: usize = 7;

/// Which H.264 encoder turns raw pictures into the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncoderChoice {
    /// The board's V4L2 hardware encoder when it has one, else openh264.
    Auto,
    OpenH264,
    /// A V4L2 memory-to-memory encoder: this device, or the first one found.
    V4l2M2m(Option<PathBuf>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct VideoConfig {
    pub source: SourceKind,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_bps: u32,
    /// `None`: keyframes only on demand.
    pub keyframe_interval: Option<Duration>,
    /// Pass H.264 from a camera that produces it through without re-encoding.
    pub h264_passthrough: bool,
    /// The rpicam-vid program; `None`: look for it on PATH.
    pub rpicam_vid: Option<PathBuf>,
    pub encoder: EncoderChoice,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioSourceKind {
    /// The ALSA "default" device when the machine has capture hardware, else no audio.
    Auto,
    None,
    TestTone,
    /// An ALSA capture device name.
    Alsa(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    pub source: AudioSourceKind,
    pub channels: u8,
    pub bitrate_bps: u32,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub max_viewers: usize,
    pub timeout: Duration,
    /// From offer to first connection: an offer that never connects holds a viewer slot no
    /// longer than this.
    pub connect_timeout: Duration,
    pub idle_grace: Duration,
    pub keyframe_min_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct IceConfig {
    pub servers: Vec<IceServer>,
    /// Interface names or IP addresses; empty means every non-loopback interface.
    pub interfaces: Vec<String>,
    pub loopback_only: bool,
    /// Certificates (PEM) trusted for `turns:` servers besides the system's: a TURN server
    /// with a private CA or a self-signed certificate.
    pub tls_ca_file: Option<PathBuf>,
}

/// The built-in viewer page.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: SocketAddr,
    /// What browsers connect to; `None` with the embedded broker (the page uses the host it
    /// was loaded from and the embedded broker's WebSocket port).
    pub broker_ws_url: Option<String>,
    /// STUN and TURN servers for browsers, given to the page as they are (credentials too:
    /// a browser needs them to allocate a relay, so they are no secret from viewers).
    pub ice_servers: Vec<IceServer>,
    /// The bearer token WHEP players must send, if any.
    pub whep_token: Option<Secret>,
}

/// The broker campeer runs itself when no external one is configured.
#[derive(Debug, Clone)]
pub struct EmbeddedBrokerConfig {
    pub listen: SocketAddr,
    pub ws_listen: SocketAddr,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub device_id: Segment,
    pub mqtt: MqttConfig,
    pub video: VideoConfig,
    /// Cameras served besides the first, each as a device of its own (no sound: the
    /// microphone goes with the first device).
    pub cameras: Vec<CameraConfig>,
    pub audio: AudioConfig,
    pub sessions: SessionConfig,
    pub ice: IceConfig,
    pub web: WebConfig,
    /// `Some` exactly when `mqtt.broker` is not set.
    pub embedded_broker: Option<EmbeddedBrokerConfig>,
    /// The page and the embedded broker listen on every interface.
    pub public: bool,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

impl Config {
    /// Merges the layers and validates the result.
    pub fn resolve(file: FileConfig, flags: Overrides) -> Result<Self, ConfigError> {
        let device_id = match flags.device_id.or(file.device.id) {
            Some(id) => Segment::parse(&id).map_err(|e| invalid("device.id", e.to_string()))?,
            None => default_device_id(),
        };

        let broker = flags
            .broker
            .or(file.mqtt.broker)
            .map(|url| BrokerAddress::parse(&url).map_err(|e| invalid("mqtt.broker", e)))
            .transpose()?;
        let prefix_text = flags
            .prefix
            .or(file.mqtt.prefix)
            .unwrap_or_else(|| "campeer".to_owned());
        let prefix =
            Prefix::parse(&prefix_text).map_err(|e| invalid("mqtt.prefix", e.to_string()))?;
        let client_id = flags
            .client_id
            .or(file.mqtt.client_id)
            // Unpredictable by default: another client that connects with campeer's id takes
            // over its connection (the broker drops the older one), and a known id lets anyone
            // knock campeer offline at will.
            .unwrap_or_else(|| format!("campeer-{device_id}-{:08x}", rand::random::<u32>()));
        if client_id.is_empty() || client_id.len() > 128 {
            return Err(invalid(
                "mqtt.client_id",
                "must be 1 to 128 characters long",
            ));
        }
        let keep_alive_secs = file.mqtt.keep_alive_secs.unwrap_or(15);
        if !(5..=3600).contains(&keep_alive_secs) {
            return Err(invalid(
                "mqtt.keep_alive_secs",
                format!("must be from 5 to 3600, got {keep_alive_secs}"),
            ));
        }
        let client_cert = match (file.mqtt.client_cert, file.mqtt.client_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "mqtt.client_cert",
                    "mqtt.client_cert and mqtt.client_key go together".to_owned(),
                ));
            }
        };
        let tls = MqttTls {
            ca_file: file.mqtt.ca_file,
            client_cert,
        };
        if tls != MqttTls::default() && !broker.as_ref().is_some_and(|b| b.tls) {
            return Err(invalid(
                "mqtt.ca_file",
                "TLS settings need an mqtts:// broker".to_owned(),
            ));
        }
        let mqtt = MqttConfig {
            broker,
            username: flags.mqtt_username.or(file.mqtt.username),
            password: flags.mqtt_password.or(file.mqtt.password).map(Secret),
            prefix,
            client_id,
            keep_alive: Duration::from_secs(keep_alive_secs),
            tls,
        };

        let video_input = VideoSection {
            source: flags.source.or(file.video.source),
            width: flags.width.or(file.video.width),
            height: flags.height.or(file.video.height),
            fps: flags.fps.or(file.video.fps),
            bitrate_kbps: flags.bitrate_kbps.or(file.video.bitrate_kbps),
            keyframe_interval_secs: flags
                .keyframe_interval
                .or(file.video.keyframe_interval_secs),
            h264_passthrough: Some(
                flags.h264_passthrough || file.video.h264_passthrough.unwrap_or(false),
            ),
            rpicam_vid: flags.rpicam_vid.or(file.video.rpicam_vid),
            encoder: flags.encoder.or(file.video.encoder),
        };
        let video = resolve_video(video_input.clone())?;
        let cameras = resolve_cameras(&device_id, &video_input, file.cameras)?;
        let audio_source = match flags
            .audio_source
            .or(file.audio.source)
            .as_deref()
            .unwrap_or("auto")
        {
            "auto" => AudioSourceKind::Auto,
            "none" => AudioSourceKind::None,
            "test" => AudioSourceKind::TestTone,
            name if !name.trim().is_empty() && !name.contains(char::is_control) => {
                AudioSourceKind::Alsa(name.to_owned())
            }
            other => {
                return Err(invalid(
                    "audio.source",
                    format!(
                        "{other:?} is not a source: use \"auto\", \"none\", \"test\" or an \
                         ALSA capture device such as \"default\" or \"plughw:CARD=Device\""
                    ),
                ));
            }
        };
        let audio_channels = flags.audio_channels.or(file.audio.channels).unwrap_or(1);
        if !(1..=2).contains(&audio_channels) {
            return Err(invalid(
                "audio.channels",
                format!("must be 1 (mono) or 2 (stereo), got {audio_channels}"),
            ));
        }
        let audio_kbps = flags
            .audio_bitrate_kbps
            .or(file.audio.bitrate_kbps)
            .unwrap_or(32);
        if !(6..=510).contains(&audio_kbps) {
            return Err(invalid(
                "audio.bitrate_kbps",
                format!("must be from 6 to 510, got {audio_kbps}"),
            ));
        }
        let audio = AudioConfig {
            source: audio_source,
            channels: audio_channels,
            bitrate_bps: audio_kbps * 1000,
        };

        let max_viewers = flags.max_viewers.or(file.sessions.max_viewers).unwrap_or(4);
        if !(1..=64).contains(&max_viewers) {
            return Err(invalid(
                "sessions.max_viewers",
                format!("must be from 1 to 64, got {max_viewers}"),
            ));
        }
        let timeout_secs = flags
            .session_timeout
            .or(file.sessions.timeout_secs)
            .unwrap_or(30);
        if !(1..=3600).contains(&timeout_secs) {
            return Err(invalid(
                "sessions.timeout_secs",
                format!("must be from 1 to 3600, got {timeout_secs}"),
            ));
        }
        let connect_timeout_secs = flags
            .connect_timeout
            .or(file.sessions.connect_timeout_secs)
            .unwrap_or(10);
        if !(1..=3600).contains(&connect_timeout_secs) {
            return Err(invalid(
                "sessions.connect_timeout_secs",
                format!("must be from 1 to 3600, got {connect_timeout_secs}"),
            ));
        }
        let idle_grace_secs = flags
            .idle_grace
            .or(file.sessions.idle_grace_secs)
            .unwrap_or(10);
        if idle_grace_secs > 3600 {
            return Err(invalid(
                "sessions.idle_grace_secs",
                format!("must be from 0 to 3600, got {idle_grace_secs}"),
            ));
        }
        let keyframe_min_ms = flags
            .keyframe_min_interval_ms
            .or(file.sessions.keyframe_min_interval_ms)
            .unwrap_or(500);
        if keyframe_min_ms > 60_000 {
            return Err(invalid(
                "sessions.keyframe_min_interval_ms",
                format!("must be from 0 to 60000, got {keyframe_min_ms}"),
            ));
        }
        let sessions = SessionConfig {
            max_viewers,
            timeout: Duration::from_secs(timeout_secs),
            connect_timeout: Duration::from_secs(connect_timeout_secs.min(timeout_secs)),
            idle_grace: Duration::from_secs(idle_grace_secs),
            keyframe_min_interval: Duration::from_millis(keyframe_min_ms),
        };

        let servers = if flags.ice_servers.is_empty() {
            ice_server_list(file.ice.servers.unwrap_or_default())
        } else {
            flags
                .ice_servers
                .into_iter()
                .map(|url| IceServer {
                    urls: vec![url],
                    username: None,
                    credential: None,
                })
                .collect::<Vec<_>>()
        };
        check_ice_servers("ice.servers", &servers)?;
        let interfaces = if flags.ice_interfaces.is_empty() {
            file.ice.interfaces.unwrap_or_default()
        } else {
            flags.ice_interfaces
        };
        if let Some(bad) = interfaces.iter().find(|i| i.trim().is_empty()) {
            return Err(invalid(
                "ice.interfaces",
                format!("{bad:?} is not an interface name or IP address"),
            ));
        }
        let ice = IceConfig {
            servers,
            interfaces,
            loopback_only: flags.ice_loopback_only || file.ice.loopback_only.unwrap_or(false),
            tls_ca_file: file.ice.tls_ca_file,
        };

        let public = flags.public || file.web.public.unwrap_or(false);
        let listen_key = |key: &'static str, value: Option<String>, default: &str| {
            let text = value.unwrap_or_else(|| default.to_owned());
            let addr = text
                .parse::<SocketAddr>()
                .map_err(|_| invalid(key, format!("{text:?} is not an address:port")))?;
            // Public opens every listener to the network; the port stays as configured.
            Ok::<_, ConfigError>(if public {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port())
            } else {
                addr
            })
        };
        let broker_ws_url = flags.broker_ws_url.or(file.web.broker_ws_url);
        if let Some(url) = &broker_ws_url
            && !(url.starts_with("ws://") || url.starts_with("wss://"))
        {
            return Err(invalid(
                "web.broker_ws_url",
                format!("{url:?} must start with ws:// or wss://"),
            ));
        }
        let web = WebConfig {
            listen: listen_key(
                "web.listen",
                flags.http_listen.or(file.web.listen),
                "127.0.0.1:8080",
            )?,
            broker_ws_url,
            ice_servers: ice_server_list(file.web.ice_servers.unwrap_or_default()),
            whep_token: flags
                .whep_token
                .or(file.web.whep_token)
                .filter(|token| !token.is_empty())
                .map(Secret),
        };
        check_ice_servers("web.ice_servers", &web.ice_servers)?;
        let embedded_broker = if mqtt.broker.is_some() {
            None
        } else {
            let username = flags.embedded_broker_username.or(file.broker.username);
            let password = flags.embedded_broker_password.or(file.broker.password);
            if username.is_some() != password.is_some() {
                return Err(invalid(
                    "broker.username",
                    "the embedded broker needs both a username and a password, or neither",
                ));
            }
            Some(EmbeddedBrokerConfig {
                listen: listen_key(
                    "broker.listen",
                    flags.embedded_broker_listen.or(file.broker.listen),
                    "127.0.0.1:1883",
                )?,
                // Pages reach it through the page's own origin (web.listen, /mqtt); this
                // listener stays where it is configured, on loopback by default, even with
                // --public. Port 0: any free port.
                ws_listen: {
                    let text = flags
                        .embedded_broker_ws_listen
                        .or(file.broker.ws_listen)
                        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
                    text.parse::<SocketAddr>().map_err(|_| {
                        invalid(
                            "broker.ws_listen",
                            format!("{text:?} is not an address:port"),
                        )
                    })?
                },
                username,
                password: password.map(Secret),
            })
        };

        let anyone_may_watch =
            flags.public_without_password || file.web.public_without_password.unwrap_or(false);
        if public
            && !anyone_may_watch
            && embedded_broker
                .as_ref()
                .is_some_and(|broker| broker.password.is_none())
        {
            return Err(invalid(
                "web.public",
                "the embedded broker would be open to the whole network without a password: set \
                 broker.username and broker.password, or say --public-without-password \
                 (web.public_without_password = true) to let anyone watch",
            ));
        }

        Ok(Self {
            device_id,
            cameras,
            mqtt,
            video,
            audio,
            sessions,
            ice,
            web,
            embedded_broker,
            public,
        })
    }
}

/// The host name, made into a valid topic segment: anything outside [A-Za-z0-9_-] becomes '-'.
/// The `[[cameras]]` entries: each needs an id of its own and a source of its own; what it
/// leaves out it takes from the first camera's settings.
fn resolve_cameras(
    first_id: &Segment,
    first: &VideoSection,
    sections: Vec<CameraSection>,
) -> Result<Vec<CameraConfig>, ConfigError> {
    if sections.len() > MAX_EXTRA_CAMERAS {
        return Err(invalid(
            "cameras",
            format!(
                "at most {MAX_EXTRA_CAMERAS} cameras besides the first, got {}",
                sections.len()
            ),
        ));
    }
    let mut ids = vec![first_id.clone()];
    let mut sources: Vec<SourceKind> = Vec::new();
    let mut cameras = Vec::with_capacity(sections.len());
    for section in sections {
        let id = section
            .id
            .ok_or_else(|| {
                invalid(
                    "cameras.id",
                    "every [[cameras]] entry needs an id".to_owned(),
                )
            })
            .and_then(|id| Segment::parse(&id).map_err(|e| invalid("cameras.id", e.to_string())))?;
        if ids.contains(&id) {
            return Err(invalid(
                "cameras.id",
                format!("{id} is used twice: every camera needs an id of its own"),
            ));
        }
        let video = resolve_video(VideoSection {
            source: section.source,
            width: section.width.or(first.width),
            height: section.height.or(first.height),
            fps: section.fps.or(first.fps),
            bitrate_kbps: section.bitrate_kbps.or(first.bitrate_kbps),
            keyframe_interval_secs: section
                .keyframe_interval_secs
                .or(first.keyframe_interval_secs),
            h264_passthrough: section.h264_passthrough.or(first.h264_passthrough),
            rpicam_vid: first.rpicam_vid.clone(),
            encoder: section.encoder.or(first.encoder.clone()),
        })
        .map_err(|e| match e {
            ConfigError::Invalid { reason, .. } => invalid("cameras", format!("{id}: {reason}")),
            other => other,
        })?;
        if matches!(video.source, SourceKind::Auto) {
            return Err(invalid(
                "cameras.source",
                format!("{id} needs a source of its own (a device path, rpicam:N or test)"),
            ));
        }
        if video.source != SourceKind::TestPattern && sources.contains(&video.source) {
            return Err(invalid(
                "cameras.source",
                format!(
                    "{id}: {:?} is already another camera's source",
                    video.source
                ),
            ));
        }
        sources.push(video.source.clone());
        ids.push(id.clone());
        cameras.push(CameraConfig {
            device_id: id,
            video,
        });
    }
    Ok(cameras)
}

/// Validates one camera's video settings (the primary's or a `[[cameras]]` entry's, already
/// merged with what it inherits).
fn resolve_video(input: VideoSection) -> Result<VideoConfig, ConfigError> {
    let source = match input.source.as_deref().unwrap_or("auto") {
        "auto" => SourceKind::Auto,
        "test" => SourceKind::TestPattern,
        "rpicam" => SourceKind::CameraModule(0),
        path if path.starts_with('/') => SourceKind::Camera(path.into()),
        other => match other
            .strip_prefix("rpicam:")
            .and_then(|index| index.parse().ok())
        {
            Some(index) => SourceKind::CameraModule(index),
            None => {
                return Err(invalid(
                    "video.source",
                    format!(
                        "unknown source {other:?}: use \"auto\", \"test\", \"rpicam\" \
                         (or \"rpicam:N\" for camera module N) or a camera's device path \
                         such as /dev/video0"
                    ),
                ));
            }
        },
    };
    let width = input.width.unwrap_or(640);
    if !(16..=3840).contains(&width) || !width.is_multiple_of(2) {
        return Err(invalid(
            "video.width",
            format!("must be an even number from 16 to 3840, got {width}"),
        ));
    }
    let height = input.height.unwrap_or(480);
    if !(16..=2160).contains(&height) || !height.is_multiple_of(2) {
        return Err(invalid(
            "video.height",
            format!("must be an even number from 16 to 2160, got {height}"),
        ));
    }
    let fps = input.fps.unwrap_or(30);
    if !(1..=60).contains(&fps) {
        return Err(invalid(
            "video.fps",
            format!("must be from 1 to 60, got {fps}"),
        ));
    }
    let bitrate_kbps = input.bitrate_kbps.unwrap_or(1500);
    if !(50..=50_000).contains(&bitrate_kbps) {
        return Err(invalid(
            "video.bitrate_kbps",
            format!("must be from 50 to 50000, got {bitrate_kbps}"),
        ));
    }
    let keyframe_secs = input.keyframe_interval_secs.unwrap_or(2.0);
    let keyframe_interval = if keyframe_secs == 0.0 {
        None
    } else if keyframe_secs.is_finite() && (0.1..=600.0).contains(&keyframe_secs) {
        Some(Duration::from_secs_f64(keyframe_secs))
    } else {
        return Err(invalid(
            "video.keyframe_interval_secs",
            format!("must be 0 (on demand only) or from 0.1 to 600, got {keyframe_secs}"),
        ));
    };
    let encoder = match input.encoder.as_deref().unwrap_or("auto") {
        "auto" => EncoderChoice::Auto,
        "openh264" => EncoderChoice::OpenH264,
        "v4l2m2m" => EncoderChoice::V4l2M2m(None),
        other => match other.strip_prefix("v4l2m2m:") {
            Some(path) if path.starts_with('/') => EncoderChoice::V4l2M2m(Some(path.into())),
            _ => {
                return Err(invalid(
                    "video.encoder",
                    format!(
                        "unknown encoder {other:?}: use \"auto\", \"openh264\", \
                         \"v4l2m2m\" or \"v4l2m2m:/dev/videoN\""
                    ),
                ));
            }
        },
    };
    Ok(VideoConfig {
        source,
        width,
        height,
        fps,
        bitrate_bps: bitrate_kbps * 1000,
        keyframe_interval,
        h264_passthrough: input.h264_passthrough.unwrap_or(false),
        rpicam_vid: input.rpicam_vid,
        encoder,
    })
}

fn default_device_id() -> Segment {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let cleaned: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(crate::protocol::MAX_SEGMENT_LEN)
        .collect();
    Segment::parse(&cleaned).unwrap_or_else(|_| Segment::parse("campeer").expect("valid literal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml_text: &str, flags: Overrides) -> Result<Config, ConfigError> {
        Config::resolve(FileConfig::parse(toml_text).unwrap(), flags)
    }

    fn key_of(err: ConfigError) -> &'static str {
        match err {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("expected an invalid key, got {other}"),
        }
    }

    #[test]
    fn defaults_match_the_documentation() {
        let config = resolve("", Overrides::default()).unwrap();
        assert_eq!(config.video.width, 640);
        assert_eq!(config.video.height, 480);
        assert_eq!(config.video.fps, 30);
        assert_eq!(config.video.bitrate_bps, 1_500_000);
        assert_eq!(config.video.source, SourceKind::Auto);
        assert_eq!(config.video.keyframe_interval, Some(Duration::from_secs(2)));
        assert_eq!(config.sessions.max_viewers, 4);
        assert_eq!(
            config.audio,
            AudioConfig {
                source: AudioSourceKind::Auto,
                channels: 1,
                bitrate_bps: 32_000
            }
        );
        assert_eq!(config.mqtt.prefix.to_string(), "campeer");
        assert!(config.mqtt.broker.is_none());
        assert!(!config.ice.loopback_only);
        let prefix = format!("campeer-{}-", config.device_id);
        let suffix = config
            .mqtt
            .client_id
            .strip_prefix(&prefix)
            .expect("the device id in the client id");
        assert!(
            suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
            "{}",
            config.mqtt.client_id
        );
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = r#"
            [mqtt]
            broker = "mqtt://10.0.0.1"
            [video]
            width = 320
            height = 240
            [sessions]
            max_viewers = 2
        "#;
        let flags = Overrides {
            broker: Some("mqtt://127.0.0.1:1999".into()),
            width: Some(1280),
            ..Default::default()
        };
        let config = resolve(file, flags).unwrap();
        assert_eq!(
            config.mqtt.broker,
            Some(BrokerAddress {
                host: "127.0.0.1".into(),
                port: 1999,
                tls: false
            })
        );
        assert_eq!(config.video.width, 1280);
        assert_eq!(config.video.height, 240);
        assert_eq!(config.sessions.max_viewers, 2);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[video]\nwidth = 641", "video.width"),
            ("[video]\nheight = 0", "video.height"),
            ("[video]\nfps = 0", "video.fps"),
            ("[video]\nbitrate_kbps = 1", "video.bitrate_kbps"),
            (
                "[video]\nkeyframe_interval_secs = -1.0",
                "video.keyframe_interval_secs",
            ),
            ("[video]\nsource = \"webcam\"", "video.source"),
            ("[audio]\nsource = \"\"", "audio.source"),
            ("[audio]\nchannels = 3", "audio.channels"),
            ("[audio]\nbitrate_kbps = 600", "audio.bitrate_kbps"),
            ("[mqtt]\nbroker = \"http://x\"", "mqtt.broker"),
            ("[mqtt]\nbroker = \"mqtt://x:99999\"", "mqtt.broker"),
            ("[mqtt]\nprefix = \"a/+\"", "mqtt.prefix"),
            ("[device]\nid = \"my cam\"", "device.id"),
            ("[sessions]\nmax_viewers = 0", "sessions.max_viewers"),
            ("[sessions]\ntimeout_secs = 0", "sessions.timeout_secs"),
            ("[ice]\nservers = [{urls = [\"http://x\"]}]", "ice.servers"),
            ("[ice]\nservers = [{urls = [\"turn:x\"]}]", "ice.servers"),
            (
                "[web]\nice_servers = [{urls = [\"turn:x\"]}]",
                "web.ice_servers",
            ),
            ("[web]\nice_servers = [{urls = []}]", "web.ice_servers"),
        ];
        for (text, key) in cases {
            let err = resolve(text, Overrides::default()).expect_err(text);
            assert_eq!(key_of(err), key, "{text}");
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_page_gets_its_own_ice_servers_tcp_turn_included() {
        let text = "[web]\nice_servers = [{urls = [\"turn:t.example:3478?transport=tcp\"], \
                    username = \"u\", credential = \"c\"}]";
        let config = resolve(text, Overrides::default()).unwrap();
        let [server] = &config.web.ice_servers[..] else {
            panic!("{:?}", config.web.ice_servers);
        };
        assert_eq!(server.urls, ["turn:t.example:3478?transport=tcp"]);
        assert_eq!(server.credential.as_ref().map(|c| c.0.as_str()), Some("c"));
        assert!(
            config.ice.servers.is_empty(),
            "campeer's own list stays empty"
        );
    }

    #[test]
    fn no_broker_means_the_embedded_one_on_loopback() {
        let config = resolve("", Overrides::default()).unwrap();
        let embedded = config.embedded_broker.expect("embedded broker");
        assert_eq!(embedded.listen, addr("127.0.0.1:1883"));
        assert_eq!(
            embedded.ws_listen,
            addr("127.0.0.1:0"),
            "internal: pages use /mqtt"
        );
        assert_eq!(config.web.listen, addr("127.0.0.1:8080"));
        assert!(!config.public);
        let external = resolve("[mqtt]\nbroker = \"mqtt://h\"", Overrides::default()).unwrap();
        assert!(external.embedded_broker.is_none());
    }

    #[test]
    fn public_opens_every_listener_and_keeps_ports() {
        let flags = Overrides {
            public: true,
            http_listen: Some("127.0.0.1:9000".into()),
            embedded_broker_username: Some("viewer".into()),
            embedded_broker_password: Some("secret".into()),
            ..Default::default()
        };
        let config = resolve("", flags).unwrap();
        assert_eq!(config.web.listen, addr("0.0.0.0:9000"));
        let embedded = config.embedded_broker.unwrap();
        assert_eq!(embedded.listen, addr("0.0.0.0:1883"));
        assert_eq!(
            embedded.ws_listen,
            addr("127.0.0.1:0"),
            "pages reach it through web.listen"
        );
    }

    #[test]
    fn public_without_a_broker_password_must_be_asked_for() {
        let open = Overrides {
            public: true,
            ..Default::default()
        };
        let err = resolve("", open).expect_err("an open public broker was accepted");
        assert_eq!(key_of(err), "web.public");
        let explicit = Overrides {
            public: true,
            public_without_password: true,
            ..Default::default()
        };
        assert!(resolve("", explicit).unwrap().public);
        let from_file = Overrides {
            public: true,
            ..Default::default()
        };
        assert!(resolve("[web]\npublic_without_password = true", from_file).is_ok());
        let external = Overrides {
            public: true,
            broker: Some("mqtt://broker.example".into()),
            ..Default::default()
        };
        assert!(
            resolve("", external).is_ok(),
            "its own broker fences itself"
        );
    }

    #[test]
    fn web_and_broker_values_are_validated() {
        for (text, key) in [
            ("[web]\nlisten = \"localhost\"", "web.listen"),
            ("[web]\nbroker_ws_url = \"http://x\"", "web.broker_ws_url"),
            ("[broker]\nws_listen = \"1.2.3.4\"", "broker.ws_listen"),
            ("[broker]\nusername = \"u\"", "broker.username"),
        ] {
            let err = resolve(text, Overrides::default()).expect_err(text);
            assert_eq!(key_of(err), key, "{text}");
        }
    }

    #[test]
    fn audio_sources_parse() {
        let source = |text: &str| {
            resolve(&format!("[audio]\nsource = {text:?}"), Overrides::default())
                .unwrap()
                .audio
                .source
        };
        assert_eq!(source("auto"), AudioSourceKind::Auto);
        assert_eq!(source("none"), AudioSourceKind::None);
        assert_eq!(source("test"), AudioSourceKind::TestTone);
        assert_eq!(
            source("plughw:CARD=Device"),
            AudioSourceKind::Alsa("plughw:CARD=Device".into())
        );
        let flags = Overrides {
            audio_source: Some("test".into()),
            audio_channels: Some(2),
            ..Default::default()
        };
        let audio = resolve("[audio]\nsource = \"default\"", flags)
            .unwrap()
            .audio;
        assert_eq!(audio.source, AudioSourceKind::TestTone, "the flag wins");
        assert_eq!(audio.channels, 2);
    }

    #[test]
    fn more_cameras_take_what_they_leave_out_from_the_first() {
        let config = resolve(
            "[device]\nid = \"porch\"\n[video]\nsource = \"/dev/video0\"\nwidth = 1280\n\
             height = 720\nfps = 25\n\
             [[cameras]]\nid = \"garden\"\nsource = \"rpicam:1\"\nwidth = 640\nheight = 480\n\
             [[cameras]]\nid = \"bench\"\nsource = \"test\"\n",
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.device_id.as_str(), "porch");
        assert_eq!(config.cameras.len(), 2);
        let garden = &config.cameras[0];
        assert_eq!(garden.device_id.as_str(), "garden");
        assert_eq!(garden.video.source, SourceKind::CameraModule(1));
        assert_eq!((garden.video.width, garden.video.height), (640, 480));
        assert_eq!(garden.video.fps, 25, "inherited");
        let bench = &config.cameras[1];
        assert_eq!((bench.video.width, bench.video.height), (1280, 720));
        // One camera: nothing changes.
        assert!(
            resolve("", Overrides::default())
                .unwrap()
                .cameras
                .is_empty()
        );
    }

    #[test]
    fn more_cameras_need_ids_and_sources_of_their_own() {
        let err = |text: &str| resolve(text, Overrides::default()).unwrap_err().to_string();
        let base = "[device]\nid = \"porch\"\n[video]\nsource = \"/dev/video0\"\n";
        for (extra, key) in [
            ("[[cameras]]\nsource = \"test\"", "cameras.id"),
            (
                "[[cameras]]\nid = \"porch\"\nsource = \"test\"",
                "cameras.id",
            ),
            ("[[cameras]]\nid = \"a/b\"\nsource = \"test\"", "cameras.id"),
            ("[[cameras]]\nid = \"garden\"", "cameras.source"),
            (
                "[[cameras]]\nid = \"a\"\nsource = \"rpicam\"\n[[cameras]]\nid = \"b\"\nsource = \"rpicam:0\"",
                "cameras.source",
            ),
            (
                "[[cameras]]\nid = \"a\"\nsource = \"test\"\nwidth = 7",
                "cameras",
            ),
        ] {
            let message = err(&format!("{base}{extra}"));
            assert!(message.contains(key), "{extra:?}: {message}");
        }
        let many: String = (0..=MAX_EXTRA_CAMERAS)
            .map(|i| format!("[[cameras]]\nid = \"c{i}\"\nsource = \"test\"\n"))
            .collect();
        assert!(err(&format!("{base}{many}")).contains("at most"));
        let typo = FileConfig::parse("[[cameras]]\nid = \"a\"\nheigth = 7").unwrap_err();
        assert!(typo.contains("heigth"), "{typo}");
    }

    #[test]
    fn sources_parse() {
        let source = |text: &str| {
            resolve(&format!("[video]\nsource = {text:?}"), Overrides::default())
                .unwrap()
                .video
                .source
        };
        assert_eq!(source("test"), SourceKind::TestPattern);
        assert_eq!(source("auto"), SourceKind::Auto);
        assert_eq!(
            source("/dev/video2"),
            SourceKind::Camera("/dev/video2".into())
        );
        let encoder = |text: &str| {
            resolve(
                &format!("[video]\nencoder = {text:?}"),
                Overrides::default(),
            )
            .map(|c| c.video.encoder)
            .map_err(|e| e.to_string())
        };
        assert_eq!(encoder("auto").unwrap(), EncoderChoice::Auto);
        assert_eq!(encoder("openh264").unwrap(), EncoderChoice::OpenH264);
        assert_eq!(encoder("v4l2m2m").unwrap(), EncoderChoice::V4l2M2m(None));
        assert_eq!(
            encoder("v4l2m2m:/dev/video11").unwrap(),
            EncoderChoice::V4l2M2m(Some("/dev/video11".into()))
        );
        for bad in ["x264", "v4l2m2m:", "v4l2m2m:video11"] {
            assert!(encoder(bad).unwrap_err().contains("video.encoder"), "{bad}");
        }
        assert_eq!(source("rpicam"), SourceKind::CameraModule(0));
        assert_eq!(source("rpicam:1"), SourceKind::CameraModule(1));
        for bad in ["rpicam:", "rpicam:x", "rpicam:-1", "video0"] {
            let err = resolve(&format!("[video]\nsource = {bad:?}"), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("video.source"), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = FileConfig::parse("[video]\nwidht = 320").unwrap_err();
        assert!(err.contains("widht"), "{err}");
    }

    #[test]
    fn broker_urls_parse() {
        assert_eq!(
            BrokerAddress::parse("mqtt://broker.local").unwrap(),
            BrokerAddress {
                host: "broker.local".into(),
                port: 1883,
                tls: false
            }
        );
        assert_eq!(
            BrokerAddress::parse("tcp://[::1]:1884").unwrap(),
            BrokerAddress {
                host: "::1".into(),
                port: 1884,
                tls: false
            }
        );
        assert!(BrokerAddress::parse("mqtt://user:pw@host").is_err());
        assert_eq!(
            BrokerAddress::parse("mqtts://broker.example").unwrap(),
            BrokerAddress {
                host: "broker.example".into(),
                port: 8883,
                tls: true
            }
        );
        assert!(BrokerAddress::parse("ws://host").is_err());
        assert!(BrokerAddress::parse("mqtt://").is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let flags = Overrides {
            mqtt_password: Some("hunter2".into()),
            ..Default::default()
        };
        let config = resolve("", flags).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn host_name_becomes_a_valid_device_id() {
        let id = default_device_id();
        assert!(Segment::parse(id.as_str()).is_ok());
    }
}
