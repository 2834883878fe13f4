//! The file's sections, one type each. A section's `Default` is the one place its defaults are
//! written: `--help`, the configuration reference (docs/configuration.md) and the packaged
//! example file all show what it says. Each section checks its own ranges beside its fields.

use super::values::SourceKind;
use super::values::{AudioSourceKind, BrokerAddress, EncoderChoice, IceServer, Secret, text};
use super::{ConfigError, invalid};
use crate::protocol::{Prefix, Segment};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `[mqtt]`: the broker campeer signals through.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// The brokers (`broker = "mqtt://..."`, or a list of them), tried in turn: a fleet's
    /// broker cluster, each node by its address. Empty: campeer runs its own embedded broker
    /// (`[broker]`).
    #[serde(
        rename = "broker",
        with = "text::one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub brokers: Vec<BrokerAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(with = "text")]
    pub prefix: Prefix,
    /// Left out: `campeer-<device id>-<8 random hex digits>`, filled in by
    /// [`super::Config::resolve`], so no other client can guess it and take campeer's
    /// connection over (the broker drops the older of two connections with one id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub keep_alive_secs: u64,
    /// PEM certificates trusted for an mqtts:// broker, besides the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and private key campeer presents to an mqtts:// broker that asks
    /// for client certificates: both or neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            brokers: Vec::new(),
            username: None,
            password: None,
            prefix: Prefix::parse("campeer").expect("a valid literal prefix"),
            client_id: None,
            keep_alive_secs: 15,
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// The most brokers `mqtt.broker` may list: a cluster's nodes, not a scan of the network.
pub const MAX_BROKERS: usize = 16;

impl MqttConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(client_id) = &self.client_id
            && (client_id.is_empty() || client_id.len() > 128)
        {
            return Err(invalid(
                "mqtt.client_id",
                "must be 1 to 128 characters long",
            ));
        }
        if !(5..=3600).contains(&self.keep_alive_secs) {
            return Err(invalid(
                "mqtt.keep_alive_secs",
                format!("must be from 5 to 3600, got {}", self.keep_alive_secs),
            ));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(invalid(
                "mqtt.client_cert",
                "mqtt.client_cert and mqtt.client_key go together",
            ));
        }
        if self.brokers.len() > MAX_BROKERS {
            return Err(invalid(
                "mqtt.broker",
                format!(
                    "lists {} brokers; at most {MAX_BROKERS} are tried in turn",
                    self.brokers.len()
                ),
            ));
        }
        let any_tls = self.ca_file.is_some() || self.client_cert.is_some();
        if any_tls && !self.brokers.iter().any(|b| b.tls) {
            return Err(invalid(
                "mqtt.ca_file",
                "TLS settings need an mqtts:// broker",
            ));
        }
        Ok(())
    }

    /// The client id: always set once the configuration is resolved.
    pub fn client_id(&self) -> &str {
        self.client_id.as_deref().unwrap_or("campeer")
    }

    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_secs)
    }

    /// The client certificate and its key, when both are given.
    pub fn client_certificate(&self) -> Option<(PathBuf, PathBuf)> {
        self.client_cert.clone().zip(self.client_key.clone())
    }
}

/// `[device]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceSection {
    /// Left out: the host name, made into a topic segment.
    #[serde(with = "text::optional", skip_serializing_if = "Option::is_none")]
    pub id: Option<Segment>,
}

/// `[video]`, and each `[[cameras]]` entry (which takes what it leaves out from `[video]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    #[serde(with = "text")]
    pub source: SourceKind,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// 0: keyframes only when a viewer needs one.
    pub keyframe_interval_secs: f64,
    /// Pass H.264 from a camera that produces it through without re-encoding.
    pub h264_passthrough: bool,
    /// The rpicam-vid program; `None`: look for it on PATH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpicam_vid: Option<PathBuf>,
    #[serde(with = "text")]
    pub encoder: EncoderChoice,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            source: SourceKind::Auto,
            width: 640,
            height: 480,
            fps: 30,
            bitrate_kbps: 1500,
            keyframe_interval_secs: 2.0,
            h264_passthrough: false,
            rpicam_vid: None,
            encoder: EncoderChoice::Auto,
        }
    }
}

