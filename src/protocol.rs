//! The signaling protocol spoken over MQTT: topics, message types, parsing and validation.
//!
//! Pure: no I/O happens here, so every rule of the protocol can be unit-tested without a broker.
//! Everything a viewer sends is untrusted; parsing returns a typed [`ProtocolError`] for each
//! way a message can be wrong, and never panics.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// The largest signaling payload accepted. SDP offers from browsers are a few KiB (Chromium's
/// with audio, video and a data channel stay under 12 KiB); anything far beyond that is not a
/// real offer and is refused before it is parsed.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Longest ICE candidate line accepted; real ones are under 200 bytes.
pub const MAX_CANDIDATE_BYTES: usize = 1024;

/// Longest a topic segment may be.
pub const MAX_SEGMENT_LEN: usize = 64;

/// A validated topic segment: 1 to 64 of `[A-Za-z0-9_-]`.
///
/// Restricting segments this way keeps MQTT wildcards (`+`, `#`), separators and control
/// characters out of every topic campeer builds from a name it was given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segment(String);

impl Segment {
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        if text.is_empty() {
            return Err(TopicError::EmptySegment);
        }
        if text.len() > MAX_SEGMENT_LEN {
            return Err(TopicError::SegmentTooLong(text.len()));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(TopicError::BadCharacter(bad));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Segment {
    type Err = TopicError;
    fn from_str(text: &str) -> Result<Self, TopicError> {
        Self::parse(text)
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The topic prefix: one or more segments joined by `/` (default `campeer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(Vec<Segment>);

impl Prefix {
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        text.split('/')
            .map(Segment::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl std::str::FromStr for Prefix {
    type Err = TopicError;
    fn from_str(text: &str) -> Result<Self, TopicError> {
        Self::parse(text)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(segment.as_str())?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("a topic segment is empty")]
    EmptySegment,
    #[error("a topic segment is {0} characters long; at most {MAX_SEGMENT_LEN} are allowed")]
    SegmentTooLong(usize),
    #[error("a topic segment contains {0:?}; only A-Z, a-z, 0-9, '_' and '-' are allowed")]
    BadCharacter(char),
    #[error("the topic is not under this device's inbound topic")]
    NotInbound,
}

/// The topics of one device. All topic strings campeer uses come from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTopics {
    prefix: Prefix,
    device: Segment,
}

impl DeviceTopics {
    pub fn new(prefix: Prefix, device: Segment) -> Self {
        Self { prefix, device }
    }

    pub fn device(&self) -> &Segment {
        &self.device
    }

    /// Retained device status; also the topic of the MQTT last will.
    pub fn status(&self) -> String {
        format!("{}/{}/status", self.prefix, self.device)
    }

    /// Where the per-viewer link figures go every few seconds while anyone watches.
    pub fn stats(&self) -> String {
        format!("{}/{}/stats", self.prefix, self.device)
    }

    /// Retained motion state ([`MotionReport`]), with motion detection on.
    pub fn motion(&self) -> String {
        format!("{}/{}/motion", self.prefix, self.device)
    }

    /// Retained JPEG of the picture the last motion started on.
    pub fn snapshot(&self) -> String {
        format!("{}/{}/snapshot", self.prefix, self.device)
    }

    /// Subscription filter covering every viewer session's inbound topic.
    pub fn inbound_filter(&self) -> String {
        format!("{}/{}/in/+", self.prefix, self.device)
    }

    pub fn inbound(&self, session: &Segment) -> String {
        format!("{}/{}/in/{}", self.prefix, self.device, session)
    }

    pub fn outbound(&self, session: &Segment) -> String {
        format!("{}/{}/out/{}", self.prefix, self.device, session)
    }

    /// The session id of an inbound topic, validated.
    pub fn session_of(&self, topic: &str) -> Result<Segment, TopicError> {
        let base = format!("{}/{}/in/", self.prefix, self.device);
        let rest = topic.strip_prefix(&base).ok_or(TopicError::NotInbound)?;
        Segment::parse(rest)
    }
}

/// An ICE candidate exactly as a browser's `RTCIceCandidate.toJSON()` gives it and
/// `addIceCandidate()` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub candidate: String,
    #[serde(rename = "sdpMid")]
    pub sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
    #[serde(rename = "usernameFragment")]
    pub username_fragment: Option<String>,
}

/// What a viewer may send to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewerMessage {
    Offer {
        sdp: String,
    },
    /// `None` is the end-of-candidates marker.
    Candidate(Option<Candidate>),
    Hangup,
}

/// Error codes a device sends to a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    Busy,
    BadRequest,
    Unsupported,
    /// The viewer sends more of something (renegotiations) than a session may.
    RateLimited,
    Internal,
}

/// What a device sends to a viewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum DeviceMessage {
    Answer { sdp: String },
    Candidate { candidate: Option<Candidate> },
    Hangup,
    Error { code: ErrorCode, message: String },
}

impl DeviceMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising these plain types cannot fail; fall back to a fixed error rather than
        // panicking if that ever changes.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"serialisation failed"}"#.to_owned()
        })
    }
}

/// Every way an inbound signaling payload can be malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("payload is {size} bytes; at most {MAX_PAYLOAD_BYTES} are accepted")]
    TooLarge { size: usize },
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    #[error("payload is not a JSON object")]
    NotObject,
    #[error("message has no \"type\" field")]
    MissingType,
    #[error("field \"type\" must be a string")]
    TypeNotString,
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("a viewer may not send a message of type {0:?}")]
    UnexpectedType(String),
    #[error("message has no {0:?} field")]
    MissingField(&'static str),
    #[error("field {field:?} must be {expected}")]
    WrongFieldType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field {0:?} must not be empty")]
    EmptyField(&'static str),
    #[error("candidate is {0} bytes; at most {MAX_CANDIDATE_BYTES} are accepted")]
    CandidateTooLong(usize),
}

impl ViewerMessage {
    /// Parses and validates one inbound payload. Unknown fields are ignored.
    pub fn parse(payload: &[u8]) -> Result<Self, ProtocolError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(ProtocolError::TooLarge {
                size: payload.len(),
            });
        }
        let value: Value =
            serde_json::from_slice(payload).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
        let object = value.as_object().ok_or(ProtocolError::NotObject)?;
        let kind = object
            .get("type")
            .ok_or(ProtocolError::MissingType)?
            .as_str()
            .ok_or(ProtocolError::TypeNotString)?;
        match kind {
            "offer" => {
                let sdp = required_string(object, "sdp")?;
                if sdp.trim().is_empty() {
                    return Err(ProtocolError::EmptyField("sdp"));
                }
                Ok(Self::Offer {
                    sdp: sdp.to_owned(),
                })
            }
            "candidate" => match object.get("candidate") {
                None => Err(ProtocolError::MissingField("candidate")),
                Some(Value::Null) => Ok(Self::Candidate(None)),
                Some(Value::Object(fields)) => parse_candidate(fields).map(Self::Candidate),
                Some(_) => Err(ProtocolError::WrongFieldType {
                    field: "candidate",
                    expected: "an object or null",
                }),
            },
            "hangup" => Ok(Self::Hangup),
            "answer" | "error" => Err(ProtocolError::UnexpectedType(kind.to_owned())),
            other => Err(ProtocolError::UnknownType(truncate(other, 64))),
        }
    }
}

fn required_string<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, ProtocolError> {
    object
        .get(field)
        .ok_or(ProtocolError::MissingField(field))?
        .as_str()
        .ok_or(ProtocolError::WrongFieldType {
            field,
            expected: "a string",
        })
}

fn optional_string(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, ProtocolError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ProtocolError::WrongFieldType {
            field,
            expected: "a string or null",
        }),
    }
}

/// Browsers signal the end of a generation's candidates with an empty candidate string; that
/// is the same as `"candidate": null`.
fn parse_candidate(fields: &Map<String, Value>) -> Result<Option<Candidate>, ProtocolError> {
    let line = required_string(fields, "candidate")?;
    if line.len() > MAX_CANDIDATE_BYTES {
        return Err(ProtocolError::CandidateTooLong(line.len()));
    }
    let sdp_mid = optional_string(fields, "sdpMid")?;
    let sdp_mline_index = match fields.get("sdpMLineIndex") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().and_then(|n| u16::try_from(n).ok()).ok_or(
            ProtocolError::WrongFieldType {
                field: "sdpMLineIndex",
                expected: "an integer from 0 to 65535 or null",
            },
        )?),
    };
    let username_fragment = optional_string(fields, "usernameFragment")?;
    if line.is_empty() {
        return Ok(None);
    }
    Ok(Some(Candidate {
        candidate: line.to_owned(),
        sdp_mid,
        sdp_mline_index,
        username_fragment,
    }))
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// The retained status of an online device. Offline is the fixed [`OFFLINE_STATUS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: DeviceState,
    pub version: String,
    pub video: VideoDescription,
    /// `null` when the device has no audio.
    pub audio: Option<AudioDescription>,
    pub viewers: usize,
    /// For a camera served over another device's broker connection (several cameras in one
    /// campeer): that device. Its status carries the connection's last will, so when it says
    /// offline, so is this one, whatever this retained status still says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The device's publications into SFUs (`[[publish]]`), when it has any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<PublicationReport>,
    /// Motion detection, when it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motion: Option<MotionReport>,
    /// Recording, when it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordReport>,
}

/// Recording as the status tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordReport {
    /// `continuous` or `motion`.
    pub mode: String,
    /// `recording` (a file is being written), `waiting` (for motion, or for the camera) or
    /// `failed` (see `error`).
    pub state: String,
    /// The file being written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Megabytes free where recordings go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Motion as the motion topic (retained) and the status tell it:
/// `{"state":"on","at":"2026-12-08T03:17:20.123Z","area":0.04}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MotionReport {
    /// `on` while there is motion, else `off`.
    pub state: String,
    /// When motion last started or stopped (RFC 3339, UTC); when detection began, before any.
    pub at: String,
    /// The share of the picture that changed when motion started; 0 while there is none.
    pub area: f64,
    /// Times motion started since campeer did (the status only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
}

/// One publication as the status topic tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicationReport {
    /// The WHIP endpoint, without any credentials the URL carried.
    pub url: String,
    /// `connecting`, `publishing` or `retrying`.
    pub state: String,
    /// Attempts made, the first included.
    pub attempts: u64,
    /// Why the last attempt ended, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The status payload of an offline device: the MQTT last will, and what a clean stop publishes.
pub const OFFLINE_STATUS: &str = r#"{"state":"offline"}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    Online,
    Offline,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoDescription {
    /// The codec a viewer that can take anything gets: "H264".
    pub codec: String,
    /// Every codec the device sends video in, best first: ["H264", "VP8"] (["H264"] for a
    /// camera whose own H.264 is passed through). A viewer offering none of them is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codecs: Vec<String>,
    /// The codecs being sent now: one encoder per codec runs while its viewers watch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sending: Vec<String>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// What the source is doing: idle, starting, live or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Why the source failed, while it is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The encoder making the stream once it runs: "openh264" or "v4l2m2m" (absent while
    /// idle, and for a camera's own H.264 passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioDescription {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u8,
    /// What the source is doing: idle, starting, live or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Why the source failed, while it is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Status {
    pub fn online(
        video: VideoDescription,
        audio: Option<AudioDescription>,
        viewers: usize,
    ) -> Self {
        Self {
            state: DeviceState::Online,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            video,
            audio,
            viewers,
            via: None,
            publications: Vec::new(),
            motion: None,
            record: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| OFFLINE_STATUS.to_owned())
    }
}

/// Session ids of WHEP viewers start with this; no MQTT client id campeer's page makes does,
/// so a session's id tells where its replies go.
pub const WHEP_SESSION_PREFIX: &str = "whep-";

/// A video codec campeer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// Constrained Baseline H.264: what every browser but a Firefox without OpenH264 takes, and
    /// what a board's hardware encoder makes.
    H264,
    /// For viewers without H.264; always encoded in software (libvpx).
    Vp8,
}

impl VideoCodec {
    /// The name in SDP and in the status topic.
    pub fn sdp_name(self) -> &'static str {
        match self {
            Self::H264 => "H264",
            Self::Vp8 => "VP8",
        }
    }

    pub fn mime_type(self) -> &'static str {
        match self {
            Self::H264 => "video/H264",
            Self::Vp8 => "video/VP8",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ViewerMessage, ProtocolError> {
        ViewerMessage::parse(text.as_bytes())
    }

    #[test]
    fn parses_offer_and_ignores_unknown_fields() {
        let msg = parse(r#"{"type":"offer","sdp":"v=0\r\n","extra":[1,2]}"#).unwrap();
        assert_eq!(
            msg,
            ViewerMessage::Offer {
                sdp: "v=0\r\n".into()
            }
        );
    }

    #[test]
    fn parses_browser_candidate_json() {
        let msg = parse(
            r#"{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}}"#,
        )
        .unwrap();
        let ViewerMessage::Candidate(Some(c)) = msg else {
            panic!("expected a candidate, got {msg:?}");
        };
        assert_eq!(c.sdp_mid.as_deref(), Some("0"));
        assert_eq!(c.sdp_mline_index, Some(0));
        assert_eq!(c.username_fragment.as_deref(), Some("abcd"));
    }

    #[test]
    fn null_and_empty_candidates_mean_end_of_candidates() {
        assert_eq!(
            parse(r#"{"type":"candidate","candidate":null}"#).unwrap(),
            ViewerMessage::Candidate(None)
        );
        assert_eq!(
            parse(r#"{"type":"candidate","candidate":{"candidate":"","sdpMid":"0"}}"#).unwrap(),
            ViewerMessage::Candidate(None)
        );
    }

    #[test]
    fn hangup_parses() {
        assert_eq!(
            parse(r#"{"type":"hangup"}"#).unwrap(),
            ViewerMessage::Hangup
        );
    }

    #[test]
    fn malformed_payloads_give_typed_errors() {
        let cases: &[(&str, ProtocolError)] = &[
            ("not json", ProtocolError::NotJson(String::new())),
            ("", ProtocolError::NotJson(String::new())),
            ("[1,2]", ProtocolError::NotObject),
            ("\"offer\"", ProtocolError::NotObject),
            ("{}", ProtocolError::MissingType),
            (r#"{"type":5}"#, ProtocolError::TypeNotString),
            (
                r#"{"type":"dance"}"#,
                ProtocolError::UnknownType("dance".into()),
            ),
            (
                r#"{"type":"answer","sdp":"x"}"#,
                ProtocolError::UnexpectedType("answer".into()),
            ),
            (r#"{"type":"offer"}"#, ProtocolError::MissingField("sdp")),
            (
                r#"{"type":"offer","sdp":42}"#,
                ProtocolError::WrongFieldType {
                    field: "sdp",
                    expected: "a string",
                },
            ),
            (
                r#"{"type":"offer","sdp":"  "}"#,
                ProtocolError::EmptyField("sdp"),
            ),
            (
                r#"{"type":"candidate"}"#,
                ProtocolError::MissingField("candidate"),
            ),
            (
                r#"{"type":"candidate","candidate":"candidate:1"}"#,
                ProtocolError::WrongFieldType {
                    field: "candidate",
                    expected: "an object or null",
                },
            ),
            (
                r#"{"type":"candidate","candidate":{}}"#,
                ProtocolError::MissingField("candidate"),
            ),
            (
                r#"{"type":"candidate","candidate":{"candidate":"c","sdpMLineIndex":-1}}"#,
                ProtocolError::WrongFieldType {
                    field: "sdpMLineIndex",
                    expected: "an integer from 0 to 65535 or null",
                },
            ),
            (
                r#"{"type":"candidate","candidate":{"candidate":"c","sdpMid":7}}"#,
                ProtocolError::WrongFieldType {
                    field: "sdpMid",
                    expected: "a string or null",
                },
            ),
        ];
        for (input, expected) in cases {
            let got = parse(input).expect_err(input);
            match (expected, &got) {
                (ProtocolError::NotJson(_), ProtocolError::NotJson(_)) => {}
                _ => assert_eq!(&got, expected, "input {input:?}"),
            }
        }
    }

    #[test]
    fn oversized_payload_is_refused_before_parsing() {
        let big = format!(
            r#"{{"type":"offer","sdp":"{}"}}"#,
            "a".repeat(MAX_PAYLOAD_BYTES)
        );
        assert!(matches!(parse(&big), Err(ProtocolError::TooLarge { .. })));
        let long_candidate = format!(
            r#"{{"type":"candidate","candidate":{{"candidate":"{}"}}}}"#,
            "c".repeat(MAX_CANDIDATE_BYTES + 1)
        );
        assert!(matches!(
            parse(&long_candidate),
            Err(ProtocolError::CandidateTooLong(_))
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed: u32 = 0x1234_5678;
        for len in 0..512 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    (seed & 0xff) as u8
                })
                .collect();
            let _ = ViewerMessage::parse(&bytes);
        }
    }

    #[test]
    fn segments_are_validated() {
        assert!(Segment::parse("cam-1_A").is_ok());
        assert_eq!(Segment::parse(""), Err(TopicError::EmptySegment));
        assert_eq!(
            Segment::parse(&"a".repeat(65)),
            Err(TopicError::SegmentTooLong(65))
        );
        assert!(Segment::parse(&"a".repeat(64)).is_ok());
        for bad in ["a/b", "a+b", "#", "a b", "é", "a.b", "a\0"] {
            assert!(
                matches!(Segment::parse(bad), Err(TopicError::BadCharacter(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn topics_round_trip() {
        let topics = DeviceTopics::new(
            Prefix::parse("home/campeer").unwrap(),
            Segment::parse("cam1").unwrap(),
        );
        assert_eq!(topics.status(), "home/campeer/cam1/status");
        assert_eq!(topics.inbound_filter(), "home/campeer/cam1/in/+");
        let session = Segment::parse("viewer-7").unwrap();
        assert_eq!(topics.outbound(&session), "home/campeer/cam1/out/viewer-7");
        assert_eq!(
            topics.session_of(&topics.inbound(&session)).unwrap(),
            session
        );
        assert_eq!(
            topics.session_of("home/campeer/cam1/in/bad.id"),
            Err(TopicError::BadCharacter('.'))
        );
        assert_eq!(
            topics.session_of("home/campeer/cam2/in/x"),
            Err(TopicError::NotInbound)
        );
        assert!(Prefix::parse("a//b").is_err());
        assert!(Prefix::parse("a/+").is_err());
    }

    #[test]
    fn status_json_matches_the_documented_shape() {
        let online = Status::online(
            VideoDescription {
                codec: "H264".into(),
                codecs: vec!["H264".into(), "VP8".into()],
                sending: vec!["VP8".into()],
                width: 640,
                height: 480,
                fps: 30,
                state: Some("live".into()),
                error: None,
                encoder: Some("v4l2m2m".into()),
            },
            None,
            0,
        );
        let value: Value = serde_json::from_str(&online.to_json()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "state": "online",
                "version": env!("CARGO_PKG_VERSION"),
                "video": {"codec": "H264", "codecs": ["H264", "VP8"], "sending": ["VP8"],
                          "width": 640, "height": 480, "fps": 30,
                          "state": "live", "encoder": "v4l2m2m"},
                "audio": null,
                "viewers": 0
            })
        );
    }

    #[test]
    fn device_messages_serialise_as_documented() {
        assert_eq!(
            DeviceMessage::error(ErrorCode::BadRequest, "x").to_json(),
            r#"{"type":"error","code":"bad-request","message":"x"}"#
        );
        assert_eq!(
            DeviceMessage::Candidate { candidate: None }.to_json(),
            r#"{"type":"candidate","candidate":null}"#
        );
        assert_eq!(DeviceMessage::Hangup.to_json(), r#"{"type":"hangup"}"#);
        assert_eq!(
            DeviceMessage::Answer { sdp: "v=0".into() }.to_json(),
            r#"{"type":"answer","sdp":"v=0"}"#
        );
    }
}
