//! Reading a viewer's SDP offer: which video codec and payload type to answer with (H.264
//! whenever the viewer can take it, else VP8), and which ICE candidates to keep. Pure text
//! processing, so every rule is unit-tested without a peer.

use crate::protocol::VideoCodec;
use std::collections::HashMap;
use std::net::IpAddr;

/// The video payload format chosen from an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoChoice {
    pub codec: VideoCodec,
    pub payload_type: u8,
    /// The offer's fmtp line for that payload type, echoed in the answer.
    pub fmtp: String,
}

/// More media sections than any viewer needs (a browser offers two or three).
pub const MAX_MEDIA_SECTIONS: usize = 16;
/// RTP payload types are 7 bits: a section can list at most 128 different ones.
pub const MAX_FORMATS_PER_SECTION: usize = 128;
/// Lines in an offer: a browser's offer has a few hundred at most.
pub const MAX_LINES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("the offer has no video section")]
    NoVideo,
    /// Nothing campeer sends: the names of what the offer had instead (for the viewer's own
    /// words on what to do).
    #[error(
        "the offer's video section has no codec this device sends: it sends {sent}, and the \
         offer has {offered}"
    )]
    NoUsableCodec { sent: String, offered: String },
    #[error("the offer has {0} lines; at most {MAX_LINES} are accepted")]
    TooManyLines(usize),
    #[error("the offer has {0} media sections; at most {MAX_MEDIA_SECTIONS} are accepted")]
    TooManySections(usize),
    #[error(
        "a media section of the offer lists {0} formats; at most {MAX_FORMATS_PER_SECTION} are \
         accepted"
    )]
    TooManyFormats(usize),
    #[error("a media section of the offer lists {0:?}, which is not an RTP payload type")]
    BadPayloadType(String),
}

impl OfferError {
    /// Whether the offer is malformed (as opposed to well-formed but asking for something
    /// campeer cannot send).
    pub fn is_malformed(&self) -> bool {
        !matches!(self, OfferError::NoVideo | OfferError::NoUsableCodec { .. })
    }
}

/// Refuses offers far outside what any WebRTC stack sends, before anything else reads them:
/// the checks are one pass over the text, and what passes them is small enough for webrtc's
/// own parser and for the per-section lookups below.
pub fn check_shape(sdp: &str) -> Result<(), OfferError> {
    let lines = sdp.lines().count();
    if lines > MAX_LINES {
        return Err(OfferError::TooManyLines(lines));
    }
    let mut sections = 0;
    for media in sdp
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix("m="))
    {
        sections += 1;
        if sections > MAX_MEDIA_SECTIONS {
            return Err(OfferError::TooManySections(
                sdp.lines().filter(|l| l.starts_with("m=")).count(),
            ));
        }
        let mut fields = media.split_whitespace();
        let protocol = fields.nth(2).unwrap_or("");
        let formats: Vec<&str> = fields.collect();
        if formats.len() > MAX_FORMATS_PER_SECTION {
            return Err(OfferError::TooManyFormats(formats.len()));
        }
        // Only RTP sections carry payload types; a data channel lists a name.
        if protocol.contains("RTP")
            && let Some(bad) = formats
                .iter()
                .find(|f| !f.parse::<u8>().is_ok_and(|pt| pt < 128))
        {
            let shown: String = bad.chars().take(16).collect();
            return Err(OfferError::BadPayloadType(shown));
        }
    }
    Ok(())
}

/// How campeer names a codec to a viewer: H.264 with the constraint that matters.
fn describe_sent(codecs: &[VideoCodec]) -> String {
    let names: Vec<&str> = codecs
        .iter()
        .map(|codec| match codec {
            VideoCodec::H264 => "H.264 (packetization-mode=1, Constrained Baseline)",
            VideoCodec::Vp8 => "VP8",
        })
        .collect();
    names.join(" or ")
}

/// Picks the video codec and payload type: H.264 whenever the offer has a usable one (the
/// cheapest for the board, often in hardware), else VP8, each at the first payload type in
/// the viewer's order of preference. Only `codecs`, what this device can send, are considered.
pub fn choose_video(sdp: &str, codecs: &[VideoCodec]) -> Result<VideoChoice, OfferError> {
    let section = media_sections(sdp)
        .into_iter()
        .find(|s| s.kind == "video" && s.is_live())
        .ok_or(OfferError::NoVideo)?;
    let rtpmap = section.codecs();
    for codec in codecs {
        let found = section.formats.iter().find_map(|pt| {
            let payload_type = pt.parse::<u8>().ok()?;
            let name = rtpmap.rtpmap.get(pt)?;
            let fmtp = rtpmap.fmtp(pt);
            let fits = match codec {
                VideoCodec::H264 => name.eq_ignore_ascii_case("H264/90000") && fmtp_fits(&fmtp),
                VideoCodec::Vp8 => name.eq_ignore_ascii_case("VP8/90000"),
            };
            fits.then_some(VideoChoice {
                codec: *codec,
                payload_type,
                fmtp,
            })
        });
        if let Some(choice) = found {
            return Ok(choice);
        }
    }
    // The offer's own codec names, once each, for the refusal: a viewer with nothing in
    // common needs to know what it lacks.
    let mut offered: Vec<String> = Vec::new();
    for pt in &section.formats {
        if let Some(name) = rtpmap.rtpmap.get(pt) {
            let name: String = name
                .split('/')
                .next()
                .unwrap_or("")
                .chars()
                .take(16)
                .collect();
            let is_media = !["rtx", "red", "ulpfec", "flexfec-03"]
                .iter()
                .any(|other| name.eq_ignore_ascii_case(other));
            if is_media && !offered.contains(&name) && offered.len() < 8 {
                offered.push(name);
            }
        }
    }
    Err(OfferError::NoUsableCodec {
        sent: describe_sent(codecs),
        offered: if offered.is_empty() {
            "none".to_owned()
        } else {
            offered.join(", ")
        },
    })
}

