//! `GET /snapshot/<device>.jpg`: a JPEG of the camera's newest picture, made from the raw
//! frame before it is encoded. `?width=N` scales it down. The same bearer token as WHEP
//! guards it.

use super::response::plain;
use crate::media::hub::{GrabError, VideoHub};
use crate::media::snapshot;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Where snapshots are served: `/snapshot/<device>.jpg`.
pub const PATH_PREFIX: &str = "/snapshot/";
/// How long a snapshot may wait for the camera: long enough to open one nobody watches.
pub const SNAPSHOT_WAIT: Duration = Duration::from_secs(3);
/// What a refused snapshot tells the client to wait before asking again, in seconds.
const RETRY_AFTER_SECS: &str = "2";
/// JPEGs made at once, across cameras: each takes a core for a few milliseconds, and a crowd
/// of clients must not take both of a Pi's.
const ENCODES_AT_ONCE: usize = 2;

/// Every camera's snapshots.
pub struct SnapshotEndpoint {
    cameras: HashMap<String, VideoHub>,
    token: Option<String>,
    encodes: Arc<tokio::sync::Semaphore>,
}

impl SnapshotEndpoint {
    pub fn new(cameras: HashMap<String, VideoHub>, token: Option<String>) -> Self {
        Self {
            cameras,
            token,
            encodes: Arc::new(tokio::sync::Semaphore::new(ENCODES_AT_ONCE)),
        }
    }

    /// Serves a request whose path is under [`PATH_PREFIX`].
    pub async fn handle<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        let Some(hub) = device_of(request.uri().path()).and_then(|id| self.cameras.get(id)) else {
            return plain(StatusCode::NOT_FOUND, "no such camera\n");
        };
        if let Some(refusal) = super::bearer::refusal(request, self.token.as_deref()) {
            return refusal;
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        }
        let width = match requested_width(request.uri().query()) {
            Ok(width) => width,
            Err(BadWidth) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "width must be a whole number of pixels, 16 or more\n",
                );
            }
        };
        let picture = match hub.grab_picture(SNAPSHOT_WAIT).await {
            Ok(picture) => picture,
            Err(GrabError::Decode(e)) => {
                tracing::warn!("no snapshot: {e}");
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the picture is unusable\n",
                );
            }
            Err(e) => {
                tracing::debug!("no snapshot: {e}");
                return unavailable();
            }
        };
        let Ok(_permit) = Arc::clone(&self.encodes).acquire_owned().await else {
            return unavailable();
        };
        let jpeg = tokio::task::spawn_blocking(move || snapshot::jpeg(&picture, width)).await;
        let jpeg = match jpeg {
            Ok(Ok(jpeg)) => jpeg,
            Ok(Err(e)) => {
                tracing::warn!("no snapshot: {e}");
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the picture is unusable\n",
                );
            }
            Err(e) => {
                tracing::error!("the snapshot encoder failed: {e}");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "the encoder failed\n");
            }
        };
        let body = if request.method() == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(jpeg)
        };
        let mut response = Response::new(Full::new(body));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
        // Each request is a new picture.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// 503 with a time to come back: the camera is not live (failed, or not yet started).
fn unavailable() -> Response<Full<Bytes>> {
    let mut response = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "the camera is not live; try again shortly\n",
    );
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from_static(RETRY_AFTER_SECS));
    response
}

/// The device a snapshot path names: `/snapshot/<device>.jpg`.
fn device_of(path: &str) -> Option<&str> {
    path.strip_prefix(PATH_PREFIX)?
        .strip_suffix(".jpg")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// A `width` that is not a whole number of pixels, 16 or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("width must be a whole number of pixels, 16 or more")]
pub struct BadWidth;

/// The `width` query parameter, if given: at least 16 pixels (the snapshot is never wider
/// than the camera's picture).
pub fn requested_width(query: Option<&str>) -> Result<Option<usize>, BadWidth> {
    let mut width = None;
    for pair in query.unwrap_or("").split('&') {
        if let Some(value) = pair.strip_prefix("width=") {
            let pixels: usize = value.parse().map_err(|_| BadWidth)?;
            if pixels < 16 {
                return Err(BadWidth);
            }
            width = Some(pixels);
        }
    }
    Ok(width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_widths() {
        assert_eq!(device_of("/snapshot/cam.jpg"), Some("cam"));
        for bad in [
            "/snapshot/.jpg",
            "/snapshot/cam",
            "/snapshot/a/b.jpg",
            "/x/cam.jpg",
        ] {
            assert_eq!(device_of(bad), None, "{bad}");
        }
        assert_eq!(requested_width(None), Ok(None));
        assert_eq!(requested_width(Some("width=320")), Ok(Some(320)));
        assert_eq!(requested_width(Some("a=b&width=64")), Ok(Some(64)));
        for bad in ["width=", "width=-1", "width=8", "width=1e3"] {
            assert_eq!(requested_width(Some(bad)), Err(BadWidth), "{bad}");
        }
    }
}
