//! One RTSP reader's conversation, pure: a request and the time in, the response and what the
//! connection must do out (like `signaling::Signaling`, no sockets). RTSP 1.0 as NVRs and
//! players speak it: OPTIONS, DESCRIBE, SETUP (RTP over the RTSP connection, interleaved, or
//! over UDP to the reader's ports), PLAY, PAUSE, TEARDOWN, and GET_PARAMETER or SET_PARAMETER
//! as keep-alives. One session per connection, one device per session.

use super::digest::{AuthError, DigestAuth};
use rtsp_types::headers::{
    self, RtpLowerTransport, RtpProfile, RtpTransport, RtpTransportParameters, Transport,
    Transports,
};
use rtsp_types::{Method, Request, Response, StatusCode, Version};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A session that hears nothing for this long (no request, no RTCP) is over; readers are told
/// in the `Session` header and send a keep-alive well inside it.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// A track a device offers, in the order of its SDP's media sections (`trackID=N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Video,
    Audio,
}

/// What a device offers readers, as the server describes it from the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The session description DESCRIBE returns; each media section's control is
    /// `trackID=N`, N its place in `tracks`.
    pub sdp: String,
    pub tracks: Vec<Track>,
}

/// How one track's RTP reaches the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lower {
    /// On the RTSP connection itself, framed by `$` and these channels.
    Interleaved { rtp: u8, rtcp: u8 },
    /// Over UDP from the server's ports to these ports of the reader.
    Udp { rtp: u16, rtcp: u16 },
}

/// What the connection must do besides sending the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    /// Start (or go on) sending these tracks of `device`, from a keyframe.
    Play {
        device: String,
        tracks: Vec<(Track, Lower)>,
    },
    /// Stop sending; the session stays.
    Pause,
    /// The session is over; the connection may stay for another.
    Stop,
}

/// Where a request points: a device, and perhaps one of its tracks.
pub fn target(request: &Request<Vec<u8>>) -> Option<(String, Option<usize>)> {
    let url = request.request_uri()?;
    let mut segments = url.path_segments()?.filter(|s| !s.is_empty());
    let device = segments.next()?.to_owned();
    let track = match segments.next() {
        None => None,
        Some(control) => Some(control.strip_prefix("trackID=")?.parse().ok()?),
    };
    if segments.next().is_some() {
        return None;
    }
    Some((device, track))
}

/// A reader's conversation.
pub struct Exchange {
    /// The session id this connection hands out (random, from the server).
    session: String,
    /// The device the session set up, once it has.
    device: Option<String>,
    tracks: Vec<(Track, Lower)>,
    playing: bool,
    last_heard: Instant,
    auth: Option<Arc<DigestAuth>>,
    /// The server's UDP ports (RTP, RTCP), when it sends over UDP at all.
    server_ports: Option<(u16, u16)>,
}

impl Exchange {
    pub fn new(
        session: String,
        now: Instant,
        auth: Option<Arc<DigestAuth>>,
        server_ports: Option<(u16, u16)>,
    ) -> Self {
        Self {
            session,
            device: None,
            tracks: Vec::new(),
            playing: false,
            last_heard: now,
            auth,
            server_ports,
        }
    }