/// H.264 alone, for tests of its rules.
#[cfg(test)]
fn choose_h264(sdp: &str) -> Result<VideoChoice, OfferError> {
    choose_video(sdp, &[VideoCodec::H264])
}

/// Everything a session sends, as chosen from the viewer's offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub video: VideoChoice,
    /// `None`: no audio for this viewer (it asked for none, cannot take Opus, or the device
    /// has no audio).
    pub audio: Option<OpusChoice>,
    /// The Opus the viewer offered on the video's transport, whether or not the device sends
    /// audio. It is what the answer names for the audio section, so that a device without
    /// sound answers it inactive inside the bundle rather than rejecting it (strict stacks
    /// such as aiortc refuse an answer whose rejected section shares no codec with the offer).
    pub offered_audio: Option<OpusChoice>,
    /// How this viewer tells campeer what its link carries.
    pub feedback: CongestionFeedback,
    /// Whether sound counts in that feedback too (transport-wide sequence numbers on audio
    /// packets): for a viewer whenever video's does, as browsers offer it on both. A WHIP
    /// publication offers it on video only: SFUs answer it there alone (Janus does), and
    /// audio packets stamped with numbers the server never counts read as lost.
    pub audio_transport_cc: bool,
}

/// The bandwidth feedback a viewer can give, best first: what the estimate for its link is
/// built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CongestionFeedback {
    /// Transport-wide congestion control: per-packet arrival times, so campeer estimates the
    /// link itself (delay and loss). Browsers offer it.
    TransportCc,
    /// The receiver's own estimate (REMB, `goog-remb`): aiortc and some SFUs.
    Remb,
    /// Neither: only the loss in RTCP receiver reports, as a backstop.
    ReceiverReports,
}

/// The RTP header extension transport-wide sequence numbers travel in.
pub const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Which feedback the offer's video section supports for `payload_type`: transport-cc needs
/// both the `rtcp-fb` and the header extension; REMB only the `rtcp-fb`. A wildcard `*`
/// payload type counts.
fn congestion_feedback(section: &MediaSection<'_>, payload_type: u8) -> CongestionFeedback {
    let pt = payload_type.to_string();
    let has_feedback = |wanted: &str| {
        section
            .attributes("rtcp-fb")
            .filter_map(|value| value.split_once(' '))
            .any(|(p, kind)| (p == pt || p == "*") && kind.trim().eq_ignore_ascii_case(wanted))
    };
    let has_twcc_extension = section
        .attributes("extmap")
        .any(|value| value.split_whitespace().nth(1) == Some(TRANSPORT_CC_URI));
    if has_feedback("transport-cc") && has_twcc_extension {
        CongestionFeedback::TransportCc
    } else if has_feedback("goog-remb") {
        CongestionFeedback::Remb
    } else {
        CongestionFeedback::ReceiverReports
    }
}

/// Chooses the codecs for an offer. Video is required, in one of `video_codecs` (what the
/// device can send, best first); audio is sent when the viewer asks for it in Opus and
/// `audio_available`.
pub fn negotiate(
    sdp: &str,
    video_codecs: &[VideoCodec],
    audio_available: bool,
) -> Result<Negotiated, OfferError> {
    check_shape(sdp)?;
    let video = choose_video(sdp, video_codecs)?;
    let feedback = media_sections(sdp)
        .into_iter()
        .find(|s| s.kind == "video" && s.is_live())
        .map_or(CongestionFeedback::ReceiverReports, |section| {
            congestion_feedback(&section, video.payload_type)
        });
    let offered_audio = choose_opus(sdp).filter(|_| audio_shares_video_transport(sdp));
    Ok(Negotiated {
        video,
        audio: offered_audio.clone().filter(|_| audio_available),
        offered_audio,
        feedback,
        audio_transport_cc: feedback == CongestionFeedback::TransportCc,
    })
}

/// The Opus payload format chosen from an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusChoice {
    pub payload_type: u8,
    /// The offer's fmtp line for that payload type, echoed in the answer.
    pub fmtp: String,
}

/// The first Opus payload type of the offer's first live audio section: `None` when the viewer
/// asked for no audio or cannot take Opus (the answer then declines audio and video goes on).
pub fn choose_opus(sdp: &str) -> Option<OpusChoice> {
    let section = media_sections(sdp)
        .into_iter()
        .find(|s| s.kind == "audio" && s.is_live())?;
    let codecs = section.codecs();
    section.formats.iter().find_map(|pt| {
        let payload_type = pt.parse::<u8>().ok()?;
        let is_opus = codecs
            .rtpmap
            .get(pt)
            .is_some_and(|codec| codec.eq_ignore_ascii_case("opus/48000/2"));
        is_opus.then(|| OpusChoice {
            payload_type,
            fmtp: codecs.fmtp(pt),
        })
    })
}

