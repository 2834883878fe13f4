//! The values a setting can take that are more than a number or a string: each parses from the
//! text an operator writes and prints back as the same text, so the file, the flags, the
//! environment and the configuration reference all speak one form.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

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

impl FromStr for BrokerAddress {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

impl fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// A secret that never appears in logs, Debug output or a printed configuration.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// A STUN or TURN server, as `RTCIceServer` has it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Secret>,
}

/// Where the picture comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// At start: a camera module when there is one, else the first V4L2 camera that gives a
    /// picture, else the test pattern.
    Auto,
    TestPattern,
    /// A V4L2 capture device.
    Camera(PathBuf),
    /// A camera module (CSI), by its libcamera index, streamed through rpicam-vid.
    CameraModule(u32),
}

impl FromStr for SourceKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            "test" => Ok(Self::TestPattern),
            "rpicam" => Ok(Self::CameraModule(0)),
            path if path.starts_with('/') => Ok(Self::Camera(path.into())),
            other => other
                .strip_prefix("rpicam:")
                .and_then(|index| index.parse().ok())
                .map(Self::CameraModule)
                .ok_or_else(|| {
                    format!(
                        "unknown source {other:?}: use \"auto\", \"test\", \"rpicam\" \
                         (or \"rpicam:N\" for camera module N) or a camera's device path \
                         such as /dev/video0"
                    )
                }),
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::TestPattern => f.write_str("test"),
            Self::Camera(path) => write!(f, "{}", path.display()),
            Self::CameraModule(index) => write!(f, "rpicam:{index}"),
        }
    }
}

/// Which H.264 encoder turns raw pictures into the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncoderChoice {
    /// The board's V4L2 hardware encoder when it has one, else openh264.
    Auto,
    OpenH264,
    /// A V4L2 memory-to-memory encoder: this device, or the first one found.
    V4l2M2m(Option<PathBuf>),
}

impl FromStr for EncoderChoice {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            "openh264" => Ok(Self::OpenH264),
            "v4l2m2m" => Ok(Self::V4l2M2m(None)),
            other => match other.strip_prefix("v4l2m2m:") {
                Some(path) if path.starts_with('/') => Ok(Self::V4l2M2m(Some(path.into()))),
                _ => Err(format!(
                    "unknown encoder {other:?}: use \"auto\", \"openh264\", \"v4l2m2m\" or \
                     \"v4l2m2m:/dev/videoN\""
                )),
            },
        }
    }
}

impl fmt::Display for EncoderChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::OpenH264 => f.write_str("openh264"),
            Self::V4l2M2m(None) => f.write_str("v4l2m2m"),
            Self::V4l2M2m(Some(path)) => write!(f, "v4l2m2m:{}", path.display()),
        }
    }
}

/// Where the sound comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioSourceKind {
    /// The ALSA "default" device when the machine has capture hardware, else no audio.
    Auto,
    None,
    TestTone,
    /// An ALSA capture device name.
    Alsa(String),
}

impl FromStr for AudioSourceKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            "none" => Ok(Self::None),
            "test" => Ok(Self::TestTone),
            name if !name.trim().is_empty() && !name.contains(char::is_control) => {
                Ok(Self::Alsa(name.to_owned()))
            }
            other => Err(format!(
                "{other:?} is not a source: use \"auto\", \"none\", \"test\" or an ALSA capture \
                 device such as \"default\" or \"plughw:CARD=Device\""
            )),
        }
    }
}

impl fmt::Display for AudioSourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::None => f.write_str("none"),
            Self::TestTone => f.write_str("test"),
            Self::Alsa(name) => f.write_str(name),
        }
    }
}

/// serde by way of the text form: `FromStr` in, `Display` out.
pub(super) mod text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
    where
        T: FromStr<Err: Display>,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }

    /// The same for a setting that may be left out.
    pub mod optional {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::fmt::Display;
        use std::str::FromStr;

        pub fn serialize<T: Display, S: Serializer>(
            value: &Option<T>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(value) => serializer.collect_str(value),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
        where
            T: FromStr<Err: Display>,
            D: Deserializer<'de>,
        {
            Option::<String>::deserialize(deserializer)?
                .map(|text| text.parse().map_err(serde::de::Error::custom))
                .transpose()
        }
    }

    /// The same for a setting that takes one value or a list of them (`"a"` or `["a", "b"]`);
    /// written as a list.
    pub mod one_or_many {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::fmt::Display;
        use std::str::FromStr;

        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }

        pub fn serialize<T: Display, S: Serializer>(
            values: &[T],
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(values.iter().map(ToString::to_string))
        }

        pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Vec<T>, D::Error>
        where
            T: FromStr<Err: Display>,
            D: Deserializer<'de>,
        {
            let texts = match OneOrMany::deserialize(deserializer)
                .map_err(|_| serde::de::Error::custom("expected a text or a list of texts"))?
            {
                OneOrMany::One(text) => vec![text],
                OneOrMany::Many(texts) => texts,
            };
            texts
                .iter()
                .map(|text| text.parse().map_err(serde::de::Error::custom))
                .collect()
        }
    }
}
