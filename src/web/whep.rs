//! WHEP (draft-ietf-wish-whep), the pure part: which resource a request names, what a
//! `application/trickle-ice-sdpfrag` body (RFC 8840) says, the `Link` headers that hand a
//! player the ICE servers, the offer and the reply an ICE restart makes, and the HTTP status
//! for each refusal. Standard players (GStreamer's whepsrc, mediamtx, go2rtc, Eyevinn's
//! player) watch through it; the sessions, encoders and limits are those of the MQTT viewers.

use crate::web::ice::PageIceServer;
use hyper::StatusCode;

/// Where a device's WHEP endpoint lives: `/whep/<device>`; its sessions are
/// `/whep/<device>/<session>`.
pub const PATH_PREFIX: &str = "/whep/";
/// The most candidates one PATCH may carry (a player trickles a few dozen at most).
pub const MAX_TRICKLED_CANDIDATES: usize = 64;
/// The longest line of an sdpfrag body.
const MAX_LINE: usize = 1024;
/// What a player should wait before trying again when the device is full.
pub const BUSY_RETRY_AFTER_SECS: u64 = 10;

/// The resource a WHEP request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/whep/<device>`: POST an offer here.
    Endpoint { device: &'a str },
    /// `/whep/<device>/<session>`: PATCH candidates, DELETE to hang up.
    Session { device: &'a str, session: &'a str },
}

impl<'a> Target<'a> {
    /// The target of `path`, or `None` when it is no WHEP path (or names an empty segment).
    pub fn parse(path: &'a str) -> Option<Self> {
        let rest = path.strip_prefix(PATH_PREFIX)?;
        let mut parts = rest.split('/');
        let device = parts.next().filter(|d| !d.is_empty())?;
        match (parts.next(), parts.next()) {
            (None, _) | (Some(""), None) => Some(Self::Endpoint { device }),
            (Some(session), None) if !session.is_empty() => Some(Self::Session { device, session }),
            _ => None,
        }
    }

    pub fn device(&self) -> &'a str {
        match self {
            Self::Endpoint { device } | Self::Session { device, .. } => device,
        }
    }
}

/// Why a WHEP request was not served, each with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhepError {
    #[error("no such device or session")]
    NotFound,
    #[error("a bearer token is required, or the one given is wrong")]
    Unauthorized,
    #[error("the body must be {0}")]
    WrongContentType(&'static str),
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body is not UTF-8")]
    NotText,
    /// The client stopped sending (or the connection broke) before the body was complete.
    #[error("the body could not be read to its end")]
    BodyUnreadable,
    #[error("bad trickle-ice-sdpfrag: {0}")]
    BadFragment(&'static str),
    /// More candidates than one offer may bring (the signaling core's cap); none were taken.
    #[error("more candidates than one offer may bring; none of these were taken")]
    TooManyCandidates,
    #[error("the session has changed since (If-Match does not match its ETag)")]
    PreconditionFailed,
    #[error("{0}")]
    Busy(String),
    #[error("too many requests: {0}")]
    RateLimited(String),
    #[error("{0}")]
    Refused(String),
    #[error("the device did not answer in time")]
    AnswerTimeout,
    #[error("the device is shutting down or not keeping up")]
    Unavailable,
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl WhepError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::WrongContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotText
            | Self::BodyUnreadable
            | Self::BadFragment(_)
            | Self::TooManyCandidates
            | Self::Refused(_) => StatusCode::BAD_REQUEST,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::Busy(_) | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::AnswerTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Seconds a player should wait before trying again, when waiting helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Busy(_) | Self::Unavailable => Some(BUSY_RETRY_AFTER_SECS),
            Self::RateLimited(_) => Some(1),
            _ => None,
        }
    }
}

/// A trickle-ice-sdpfrag body: the ICE credentials it names and its candidates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdpFragment {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    pub mid: Option<String>,
    /// Candidate attribute values ("candidate:1 1 udp ..."), without the leading "a=".
    pub candidates: Vec<String>,
    pub end_of_candidates: bool,
}