/// A section's `rtpmap` and `fmtp` lines by payload type, read in one pass so that looking
/// up each listed format costs the same however long the offer is. The first line for a
/// payload type counts.
struct Codecs<'a> {
    rtpmap: HashMap<&'a str, &'a str>,
    fmtp: HashMap<&'a str, &'a str>,
}

impl Codecs<'_> {
    fn fmtp(&self, payload_type: &str) -> String {
        self.fmtp
            .get(payload_type)
            .map(|params| params.trim().to_owned())
            .unwrap_or_default()
    }
}

fn fmtp_fits(fmtp: &str) -> bool {
    let param = |name: &str| {
        fmtp.split(';').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    // RFC 6184: packetization-mode defaults to 0, profile-level-id to 420010 (Baseline).
    if param("packetization-mode") != Some("1") {
        return false;
    }
    let profile_level_id = param("profile-level-id").unwrap_or("420010");
    // Six hex digits; checked byte by byte first, so that no slice below can split a
    // multi-byte character a viewer put there.
    if profile_level_id.len() != 6 || !profile_level_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let Some(Ok(profile_idc)) = profile_level_id
        .get(..2)
        .map(|idc| u8::from_str_radix(idc, 16))
    else {
        return false;
    };
    matches!(profile_idc, 0x42 | 0x4d | 0x64)
}

/// The connection address of an ICE candidate line (with or without the `candidate:` prefix),
/// or `None` when it is not an IP address (an mDNS `.local` name) or the line is malformed.
pub fn candidate_ip(candidate: &str) -> Option<IpAddr> {
    let line = candidate.trim();
    let line = line.strip_prefix("a=").unwrap_or(line);
    let line = line.strip_prefix("candidate:").unwrap_or(line);
    line.split_whitespace().nth(4)?.parse().ok()
}

/// Whether an ICE candidate line is a host candidate (`typ host`).
pub fn is_host_candidate(candidate: &str) -> bool {
    let mut fields = candidate.split_whitespace();
    fields.any(|field| field == "typ") && fields.next() == Some("host")
}

/// The candidate lines of a description, without their `a=` prefix: the form in which the
/// same candidates are trickled.
pub fn candidate_lines(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|line| line.trim_end().strip_prefix("a="))
        .filter(|line| line.starts_with("candidate:"))
        .map(str::to_owned)
        .collect()
}

/// Whether a remote candidate may be used under `--ice-loopback-only`.
pub fn is_loopback_candidate(candidate: &str) -> bool {
    candidate_ip(candidate).is_some_and(|ip| ip.is_loopback())
}

/// Removes candidate lines whose address is not loopback, for offers that carry their
/// candidates inline rather than trickling them.
pub fn keep_loopback_candidates(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed.starts_with("a=candidate:") && !is_loopback_candidate(trimmed) {
            continue;
        }
        out.push_str(line);
    }
    out
}

/// The first media section's mid and the ICE username fragment of a (local) description:
/// what a trickled candidate needs to name for the browser to accept it. With BUNDLE, every
/// section shares one transport, so the first section stands for all.
pub fn first_mid_and_ufrag(sdp: &str) -> (Option<String>, Option<String>) {
    let sections = media_sections(sdp);
    let Some(first) = sections.first() else {
        return (None, None);
    };
    let mid = first.attributes("mid").next().map(str::to_owned);
    let ufrag = first
        .attributes("ice-ufrag")
        .next()
        .or_else(|| session_attribute(sdp, "ice-ufrag"))
        .map(str::to_owned);
    (mid, ufrag)
}

/// The ICE credentials a section uses: its own, or the session's.
fn ice_credentials<'a>(
    sdp: &'a str,
    section: &MediaSection<'a>,
) -> (Option<&'a str>, Option<&'a str>) {
    let get = |name| {
        section
            .attributes(name)
            .next()
            .or_else(|| session_attribute(sdp, name))
    };
    (get("ice-ufrag"), get("ice-pwd"))
}

/// Whether the offer's audio can travel over the video's ICE transport: both sections in one
/// BUNDLE group, or the same ICE credentials. webrtc serves every section of a session over
/// one transport; a viewer that offers audio on a transport of its own gets video only.
/// (aiortc bundles, but gives each section its own credentials until the answer says BUNDLE.)
fn audio_shares_video_transport(sdp: &str) -> bool {
    let sections = media_sections(sdp);
    let live = |kind: &str| sections.iter().find(|s| s.kind == kind && s.is_live());
    let (Some(video), Some(audio)) = (live("video"), live("audio")) else {
        return false;
    };
    let (video_mid, audio_mid) = (
        video.attributes("mid").next(),
        audio.attributes("mid").next(),
    );
    let bundled = sdp
        .lines()
        .map(str::trim_end)
        .take_while(|line| !line.starts_with("m="))
        .filter_map(|line| attribute_value(line, "group"))
        .filter_map(|group| group.strip_prefix("BUNDLE "))
        .any(|mids| {
            let mids: Vec<&str> = mids.split_whitespace().collect();
            [video_mid, audio_mid]
                .iter()
                .all(|m| m.is_some_and(|m| mids.contains(&m)))
        });
    bundled || ice_credentials(sdp, video).0 == ice_credentials(sdp, audio).0
}