impl VideoConfig {
    /// `section` names where the values came from: `video`, or `cameras` for an extra camera.
    pub(super) fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let key = |field: &str| format!("{section}.{field}");
        if !(16..=3840).contains(&self.width) || !self.width.is_multiple_of(2) {
            return Err(invalid(
                key("width"),
                format!("must be an even number from 16 to 3840, got {}", self.width),
            ));
        }
        if !(16..=2160).contains(&self.height) || !self.height.is_multiple_of(2) {
            return Err(invalid(
                key("height"),
                format!(
                    "must be an even number from 16 to 2160, got {}",
                    self.height
                ),
            ));
        }
        if !(1..=60).contains(&self.fps) {
            return Err(invalid(
                key("fps"),
                format!("must be from 1 to 60, got {}", self.fps),
            ));
        }
        if !(50..=50_000).contains(&self.bitrate_kbps) {
            return Err(invalid(
                key("bitrate_kbps"),
                format!("must be from 50 to 50000, got {}", self.bitrate_kbps),
            ));
        }
        let keyframe_secs = self.keyframe_interval_secs;
        if keyframe_secs != 0.0
            && !(keyframe_secs.is_finite() && (0.1..=600.0).contains(&keyframe_secs))
        {
            return Err(invalid(
                key("keyframe_interval_secs"),
                format!("must be 0 (on demand only) or from 0.1 to 600, got {keyframe_secs}"),
            ));
        }
        Ok(())
    }

    pub fn bitrate_bps(&self) -> u32 {
        self.bitrate_kbps.saturating_mul(1000)
    }

    /// `None`: keyframes only on demand.
    pub fn keyframe_interval(&self) -> Option<Duration> {
        (self.keyframe_interval_secs > 0.0)
            .then(|| Duration::try_from_secs_f64(self.keyframe_interval_secs).ok())
            .flatten()
    }
}

/// `[audio]`: the microphone, which goes with the first camera.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    #[serde(with = "text")]
    pub source: AudioSourceKind,
    pub channels: u8,
    pub bitrate_kbps: u32,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            source: AudioSourceKind::Auto,
            channels: 1,
            bitrate_kbps: 32,
        }
    }
}

impl AudioConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=2).contains(&self.channels) {
            return Err(invalid(
                "audio.channels",
                format!("must be 1 (mono) or 2 (stereo), got {}", self.channels),
            ));
        }
        if !(6..=510).contains(&self.bitrate_kbps) {
            return Err(invalid(
                "audio.bitrate_kbps",
                format!("must be from 6 to 510, got {}", self.bitrate_kbps),
            ));
        }
        Ok(())
    }

    pub fn bitrate_bps(&self) -> u32 {
        self.bitrate_kbps.saturating_mul(1000)
    }
}

/// `[sessions]`: how many viewers, and how long each may take.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    pub max_viewers: usize,
    pub timeout_secs: u64,
    pub connect_timeout_secs: u64,
    pub idle_grace_secs: u64,
    pub keyframe_min_interval_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_viewers: 4,
            timeout_secs: 30,
            connect_timeout_secs: 10,
            idle_grace_secs: 10,
            keyframe_min_interval_ms: 500,
        }
    }
}

impl SessionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let in_range = |key: &str, value: u64, low: u64, high: u64| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(invalid(
                    key,
                    format!("must be from {low} to {high}, got {value}"),
                ))
            }
        };
        in_range("sessions.max_viewers", self.max_viewers as u64, 1, 64)?;
        in_range("sessions.timeout_secs", self.timeout_secs, 1, 3600)?;
        in_range(
            "sessions.connect_timeout_secs",
            self.connect_timeout_secs,
            1,
            3600,
        )?;
        in_range("sessions.idle_grace_secs", self.idle_grace_secs, 0, 3600)?;
        in_range(
            "sessions.keyframe_min_interval_ms",
            self.keyframe_min_interval_ms,
            0,
            60_000,
        )
    }

    /// How long a session may spend unconnected before it is torn down.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// From offer to first connection: an offer that never connects holds a viewer slot no
    /// longer than this, and never longer than [`Self::timeout`].
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.min(self.timeout_secs))
    }

    pub fn idle_grace(&self) -> Duration {
        Duration::from_secs(self.idle_grace_secs)
    }

    pub fn keyframe_min_interval(&self) -> Duration {
        Duration::from_millis(self.keyframe_min_interval_ms)
    }
}

