//! WHIP's HTTP requests (RFC 9725): POST the offer, PATCH trickled candidates, DELETE the
//! session. One HTTP/1.1 request per connection, plain or over TLS (rustls, the system's
//! certificates), each bounded in time and in what it reads back: a server that answers junk,
//! slowly or never gets a typed error, not a stuck publication.

use crate::config::url_without_credentials;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use url::Url;

/// A whole request, connecting included, takes at most this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a response's body read: an SDP answer is a few kilobytes.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    #[error("{0} is not an http:// or https:// URL with a host")]
    BadUrl(String),
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("TLS with {url} failed: {reason}")]
    Tls { url: String, reason: String },
    #[error("HTTP with {url} failed: {reason}")]
    Http { url: String, reason: String },
    #[error("{url} did not answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("{url} answered {status}: {excerpt}")]
    Refused {
        url: String,
        status: u16,
        excerpt: String,
    },
    #[error("{url} answered 201 without a usable Location")]
    NoLocation { url: String },
    #[error("{url} answered 201 with a body that is not an SDP answer")]
    NotAnAnswer { url: String },
}

/// What a server answered.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    /// Every value of the headers the publication reads, by lower-case name.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named<'r>(&'r self, name: &'r str) -> impl Iterator<Item = &'r str> + 'r {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Headers kept from a reply: the only ones a publication reads (trickle PATCHes send
/// `If-Match: *` and stop at the first refusal, so neither the ETag nor Accept-Patch is needed).
const KEPT_HEADERS: [&str; 2] = ["location", "link"];

/// Makes WHIP's requests. Cheap to clone.
#[derive(Clone)]
pub struct WhipClient {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl WhipClient {
    /// `tls`: for https:// endpoints; `None` refuses them.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Self { tls }
    }

    /// Sends one request; `Ok` for any status (the caller decides what each means).
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
        body: String,
    ) -> Result<Reply, WhipError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.send_now(method, url, headers, body))
            .await
            .unwrap_or_else(|_| {
                Err(WhipError::Timeout {
                    url: url_without_credentials(url),
                })
            })
    }

    async fn send_now(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
        body: String,
    ) -> Result<Reply, WhipError> {
        let shown = url_without_credentials(url);
        let host = url
            .host_str()
            .ok_or_else(|| WhipError::BadUrl(shown.clone()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| WhipError::BadUrl(shown.clone()))?;
        let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| WhipError::Connect {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let mut request = Request::builder()
            .method(method)
            .uri(request_target(url))
            .header(hyper::header::HOST, host_header(url))
            .header(
                hyper::header::USER_AGENT,
                concat!("campeer/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| WhipError::Http {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
        match url.scheme() {
            "http" => exchange(TokioIo::new(tcp), request, &shown).await,
            "https" => {
                let config = self.tls.clone().ok_or_else(|| WhipError::Tls {
                    url: shown.clone(),
                    reason: "no TLS configuration".into(),
                })?;
                let name =
                    rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
                        WhipError::Tls {
                            url: shown.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| WhipError::Tls {
                        url: shown.clone(),
                        reason: e.to_string(),
                    })?;
                exchange(TokioIo::new(stream), request, &shown).await
            }
            _ => Err(WhipError::BadUrl(shown)),
        }
    }
}

/// One request and its reply over a fresh connection.
async fn exchange<IO>(io: IO, request: Request<Full<Bytes>>, url: &str) -> Result<Reply, WhipError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let http_error = |e: &dyn std::fmt::Display| WhipError::Http {
        url: url.to_owned(),
        reason: e.to_string(),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| http_error(&e))?;
    let driver = tokio::spawn(connection);
    let outcome = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http_error(&e))?;
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| KEPT_HEADERS.contains(&name.as_str()))
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| http_error(&e))?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
    .await;
    driver.abort();
    outcome
}

/// The path and query a request names.
fn request_target(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

/// `host[:port]` as the Host header wants it.
fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// The first line or so of a refusal's body, for the log: a server may send anything.
pub fn excerpt(body: &str) -> String {
    let line: String = body
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(160)
        .collect();
    if line.is_empty() {
        "(no reason given)".to_owned()
    } else {
        line
    }
}
