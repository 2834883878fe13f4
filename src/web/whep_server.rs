//! WHEP on campeer's HTTP server: turns requests into [`WhepCommand`]s for the device task
//! that serves the named device, and its replies into responses. CORS is open (players on
//! other origins), and an optional bearer token guards every method but OPTIONS (a browser's
//! preflight carries no credentials).

use super::whep::{self, SdpFragment, Target, WhepError};
use crate::protocol::Segment;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The largest offer a player may POST (a browser's is 5–10 KB).
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
/// The largest trickle-ice-sdpfrag body.
const MAX_FRAGMENT_BYTES: usize = 16 * 1024;
/// How long a POST waits for the device's answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Requests a device task may have queued at once; more get 503.
pub const COMMAND_QUEUE: usize = 32;

/// What the HTTP server asks a device task to do for a WHEP player.
#[derive(Debug)]
pub enum WhepCommand {
    Offer {
        sdp: String,
        reply: oneshot::Sender<Result<WhepAnswer, WhepError>>,
    },
    Trickle {
        session: Segment,
        if_match: Option<String>,
        fragment: SdpFragment,
        reply: oneshot::Sender<Result<Patched, WhepError>>,
    },
    Delete {
        session: Segment,
        reply: oneshot::Sender<Result<(), WhepError>>,
    },
}

/// What a PATCH did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patched {
    /// The candidates went to the session (`204`).
    Trickled,
    /// ICE restarted (`200`): campeer's new credentials and candidates as an sdpfrag, and the
    /// session's new ETag.
    Restarted { fragment: String, etag: String },
}

/// A served offer: the session made for it, the answer and its ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhepAnswer {
    pub session: Segment,
    pub sdp: String,
    pub etag: String,
}

/// Every device's WHEP endpoint on this server.
pub struct WhepEndpoints {
    devices: HashMap<String, mpsc::Sender<WhepCommand>>,
    token: Option<String>,
    /// `Link` header values for the configured ICE servers.
    links: Vec<HeaderValue>,
}

impl WhepEndpoints {
    pub fn new(
        devices: HashMap<String, mpsc::Sender<WhepCommand>>,
        token: Option<String>,
        ice_servers: &[super::ice::PageIceServer],
    ) -> Self {
        let links = whep::ice_server_links(ice_servers)
            .into_iter()
            .filter_map(|link| HeaderValue::from_str(&link).ok())
            .collect();
        Self {
            devices,
            token,
            links,
        }
    }

