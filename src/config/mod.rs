//! Configuration: a TOML file, CAMPEER_* environment variables and command-line flags, with
//! flags winning over the environment, the environment over the file, and the file over the
//! defaults.
//!
//! One schema: each section is one serde type whose `Default` holds its defaults
//! (`sections`); the flags are an overlay that names the keys it sets (`flags`); the
//! reference and `--help` show what the schema says (`reference`). Everything is validated
//! once at start; a bad value fails with the key's name and the reason, so an operator can
//! fix it without reading code.

mod flags;
pub mod reference;
mod sections;
mod values;

pub use flags::Overrides;
pub use sections::{
    AudioConfig, DeviceSection, EmbeddedBrokerConfig, IceConfig, IgnoredRectangle, MAX_BROKERS,
    MotionConfig, MqttConfig, PublishConfig, RecordConfig, RecordMode, RtspConfig, Sections,
    SessionConfig, VideoConfig, WebConfig,
};
pub use values::{AudioSourceKind, BrokerAddress, EncoderChoice, IceServer, Secret, SourceKind};

use crate::protocol::Segment;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

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
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The most cameras one campeer serves besides the first: each costs an encoder, and a board
/// has few camera ports.
pub const MAX_EXTRA_CAMERAS: usize = 7;

/// A camera served besides the first, as a device of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    pub device_id: Segment,
    pub video: VideoConfig,
}

/// The file as written by an operator, read but not yet merged with the flags: a TOML table
/// whose syntax and keys have been checked.
#[derive(Debug, Clone, Default)]
pub struct FileConfig(toml::Table);

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        // The error names the file once: a syntax error's own message, or the key at fault.
        Self::parse(&text).map_err(|error| ConfigError::Parse {
            path: path.display().to_string(),
            message: match error {
                ConfigError::Parse { message, .. } => message,
                other => other.to_string(),
            },
        })
    }

    /// Reads the text and checks every key and value type against the schema, so a typo
    /// fails here with its key's name (ranges and what spans sections are checked when the
    /// flags are laid over it, by [`Config::resolve`]).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: "text".to_owned(),
                message: e.to_string(),
            })?;
        let file = Self(table);
        let (_, _, cameras) = file.clone().into_parts()?;
        for mut camera in cameras {
            camera.remove("id");
            read_section::<VideoConfig>("cameras", toml::Value::Table(camera))?;
        }
        Ok(file)
    }

    /// `video.rpicam_vid` as the file has it: `campeer devices` needs this one key alone.
    pub fn rpicam_vid(&self) -> Option<PathBuf> {
        self.0
            .get("video")?
            .get("rpicam_vid")?
            .as_str()
            .map(PathBuf::from)
    }

    /// The sections, the `[video]` table (which extra cameras inherit) and the `[[cameras]]`
    /// entries.
    fn into_parts(mut self) -> Result<(Sections, toml::Table, Vec<toml::Table>), ConfigError> {
        let cameras = match self.0.remove("cameras") {
            None => Vec::new(),
            Some(toml::Value::Array(entries)) => entries
                .into_iter()
                .map(|entry| match entry {
                    toml::Value::Table(table) => Ok(table),
                    _ => Err(invalid("cameras", "each entry is a [[cameras]] table")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid("cameras", "must be [[cameras]] entries")),
        };
        let video = match self.0.get("video") {
            Some(toml::Value::Table(table)) => table.clone(),
            _ => toml::Table::new(),
        };
        let sections = read_section::<Sections>("", toml::Value::Table(self.0))?;
        Ok((sections, video, cameras))
    }
}

/// Deserializes `value`; an error names the key it is about (`prefix.path.within`).
fn read_section<T: DeserializeOwned>(prefix: &str, value: toml::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let key = match (prefix.is_empty(), path.as_str()) {
            (true, _) => path.clone(),
            (false, ".") => prefix.to_owned(),
            (false, _) => format!("{prefix}.{path}"),
        };
        invalid(key, error.into_inner().message().to_owned())
    })
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
    pub rtsp: RtspConfig,
    /// Motion detection, for every camera.
    pub motion: MotionConfig,
    /// Recording, for every camera.
    pub record: RecordConfig,
    /// `[[publish]]` entries, each naming a device campeer serves.
    pub publish: Vec<PublishTarget>,
    /// `Some` exactly when `mqtt.broker` lists no broker.
    pub embedded_broker: Option<EmbeddedBrokerConfig>,
}