    /// The reader sent something (RTCP counts): the session is alive.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// Whether the session has heard nothing for [`SESSION_TIMEOUT`].
    pub fn timed_out(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_heard) >= SESSION_TIMEOUT
    }

    /// Whether `request` carries the credentials this server wants (always, without any):
    /// checked before anything is started for it, such as the camera for a DESCRIBE.
    pub fn admits(&self, request: &Request<Vec<u8>>, now_secs: u64) -> bool {
        let Some(auth) = &self.auth else {
            return true;
        };
        let given = request.header(&headers::AUTHORIZATION).map(|v| v.as_str());
        auth.verify(given, request.method().into(), now_secs)
            .is_ok()
    }

    /// Answers `request`. `now_secs`: the wall clock for Digest nonces; `offer`: what a device
    /// offers, `None` for a device campeer does not serve.
    pub fn handle(
        &mut self,
        request: &Request<Vec<u8>>,
        now: Instant,
        now_secs: u64,
        offer: &dyn Fn(&str) -> Option<Offer>,
    ) -> (Response<Vec<u8>>, Action) {
        self.last_heard = now;
        let Some(cseq) = request
            .header(&headers::CSEQ)
            .map(|v| v.as_str().trim().to_owned())
            .filter(|v| !v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_digit()))
        else {
            return (
                reply(StatusCode::BadRequest, None).empty_with(),
                Action::None,
            );
        };
        let respond = |status| reply(status, Some(&cseq));
        if request.version() != Version::V1_0 {
            return (
                respond(StatusCode::RTSPVersionNotSupported).empty_with(),
                Action::None,
            );
        }
        if *request.method() == Method::Options {
            let response = respond(StatusCode::Ok)
                .header(
                    headers::PUBLIC,
                    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER",
                )
                .empty_with();
            return (response, Action::None);
        }
        if let Some(auth) = &self.auth {
            let given = request.header(&headers::AUTHORIZATION).map(|v| v.as_str());
            if let Err(e) = auth.verify(given, request.method().into(), now_secs) {
                let stale = e == AuthError::StaleNonce;
                let response = respond(StatusCode::Unauthorized)
                    .header(headers::WWW_AUTHENTICATE, auth.challenge(now_secs, stale))
                    .empty_with();
                return (response, Action::None);
            }
        }
        match request.method() {
            Method::Describe => (self.describe(request, &cseq, offer), Action::None),
            Method::Setup => (self.setup(request, &cseq, offer), Action::None),
            Method::Play => self.play(request, &cseq),
            Method::Pause => self.pause(request, &cseq),
            Method::Teardown => self.teardown(request, &cseq),
            Method::GetParameter | Method::SetParameter => {
                let response = match self.check_session(request) {
                    Ok(()) => self.with_session(respond(StatusCode::Ok)).empty_with(),
                    Err(status) => respond(status).empty_with(),
                };
                (response, Action::None)
            }
            _ => (
                respond(StatusCode::NotImplemented).empty_with(),
                Action::None,
            ),
        }
    }

    fn describe(
        &self,
        request: &Request<Vec<u8>>,
        cseq: &str,
        offer: &dyn Fn(&str) -> Option<Offer>,
    ) -> Response<Vec<u8>> {
        let Some((device, None)) = target(request) else {
            return reply(StatusCode::NotFound, Some(cseq)).empty_with();
        };
        let Some(offer) = offer(&device) else {
            return reply(StatusCode::NotFound, Some(cseq)).empty_with();
        };
        let base = request
            .request_uri()
            .map(|url| {
                let mut base = url.to_string();
                if !base.ends_with('/') {
                    base.push('/');
                }
                base
            })
            .unwrap_or_default();
        reply(StatusCode::Ok, Some(cseq))
            .header(headers::CONTENT_TYPE, "application/sdp")
            .header(headers::CONTENT_BASE, base)
            .build(offer.sdp.into_bytes())
    }

    fn setup(
        &mut self,
        request: &Request<Vec<u8>>,
        cseq: &str,
        offer: &dyn Fn(&str) -> Option<Offer>,
    ) -> Response<Vec<u8>> {
        let respond = |status| reply(status, Some(cseq));
        if request.header(&headers::SESSION).is_some()
            && let Err(status) = self.check_session(request)
        {
            return respond(status).empty_with();
        }
        let Some((device, track)) = target(request) else {
            return respond(StatusCode::NotFound).empty_with();
        };
        let Some(offer) = offer(&device) else {
            return respond(StatusCode::NotFound).empty_with();
        };
        // Without a track, the device's only track (a reader that skipped the control URL).
        let index = match track {
            Some(index) => index,
            None if offer.tracks.len() == 1 => 0,
            None => return respond(StatusCode::NotFound).empty_with(),
        };
        let Some(&kind) = offer.tracks.get(index) else {
            return respond(StatusCode::NotFound).empty_with();
        };
        if self.device.as_ref().is_some_and(|d| *d != device) {
            return respond(StatusCode::MethodNotValidInThisState).empty_with();
        }
        let Ok(Some(transports)) = request.typed_header::<Transports>() else {
            return respond(StatusCode::UnsupportedTransport).empty_with();
        };
        let Some((lower, answer)) = transports
            .iter()
            .find_map(|transport| self.choose(transport, index))
        else {
            return respond(StatusCode::UnsupportedTransport).empty_with();
        };
        self.device = Some(device);
        self.tracks.retain(|(track, _)| *track != kind);
        self.tracks.push((kind, lower));
        self.with_session(respond(StatusCode::Ok))
            .typed_header(&Transports::from(vec![answer]))
            .empty_with()
    }

    /// The transport campeer takes from one the reader offers for track `index`, and how it
    /// answers it.
    fn choose(&self, offered: &Transport, index: usize) -> Option<(Lower, Transport)> {
        let Transport::Rtp(rtp) = offered else {
            return None;
        };
        if rtp.profile != RtpProfile::Avp || rtp.params.multicast {
            return None;
        }
        let tcp = rtp.lower_transport == Some(RtpLowerTransport::Tcp);
        let (lower, params) = if tcp {
            let default = u8::try_from(index * 2).ok()?;
            let (rtp_channel, rtcp_channel) = match rtp.params.interleaved {
                Some((first, second)) => (first, second.unwrap_or(first.saturating_add(1))),
                None => (default, default.saturating_add(1)),
            };
            (
                Lower::Interleaved {
                    rtp: rtp_channel,
                    rtcp: rtcp_channel,
                },
                RtpTransportParameters {
                    unicast: true,
                    interleaved: Some((rtp_channel, Some(rtcp_channel))),
                    ..RtpTransportParameters::default()
                },
            )
        } else {
            let server = self.server_ports?;
            let (rtp_port, rtcp_port) = rtp.params.client_port?;
            let rtcp_port = rtcp_port.unwrap_or(rtp_port.saturating_add(1));
            if rtp_port == 0 {
                return None;
            }
            (
                Lower::Udp {
                    rtp: rtp_port,
                    rtcp: rtcp_port,
                },
                RtpTransportParameters {
                    unicast: true,
                    client_port: Some((rtp_port, Some(rtcp_port))),
                    server_port: Some((server.0, Some(server.1))),
                    ..RtpTransportParameters::default()
                },
            )
        };
        let answer = Transport::Rtp(RtpTransport {
            profile: RtpProfile::Avp,
            lower_transport: tcp.then_some(RtpLowerTransport::Tcp),
            params,
        });
        Some((lower, answer))
    }

    fn play(&mut self, request: &Request<Vec<u8>>, cseq: &str) -> (Response<Vec<u8>>, Action) {
        let respond = |status| reply(status, Some(cseq));
        if let Err(status) = self.check_session(request) {
            return (respond(status).empty_with(), Action::None);
        }
        let Some(device) = self.device.clone().filter(|_| !self.tracks.is_empty()) else {
            return (
                respond(StatusCode::MethodNotValidInThisState).empty_with(),
                Action::None,
            );
        };
        self.playing = true;
        let response = self
            .with_session(respond(StatusCode::Ok))
            .header(headers::RANGE, "npt=now-")
            .empty_with();
        let action = Action::Play {
            device,
            tracks: self.tracks.clone(),
        };
        (response, action)
    }

    fn pause(&mut self, request: &Request<Vec<u8>>, cseq: &str) -> (Response<Vec<u8>>, Action) {
        let respond = |status| reply(status, Some(cseq));
        if let Err(status) = self.check_session(request) {
            return (respond(status).empty_with(), Action::None);
        }
        let was_playing = std::mem::replace(&mut self.playing, false);
        let response = self.with_session(respond(StatusCode::Ok)).empty_with();
        (
            response,
            if was_playing {
                Action::Pause
            } else {
                Action::None
            },
        )
    }

    fn teardown(&mut self, request: &Request<Vec<u8>>, cseq: &str) -> (Response<Vec<u8>>, Action) {
        let respond = |status| reply(status, Some(cseq));
        if let Err(status) = self.check_session(request) {
            return (respond(status).empty_with(), Action::None);
        }
        self.device = None;
        self.tracks.clear();
        self.playing = false;
        (respond(StatusCode::Ok).empty_with(), Action::Stop)
    }

    /// Whether the request names this connection's session (which must exist).
    fn check_session(&self, request: &Request<Vec<u8>>) -> Result<(), StatusCode> {
        let given = request
            .header(&headers::SESSION)
            .map(|v| v.as_str().split(';').next().unwrap_or("").trim());
        match given {
            Some(id) if id == self.session && self.device.is_some() => Ok(()),
            // A keep-alive before SETUP has no session to name.
            None if self.device.is_none() => Ok(()),
            _ => Err(StatusCode::SessionNotFound),
        }
    }

    fn with_session(&self, builder: rtsp_types::ResponseBuilder) -> rtsp_types::ResponseBuilder {
        if self.device.is_some() {
            builder.header(
                headers::SESSION,
                format!("{};timeout={}", self.session, SESSION_TIMEOUT.as_secs()),
            )
        } else {
            builder
        }
    }
}