    /// Serves a request whose path is under [`whep::PATH_PREFIX`].
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let mut response = match self.serve(request).await {
            Ok(response) => response,
            Err(error) => refusal(&error),
        };
        let headers = response.headers_mut();
        headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        headers.insert(
            "access-control-expose-headers",
            HeaderValue::from_static("Location, ETag, Link, Accept-Patch, Retry-After"),
        );
        response
    }

    async fn serve(&self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, WhepError> {
        let path = request.uri().path().to_owned();
        let target = Target::parse(&path).ok_or(WhepError::NotFound)?;
        let device = self
            .devices
            .get(target.device())
            .ok_or(WhepError::NotFound)?;
        if request.method() == Method::OPTIONS {
            return Ok(self.options(&target));
        }
        let authorization = header(&request, "authorization");
        if !super::bearer::authorized(authorization.as_deref(), self.token.as_deref()) {
            return Err(WhepError::Unauthorized);
        }
        match (target, request.method().clone()) {
            (Target::Endpoint { device: name }, Method::POST) => {
                let sdp = read_text(request, "application/sdp", MAX_OFFER_BYTES).await?;
                let answer = ask(device, |reply| WhepCommand::Offer { sdp, reply }).await?;
                Ok(self.created(name, answer))
            }
            (Target::Session { session, .. }, Method::PATCH) => {
                let session = session_id(session)?;
                let if_match = header(&request, "if-match");
                let body = read_text(
                    request,
                    "application/trickle-ice-sdpfrag",
                    MAX_FRAGMENT_BYTES,
                )
                .await?;
                let fragment = whep::parse_sdpfrag(&body)?;
                let patched = ask(device, |reply| WhepCommand::Trickle {
                    session,
                    if_match,
                    fragment,
                    reply,
                })
                .await?;
                Ok(match patched {
                    Patched::Trickled => empty(StatusCode::NO_CONTENT),
                    Patched::Restarted { fragment, etag } => restarted(fragment, &etag),
                })
            }
            (Target::Session { session, .. }, Method::DELETE) => {
                let session = session_id(session)?;
                ask(device, |reply| WhepCommand::Delete { session, reply }).await?;
                Ok(empty(StatusCode::OK))
            }
            _ => Err(WhepError::MethodNotAllowed),
        }
    }

    fn options(&self, target: &Target<'_>) -> Response<Full<Bytes>> {
        let mut response = empty(StatusCode::NO_CONTENT);
        let methods = match target {
            Target::Endpoint { .. } => "POST, OPTIONS",
            Target::Session { .. } => "PATCH, DELETE, OPTIONS",
        };
        let headers = response.headers_mut();
        headers.insert("allow", HeaderValue::from_static(methods));
        headers.insert(
            "access-control-allow-methods",
            HeaderValue::from_static(methods),
        );
        headers.insert(
            "access-control-allow-headers",
            HeaderValue::from_static("Authorization, Content-Type, If-Match"),
        );
        headers.insert("access-control-max-age", HeaderValue::from_static("86400"));
        if matches!(target, Target::Endpoint { .. }) {
            headers.insert("accept-post", HeaderValue::from_static("application/sdp"));
            for link in &self.links {
                headers.append("link", link.clone());
            }
        }
        response
    }

    fn created(&self, device: &str, answer: WhepAnswer) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(answer.sdp)));
        *response.status_mut() = StatusCode::CREATED;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
        let location = format!("{}{device}/{}", whep::PATH_PREFIX, answer.session);
        if let Ok(location) = HeaderValue::from_str(&location) {
            headers.insert("location", location);
        }
        if let Ok(etag) = HeaderValue::from_str(&answer.etag) {
            headers.insert("etag", etag);
        }
        headers.insert(
            "accept-patch",
            HeaderValue::from_static("application/trickle-ice-sdpfrag"),
        );
        for link in &self.links {
            headers.append("link", link.clone());
        }
        response
    }
}

/// Sends a command to the device task and waits (bounded) for its reply.
async fn ask<T>(
    device: &mpsc::Sender<WhepCommand>,
    command: impl FnOnce(oneshot::Sender<Result<T, WhepError>>) -> WhepCommand,
) -> Result<T, WhepError> {
    let (reply, answer) = oneshot::channel();
    device
        .try_send(command(reply))
        .map_err(|_| WhepError::Unavailable)?;
    match tokio::time::timeout(ANSWER_WAIT + Duration::from_secs(1), answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(WhepError::Unavailable),
        Err(_) => Err(WhepError::AnswerTimeout),
    }
}

fn session_id(session: &str) -> Result<Segment, WhepError> {
    Segment::parse(session)
        .ok()
        .filter(crate::outbox::Outbox::is_whep)
        .ok_or(WhepError::NotFound)
}

fn header(request: &Request<Incoming>, name: &'static str) -> Option<String> {
    request
        .headers()
        .get(HeaderName::from_static(name))
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The body as text, when its type is `content_type` and it is at most `limit` bytes.
async fn read_text(
    request: Request<Incoming>,
    content_type: &'static str,
    limit: usize,
) -> Result<String, WhepError> {
    let given = header(&request, "content-type").unwrap_or_default();
    let essence = given.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(content_type) {
        return Err(WhepError::WrongContentType(content_type));
    }
    let body = Limited::new(request.into_body(), limit)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<LengthLimitError>() {
                WhepError::TooLarge(limit)
            } else {
                WhepError::BodyUnreadable
            }
        })?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| WhepError::NotText)
}

fn restarted(fragment: String, etag: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(fragment)));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/trickle-ice-sdpfrag"),
    );
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert("etag", etag);
    }
    response
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn refusal(error: &WhepError) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{error}\n"))));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(seconds) = error.retry_after() {
        headers.insert("retry-after", HeaderValue::from(seconds));
    }
    if matches!(error, WhepError::Unauthorized) {
        headers.insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    response
}