/// `[ice]`: how campeer's own peer connections find a path to viewers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IceConfig {
    pub servers: Vec<IceServer>,
    /// Interface names or IP addresses; empty means every non-loopback interface.
    pub interfaces: Vec<String>,
    pub loopback_only: bool,
    /// Certificates (PEM) trusted for `turns:` servers besides the system's: a TURN server
    /// with a private CA or a self-signed certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
}

impl IceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_ice_servers("ice.servers", &self.servers)?;
        if let Some(bad) = self.interfaces.iter().find(|i| i.trim().is_empty()) {
            return Err(invalid(
                "ice.interfaces",
                format!("{bad:?} is not an interface name or IP address"),
            ));
        }
        Ok(())
    }
}

/// `[web]`: the built-in viewer page and WHEP.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub listen: SocketAddr,
    /// The page and the embedded broker listen on every interface.
    pub public: bool,
    /// With `public` and the embedded broker: the broker may run without a password.
    pub public_without_password: bool,
    /// What browsers connect to; `None` with the embedded broker (the page uses the host it
    /// was loaded from and the embedded broker's WebSocket port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_ws_url: Option<String>,
    /// STUN and TURN servers for browsers, given to the page as they are (credentials too: a
    /// browser needs them to allocate a relay, so they are no secret from viewers).
    pub ice_servers: Vec<IceServer>,
    /// The bearer token WHEP players must send, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whep_token: Option<Secret>,
    /// Prometheus metrics on `/metrics`: open on a loopback listener, behind `whep_token`
    /// otherwise.
    pub metrics: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public: false,
            public_without_password: false,
            broker_ws_url: None,
            ice_servers: Vec::new(),
            whep_token: None,
            metrics: true,
        }
    }
}

impl WebConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.broker_ws_url
            && !(url.starts_with("ws://") || url.starts_with("wss://"))
        {
            return Err(invalid(
                "web.broker_ws_url",
                format!("{url:?} must start with ws:// or wss://"),
            ));
        }
        check_ice_servers("web.ice_servers", &self.ice_servers)
    }
}

/// `[rtsp]`: RTSP for NVRs, Home Assistant's Generic Camera and players, from the one encode.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtspConfig {
    /// Where readers connect (`rtsp://HOST:PORT/<device>`); off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Readers served at once, over every device; one more is answered 503.
    pub max_readers: usize,
    /// Digest credentials readers must give; required when `listen` is not loopback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}

/// Most RTSP readers allowed at once: each costs a task and its socket's buffers, and the
/// board's uplink carries the whole stream to each.
pub const MAX_RTSP_READERS: usize = 64;

impl Default for RtspConfig {
    fn default() -> Self {
        Self {
            listen: None,
            max_readers: 10,
            username: None,
            password: None,
        }
    }
}

impl RtspConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.username.is_some() != self.password.is_some() {
            return Err(invalid(
                "rtsp.username",
                "RTSP needs both a username and a password, or neither",
            ));
        }
        if !(1..=MAX_RTSP_READERS).contains(&self.max_readers) {
            return Err(invalid(
                "rtsp.max_readers",
                format!("must be between 1 and {MAX_RTSP_READERS}"),
            ));
        }
        if let Some(listen) = self.listen
            && !listen.ip().is_loopback()
            && self.password.is_none()
        {
            return Err(invalid(
                "rtsp.listen",
                format!(
                    "{listen} is reachable from the network: set rtsp.username and \
                     rtsp.password, which readers then give (Digest), or listen on loopback"
                ),
            ));
        }
        Ok(())
    }
}

