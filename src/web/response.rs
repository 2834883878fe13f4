//! Responses every part of the HTTP server gives alike.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

/// The entries of an `Accept` or `Accept-Encoding` value, each with whether its weight
/// refuses it (`q=0`): `("gzip", false)`, `("application/openmetrics-text", false)`.
pub fn accept_entries(value: Option<&str>) -> impl Iterator<Item = (&str, bool)> {
    value.unwrap_or("").split(',').map(|entry| {
        let mut parts = entry.split(';');
        let name = parts.next().unwrap_or("").trim();
        let refused = parts.any(|parameter| {
            let parameter = parameter.trim();
            parameter
                .strip_prefix("q=")
                .or_else(|| parameter.strip_prefix("Q="))
                .and_then(|weight| weight.trim().parse::<f32>().ok())
                .is_some_and(|weight| weight <= 0.0)
        });
        (name, refused)
    })
}

/// A plain-text response with `status`: refusals and errors, never a page.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