/// The offer as webrtc is given it. webrtc refuses an offer whose sections name different ICE
/// credentials ("multiple conflicting ice-ufrag values"), as a viewer that does not bundle
/// sends. Every section that does not share the video's credentials is one campeer declines
/// anyway (see [`negotiate`]): it gets the video's credentials and loses its candidates, so
/// webrtc accepts the offer and declines the section, and the video goes ahead.
pub fn for_webrtc(sdp: &str) -> String {
    let sdp = &with_bundle_only_ports(sdp);
    let sections = media_sections(sdp);
    let Some(video) = sections.iter().find(|s| s.kind == "video" && s.is_live()) else {
        return sdp.to_owned();
    };
    let (Some(ufrag), Some(pwd)) = ice_credentials(sdp, video) else {
        return sdp.to_owned();
    };
    with_ice_credentials(sdp, ufrag, pwd)
}

/// `sdp` with `ufrag` and `pwd` in every part that names other ICE credentials, and that
/// part's candidates left out (they belonged to the old credentials). Media, codecs and DTLS
/// stay as they were.
pub fn with_ice_credentials(sdp: &str, ufrag: &str, pwd: &str) -> String {
    rewrite_sections(sdp, |out, lines| {
        push_with_credentials(out, lines, ufrag, pwd)
    })
}

/// Rebuilds `sdp` part by part (the session part, then each m= section, line endings kept),
/// each written to the output by `copy`.
fn rewrite_sections(sdp: &str, mut copy: impl FnMut(&mut String, &[&str])) -> String {
    let mut out = String::with_capacity(sdp.len() + 256);
    let mut part: Vec<&str> = Vec::new();
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            copy(&mut out, &part);
            part.clear();
        }
        part.push(line);
    }
    copy(&mut out, &part);
    out
}

fn is_bundle_only(line: &str) -> bool {
    line.trim_end() == "a=bundle-only"
}

/// The offer with each bundle-only section's port 0 made 9, the placeholder port of a live
/// section: webrtc reads port 0 as a section the viewer rejected, and would decline the sound
/// a viewer offering bundle-only sections asked for.
fn with_bundle_only_ports(sdp: &str) -> String {
    rewrite_sections(sdp, |out, lines| {
        let bundle_only = lines.iter().any(|line| is_bundle_only(line));
        for line in lines {
            match line.strip_prefix("m=") {
                Some(media) if bundle_only => {
                    let mut fields = media.splitn(3, ' ');
                    match (fields.next(), fields.next(), fields.next()) {
                        (Some(kind), Some("0"), Some(rest)) => {
                            out.push_str(&format!("m={kind} 9 {rest}"));
                        }
                        _ => out.push_str(line),
                    }
                }
                _ => out.push_str(line),
            }
        }
    })
}

/// Copies a section's lines; when the section names other ICE credentials than `ufrag`, they
/// become `ufrag` and `pwd` and its candidates are left out.
fn push_with_credentials(out: &mut String, lines: &[&str], ufrag: &str, pwd: &str) {
    let foreign = lines
        .iter()
        .filter_map(|line| attribute_value(line.trim_end(), "ice-ufrag"))
        .any(|value| value != ufrag);
    for line in lines {
        let trimmed = line.trim_end();
        let ending = line.get(trimmed.len()..).unwrap_or("");
        if !foreign {
            out.push_str(line);
        } else if trimmed.starts_with("a=candidate:") || trimmed == "a=end-of-candidates" {
            continue;
        } else if attribute_value(trimmed, "ice-ufrag").is_some() {
            out.push_str(&format!("a=ice-ufrag:{ufrag}{ending}"));
        } else if attribute_value(trimmed, "ice-pwd").is_some() {
            out.push_str(&format!("a=ice-pwd:{pwd}{ending}"));
        } else {
            out.push_str(line);
        }
    }
}

/// Completes webrtc's answer for strict parsers. webrtc writes a declined section with
/// nothing but its mid; RFC 8829 §5.3.1 and aiortc want every section to carry the ICE
/// credentials, DTLS fingerprint and role, and rtcp-mux of the transport (aiortc refuses the
/// whole answer otherwise). The missing ones are copied from the first section that has them.
pub fn complete_answer(sdp: &str) -> String {
    const TRANSPORT: [&str; 5] = ["ice-ufrag", "ice-pwd", "fingerprint", "setup", "rtcp-mux"];
    let sections = media_sections(sdp);
    let Some(source) = sections
        .iter()
        .find(|s| s.attributes("ice-ufrag").next().is_some())
    else {
        return sdp.to_owned();
    };
    let transport: Vec<(&str, String)> = TRANSPORT
        .iter()
        .filter_map(|name| {
            source.lines.iter().find_map(|line| {
                let rest = line.strip_prefix("a=")?.strip_prefix(*name)?;
                (rest.is_empty() || rest.starts_with(':')).then(|| (*name, (*line).to_owned()))
            })
        })
        .collect();
    rewrite_sections(sdp, |out, lines| {
        out.extend(lines.iter().copied());
        let Some(first) = lines.first() else { return };
        if !first.starts_with("m=") {
            return;
        }
        for (name, line) in &transport {
            let present = lines.iter().any(|l| {
                l.trim_end()
                    .strip_prefix("a=")
                    .and_then(|rest| rest.strip_prefix(*name))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
            });
            if !present && session_attribute(sdp, name).is_none() {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
    })
}

fn session_attribute<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    sdp.lines()
        .map(str::trim_end)
        .take_while(|line| !line.starts_with("m="))
        .find_map(|line| attribute_value(line, name))
}

fn attribute_value<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let rest = line.strip_prefix("a=")?.strip_prefix(name)?;
    rest.strip_prefix(':')
}