/// `[motion]`: motion detection on the captured pictures, for every camera.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotionConfig {
    /// Detection runs (and keeps the camera open) whether or not anyone watches.
    pub enabled: bool,
    /// 0.0 (only large, strong changes) to 1.0 (small, faint ones).
    pub sensitivity: f64,
    /// The least share of the picture, outside the ignored rectangles, that must change.
    pub min_area: f64,
    /// Motion is over after this many seconds without any.
    pub quiet_secs: u64,
    /// Rectangles where nothing counts (a road, a tree), in fractions of the picture.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<IgnoredRectangle>,
}

/// A rectangle of the picture, its corner and size in fractions of the width and height:
/// `{ x = 0.0, y = 0.0, width = 0.5, height = 0.25 }` is the top left quarter's upper half.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoredRectangle {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// Ignored rectangles at most.
pub const MAX_IGNORED_RECTANGLES: usize = 16;

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            sensitivity: 0.5,
            min_area: 0.01,
            quiet_secs: 10,
            ignore: Vec::new(),
        }
    }
}

impl MotionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sensitivity) {
            return Err(invalid("motion.sensitivity", "must be from 0.0 to 1.0"));
        }
        if !(self.min_area > 0.0 && self.min_area <= 1.0) {
            return Err(invalid(
                "motion.min_area",
                "must be a share of the picture above 0.0 and at most 1.0",
            ));
        }
        if !(1..=3600).contains(&self.quiet_secs) {
            return Err(invalid("motion.quiet_secs", "must be from 1 to 3600"));
        }
        if self.ignore.len() > MAX_IGNORED_RECTANGLES {
            return Err(invalid(
                "motion.ignore",
                format!("at most {MAX_IGNORED_RECTANGLES} rectangles"),
            ));
        }
        for rectangle in &self.ignore {
            let IgnoredRectangle {
                x,
                y,
                width,
                height,
            } = *rectangle;
            let inside = (0.0..1.0).contains(&x)
                && (0.0..1.0).contains(&y)
                && width > 0.0
                && height > 0.0
                && x + width <= 1.0
                && y + height <= 1.0;
            if !inside {
                return Err(invalid(
                    "motion.ignore",
                    format!(
                        "{rectangle:?} is not inside the picture: x and y from 0.0, width and \
                         height above 0.0, x + width and y + height at most 1.0"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// How long motion lasts after the last of it.
    pub fn quiet(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.quiet_secs)
    }
}

/// What is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordMode {
    #[default]
    Off,
    /// Everything, in files of `segment_secs`.
    Continuous,
    /// Clips around motion, from `pre_roll_secs` before it to `post_roll_secs` after.
    Motion,
}

/// `[record]`: recording from the one encode, for every camera.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// "off", "continuous" or "motion" (clips around motion; needs motion.enabled).
    pub mode: RecordMode,
    /// Where recordings go: one folder per camera, files named by their start time.
    pub path: PathBuf,
    /// A new file this often (at the next keyframe).
    pub segment_secs: u64,
    /// A motion clip starts at least this long before the motion.
    pub pre_roll_secs: u64,
    /// A motion clip goes on this long after the motion stopped.
    pub post_roll_secs: u64,
    /// The oldest recordings are deleted to keep this much of the disk free.
    pub keep_free_mb: u64,
    /// Recordings older than this are deleted; 0 keeps them until space runs short.
    pub max_age_days: u64,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self {
            mode: RecordMode::Off,
            path: PathBuf::from("/var/lib/campeer/recordings"),
            segment_secs: 300,
            pre_roll_secs: 5,
            post_roll_secs: 10,
            keep_free_mb: 1024,
            max_age_days: 30,
        }
    }
}

/// The longest pre-roll: the ring holds it in memory.
pub const MAX_PRE_ROLL_SECS: u64 = 60;