impl Config {
    /// Lays the flags over the file and validates the result.
    pub fn resolve(file: FileConfig, flags: Overrides) -> Result<Self, ConfigError> {
        let mut table = file.0;
        flags.lay_over(&mut table)?;
        let (mut sections, video_table, camera_tables) = FileConfig(table).into_parts()?;
        sections.validate()?;

        let device_id = sections.device.id.clone().unwrap_or_else(default_device_id);
        let mqtt = &mut sections.mqtt;
        mqtt.client_id
            .get_or_insert_with(|| format!("campeer-{device_id}-{:08x}", rand::random::<u32>()));
        let cameras = resolve_cameras(&device_id, &video_table, camera_tables)?;

        let public = sections.web.public;
        if public {
            // Public opens the page and the broker to the network; the ports stay as set.
            sections.web.listen = every_interface(sections.web.listen);
            sections.broker.listen = every_interface(sections.broker.listen);
        }
        let embedded_broker = sections.mqtt.brokers.is_empty().then_some(sections.broker);
        if public
            && !sections.web.public_without_password
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

        if sections.motion.enabled {
            let passed_through = std::iter::once(&sections.video)
                .chain(cameras.iter().map(|camera| &camera.video))
                .any(|video| video.h264_passthrough);
            if passed_through {
                return Err(invalid(
                    "motion.enabled",
                    "motion detection looks at the raw picture, which a camera whose own H.264 \
                     is passed through does not give: turn off video.h264_passthrough (for \
                     every camera) or motion",
                ));
            }
        }
        let publish = resolve_publications(&device_id, &cameras, &sections.publish)?;
        Ok(Self {
            publish,
            device_id,
            mqtt: sections.mqtt,
            video: sections.video,
            cameras,
            audio: sections.audio,
            sessions: sections.sessions,
            ice: sections.ice,
            web: sections.web,
            rtsp: sections.rtsp,
            motion: sections.motion,
            record: sections.record,
            embedded_broker,
        })
    }
}

/// One publication, resolved: its URL parsed and its device one campeer serves.
#[derive(Debug, Clone)]
pub struct PublishTarget {
    pub url: url::Url,
    pub token: Option<Secret>,
    pub device: Segment,
}

impl PublishTarget {
    /// The URL as logs, the status and metrics show it: without any user name or password
    /// it carries (a token goes in `token`, but a URL may hold credentials too).
    pub fn shown_url(&self) -> String {
        url_without_credentials(&self.url)
    }
}

/// `url` without the user name and password it may carry, for logs and errors.
pub fn url_without_credentials(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

fn resolve_publications(
    first_id: &Segment,
    cameras: &[CameraConfig],
    entries: &[PublishConfig],
) -> Result<Vec<PublishTarget>, ConfigError> {
    entries
        .iter()
        .map(|entry| {
            let url = url::Url::parse(&entry.url)
                .map_err(|e| invalid("publish.url", format!("{:?}: {e}", entry.url)))?;
            let device = match &entry.device {
                None => first_id.clone(),
                Some(name) => {
                    let known = std::iter::once(first_id)
                        .chain(cameras.iter().map(|camera| &camera.device_id))
                        .find(|id| id.as_str() == name);
                    known.cloned().ok_or_else(|| {
                        invalid(
                            "publish.device",
                            format!("{name:?} is not a device campeer serves"),
                        )
                    })?
                }
            };
            Ok(PublishTarget {
                url,
                token: entry.token.clone(),
                device,
            })
        })
        .collect()
}

fn every_interface(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port())
}

/// The `[[cameras]]` entries: each needs an id of its own and a source of its own; what it
/// leaves out it takes from `[video]` (flags included).
fn resolve_cameras(
    first_id: &Segment,
    video_table: &toml::Table,
    entries: Vec<toml::Table>,
) -> Result<Vec<CameraConfig>, ConfigError> {
    if entries.len() > MAX_EXTRA_CAMERAS {
        return Err(invalid(
            "cameras",
            format!(
                "at most {MAX_EXTRA_CAMERAS} cameras besides the first, got {}",
                entries.len()
            ),
        ));
    }
    let mut ids = vec![first_id.clone()];
    let mut sources: Vec<SourceKind> = Vec::new();
    let mut cameras = Vec::with_capacity(entries.len());
    for mut entry in entries {
        let id = match entry.remove("id") {
            Some(toml::Value::String(id)) => {
                Segment::parse(&id).map_err(|e| invalid("cameras.id", e.to_string()))?
            }
            Some(_) => return Err(invalid("cameras.id", "must be a string")),
            None => return Err(invalid("cameras.id", "every [[cameras]] entry needs an id")),
        };
        if ids.contains(&id) {
            return Err(invalid(
                "cameras.id",
                format!("{id} is used twice: every camera needs an id of its own"),
            ));
        }
        if !entry.contains_key("source") {
            return Err(invalid(
                "cameras.source",
                format!("{id} needs a source of its own (a device path, rpicam:N or test)"),
            ));
        }
        let mut merged = video_table.clone();
        merged.extend(entry);
        let with_id = |error: ConfigError| match error {
            ConfigError::Invalid { key, reason } => invalid(key, format!("{id}: {reason}")),
            other => other,
        };
        let video: VideoConfig =
            read_section("cameras", toml::Value::Table(merged)).map_err(with_id)?;
        video.validate("cameras").map_err(with_id)?;
        if video.source == SourceKind::Auto {
            return Err(invalid(
                "cameras.source",
                format!("{id} needs a source of its own (a device path, rpicam:N or test)"),
            ));
        }
        if video.source != SourceKind::TestPattern && sources.contains(&video.source) {
            return Err(invalid(
                "cameras.source",
                format!("{id}: {} is already another camera's source", video.source),
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

/// The host name, made into a valid topic segment: anything outside [A-Za-z0-9_-] becomes '-'.
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
mod tests;