/// Reads a trickle-ice-sdpfrag body (RFC 8840 §4.4): session-level ICE credentials, then an
/// `m=` line with its `a=mid`, candidates and end-of-candidates. Lines it does not know are
/// skipped; more than [`MAX_TRICKLED_CANDIDATES`] candidates, or an overlong line, is an
/// error.
pub fn parse_sdpfrag(body: &str) -> Result<SdpFragment, WhepError> {
    let mut fragment = SdpFragment::default();
    for line in body.lines().map(str::trim_end) {
        if line.len() > MAX_LINE {
            return Err(WhepError::BadFragment("a line is too long"));
        }
        let Some(attribute) = line.strip_prefix("a=") else {
            continue;
        };
        if let Some(value) = attribute.strip_prefix("ice-ufrag:") {
            fragment.ufrag = Some(value.trim().to_owned());
        } else if let Some(value) = attribute.strip_prefix("ice-pwd:") {
            fragment.pwd = Some(value.trim().to_owned());
        } else if let Some(value) = attribute.strip_prefix("mid:") {
            fragment.mid = Some(value.trim().to_owned());
        } else if attribute.starts_with("candidate:") {
            if fragment.candidates.len() == MAX_TRICKLED_CANDIDATES {
                return Err(WhepError::BadFragment("too many candidates"));
            }
            fragment.candidates.push(attribute.to_owned());
        } else if attribute == "end-of-candidates" {
            fragment.end_of_candidates = true;
        }
    }
    Ok(fragment)
}

/// Whether `value` may stand as an ICE username fragment or password (RFC 8839 §5.4:
/// `ice-char`s, between `min` and 256 of them). Anything else could smuggle SDP into the
/// offer campeer makes from a restart.
fn is_ice_credential(value: &str, min: usize) -> bool {
    (min..=256).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The new ICE credentials of a PATCH that restarts ICE (RFC 9725 §4.3.2): both must be
/// there and well formed.
pub fn restart_credentials(fragment: &SdpFragment) -> Result<(&str, &str), WhepError> {
    match (fragment.ufrag.as_deref(), fragment.pwd.as_deref()) {
        (Some(ufrag), Some(pwd)) if is_ice_credential(ufrag, 4) && is_ice_credential(pwd, 22) => {
            Ok((ufrag, pwd))
        }
        (Some(_), Some(_)) => Err(WhepError::BadFragment(
            "a=ice-ufrag or a=ice-pwd is not a valid ICE credential",
        )),
        _ => Err(WhepError::BadFragment(
            "an ICE restart needs both a=ice-ufrag and a=ice-pwd",
        )),
    }
}

/// The offer an ICE restart amounts to: the player's last offer with the new credentials in
/// place of the old ones and without the old candidates (the PATCH's own candidates follow
/// it as trickled ones). Media, codecs and DTLS stay as they were, as a restart keeps them.
pub fn restart_offer(offer: &str, ufrag: &str, pwd: &str) -> String {
    crate::sdp::with_ice_credentials(offer, ufrag, pwd)
}

/// The body of a `200` to an ICE restart (RFC 9725 §4.3.2): campeer's new credentials and
/// candidates, taken from its answer to the restart offer, as a trickle-ice-sdpfrag. Every
/// section is bundled on the first one's transport, so that section's candidates are all.
/// `None` when the answer lacks the credentials.
pub fn restart_fragment(answer: &str) -> Option<String> {
    let (mut ufrag, mut pwd, mut media, mut mid) = (None, None, None, None);
    let mut candidates = Vec::new();
    let mut end_of_candidates = false;
    let mut sections = 0;
    for line in answer.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            sections += 1;
            if sections == 1 {
                media = Some(line);
            }
            continue;
        }
        if sections > 1 {
            break;
        }
        let Some(attribute) = line.strip_prefix("a=") else {
            continue;
        };
        if let Some(value) = attribute.strip_prefix("ice-ufrag:") {
            ufrag.get_or_insert(value);
        } else if let Some(value) = attribute.strip_prefix("ice-pwd:") {
            pwd.get_or_insert(value);
        } else if let Some(value) = attribute.strip_prefix("mid:") {
            mid.get_or_insert(value);
        } else if attribute.starts_with("candidate:") {
            candidates.push(line);
        } else if attribute == "end-of-candidates" {
            end_of_candidates = true;
        }
    }
    let mut fragment = format!("a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n", ufrag?, pwd?);
    if let Some(media) = media {
        fragment.push_str(media);
        fragment.push_str("\r\n");
        if let Some(mid) = mid {
            fragment.push_str(&format!("a=mid:{mid}\r\n"));
        }
        for candidate in candidates {
            fragment.push_str(candidate);
            fragment.push_str("\r\n");
        }
        if end_of_candidates {
            fragment.push_str("a=end-of-candidates\r\n");
        }
    }
    Some(fragment)
}

