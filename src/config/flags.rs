//! Command-line flags and CAMPEER_* environment variables: one overlay on the file. Each flag
//! names the file key it sets (its clap id and its serde name are that key), so a flag is
//! written once, beside its help, and nothing merges settings by hand: the flags that were
//! given become a small TOML table laid over the file's before the sections are read.

use super::{ConfigError, invalid};
use clap::builder::BoolishValueParser;
use serde::Serialize;
use std::path::PathBuf;

/// Flags and CAMPEER_* environment variables. clap gives flags precedence over the
/// environment; [`super::Config::resolve`] gives both precedence over the file.
#[derive(Debug, Default, Clone, clap::Args, Serialize)]
pub struct Overrides {
    /// External MQTT broker, mqtt://host[:port] (port 1883 when omitted) or
    /// mqtts://host[:port] for TLS (port 8883). Without one, campeer runs its own embedded
    /// broker.
    #[arg(
        id = "mqtt.broker",
        long = "broker",
        env = "CAMPEER_BROKER",
        value_name = "URL"
    )]
    #[serde(rename = "mqtt.broker", skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// MQTT user name.
    #[arg(
        id = "mqtt.username",
        long = "mqtt-username",
        env = "CAMPEER_MQTT_USERNAME",
        value_name = "NAME"
    )]
    #[serde(rename = "mqtt.username", skip_serializing_if = "Option::is_none")]
    pub mqtt_username: Option<String>,
    /// MQTT password (prefer the environment or the config file over a flag). Never logged.
    #[arg(
        id = "mqtt.password",
        long = "mqtt-password",
        env = "CAMPEER_MQTT_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    #[serde(rename = "mqtt.password", skip_serializing_if = "Option::is_none")]
    pub mqtt_password: Option<String>,
    /// Topic prefix: one or more segments of [A-Za-z0-9_-] joined by '/'.
    #[arg(id = "mqtt.prefix", long = "prefix", env = "CAMPEER_PREFIX")]
    #[serde(rename = "mqtt.prefix", skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// MQTT client id. Left out: campeer-<device id>-<8 random hex digits>, which no other
    /// client can guess and take over.
    #[arg(id = "mqtt.client_id", long = "client-id", env = "CAMPEER_CLIENT_ID")]
    #[serde(rename = "mqtt.client_id", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Seconds between MQTT keep-alive pings, 5 to 3600.
    #[arg(
        id = "mqtt.keep_alive_secs",
        long = "mqtt-keep-alive",
        env = "CAMPEER_MQTT_KEEP_ALIVE",
        value_name = "SECS"
    )]
    #[serde(
        rename = "mqtt.keep_alive_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub mqtt_keep_alive: Option<u64>,
    /// PEM certificates trusted for an mqtts:// broker, besides the system's.
    #[arg(
        id = "mqtt.ca_file",
        long = "mqtt-ca-file",
        env = "CAMPEER_MQTT_CA_FILE",
        value_name = "FILE"
    )]
    #[serde(rename = "mqtt.ca_file", skip_serializing_if = "Option::is_none")]
    pub mqtt_ca_file: Option<PathBuf>,
    /// PEM certificate chain campeer shows an mqtts:// broker that asks for a client
    /// certificate (with --mqtt-client-key).
    #[arg(
        id = "mqtt.client_cert",
        long = "mqtt-client-cert",
        env = "CAMPEER_MQTT_CLIENT_CERT",
        value_name = "FILE"
    )]
    #[serde(rename = "mqtt.client_cert", skip_serializing_if = "Option::is_none")]
    pub mqtt_client_cert: Option<PathBuf>,
    /// The private key (PEM) that goes with --mqtt-client-cert.
    #[arg(
        id = "mqtt.client_key",
        long = "mqtt-client-key",
        env = "CAMPEER_MQTT_CLIENT_KEY",
        value_name = "FILE"
    )]
    #[serde(rename = "mqtt.client_key", skip_serializing_if = "Option::is_none")]
    pub mqtt_client_key: Option<PathBuf>,
    /// Device id, one topic segment. Left out: the host name.
    #[arg(
        id = "device.id",
        long = "device-id",
        env = "CAMPEER_DEVICE_ID",
        value_name = "ID"
    )]
    #[serde(rename = "device.id", skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Video source: "auto" (a camera module, else the first V4L2 camera that gives a
    /// picture, else the test pattern), "test" (a moving test pattern with a machine-readable
    /// timestamp), "rpicam" or "rpicam:N" (camera module N through rpicam-vid) or a V4L2
    /// camera's device path such as /dev/video0.
    #[arg(
        id = "video.source",
        long = "source",
        env = "CAMPEER_SOURCE",
        value_name = "SOURCE"
    )]
    #[serde(rename = "video.source", skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Frame width in pixels: even, 16 to 3840.
    #[arg(id = "video.width", long = "width", env = "CAMPEER_WIDTH")]
    #[serde(rename = "video.width", skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Frame height in pixels: even, 16 to 2160.
    #[arg(id = "video.height", long = "height", env = "CAMPEER_HEIGHT")]
    #[serde(rename = "video.height", skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Frames per second, 1 to 60.
    #[arg(id = "video.fps", long = "fps", env = "CAMPEER_FPS")]
    #[serde(rename = "video.fps", skip_serializing_if = "Option::is_none")]
    pub fps: Option<u32>,
    /// Encoder target bitrate in kbit/s, 50 to 50000.
    #[arg(
        id = "video.bitrate_kbps",
        long = "bitrate-kbps",
        env = "CAMPEER_BITRATE_KBPS",
        value_name = "KBPS"
    )]
    #[serde(rename = "video.bitrate_kbps", skip_serializing_if = "Option::is_none")]
    pub bitrate_kbps: Option<u32>,
    /// Seconds between periodic keyframes (0.1 to 600); 0 sends keyframes only when a viewer
    /// needs one.
    #[arg(
        id = "video.keyframe_interval_secs",
        long = "keyframe-interval",
        env = "CAMPEER_KEYFRAME_INTERVAL",
        value_name = "SECS"
    )]
    #[serde(
        rename = "video.keyframe_interval_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub keyframe_interval: Option<f64>,
    /// Take H.264 from a camera that encodes it and send it as it is, without re-encoding
    /// (far less CPU; the camera then decides the bitrate and keyframes unless it accepts
    /// campeer's requests). Other cameras are encoded as usual.
    #[arg(
        id = "video.h264_passthrough",
        long = "h264-passthrough",
        env = "CAMPEER_H264_PASSTHROUGH",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    #[serde(
        rename = "video.h264_passthrough",
        skip_serializing_if = "Option::is_none"
    )]
    pub h264_passthrough: Option<bool>,
    /// H.264 encoder: "auto" (the board's V4L2 hardware encoder when it has one, else
    /// openh264), "openh264", "v4l2m2m" (the first hardware encoder found) or
    /// "v4l2m2m:/dev/videoN".
    #[arg(
        id = "video.encoder",
        long = "encoder",
        env = "CAMPEER_ENCODER",
        value_name = "ENCODER"
    )]
    #[serde(rename = "video.encoder", skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
    /// The rpicam-vid program that streams camera modules: a name on PATH or a path. Left
    /// out: rpicam-vid, else libcamera-vid (its name before Raspberry Pi OS Bookworm).
    #[arg(
        id = "video.rpicam_vid",
        long = "rpicam-vid",
        env = "CAMPEER_RPICAM_VID",
        value_name = "PROGRAM"
    )]
    #[serde(rename = "video.rpicam_vid", skip_serializing_if = "Option::is_none")]
    pub rpicam_vid: Option<PathBuf>,
    /// Audio source: "auto" (the ALSA "default" device when the machine has a sound card that
    /// can capture, else no audio), "none", "test" (a 440 Hz tone) or an ALSA capture device
    /// name such as "default" or "plughw:CARD=Device".
    #[arg(
        id = "audio.source",
        long = "audio-source",
        env = "CAMPEER_AUDIO_SOURCE",
        value_name = "SOURCE"
    )]
    #[serde(rename = "audio.source", skip_serializing_if = "Option::is_none")]
    pub audio_source: Option<String>,
    /// Audio channels: 1 (mono) or 2 (stereo).
    #[arg(
        id = "audio.channels",
        long = "audio-channels",
        env = "CAMPEER_AUDIO_CHANNELS"
    )]
    #[serde(rename = "audio.channels", skip_serializing_if = "Option::is_none")]
    pub audio_channels: Option<u8>,
    /// Opus target bitrate in kbit/s, 6 to 510.
    #[arg(
        id = "audio.bitrate_kbps",
        long = "audio-bitrate-kbps",
        env = "CAMPEER_AUDIO_BITRATE_KBPS",
        value_name = "KBPS"
    )]
    #[serde(rename = "audio.bitrate_kbps", skip_serializing_if = "Option::is_none")]
    pub audio_bitrate_kbps: Option<u32>,
    /// Most viewers served at once, 1 to 64; an offer beyond it is answered "busy".
    #[arg(
        id = "sessions.max_viewers",
        long = "max-viewers",
        env = "CAMPEER_MAX_VIEWERS"
    )]
    #[serde(
        rename = "sessions.max_viewers",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_viewers: Option<usize>,
    /// Seconds a session may spend unconnected (never connected, or disconnected or failed)
    /// before it is torn down, 1 to 3600.
    #[arg(
        id = "sessions.timeout_secs",
        long = "session-timeout",
        env = "CAMPEER_SESSION_TIMEOUT",
        value_name = "SECS"
    )]
    #[serde(
        rename = "sessions.timeout_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub session_timeout: Option<u64>,
    /// Seconds a new viewer has from its offer to a connected peer connection before its
    /// place is given back (never more than the session timeout).
    #[arg(
        id = "sessions.connect_timeout_secs",
        long = "connect-timeout",
        env = "CAMPEER_CONNECT_TIMEOUT",
        value_name = "SECS"
    )]
    #[serde(
        rename = "sessions.connect_timeout_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<u64>,
    /// Seconds the camera and encoder keep running after the last viewer leaves, 0 to 3600.
    #[arg(
        id = "sessions.idle_grace_secs",
        long = "idle-grace",
        env = "CAMPEER_IDLE_GRACE",
        value_name = "SECS"
    )]
    #[serde(
        rename = "sessions.idle_grace_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_grace: Option<u64>,
    /// Fewest milliseconds between two keyframes forced by viewer requests (PLI/FIR), 0 to
    /// 60000; 0: no limit.
    #[arg(
        id = "sessions.keyframe_min_interval_ms",
        long = "keyframe-min-interval-ms",
        env = "CAMPEER_KEYFRAME_MIN_INTERVAL_MS",
        value_name = "MS"
    )]
    #[serde(
        rename = "sessions.keyframe_min_interval_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub keyframe_min_interval_ms: Option<u64>,
    /// STUN or TURN server URL; repeat for several. Replaces the config file's list. In the
    /// file, a list of {urls = [...], username, credential}; TURN needs both.
    #[arg(
        id = "ice.servers",
        long = "ice-server",
        env = "CAMPEER_ICE_SERVERS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    #[serde(
        rename = "ice.servers",
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "servers_from_urls"
    )]
    pub ice_servers: Vec<String>,
    /// Interface name or IP address to gather host candidates on; repeat for several. Left
    /// out: every non-loopback interface.
    #[arg(
        id = "ice.interfaces",
        long = "ice-interface",
        env = "CAMPEER_ICE_INTERFACES",
        value_delimiter = ',',
        value_name = "IFACE"
    )]
    #[serde(rename = "ice.interfaces", skip_serializing_if = "Vec::is_empty")]
    pub ice_interfaces: Vec<String>,
    /// Gather only 127.0.0.1 host candidates, ignore remote candidates outside 127.0.0.0/8,
    /// no STUN, no mDNS: no media packet leaves the machine. For tests and local viewing.
    #[arg(
        id = "ice.loopback_only",
        long = "ice-loopback-only",
        env = "CAMPEER_ICE_LOOPBACK_ONLY",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    #[serde(rename = "ice.loopback_only", skip_serializing_if = "Option::is_none")]
    pub ice_loopback_only: Option<bool>,
    /// PEM certificates trusted for turns: servers besides the system's (a TURN server with
    /// a private CA or a self-signed certificate).
    #[arg(
        id = "ice.tls_ca_file",
        long = "ice-tls-ca-file",
        env = "CAMPEER_ICE_TLS_CA_FILE",
        value_name = "FILE"
    )]
    #[serde(rename = "ice.tls_ca_file", skip_serializing_if = "Option::is_none")]
    pub ice_tls_ca_file: Option<PathBuf>,
    /// Address of the built-in viewer page.
    #[arg(
        id = "web.listen",
        long = "http-listen",
        env = "CAMPEER_HTTP_LISTEN",
        value_name = "ADDR:PORT"
    )]
    #[serde(rename = "web.listen", skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<String>,
    /// Open the viewer page and the embedded broker to the network (every interface, ports
    /// kept). The embedded broker must then require a password, unless
    /// --public-without-password says that anyone who can reach this machine may watch.
    /// --public=false turns off what the file turns on.
    #[arg(
        id = "web.public",
        long = "public",
        env = "CAMPEER_PUBLIC",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    #[serde(rename = "web.public", skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    /// With --public and the embedded broker: allow it to run without a password, so anyone
    /// on the network can watch, read every viewer's signaling and hang up on it.
    #[arg(
        id = "web.public_without_password",
        long = "public-without-password",
        env = "CAMPEER_PUBLIC_WITHOUT_PASSWORD",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    #[serde(
        rename = "web.public_without_password",
        skip_serializing_if = "Option::is_none"
    )]
    pub public_without_password: Option<bool>,
    /// The WebSocket URL browsers use to reach the broker (ws:// or wss://). Needed with an
    /// external broker; with the embedded one the page works it out.
    #[arg(
        id = "web.broker_ws_url",
        long = "broker-ws-url",
        env = "CAMPEER_BROKER_WS_URL",
        value_name = "URL"
    )]
    #[serde(rename = "web.broker_ws_url", skip_serializing_if = "Option::is_none")]
    pub broker_ws_url: Option<String>,
    /// STUN or TURN server URL the page gives browsers; repeat for several. Any scheme a
    /// browser takes; in the file, a list of {urls = [...], username, credential}.
    #[arg(
        id = "web.ice_servers",
        long = "page-ice-server",
        env = "CAMPEER_PAGE_ICE_SERVERS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    #[serde(
        rename = "web.ice_servers",
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "servers_from_urls"
    )]
    pub page_ice_servers: Vec<String>,
    /// WHEP players must send this bearer token (`Authorization: Bearer TOKEN`). Without one,
    /// anyone who can reach the viewer page can watch through WHEP too. Prefer the
    /// environment or the config file over a flag. Never logged.
    #[arg(
        id = "web.whep_token",
        long = "whep-token",
        env = "CAMPEER_WHEP_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    #[serde(rename = "web.whep_token", skip_serializing_if = "Option::is_none")]
    pub whep_token: Option<String>,
    /// Embedded broker: plain MQTT 3.1.1 and 5 listener.
    #[arg(
        id = "broker.listen",
        long = "embedded-broker-listen",
        env = "CAMPEER_EMBEDDED_BROKER_LISTEN",
        value_name = "ADDR:PORT"
    )]
    #[serde(rename = "broker.listen", skip_serializing_if = "Option::is_none")]
    pub embedded_broker_listen: Option<String>,
    /// Embedded broker: MQTT-over-WebSocket listener. Pages reach it through the page's own
    /// origin (/mqtt), so it stays where it is set even with --public; port 0 takes a free
    /// port.
    #[arg(
        id = "broker.ws_listen",
        long = "embedded-broker-ws-listen",
        env = "CAMPEER_EMBEDDED_BROKER_WS_LISTEN",
        value_name = "ADDR:PORT"
    )]
    #[serde(rename = "broker.ws_listen", skip_serializing_if = "Option::is_none")]
    pub embedded_broker_ws_listen: Option<String>,
    /// Embedded broker: require this user name (with --embedded-broker-password).
    #[arg(
        id = "broker.username",
        long = "embedded-broker-username",
        env = "CAMPEER_EMBEDDED_BROKER_USERNAME",
        value_name = "NAME"
    )]
    #[serde(rename = "broker.username", skip_serializing_if = "Option::is_none")]
    pub embedded_broker_username: Option<String>,
    /// Embedded broker: the password that goes with --embedded-broker-username. Never logged.
    #[arg(
        id = "broker.password",
        long = "embedded-broker-password",
        env = "CAMPEER_EMBEDDED_BROKER_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    #[serde(rename = "broker.password", skip_serializing_if = "Option::is_none")]
    pub embedded_broker_password: Option<String>,
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