/// The answer to a reader turned away because the server serves as many as it may.
pub fn busy(request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    let cseq = request
        .header(&headers::CSEQ)
        .map(|v| v.as_str().trim())
        .filter(|v| v.len() <= 16 && v.bytes().all(|b| b.is_ascii_digit()));
    reply(StatusCode::ServiceUnavailable, cseq).empty_with()
}

/// A response builder with the CSeq echoed and campeer named.
fn reply(status: StatusCode, cseq: Option<&str>) -> rtsp_types::ResponseBuilder {
    let builder = Response::builder(Version::V1_0, status).header(
        headers::SERVER,
        concat!("campeer/", env!("CARGO_PKG_VERSION")),
    );
    match cseq {
        Some(cseq) => builder.header(headers::CSEQ, cseq),
        None => builder,
    }
}

/// An empty body, as the connection writes every response.
trait EmptyBody {
    fn empty_with(self) -> Response<Vec<u8>>;
}

impl EmptyBody for rtsp_types::ResponseBuilder {
    fn empty_with(self) -> Response<Vec<u8>> {
        self.build(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtsp::digest::Credentials;

    const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\n\
                       m=video 0 RTP/AVP 96\r\na=control:trackID=0\r\n\
                       m=audio 0 RTP/AVP 97\r\na=control:trackID=1\r\n";

    fn offer(device: &str) -> Option<Offer> {
        (device == "cam").then(|| Offer {
            sdp: SDP.into(),
            tracks: vec![Track::Video, Track::Audio],
        })
    }

    fn request(text: &str) -> Request<Vec<u8>> {
        let (message, _) =
            rtsp_types::Message::<Vec<u8>>::parse(text.as_bytes()).expect("a message");
        match message {
            rtsp_types::Message::Request(request) => request,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn exchange() -> Exchange {
        Exchange::new("8f3a".into(), Instant::now(), None, Some((6970, 6971)))
    }

    fn send(exchange: &mut Exchange, text: &str) -> (Response<Vec<u8>>, Action) {
        exchange.handle(&request(text), Instant::now(), 1_000, &offer)
    }

    fn header(response: &Response<Vec<u8>>, name: &headers::HeaderName) -> Option<String> {
        response.header(name).map(|v| v.as_str().to_owned())
    }

    #[test]
    fn describe_setup_play_teardown_over_tcp() {
        let mut reader = exchange();
        let (options, _) = send(
            &mut reader,
            "OPTIONS rtsp://h/cam RTSP/1.0\r\nCSeq: 1\r\n\r\n",
        );
        assert_eq!(options.status(), StatusCode::Ok);
        assert!(
            header(&options, &headers::PUBLIC)
                .unwrap()
                .contains("DESCRIBE")
        );

        let (describe, _) = send(
            &mut reader,
            "DESCRIBE rtsp://h/cam RTSP/1.0\r\nCSeq: 2\r\n\r\n",
        );
        assert_eq!(describe.status(), StatusCode::Ok);
        assert_eq!(describe.body(), SDP.as_bytes());
        assert_eq!(header(&describe, &headers::CSEQ).as_deref(), Some("2"));
        assert_eq!(
            header(&describe, &headers::CONTENT_BASE).as_deref(),
            Some("rtsp://h/cam/")
        );

        let (setup, _) = send(
            &mut reader,
            "SETUP rtsp://h/cam/trackID=0 RTSP/1.0\r\nCSeq: 3\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n",
        );
        assert_eq!(setup.status(), StatusCode::Ok);
        assert_eq!(
            header(&setup, &headers::SESSION).as_deref(),
            Some("8f3a;timeout=60")
        );
        assert!(
            header(&setup, &headers::TRANSPORT)
                .unwrap()
                .contains("interleaved=0-1")
        );
        let (audio, _) = send(
            &mut reader,
            "SETUP rtsp://h/cam/trackID=1 RTSP/1.0\r\nCSeq: 4\r\nSession: 8f3a\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n\r\n",
        );
        assert_eq!(audio.status(), StatusCode::Ok);

        let (play, action) = send(
            &mut reader,
            "PLAY rtsp://h/cam/ RTSP/1.0\r\nCSeq: 5\r\nSession: 8f3a\r\nRange: npt=0.000-\r\n\r\n",
        );
        assert_eq!(play.status(), StatusCode::Ok);
        assert_eq!(
            action,
            Action::Play {
                device: "cam".into(),
                tracks: vec![
                    (Track::Video, Lower::Interleaved { rtp: 0, rtcp: 1 }),
                    (Track::Audio, Lower::Interleaved { rtp: 2, rtcp: 3 }),
                ],
            }
        );
        let (keep_alive, _) = send(
            &mut reader,
            "GET_PARAMETER rtsp://h/cam/ RTSP/1.0\r\nCSeq: 6\r\nSession: 8f3a\r\n\r\n",
        );
        assert_eq!(keep_alive.status(), StatusCode::Ok);
        let (teardown, action) = send(
            &mut reader,
            "TEARDOWN rtsp://h/cam/ RTSP/1.0\r\nCSeq: 7\r\nSession: 8f3a\r\n\r\n",
        );
        assert_eq!(teardown.status(), StatusCode::Ok);
        assert_eq!(action, Action::Stop);
    }

    #[test]
    fn udp_takes_the_reader_s_ports_and_names_the_server_s() {
        let mut reader = exchange();
        let (setup, _) = send(
            &mut reader,
            "SETUP rtsp://h/cam/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n\
             Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n",
        );
        assert_eq!(setup.status(), StatusCode::Ok);
        let transport = header(&setup, &headers::TRANSPORT).unwrap();
        assert!(transport.contains("client_port=5000-5001"), "{transport}");
        assert!(transport.contains("server_port=6970-6971"), "{transport}");
        let (_, action) = send(
            &mut reader,
            "PLAY rtsp://h/cam RTSP/1.0\r\nCSeq: 2\r\nSession: 8f3a\r\n\r\n",
        );
        assert_eq!(
            action,
            Action::Play {
                device: "cam".into(),
                tracks: vec![(
                    Track::Video,
                    Lower::Udp {
                        rtp: 5000,
                        rtcp: 5001
                    }
                )],
            }
        );
    }

    #[test]
    fn out_of_order_and_unknown_requests_get_their_status() {
        let mut reader = exchange();
        let cases = [
            (
                "PLAY rtsp://h/cam RTSP/1.0\r\nCSeq: 1\r\n\r\n",
                StatusCode::MethodNotValidInThisState,
            ),
            (
                "DESCRIBE rtsp://h/nope RTSP/1.0\r\nCSeq: 2\r\n\r\n",
                StatusCode::NotFound,
            ),
            (
                "SETUP rtsp://h/cam/trackID=9 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n",
                StatusCode::NotFound,
            ),
            (
                "SETUP rtsp://h/cam/trackID=0 RTSP/1.0\r\nCSeq: 4\r\nTransport: RTP/AVP;multicast\r\n\r\n",
                StatusCode::UnsupportedTransport,
            ),
            (
                "SETUP rtsp://h/cam/trackID=0 RTSP/1.0\r\nCSeq: 5\r\n\r\n",
                StatusCode::UnsupportedTransport,
            ),
            (
                "RECORD rtsp://h/cam RTSP/1.0\r\nCSeq: 6\r\n\r\n",
                StatusCode::NotImplemented,
            ),
            (
                "TEARDOWN rtsp://h/cam RTSP/1.0\r\nCSeq: 7\r\nSession: other\r\n\r\n",
                StatusCode::SessionNotFound,
            ),
            (
                "OPTIONS rtsp://h/cam RTSP/1.0\r\n\r\n",
                StatusCode::BadRequest,
            ),
            (
                "OPTIONS rtsp://h/cam RTSP/1.0\r\nCSeq: x\r\n\r\n",
                StatusCode::BadRequest,
            ),
        ];
        for (text, status) in cases {
            let (response, action) = send(&mut reader, text);
            assert_eq!(response.status(), status, "{text}");
            assert_eq!(action, Action::None, "{text}");
        }
    }

    #[test]
    fn with_credentials_configured_only_options_is_free() {
        let auth = Arc::new(DigestAuth::new(
            Credentials {
                username: "nvr".into(),
                password: "pw".into(),
            },
            b"key",
        ));
        let mut reader = Exchange::new("s".into(), Instant::now(), Some(auth), None);
        let (options, _) = send(
            &mut reader,
            "OPTIONS rtsp://h/cam RTSP/1.0\r\nCSeq: 1\r\n\r\n",
        );
        assert_eq!(options.status(), StatusCode::Ok);
        let (describe, _) = send(
            &mut reader,
            "DESCRIBE rtsp://h/cam RTSP/1.0\r\nCSeq: 2\r\n\r\n",
        );
        assert_eq!(describe.status(), StatusCode::Unauthorized);
        let challenge = header(&describe, &headers::WWW_AUTHENTICATE).unwrap();
        assert!(
            challenge.starts_with("Digest realm=\"campeer\", nonce=\""),
            "{challenge}"
        );
        assert!(
            describe.body().is_empty(),
            "nothing described before the credentials"
        );
    }

    #[test]
    fn a_silent_session_times_out() {
        let start = Instant::now();
        let mut reader = Exchange::new("s".into(), start, None, None);
        assert!(!reader.timed_out(start + SESSION_TIMEOUT - Duration::from_secs(1)));
        reader.heard(start + Duration::from_secs(30));
        assert!(!reader.timed_out(start + SESSION_TIMEOUT));
        assert!(reader.timed_out(start + Duration::from_secs(30) + SESSION_TIMEOUT));
    }
}
