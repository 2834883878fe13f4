//! `GET /metrics` for Prometheus: who may read it, and the response. What it shows is
//! [`crate::metrics`]'s.

use super::response::{accept_entries, plain};
use crate::metrics::{Format, MetricsBoard, render};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;

/// Where the metrics are served.
pub const PATH: &str = "/metrics";

/// OpenMetrics when the `Accept` header names it (Prometheus' own scraper does), the
/// Prometheus text format otherwise.
pub fn format_for(accept: Option<&str>) -> Format {
    let asks_openmetrics = accept_entries(accept).any(|(media, refused)| {
        media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
    });
    if asks_openmetrics {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

/// Who may read the metrics: they name every viewer's session and the camera's state, so a
/// listener other machines reach serves them only behind a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The HTTP server listens on loopback and no token is set: anyone on this machine.
    Open,
    /// Scrapers must send this bearer token (WHEP's).
    Token(String),
    /// Other machines reach the listener and no token is set: nobody.
    Refused,
    /// `web.metrics = false`.
    Off,
}

impl Access {
    /// The rule: off when turned off; behind WHEP's token when one is set; open on a
    /// loopback listener; refused on any other.
    pub fn decide(enabled: bool, listen: SocketAddr, token: Option<&str>) -> Self {
        match (enabled, token) {
            (false, _) => Self::Off,
            (true, Some(token)) => Self::Token(token.to_owned()),
            (true, None) if listen.ip().is_loopback() => Self::Open,
            (true, None) => Self::Refused,
        }
    }
}

/// The metrics endpoint: the figures and who may read them.
#[derive(Debug, Clone)]
pub struct MetricsEndpoint {
    board: MetricsBoard,
    access: Access,
}

impl MetricsEndpoint {
    pub fn new(board: MetricsBoard, access: Access) -> Self {
        if access == Access::Refused {
            tracing::warn!(
                "metrics are not served on {PATH}: the page listens beyond loopback and no \
                 token is set (set web.whep_token, --whep-token, for scrapers to send)"
            );
        }
        Self { board, access }
    }

    pub fn handle<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        match &self.access {
            Access::Off => return plain(StatusCode::NOT_FOUND, "not found\n"),
            Access::Refused => {
                return plain(
                    StatusCode::FORBIDDEN,
                    "metrics need a token on a listener other machines reach (web.whep_token)\n",
                );
            }
            Access::Token(token) => {
                if let Some(refusal) = super::bearer::refusal(request, Some(token)) {
                    return refusal;
                }
            }
            Access::Open => {}
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        }
        let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
        let format = format_for(accept);
        let text = match render(self.board.exposition(), format) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!("the metrics could not be written: {e}");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n");
            }
        };
        let body = if request.method() == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(text)
        };
        let mut response = Response::new(Full::new(body));
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_goes_to_scrapers_that_ask_for_it() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,\
                          text/plain;version=0.0.4;q=0.3,*/*;q=0.1";
        assert_eq!(format_for(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(format_for(None), Format::Prometheus);
        assert_eq!(format_for(Some("*/*")), Format::Prometheus);
        assert_eq!(
            format_for(Some("application/openmetrics-text;q=0")),
            Format::Prometheus
        );
    }

    #[test]
    fn metrics_are_open_on_loopback_and_need_the_token_elsewhere() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let everywhere: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(Access::decide(true, loopback, None), Access::Open);
        assert_eq!(Access::decide(true, everywhere, None), Access::Refused);
        assert_eq!(
            Access::decide(true, everywhere, Some("t")),
            Access::Token("t".into())
        );
        assert_eq!(
            Access::decide(true, loopback, Some("t")),
            Access::Token("t".into())
        );
        assert_eq!(Access::decide(false, loopback, None), Access::Off);
    }
}