struct MediaSection<'a> {
    kind: &'a str,
    port: &'a str,
    formats: Vec<&'a str>,
    lines: Vec<&'a str>,
}

impl<'a> MediaSection<'a> {
    fn codecs(&self) -> Codecs<'a> {
        let mut codecs = Codecs {
            rtpmap: HashMap::new(),
            fmtp: HashMap::new(),
        };
        for (name, map) in [("rtpmap", &mut codecs.rtpmap), ("fmtp", &mut codecs.fmtp)] {
            for (pt, value) in self
                .attributes(name)
                .filter_map(|value| value.split_once(' '))
            {
                map.entry(pt).or_insert(value);
            }
        }
        codecs
    }

    /// Whether the offerer wants this section: a port other than 0, or port 0 with
    /// `a=bundle-only` (RFC 8843 §6: a section that exists only inside the BUNDLE group, as
    /// GStreamer's webrtcbin offers every section after the first).
    fn is_live(&self) -> bool {
        self.port != "0" || self.lines.iter().any(|line| is_bundle_only(line))
    }

    fn attributes<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.lines
            .iter()
            .filter_map(move |line| attribute_value(line, name))
    }
}

fn media_sections(sdp: &str) -> Vec<MediaSection<'_>> {
    let mut sections: Vec<MediaSection<'_>> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            let mut fields = media.split_whitespace();
            let kind = fields.next().unwrap_or("");
            let port = fields.next().unwrap_or("");
            let _protocol = fields.next();
            sections.push(MediaSection {
                kind,
                port,
                formats: fields.collect(),
                lines: Vec::new(),
            });
        } else if let Some(section) = sections.last_mut() {
            section.lines.push(line);
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &[VideoCodec] = &[VideoCodec::H264, VideoCodec::Vp8];

    /// The video section of a Chromium 156 offer (trimmed): 42001f first, then 42e01f, each in
    /// packetization-mode 1 and 0, with VP8 and RTX around them.
    const CHROMIUM_OFFER: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 103 104 107 108 109 114\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:0\r\n\
a=ice-ufrag:abcd\r\n\
a=recvonly\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:103 H264/90000\r\n\
a=rtcp-fb:103 nack pli\r\n\
a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
a=rtpmap:104 rtx/90000\r\n\
a=fmtp:104 apt=103\r\n\
a=rtpmap:107 H264/90000\r\n\
a=fmtp:107 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n\
a=rtpmap:108 H264/90000\r\n\
a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:109 H264/90000\r\n\
a=fmtp:109 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n\
a=rtpmap:114 H264/90000\r\n\
a=fmtp:114 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032\r\n\
a=candidate:1 1 udp 2122260223 192.168.1.20 50000 typ host\r\n\
a=candidate:2 1 udp 2122260223 127.0.0.1 50001 typ host\r\n\
a=candidate:3 1 udp 2122260223 3f1c.local 50002 typ host\r\n";

    #[test]
    fn chromium_order_picks_42001f_mode_1() {
        let choice = choose_h264(CHROMIUM_OFFER).unwrap();
        assert_eq!(choice.payload_type, 103);
        assert!(choice.fmtp.contains("profile-level-id=42001f"));
    }

    #[test]
    fn an_offer_with_only_42e01f_gets_it() {
        let offer = CHROMIUM_OFFER.replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 103 104 107 108 109 114",
            "m=video 9 UDP/TLS/RTP/SAVPF 108 109",
        );
        let choice = choose_h264(&offer).unwrap();
        assert_eq!(choice.payload_type, 108);
        assert!(choice.fmtp.contains("42e01f"));
    }

    #[test]
    fn mode_0_only_is_unsupported() {
        let offer = CHROMIUM_OFFER.replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 103 104 107 108 109 114",
            "m=video 9 UDP/TLS/RTP/SAVPF 107 109",
        );
        assert!(matches!(
            choose_h264(&offer),
            Err(OfferError::NoUsableCodec { .. })
        ));
    }

    #[test]
    fn h264_comes_first_whenever_the_offer_has_it_and_vp8_otherwise() {
        // Chromium lists VP8 first; H.264 is still taken.
        let choice = choose_video(CHROMIUM_OFFER, BOTH).unwrap();
        assert_eq!((choice.codec, choice.payload_type), (VideoCodec::H264, 103));
        // Only mode 0 H.264: VP8 it is.
        let offer = CHROMIUM_OFFER.replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 103 104 107 108 109 114",
            "m=video 9 UDP/TLS/RTP/SAVPF 107 96 97",
        );
        let choice = choose_video(&offer, BOTH).unwrap();
        assert_eq!((choice.codec, choice.payload_type), (VideoCodec::Vp8, 96));
    }

    /// Firefox ESR's default offer (Debian turns its OpenH264 plugin off): no H.264 at all.
    const FIREFOX_VIDEO: &str = "v=0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 99 100 123 122 119\r\n\
a=mid:0\r\n\
a=rtpmap:120 VP8/90000\r\n\
a=fmtp:120 max-fs=12288;max-fr=60\r\n\
a=rtpmap:124 rtx/90000\r\n\
a=fmtp:124 apt=120\r\n\
a=rtpmap:121 VP9/90000\r\n\
a=rtpmap:125 rtx/90000\r\n\
a=rtpmap:99 AV1/90000\r\n\
a=rtpmap:100 rtx/90000\r\n\
a=rtpmap:123 ulpfec/90000\r\n\
a=rtpmap:122 red/90000\r\n\
a=rtpmap:119 rtx/90000\r\n";

    #[test]
    fn firefox_without_h264_gets_vp8_with_its_fmtp() {
        let choice = choose_video(FIREFOX_VIDEO, BOTH).unwrap();
        assert_eq!(choice.codec, VideoCodec::Vp8);
        assert_eq!(choice.payload_type, 120);
        assert_eq!(choice.fmtp, "max-fs=12288;max-fr=60");
    }

    #[test]
    fn a_refusal_names_what_the_device_sends_and_what_the_offer_had() {
        // A camera passing its own H.264 through sends nothing else.
        let error = choose_video(FIREFOX_VIDEO, &[VideoCodec::H264]).unwrap_err();
        assert_eq!(
            error,
            OfferError::NoUsableCodec {
                sent: "H.264 (packetization-mode=1, Constrained Baseline)".to_owned(),
                offered: "VP8, VP9, AV1".to_owned(),
            }
        );
        assert!(!error.is_malformed());
        let av1_only = FIREFOX_VIDEO.replace("120 124 121 125 99 100 123 122 119", "99 100");
        let message = choose_video(&av1_only, BOTH).unwrap_err().to_string();
        assert!(
            message.contains("H.264") && message.contains("VP8"),
            "{message}"
        );
        assert!(message.ends_with("the offer has AV1"), "{message}");
    }

    #[test]
    fn vp8_only_without_vp8_to_send_is_unsupported_and_no_video_is_reported() {
        let offer = CHROMIUM_OFFER.replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 103 104 107 108 109 114",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        );
        assert!(matches!(
            choose_h264(&offer),
            Err(OfferError::NoUsableCodec { .. })
        ));
        let audio_only = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(choose_h264(audio_only), Err(OfferError::NoVideo));
        assert_eq!(choose_h264(""), Err(OfferError::NoVideo));
        assert_eq!(choose_h264("garbage\n\n\u{0}"), Err(OfferError::NoVideo));
    }

    const AUDIO_SECTION: &str = "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0\r\n\
a=mid:1\r\n\
a=recvonly\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn opus_is_found_in_the_audio_section() {
        let offer =
            format!("{CHROMIUM_OFFER}{AUDIO_SECTION}").replace("BUNDLE 0\r\n", "BUNDLE 0 1\r\n");
        assert_eq!(
            choose_opus(&offer),
            Some(OpusChoice {
                payload_type: 111,
                fmtp: "minptime=10;useinbandfec=1".into()
            })
        );
        // Video is still chosen from the video section.
        assert_eq!(choose_h264(&offer).unwrap().payload_type, 103);
        let with_audio = negotiate(&offer, BOTH, true).unwrap();
        assert_eq!(with_audio.audio.map(|a| a.payload_type), Some(111));
        assert_eq!(
            negotiate(&offer, BOTH, false).unwrap().audio,
            None,
            "no audio on the device"
        );
    }

    #[test]
    fn no_audio_section_a_rejected_one_or_no_opus_means_no_audio() {
        assert_eq!(choose_opus(CHROMIUM_OFFER), None);
        let rejected = AUDIO_SECTION.replace("m=audio 9", "m=audio 0");
        assert_eq!(choose_opus(&format!("{CHROMIUM_OFFER}{rejected}")), None);
        let pcmu_only = AUDIO_SECTION.replace("111 63 9 0", "9 0");
        assert_eq!(choose_opus(&format!("{CHROMIUM_OFFER}{pcmu_only}")), None);
    }

    /// GStreamer's webrtcbin (max-bundle) offers its second section with port 0 and
    /// `a=bundle-only`: live, inside the bundle.
    const WEBRTCBIN_OFFER: &str = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE video0 audio1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\n\
        a=ice-ufrag:u\r\na=ice-pwd:p\r\na=rtcp-mux\r\na=recvonly\r\n\
        a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n\
        a=mid:video0\r\n\
        m=audio 0 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\n\
        a=bundle-only\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\na=rtcp-mux\r\na=recvonly\r\n\
        a=rtpmap:111 OPUS/48000/2\r\na=mid:audio1\r\n";

    #[test]
    fn a_bundle_only_section_is_live_and_reaches_webrtc_with_a_port() {
        let choice = negotiate(WEBRTCBIN_OFFER, BOTH, true).unwrap();
        assert_eq!(choice.audio.map(|a| a.payload_type), Some(111));
        let given = for_webrtc(WEBRTCBIN_OFFER);
        assert!(
            given.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"),
            "{given}"
        );
        assert!(
            given.contains("m=video 9 UDP/TLS/RTP/SAVPF 102\r\n"),
            "{given}"
        );
        // Port 0 without bundle-only stays a rejected section.
        let rejected = WEBRTCBIN_OFFER.replace("a=bundle-only\r\n", "");
        assert_eq!(negotiate(&rejected, BOTH, true).unwrap().audio, None);
        assert!(for_webrtc(&rejected).contains("m=audio 0 "));
    }

    #[test]
    fn missing_profile_defaults_to_baseline_and_odd_profiles_are_refused() {
        assert!(fmtp_fits("packetization-mode=1"));
        assert!(fmtp_fits("profile-level-id=4d001f; packetization-mode=1"));
        assert!(!fmtp_fits("profile-level-id=f4001f;packetization-mode=1"));
        assert!(!fmtp_fits("profile-level-id=zz001f;packetization-mode=1"));
        assert!(!fmtp_fits("profile-level-id=42;packetization-mode=1"));
        // Six bytes, but the second character is two of them: no slice may split it.
        assert!(!fmtp_fits("profile-level-id=aé001;packetization-mode=1"));
        assert!(!fmtp_fits("profile-level-id=4é001;packetization-mode=1"));
        assert!(!fmtp_fits("profile-level-id=+42001;packetization-mode=1"));
        assert!(!fmtp_fits(""));
    }

    #[test]
    fn congestion_feedback_follows_what_the_offer_supports() {
        let twcc_extension = format!("a=extmap:3 {TRANSPORT_CC_URI}\r\n");
        let with = |lines: &str| format!("{CHROMIUM_OFFER}{lines}");
        let feedback = |sdp: &str| negotiate(sdp, BOTH, false).unwrap().feedback;
        assert_eq!(
            feedback(&with(&format!(
                "a=rtcp-fb:103 transport-cc\r\n{twcc_extension}"
            ))),
            CongestionFeedback::TransportCc
        );
        assert_eq!(
            feedback(&with(&format!(
                "a=rtcp-fb:* transport-cc\r\n{twcc_extension}"
            ))),
            CongestionFeedback::TransportCc
        );
        // Feedback for another payload type, or without the header extension, is no use.
        assert_eq!(
            feedback(&with(&format!(
                "a=rtcp-fb:108 transport-cc\r\n{twcc_extension}"
            ))),
            CongestionFeedback::ReceiverReports
        );
        assert_eq!(
            feedback(&with(
                "a=rtcp-fb:103 transport-cc\r\na=rtcp-fb:103 goog-remb\r\n"
            )),
            CongestionFeedback::Remb
        );
        assert_eq!(
            feedback(CHROMIUM_OFFER),
            CongestionFeedback::ReceiverReports
        );
    }

    #[test]
    fn candidate_addresses_are_read() {
        assert_eq!(
            candidate_ip("candidate:2 1 udp 2122260223 127.0.0.1 50001 typ host"),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            candidate_ip("1 1 udp 1 ::1 5 typ host"),
            Some("::1".parse().unwrap())
        );
        assert_eq!(
            candidate_ip("candidate:3 1 udp 1 3f1c.local 5 typ host"),
            None
        );
        assert_eq!(candidate_ip("candidate:"), None);
        assert_eq!(candidate_ip(""), None);
        assert!(is_loopback_candidate(
            "candidate:1 1 udp 1 127.8.9.1 5 typ host"
        ));
        assert!(!is_loopback_candidate(
            "candidate:1 1 udp 1 10.0.0.1 5 typ host"
        ));
    }

    #[test]
    fn inline_candidates_outside_loopback_are_removed() {
        let kept = keep_loopback_candidates(CHROMIUM_OFFER);
        assert!(kept.contains("127.0.0.1 50001"));
        assert!(!kept.contains("192.168.1.20"));
        assert!(!kept.contains(".local"));
        assert!(kept.contains("a=fmtp:108"));
    }

    #[test]
    fn mid_and_ufrag_come_from_the_first_section_or_the_session() {
        assert_eq!(
            first_mid_and_ufrag(CHROMIUM_OFFER),
            (Some("0".into()), Some("abcd".into()))
        );
        let session_level = "v=0\r\na=ice-ufrag:zz\r\nm=video 9 X 1\r\na=mid:v\r\n";
        assert_eq!(
            first_mid_and_ufrag(session_level),
            (Some("v".into()), Some("zz".into()))
        );
        assert_eq!(first_mid_and_ufrag("v=0"), (None, None));
    }

    #[test]
    fn offers_far_outside_what_stacks_send_are_refused_as_malformed() {
        let many: String = (0..200).map(|pt| format!(" {}", pt % 128)).collect();
        let offer = CHROMIUM_OFFER.replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 103 104 107 108 109 114",
            &format!("m=video 9 UDP/TLS/RTP/SAVPF{many}"),
        );
        assert_eq!(check_shape(&offer), Err(OfferError::TooManyFormats(200)));

        let offer = CHROMIUM_OFFER.replace("SAVPF 96 97", "SAVPF 96 300");
        assert_eq!(
            negotiate(&offer, BOTH, false),
            Err(OfferError::BadPayloadType("300".into()))
        );
        let offer = CHROMIUM_OFFER.replace("SAVPF 96 97", "SAVPF 96 é7");
        assert!(negotiate(&offer, BOTH, false).unwrap_err().is_malformed());

        let sections = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".repeat(20);
        assert_eq!(
            check_shape(&format!("{CHROMIUM_OFFER}{sections}")),
            Err(OfferError::TooManySections(21))
        );
        let lines = "a=x\r\n".repeat(MAX_LINES);
        assert!(matches!(
            check_shape(&format!("{CHROMIUM_OFFER}{lines}")),
            Err(OfferError::TooManyLines(_))
        ));

        // A data channel section names its format, and is fine.
        let offer = format!("{CHROMIUM_OFFER}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n");
        assert_eq!(check_shape(&offer), Ok(()));
        assert!(negotiate(CHROMIUM_OFFER, BOTH, false).is_ok());
    }

    #[test]
    fn the_first_rtpmap_and_fmtp_of_a_payload_type_count() {
        let offer = CHROMIUM_OFFER.replace(
            "a=rtpmap:103 H264/90000\r\n",
            "a=rtpmap:103 H264/90000\r\na=rtpmap:103 VP8/90000\r\n",
        );
        assert_eq!(choose_h264(&offer).unwrap().payload_type, 103);
    }

    /// An aiortc offer, trimmed: BUNDLE over both sections, each with credentials of its own
    /// and its candidates inline.
    const AIORTC_OFFER: &str = "v=0\r\n\
o=- 1 1 IN IP4 0.0.0.0\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
m=video 5000 UDP/TLS/RTP/SAVPF 99\r\n\
a=mid:0\r\n\
a=rtpmap:99 H264/90000\r\n\
a=fmtp:99 packetization-mode=1;profile-level-id=42001f\r\n\
a=candidate:1 1 udp 1 10.0.0.2 5000 typ host\r\n\
a=ice-ufrag:vvvv\r\n\
a=ice-pwd:videopassword\r\n\
m=audio 5002 UDP/TLS/RTP/SAVPF 96\r\n\
a=mid:1\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=candidate:2 1 udp 1 10.0.0.2 5002 typ host\r\n\
a=end-of-candidates\r\n\
a=ice-ufrag:aaaa\r\n\
a=ice-pwd:audiopassword\r\n";

    #[test]
    fn bundled_audio_with_its_own_credentials_takes_the_videos() {
        let choice = negotiate(AIORTC_OFFER, BOTH, false).unwrap();
        assert_eq!(choice.audio, None, "the device has no sound");
        assert_eq!(choice.offered_audio.map(|a| a.payload_type), Some(96));
        assert!(negotiate(AIORTC_OFFER, BOTH, true).unwrap().audio.is_some());

        let rewritten = for_webrtc(AIORTC_OFFER);
        assert_eq!(rewritten.matches("a=ice-ufrag:vvvv\r\n").count(), 2);
        assert_eq!(rewritten.matches("a=ice-pwd:videopassword\r\n").count(), 2);
        assert!(!rewritten.contains("aaaa") && !rewritten.contains("audiopassword"));
        assert!(
            !rewritten.contains("5002 typ host"),
            "the audio transport's candidates go"
        );
        assert!(rewritten.contains("5000 typ host"));
        assert_eq!(
            for_webrtc(CHROMIUM_OFFER),
            CHROMIUM_OFFER,
            "nothing to rewrite"
        );

        // Without BUNDLE and with other credentials, the audio cannot share the transport.
        let unbundled = AIORTC_OFFER.replace("a=group:BUNDLE 0 1\r\n", "");
        assert_eq!(negotiate(&unbundled, BOTH, true).unwrap().audio, None);
    }

    #[test]
    fn a_declined_section_gets_the_transport_attributes() {
        let answer = "v=0\r\n\
o=- 1 1 IN IP4 0.0.0.0\r\n\
s=-\r\n\
t=0 0\r\n\
a=fingerprint:sha-256 AA:BB\r\n\
a=group:BUNDLE 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 99\r\n\
a=setup:active\r\n\
a=mid:0\r\n\
a=ice-ufrag:uuuu\r\n\
a=ice-pwd:pppp\r\n\
a=rtcp-mux\r\n\
m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n\
a=mid:1\r\n";
        let completed = complete_answer(answer);
        let declined = completed.split("m=application").nth(1).unwrap();
        for line in [
            "a=ice-ufrag:uuuu",
            "a=ice-pwd:pppp",
            "a=setup:active",
            "a=rtcp-mux",
        ] {
            assert!(declined.contains(line), "{line} missing:\n{completed}");
        }
        assert!(
            !declined.contains("fingerprint"),
            "the session-level one applies"
        );
        assert_eq!(
            complete_answer(&completed),
            completed,
            "nothing more to add"
        );
    }

    #[test]
    fn host_candidates_are_told_from_the_others() {
        let host = "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host";
        let srflx =
            "candidate:2 1 udp 1694498815 203.0.113.7 40000 typ srflx raddr 10.0.0.2 rport 40000";
        assert!(is_host_candidate(host));
        assert!(!is_host_candidate(srflx));
        assert!(!is_host_candidate("candidate:3 1 udp 1 10.0.0.1 1 typ"));
        assert!(!is_host_candidate("host"));
    }

    #[test]
    fn candidate_lines_are_read_as_trickled() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\n\
                   a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n\
                   a=end-of-candidates\r\n";
        assert_eq!(
            candidate_lines(sdp),
            vec!["candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host".to_owned()]
        );
    }
}
