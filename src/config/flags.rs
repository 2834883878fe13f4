//! Command-line flags and CAMPEER_* environment variables: one overlay on the file. Each flag
//! is declared once, beside its help, by the file key it sets (`overrides!` makes that key its
//! clap id and its serde name), and nothing merges settings by hand: the flags that were given
//! become a small TOML table laid over the file's before the sections are read.

use super::{ConfigError, invalid};
use clap::builder::BoolishValueParser;
use serde::Serialize;
use std::path::PathBuf;

/// Declares [`Overrides`]. Each flag's file key is written once: it becomes the flag's clap id
/// (which `reference` reads to show the key's default in --help) and its serde name (which
/// [`Overrides::lay_over`] lays over the file's table).
macro_rules! overrides {
    ($(
        $(#[doc = $doc:literal])*
        $(#[serde($($serde:tt)*)])?
        $key:literal $field:ident: $ty:ty = arg($($arg:tt)*)
    ),* $(,)?) => {
        /// Flags and CAMPEER_* environment variables. clap gives flags precedence over the
        /// environment; [`super::Config::resolve`] gives both precedence over the file.
        #[derive(Debug, Default, Clone, clap::Args, Serialize)]
        pub struct Overrides {
            $(
                $(#[doc = $doc])*
                #[arg(id = $key, $($arg)*)]
                #[serde(rename = $key, skip_serializing_if = "Unset::is_unset")]
                $(#[serde($($serde)*)])?
                pub $field: $ty,
            )*
        }
    };
}

/// A flag left out: nothing to lay over the file.
trait Unset {
    fn is_unset(&self) -> bool;
}

impl<T> Unset for Option<T> {
    fn is_unset(&self) -> bool {
        self.is_none()
    }
}

impl<T> Unset for Vec<T> {
    fn is_unset(&self) -> bool {
        self.is_empty()
    }
}

overrides! {
    /// External MQTT broker, mqtt://host[:port] (port 1883 when omitted) or
    /// mqtts://host[:port] for TLS (port 8883). Repeat it, or separate URLs with commas, for a
    /// cluster's nodes: they are tried in turn. Without one, campeer runs its own embedded
    /// broker.
    "mqtt.broker" broker: Vec<String> = arg(
        long = "broker",
        env = "CAMPEER_BROKER",
        value_delimiter = ',',
        value_name = "URL",
    ),
    /// MQTT user name.
    "mqtt.username" mqtt_username: Option<String> = arg(
        long = "mqtt-username",
        env = "CAMPEER_MQTT_USERNAME",
        value_name = "NAME",
    ),
    /// MQTT password (prefer the environment or the config file over a flag). Never logged.
    "mqtt.password" mqtt_password: Option<String> = arg(
        long = "mqtt-password",
        env = "CAMPEER_MQTT_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
    ),
    /// Topic prefix: one or more segments of [A-Za-z0-9_-] joined by '/'.
    "mqtt.prefix" prefix: Option<String> = arg(long = "prefix", env = "CAMPEER_PREFIX"),
    /// MQTT client id. Left out: campeer-<device id>-<8 random hex digits>, which no other
    /// client can guess and take over.
    "mqtt.client_id" client_id: Option<String> = arg(long = "client-id", env = "CAMPEER_CLIENT_ID"),
    /// Seconds between MQTT keep-alive pings, 5 to 3600.
    "mqtt.keep_alive_secs" mqtt_keep_alive: Option<u64> = arg(
        long = "mqtt-keep-alive",
        env = "CAMPEER_MQTT_KEEP_ALIVE",
        value_name = "SECS",
    ),
    /// PEM certificates trusted for an mqtts:// broker, besides the system's.
    "mqtt.ca_file" mqtt_ca_file: Option<PathBuf> = arg(
        long = "mqtt-ca-file",
        env = "CAMPEER_MQTT_CA_FILE",
        value_name = "FILE",
    ),
    /// PEM certificate chain campeer shows an mqtts:// broker that asks for a client
    /// certificate (with --mqtt-client-key).
    "mqtt.client_cert" mqtt_client_cert: Option<PathBuf> = arg(
        long = "mqtt-client-cert",
        env = "CAMPEER_MQTT_CLIENT_CERT",
        value_name = "FILE",
    ),
    /// The private key (PEM) that goes with --mqtt-client-cert.
    "mqtt.client_key" mqtt_client_key: Option<PathBuf> = arg(
        long = "mqtt-client-key",
        env = "CAMPEER_MQTT_CLIENT_KEY",
        value_name = "FILE",
    ),
    /// Device id, one topic segment. Left out: the host name.
    "device.id" device_id: Option<String> = arg(
        long = "device-id",
        env = "CAMPEER_DEVICE_ID",
        value_name = "ID",
    ),
    /// Video source: "auto" (a camera module, else the first V4L2 camera that gives a
    /// picture, else the test pattern), "test" (a moving test pattern with a machine-readable
    /// timestamp), "rpicam" or "rpicam:N" (camera module N through rpicam-vid) or a V4L2
    /// camera's device path such as /dev/video0.
    "video.source" source: Option<String> = arg(
        long = "source",
        env = "CAMPEER_SOURCE",
        value_name = "SOURCE",
    ),
    /// Frame width in pixels: even, 16 to 3840.
    "video.width" width: Option<u32> = arg(long = "width", env = "CAMPEER_WIDTH"),
    /// Frame height in pixels: even, 16 to 2160.
    "video.height" height: Option<u32> = arg(long = "height", env = "CAMPEER_HEIGHT"),
    /// Frames per second, 1 to 60.
    "video.fps" fps: Option<u32> = arg(long = "fps", env = "CAMPEER_FPS"),
    /// Encoder target bitrate in kbit/s, 50 to 50000.
    "video.bitrate_kbps" bitrate_kbps: Option<u32> = arg(
        long = "bitrate-kbps",
        env = "CAMPEER_BITRATE_KBPS",
        value_name = "KBPS",
    ),
    /// Seconds between periodic keyframes (0.1 to 600); 0 sends keyframes only when a viewer
    /// needs one.
    "video.keyframe_interval_secs" keyframe_interval: Option<f64> = arg(
        long = "keyframe-interval",
        env = "CAMPEER_KEYFRAME_INTERVAL",
        value_name = "SECS",
    ),
    /// Take H.264 from a camera that encodes it and send it as it is, without re-encoding
    /// (far less CPU; the camera then decides the bitrate and keyframes unless it accepts
    /// campeer's requests). Other cameras are encoded as usual.
    "video.h264_passthrough" h264_passthrough: Option<bool> = arg(
        long = "h264-passthrough",
        env = "CAMPEER_H264_PASSTHROUGH",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    ),
    /// H.264 encoder: "auto" (the board's V4L2 hardware encoder when it has one, else
    /// openh264), "openh264", "v4l2m2m" (the first hardware encoder found) or
    /// "v4l2m2m:/dev/videoN".
    "video.encoder" encoder: Option<String> = arg(
        long = "encoder",
        env = "CAMPEER_ENCODER",
        value_name = "ENCODER",
    ),
    /// The rpicam-vid program that streams camera modules: a name on PATH or a path. Left
    /// out: rpicam-vid, else libcamera-vid (its name before Raspberry Pi OS Bookworm).
    "video.rpicam_vid" rpicam_vid: Option<PathBuf> = arg(
        long = "rpicam-vid",
        env = "CAMPEER_RPICAM_VID",
        value_name = "PROGRAM",
    ),
    /// Audio source: "auto" (the ALSA "default" device when the machine has a sound card that
    /// can capture, else no audio), "none", "test" (a 440 Hz tone) or an ALSA capture device
    /// name such as "default" or "plughw:CARD=Device".
    "audio.source" audio_source: Option<String> = arg(
        long = "audio-source",
        env = "CAMPEER_AUDIO_SOURCE",
        value_name = "SOURCE",
    ),
    /// Audio channels: 1 (mono) or 2 (stereo).
    "audio.channels" audio_channels: Option<u8> = arg(
        long = "audio-channels",
        env = "CAMPEER_AUDIO_CHANNELS",
    ),
    /// Opus target bitrate in kbit/s, 6 to 510.
    "audio.bitrate_kbps" audio_bitrate_kbps: Option<u32> = arg(
        long = "audio-bitrate-kbps",
        env = "CAMPEER_AUDIO_BITRATE_KBPS",
        value_name = "KBPS",
    ),
    /// Most viewers served at once, 1 to 64; an offer beyond it is answered "busy".
    "sessions.max_viewers" max_viewers: Option<usize> = arg(
        long = "max-viewers",
        env = "CAMPEER_MAX_VIEWERS",
    ),
    /// Seconds a session may spend unconnected (never connected, or disconnected or failed)
    /// before it is torn down, 1 to 3600.
    "sessions.timeout_secs" session_timeout: Option<u64> = arg(
        long = "session-timeout",
        env = "CAMPEER_SESSION_TIMEOUT",
        value_name = "SECS",
    ),
    /// Seconds a new viewer has from its offer to a connected peer connection before its
    /// place is given back (never more than the session timeout).
    "sessions.connect_timeout_secs" connect_timeout: Option<u64> = arg(
        long = "connect-timeout",
        env = "CAMPEER_CONNECT_TIMEOUT",
        value_name = "SECS",
    ),
    /// Seconds the camera and encoder keep running after the last viewer leaves, 0 to 3600.
    "sessions.idle_grace_secs" idle_grace: Option<u64> = arg(
        long = "idle-grace",
        env = "CAMPEER_IDLE_GRACE",
        value_name = "SECS",
    ),
    /// Fewest milliseconds between two keyframes forced by viewer requests (PLI/FIR), 0 to
    /// 60000; 0: no limit.
    "sessions.keyframe_min_interval_ms" keyframe_min_interval_ms: Option<u64> = arg(
        long = "keyframe-min-interval-ms",
        env = "CAMPEER_KEYFRAME_MIN_INTERVAL_MS",
        value_name = "MS",
    ),
    /// STUN or TURN server URL; repeat for several. Replaces the config file's list. In the
    /// file, a list of {urls = [...], username, credential}; TURN needs both.
    #[serde(serialize_with = "servers_from_urls")]
    "ice.servers" ice_servers: Vec<String> = arg(
        long = "ice-server",
        env = "CAMPEER_ICE_SERVERS",
        value_delimiter = ',',
        value_name = "URL",
    ),
    /// Interface name or IP address to gather host candidates on; repeat for several. Left
    /// out: every non-loopback interface.
    "ice.interfaces" ice_interfaces: Vec<String> = arg(
        long = "ice-interface",
        env = "CAMPEER_ICE_INTERFACES",
        value_delimiter = ',',
        value_name = "IFACE",
    ),
    /// Gather only 127.0.0.1 host candidates, ignore remote candidates outside 127.0.0.0/8,
    /// no STUN, no mDNS: no media packet leaves the machine. For tests and local viewing.
    "ice.loopback_only" ice_loopback_only: Option<bool> = arg(
        long = "ice-loopback-only",
        env = "CAMPEER_ICE_LOOPBACK_ONLY",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    ),
    /// PEM certificates trusted for turns: servers besides the system's (a TURN server with
    /// a private CA or a self-signed certificate).
    "ice.tls_ca_file" ice_tls_ca_file: Option<PathBuf> = arg(
        long = "ice-tls-ca-file",
        env = "CAMPEER_ICE_TLS_CA_FILE",
        value_name = "FILE",
    ),
    /// Address of the built-in viewer page.
    "web.listen" http_listen: Option<String> = arg(
        long = "http-listen",
        env = "CAMPEER_HTTP_LISTEN",
        value_name = "ADDR:PORT",
    ),
    /// Open the viewer page and the embedded broker to the network (every interface, ports
    /// kept). The embedded broker must then require a password, unless
    /// --public-without-password says that anyone who can reach this machine may watch.
    /// --public=false turns off what the file turns on.
    "web.public" public: Option<bool> = arg(
        long = "public",
        env = "CAMPEER_PUBLIC",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    ),
    /// With --public and the embedded broker: allow it to run without a password, so anyone
    /// on the network can watch, read every viewer's signaling and hang up on it.
    "web.public_without_password" public_without_password: Option<bool> = arg(
        long = "public-without-password",
        env = "CAMPEER_PUBLIC_WITHOUT_PASSWORD",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    ),
    /// The WebSocket URL browsers use to reach the broker (ws:// or wss://). Needed with an
    /// external broker; with the embedded one the page works it out.
    "web.broker_ws_url" broker_ws_url: Option<String> = arg(
        long = "broker-ws-url",
        env = "CAMPEER_BROKER_WS_URL",
        value_name = "URL",
    ),
    /// STUN or TURN server URL the page gives browsers; repeat for several. Any scheme a
    /// browser takes; in the file, a list of {urls = [...], username, credential}.
    #[serde(serialize_with = "servers_from_urls")]
    "web.ice_servers" page_ice_servers: Vec<String> = arg(
        long = "page-ice-server",
        env = "CAMPEER_PAGE_ICE_SERVERS",
        value_delimiter = ',',
        value_name = "URL",
    ),
    /// WHEP players must send this bearer token (`Authorization: Bearer TOKEN`). Without one,
    /// anyone who can reach the viewer page can watch through WHEP too. Prefer the
    /// environment or the config file over a flag. Never logged.
    "web.whep_token" whep_token: Option<String> = arg(
        long = "whep-token",
        env = "CAMPEER_WHEP_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
    ),
    /// Serve Prometheus metrics on /metrics: to anyone on this machine when the page listens on
    /// loopback, else only to scrapers that send the WHEP token (--whep-token).
    "web.metrics" metrics: Option<bool> = arg(
        long = "metrics",
        env = "CAMPEER_METRICS",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    ),
    /// Serve RTSP here (rtsp://HOST:PORT/<device>) for NVRs, Home Assistant and players;
    /// off when unset. Off loopback, readers must give --rtsp-username and --rtsp-password.
    "rtsp.listen" rtsp_listen: Option<String> = arg(
        long = "rtsp-listen",
        env = "CAMPEER_RTSP_LISTEN",
        value_name = "ADDR:PORT",
    ),
    /// RTSP readers served at once, over every device.
    "rtsp.max_readers" rtsp_max_readers: Option<usize> = arg(
        long = "rtsp-max-readers",
        env = "CAMPEER_RTSP_MAX_READERS",
        value_name = "N",
    ),
    /// RTSP readers must log in with this user name (Digest, with --rtsp-password).
    "rtsp.username" rtsp_username: Option<String> = arg(
        long = "rtsp-username",
        env = "CAMPEER_RTSP_USERNAME",
        value_name = "NAME",
    ),
    /// The password that goes with --rtsp-username. Prefer the environment or the config file
    /// over a flag. Never logged.
    "rtsp.password" rtsp_password: Option<String> = arg(
        long = "rtsp-password",
        env = "CAMPEER_RTSP_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
    ),
    /// Detect motion on every camera (keeping it open), publish it on <prefix>/<device>/motion
    /// with a snapshot on <prefix>/<device>/snapshot.
    "motion.enabled" motion: Option<bool> = arg(
        long = "motion",
        env = "CAMPEER_MOTION",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    ),
    /// Motion sensitivity, 0.0 (only large, strong changes) to 1.0 (small, faint ones).
    "motion.sensitivity" motion_sensitivity: Option<f64> = arg(
        long = "motion-sensitivity",
        env = "CAMPEER_MOTION_SENSITIVITY",
        value_name = "0..1",
    ),
    /// Motion is over after this many seconds without any.
    "motion.quiet_secs" motion_quiet_secs: Option<u64> = arg(
        long = "motion-quiet-secs",
        env = "CAMPEER_MOTION_QUIET_SECS",
        value_name = "SECS",
    ),
    /// Record every camera: "off", "continuous" (files of --record-segment-secs) or "motion"
    /// (clips around motion, with --motion).
    "record.mode" record_mode: Option<String> = arg(
        long = "record",
        env = "CAMPEER_RECORD",
        value_name = "MODE",
    ),
    /// Where recordings go, one folder per camera (an absolute path).
    "record.path" record_path: Option<PathBuf> = arg(
        long = "record-path",
        env = "CAMPEER_RECORD_PATH",
        value_name = "DIR",
    ),
    /// Seconds of video per recording file.
    "record.segment_secs" record_segment_secs: Option<u64> = arg(
        long = "record-segment-secs",
        env = "CAMPEER_RECORD_SEGMENT_SECS",
        value_name = "SECS",
    ),
    /// Seconds a motion clip starts before the motion (kept in memory).
    "record.pre_roll_secs" record_pre_roll_secs: Option<u64> = arg(
        long = "record-pre-roll-secs",
        env = "CAMPEER_RECORD_PRE_ROLL_SECS",
        value_name = "SECS",
    ),
    /// Seconds a motion clip goes on after the motion stopped.
    "record.post_roll_secs" record_post_roll_secs: Option<u64> = arg(
        long = "record-post-roll-secs",
        env = "CAMPEER_RECORD_POST_ROLL_SECS",
        value_name = "SECS",
    ),
    /// Megabytes of the disk kept free: the oldest recordings go first.
    "record.keep_free_mb" record_keep_free_mb: Option<u64> = arg(
        long = "record-keep-free-mb",
        env = "CAMPEER_RECORD_KEEP_FREE_MB",
        value_name = "MB",
    ),
    /// Days recordings are kept; 0 keeps them until space runs short.
    "record.max_age_days" record_max_age_days: Option<u64> = arg(
        long = "record-max-age-days",
        env = "CAMPEER_RECORD_MAX_AGE_DAYS",
        value_name = "DAYS",
    ),
    /// Embedded broker: plain MQTT 3.1.1 and 5 listener.
    "broker.listen" embedded_broker_listen: Option<String> = arg(
        long = "embedded-broker-listen",
        env = "CAMPEER_EMBEDDED_BROKER_LISTEN",
        value_name = "ADDR:PORT",
    ),
    /// Embedded broker: MQTT-over-WebSocket listener. Pages reach it through the page's own
    /// origin (/mqtt), so it stays where it is set even with --public; port 0 takes a free
    /// port.
    "broker.ws_listen" embedded_broker_ws_listen: Option<String> = arg(
        long = "embedded-broker-ws-listen",
        env = "CAMPEER_EMBEDDED_BROKER_WS_LISTEN",
        value_name = "ADDR:PORT",
    ),
    /// Embedded broker: require this user name (with --embedded-broker-password).
    "broker.username" embedded_broker_username: Option<String> = arg(
        long = "embedded-broker-username",
        env = "CAMPEER_EMBEDDED_BROKER_USERNAME",
        value_name = "NAME",
    ),
    /// Embedded broker: the password that goes with --embedded-broker-username. Never logged.
    "broker.password" embedded_broker_password: Option<String> = arg(
        long = "embedded-broker-password",
        env = "CAMPEER_EMBEDDED_BROKER_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
    ),
}

/// `--ice-server URL` gives bare URLs; the file's form is a server per entry.
fn servers_from_urls<S: serde::Serializer>(
    urls: &[String],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Server<'a> {
        urls: [&'a str; 1],
    }
    serializer.collect_seq(urls.iter().map(|url| Server { urls: [url] }))
}

impl Overrides {
    /// Lays the flags that were given over the file's table: `video.width` from `--width`
    /// replaces `[video] width`, and lists replace lists.
    pub(super) fn lay_over(&self, table: &mut toml::Table) -> Result<(), ConfigError> {
        let flat = toml::Table::try_from(self)
            .map_err(|e| invalid("flags", format!("cannot be read: {e}")))?;
        for (key, value) in flat {
            let Some((section, field)) = key.split_once('.') else {
                return Err(invalid("flags", format!("{key} names no section")));
            };
            let entry = table
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section_table) = entry else {
                return Err(invalid(section.to_owned(), "must be a section ([name])"));
            };
            section_table.insert(field.to_owned(), value);
        }
        Ok(())
    }
}
