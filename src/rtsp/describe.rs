//! What DESCRIBE answers: a device's session description for RTSP readers, pure. H.264 carries
//! its parameter sets (SPS and PPS, RFC 6184's `sprop-parameter-sets`), taken from a keyframe of
//! the one encode, because some readers (Home Assistant's stream worker, older NVRs) want them
//! before the first RTP packet; Opus (RFC 7587) follows when the device has a microphone.

use super::exchange::{Offer, Track};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;

/// The payload types in the description; readers take them from it.
pub const VIDEO_PAYLOAD_TYPE: u8 = 96;
pub const AUDIO_PAYLOAD_TYPE: u8 = 97;

/// H.264 NAL unit types (RFC 6184 §5.4, H.264 Table 7-1).
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_STAP_A: u8 = 24;

/// A stream's H.264 parameter sets, as a keyframe carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSets {
    pub sps: Bytes,
    pub pps: Bytes,
}

impl ParameterSets {
    /// The parameter sets among a keyframe's RTP payloads: in a STAP-A aggregate (as the hub's
    /// packetizer sends them) or as single NAL unit packets. `None` when either is missing or a
    /// payload is malformed (a camera's own H.264 may be anything).
    pub fn from_payloads(payloads: &[Bytes]) -> Option<Self> {
        let mut sps = None;
        let mut pps = None;
        let mut keep = |unit: Bytes| match unit.first().map(|b| b & 0x1f) {
            Some(NAL_SPS) if unit.len() >= 4 => sps = Some(unit),
            Some(NAL_PPS) => pps = Some(unit),
            _ => {}
        };
        for payload in payloads {
            match payload.first().map(|b| b & 0x1f) {
                Some(NAL_STAP_A) => {
                    let mut rest = payload.slice(1..);
                    while let Some(&[high, low]) = rest.get(..2) {
                        let size = usize::from(u16::from_be_bytes([high, low]));
                        let Some(unit) = rest.get(2..2 + size) else {
                            break;
                        };
                        let unit = rest.slice_ref(unit);
                        rest = rest.slice(2 + size..);
                        keep(unit);
                    }
                }
                Some(_) => keep(payload.clone()),
                None => {}
            }
        }
        Some(Self {
            sps: sps?,
            pps: pps?,
        })
    }

    /// `profile-level-id`: the SPS's profile, constraint flags and level, in hex.
    fn profile_level_id(&self) -> String {
        self.sps
            .get(1..4)
            .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
            .unwrap_or_default()
    }
}

/// The description of `device`: its video, with `parameter_sets` when a keyframe was at hand,
/// and Opus with `audio_channels` when it has a microphone. `origin` is the address readers
/// reached campeer on.
pub fn describe(
    device: &str,
    origin: std::net::IpAddr,
    parameter_sets: Option<&ParameterSets>,
    audio_channels: Option<u8>,
) -> Offer {
    let family = if origin.is_ipv6() { "IP6" } else { "IP4" };
    let mut sdp = format!(
        "v=0\r\no=- 0 0 IN {family} {origin}\r\ns=campeer {device}\r\nc=IN {family} {unspecified}\r\n\
         t=0 0\r\na=control:*\r\na=range:npt=now-\r\n",
        unspecified = if origin.is_ipv6() { "::" } else { "0.0.0.0" },
    );
    let mut tracks = vec![Track::Video];
    let pt = VIDEO_PAYLOAD_TYPE;
    sdp.push_str(&format!(
        "m=video 0 RTP/AVP {pt}\r\na=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} packetization-mode=1"
    ));
    if let Some(sets) = parameter_sets {
        sdp.push_str(&format!(
            ";profile-level-id={};sprop-parameter-sets={},{}",
            sets.profile_level_id(),
            STANDARD.encode(&sets.sps),
            STANDARD.encode(&sets.pps)
        ));
    }
    sdp.push_str("\r\na=control:trackID=0\r\n");
    if let Some(channels) = audio_channels {
        tracks.push(Track::Audio);
        let pt = AUDIO_PAYLOAD_TYPE;
        // RFC 7587: always opus/48000/2; sprop-stereo says what the sender actually sends.
        sdp.push_str(&format!(
            "m=audio 0 RTP/AVP {pt}\r\na=rtpmap:{pt} opus/48000/2\r\na=fmtp:{pt} sprop-stereo={}\r\n\
             a=control:trackID=1\r\n",
            u8::from(channels > 1)
        ));
    }
    Offer { sdp, tracks }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn stap_a(units: &[&[u8]]) -> Bytes {
        let mut payload = vec![0x78];
        for unit in units {
            payload.extend_from_slice(&(unit.len() as u16).to_be_bytes());
            payload.extend_from_slice(unit);
        }
        payload.into()
    }

    #[test]
    fn parameter_sets_come_from_a_stap_a_or_single_units() {
        let idr = Bytes::from_static(&[0x65, 0x88, 0x80]);
        let aggregated = ParameterSets::from_payloads(&[stap_a(&[SPS, PPS]), idr.clone()]);
        let single = ParameterSets::from_payloads(&[
            Bytes::from_static(SPS),
            Bytes::from_static(PPS),
            idr.clone(),
        ]);
        let expected = ParameterSets {
            sps: Bytes::from_static(SPS),
            pps: Bytes::from_static(PPS),
        };
        assert_eq!(aggregated.as_ref(), Some(&expected));
        assert_eq!(single.as_ref(), Some(&expected));
        assert_eq!(expected.profile_level_id(), "42c01f");
        // A delta frame, a truncated aggregate and nothing at all have none.
        assert_eq!(ParameterSets::from_payloads(&[idr]), None);
        let truncated = stap_a(&[SPS, PPS]).slice(..9);
        assert_eq!(ParameterSets::from_payloads(&[truncated]), None);
        assert_eq!(ParameterSets::from_payloads(&[Bytes::new()]), None);
    }

    #[test]
    fn the_description_names_each_track_and_its_parameters() {
        let sets = ParameterSets {
            sps: Bytes::from_static(SPS),
            pps: Bytes::from_static(PPS),
        };
        let origin = std::net::IpAddr::from([127, 0, 0, 1]);
        let offer = describe("cam", origin, Some(&sets), Some(1));
        assert_eq!(offer.tracks, [Track::Video, Track::Audio]);
        assert!(offer.sdp.contains(
            "a=fmtp:96 packetization-mode=1;profile-level-id=42c01f;\
             sprop-parameter-sets=Z0LAH9oB,aM48gA==\r\na=control:trackID=0\r\n"
        ));
        assert!(
            offer
                .sdp
                .contains("a=rtpmap:97 opus/48000/2\r\na=fmtp:97 sprop-stereo=0")
        );
        // The description is one rtc's parser takes.
        let parsed = rtc::sdp::SessionDescription::unmarshal(&mut std::io::Cursor::new(
            offer.sdp.as_bytes(),
        ));
        assert_eq!(parsed.map(|d| d.media_descriptions.len()).ok(), Some(2));

        let video_only = describe("cam", origin, None, None);
        assert_eq!(video_only.tracks, [Track::Video]);
        assert!(!video_only.sdp.contains("sprop"));
        assert!(!video_only.sdp.contains("m=audio"));
    }
}