impl RecordConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(10..=3600).contains(&self.segment_secs) {
            return Err(invalid("record.segment_secs", "must be from 10 to 3600"));
        }
        if self.pre_roll_secs > MAX_PRE_ROLL_SECS {
            return Err(invalid(
                "record.pre_roll_secs",
                format!("at most {MAX_PRE_ROLL_SECS}"),
            ));
        }
        if self.post_roll_secs > 600 {
            return Err(invalid("record.post_roll_secs", "at most 600"));
        }
        if self.mode != RecordMode::Off && !self.path.is_absolute() {
            return Err(invalid(
                "record.path",
                format!("{} must be an absolute path", self.path.display()),
            ));
        }
        Ok(())
    }

    /// Whether anything is recorded.
    pub fn enabled(&self) -> bool {
        self.mode != RecordMode::Off
    }
}

/// A `[[publish]]` entry: a device's stream published to a WHIP endpoint (an SFU's ingest).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// The WHIP endpoint: http:// or https://.
    pub url: String,
    /// The bearer token the endpoint wants, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// The device published; the first one when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// Publications at most: each is a peer connection and the whole stream on the uplink.
pub const MAX_PUBLICATIONS: usize = 8;

impl PublishConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let url = url::Url::parse(&self.url)
            .map_err(|e| invalid("publish.url", format!("{:?} is not a URL: {e}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(
                "publish.url",
                format!(
                    "{:?} must be an http:// or https:// URL with a host",
                    self.url
                ),
            ));
        }
        Ok(())
    }
}

/// `[broker]`: the broker campeer runs itself when `mqtt.broker` is not set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedBrokerConfig {
    pub listen: SocketAddr,
    /// Pages reach it through the page's own origin (`web.listen`, `/mqtt`), so this listener
    /// stays where it is set, on loopback by default, even with `web.public`. Port 0: any free
    /// port.
    pub ws_listen: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            ws_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            username: None,
            password: None,
        }
    }
}

impl EmbeddedBrokerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.username.is_some() != self.password.is_some() {
            return Err(invalid(
                "broker.username",
                "the embedded broker needs both a username and a password, or neither",
            ));
        }
        Ok(())
    }
}

/// Every server has a URL, every URL a STUN or TURN scheme, every TURN server a credential.
fn check_ice_servers(key: &str, servers: &[IceServer]) -> Result<(), ConfigError> {
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

/// The whole file: every section, every key optional. `[[cameras]]` entries are read apart
/// (see [`super::Config::resolve`]) because each takes what it leaves out from `[video]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sections {
    pub mqtt: MqttConfig,
    pub device: DeviceSection,
    pub video: VideoConfig,
    pub audio: AudioConfig,
    pub sessions: SessionConfig,
    pub ice: IceConfig,
    pub web: WebConfig,
    pub rtsp: RtspConfig,
    pub motion: MotionConfig,
    pub record: RecordConfig,
    pub broker: EmbeddedBrokerConfig,
    /// `[[publish]]` entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PublishConfig>,
}

impl Sections {
    /// Each section's own checks; those between sections are [`super::Config::resolve`]'s.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.mqtt.validate()?;
        self.video.validate("video")?;
        self.audio.validate()?;
        self.sessions.validate()?;
        self.ice.validate()?;
        self.web.validate()?;
        self.rtsp.validate()?;
        self.motion.validate()?;
        self.record.validate()?;
        if self.record.mode == RecordMode::Motion && !self.motion.enabled {
            return Err(invalid(
                "record.mode",
                "motion recording needs motion detection: set motion.enabled = true",
            ));
        }
        if self.record.mode == RecordMode::Motion && self.video.keyframe_interval().is_none() {
            return Err(invalid(
                "video.keyframe_interval_secs",
                "motion recording starts clips at a keyframe before the motion: periodic \
                 keyframes are needed (a value above 0)",
            ));
        }
        if self.publish.len() > MAX_PUBLICATIONS {
            return Err(invalid(
                "publish",
                format!("at most {MAX_PUBLICATIONS} publications"),
            ));
        }
        for publication in &self.publish {
            publication.validate()?;
        }
        self.broker.validate()
    }
}