/// One `Link` header value per ICE server URL (draft-ietf-wish-whep §4.4), with its
/// credentials for TURN.
pub fn ice_server_links(servers: &[PageIceServer]) -> Vec<String> {
    let quote = |value: &str| value.replace(['"', '\\'], "");
    servers
        .iter()
        .flat_map(|server| {
            server.urls.iter().map(move |url| {
                let mut link = format!("<{}>; rel=\"ice-server\"", url.replace(['<', '>'], ""));
                if let (Some(username), Some(credential)) = (&server.username, &server.credential) {
                    link.push_str(&format!(
                        "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                        quote(username),
                        quote(credential)
                    ));
                }
                link
            })
        })
        .collect()
}

/// The ETag of a session's ICE state: a new one with each ICE restart.
pub fn etag(session: &str, generation: u32) -> String {
    format!("\"{session}.{generation}\"")
}

/// Whether an `If-Match` header value accepts `etag`: absent, `*`, or listing it.
pub fn if_match_accepts(if_match: Option<&str>, etag: &str) -> bool {
    if_match.is_none_or(|value| {
        value
            .split(',')
            .map(str::trim)
            .any(|candidate| candidate == "*" || candidate == etag)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_an_endpoint_or_a_session() {
        assert_eq!(
            Target::parse("/whep/cam1"),
            Some(Target::Endpoint { device: "cam1" })
        );
        assert_eq!(
            Target::parse("/whep/cam1/"),
            Some(Target::Endpoint { device: "cam1" })
        );
        assert_eq!(
            Target::parse("/whep/cam1/whep-0011"),
            Some(Target::Session {
                device: "cam1",
                session: "whep-0011"
            })
        );
        for other in [
            "/whep/",
            "/whep",
            "/",
            "/whep//x",
            "/whep/a/b/c",
            "/whepx/a",
        ] {
            assert_eq!(Target::parse(other), None, "{other}");
        }
    }

    #[test]
    fn a_fragment_gives_credentials_and_candidates() {
        let body = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
                    m=audio 9 RTP/AVP 0\r\na=mid:0\r\n\
                    a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host\r\n\
                    a=end-of-candidates\r\n";
        let fragment = parse_sdpfrag(body).unwrap();
        assert_eq!(fragment.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(fragment.pwd.as_deref(), Some("P2uYro0UCOQ4zxjKXaWCBui1"));
        assert_eq!(fragment.mid.as_deref(), Some("0"));
        assert_eq!(
            fragment.candidates,
            ["candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host"]
        );
        assert!(fragment.end_of_candidates);
    }

    #[test]
    fn a_fragment_is_bounded() {
        let many: String = (0..=MAX_TRICKLED_CANDIDATES)
            .map(|i| format!("a=candidate:{i} 1 udp 1 192.0.2.1 {i} typ host\r\n"))
            .collect();
        assert_eq!(
            parse_sdpfrag(&many),
            Err(WhepError::BadFragment("too many candidates"))
        );
        let long = format!("a=candidate:{}\r\n", "x".repeat(MAX_LINE));
        assert!(parse_sdpfrag(&long).is_err());
        assert_eq!(parse_sdpfrag("junk\r\n\r\n"), Ok(SdpFragment::default()));
    }

    #[test]
    fn each_ice_server_url_is_a_link() {
        let servers = [
            PageIceServer {
                urls: vec!["stun:stun.example.net".into()],
                username: None,
                credential: None,
            },
            PageIceServer {
                urls: vec![
                    "turn:turn.example.net?transport=udp".into(),
                    "turn:turn.example.net?transport=tcp".into(),
                ],
                username: Some("user".into()),
                credential: Some("pa\"ss".into()),
            },
        ];
        let links = ice_server_links(&servers);
        assert_eq!(links.len(), 3);
        assert_eq!(links[0], "<stun:stun.example.net>; rel=\"ice-server\"");
        assert_eq!(
            links[1],
            "<turn:turn.example.net?transport=udp>; rel=\"ice-server\"; username=\"user\"; \
             credential=\"pass\"; credential-type=\"password\""
        );
    }

    #[test]
    fn if_match_accepts_the_current_etag_or_anything() {
        let tag = etag("whep-01", 0);
        assert!(if_match_accepts(None, &tag));
        assert!(if_match_accepts(Some("*"), &tag));
        assert!(if_match_accepts(Some(&format!("\"x\", {tag}")), &tag));
        assert!(!if_match_accepts(Some(&etag("whep-01", 1)), &tag));
    }

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
                         a=group:BUNDLE 0 1\r\n\
                         m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n\
                         a=ice-ufrag:oldU\r\na=ice-pwd:oldPasswordOldPassword1\r\n\
                         a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n\
                         a=end-of-candidates\r\na=recvonly\r\n\
                         m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n\
                         a=ice-ufrag:oldU\r\na=ice-pwd:oldPasswordOldPassword1\r\n\
                         a=candidate:2 1 udp 2130706431 127.0.0.1 5002 typ host\r\n";

    #[test]
    fn a_restart_offer_swaps_the_credentials_and_drops_the_old_candidates() {
        let offer = restart_offer(OFFER, "newU", "newPasswordNewPassword22");
        assert!(!offer.contains("oldU") && !offer.contains("oldPassword"));
        assert_eq!(offer.matches("a=ice-ufrag:newU\r\n").count(), 2);
        assert_eq!(
            offer
                .matches("a=ice-pwd:newPasswordNewPassword22\r\n")
                .count(),
            2
        );
        assert!(!offer.contains("candidate"));
        // Everything else is as it was.
        assert!(offer.contains("m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n"));
        assert!(
            offer
                .ends_with("a=mid:1\r\na=ice-ufrag:newU\r\na=ice-pwd:newPasswordNewPassword22\r\n")
        );
    }

    #[test]
    fn a_restart_needs_two_well_formed_credentials() {
        let fragment = |ufrag: Option<&str>, pwd: Option<&str>| SdpFragment {
            ufrag: ufrag.map(str::to_owned),
            pwd: pwd.map(str::to_owned),
            ..SdpFragment::default()
        };
        let good = "abcdefghijklmnopqrstuv";
        assert_eq!(
            restart_credentials(&fragment(Some("ab+/"), Some(good))),
            Ok(("ab+/", good))
        );
        for (ufrag, pwd) in [
            (Some("abcd"), None),
            (None, Some(good)),
            (Some("abc"), Some(good)),
            (Some("abcd"), Some("tooshort")),
            (Some("ab d"), Some(good)),
            (Some("abcd"), Some("abcdefghijklmnopqrstu\"")),
        ] {
            assert!(
                restart_credentials(&fragment(ufrag, pwd)).is_err(),
                "{ufrag:?} {pwd:?}"
            );
        }
    }

    #[test]
    fn the_restart_fragment_carries_the_answers_new_credentials_and_candidates() {
        let answer = OFFER.replace("oldU", "ansU");
        let fragment = restart_fragment(&answer).unwrap();
        assert_eq!(
            fragment,
            "a=ice-ufrag:ansU\r\na=ice-pwd:oldPasswordOldPassword1\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n\
             a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n\
             a=end-of-candidates\r\n"
        );
        // What a player reads back is what campeer sent.
        let read = parse_sdpfrag(&fragment).unwrap();
        assert_eq!(read.ufrag.as_deref(), Some("ansU"));
        assert_eq!(read.candidates.len(), 1);
        assert_eq!(restart_fragment("v=0\r\nm=video 9 x 1\r\n"), None);
    }

    #[test]
    fn refusals_have_their_status() {
        let busy = WhepError::Busy("at most 4 viewers".into());
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.retry_after(), Some(BUSY_RETRY_AFTER_SECS));
        assert_eq!(WhepError::Unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(WhepError::NotFound.retry_after(), None);
    }
}
