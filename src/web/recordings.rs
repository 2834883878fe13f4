//! `GET /recordings/<device>`: a camera's recordings, newest first, as JSON (`?from=` and
//! `?to=` in RFC 3339 narrow it by start time); `GET /recordings/<device>/<file>`: one of them,
//! with HTTP range requests so players seek. The same bearer token as WHEP guards both.
//!
//! A client names a file, never a path: the name must be one campeer gives its recordings
//! (see [`library::parse_name`]), which rules out `/`, `..` and anything percent-encoded, and
//! the file is opened without following a symbolic link.

use super::body::{FileBody, SiteBody};
use super::response::plain;
use crate::clock;
use crate::record::library::{self, parse_name};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, RANGE,
};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashMap;
use std::path::PathBuf;
use tokio::io::AsyncSeekExt;

/// Where recordings are listed and served: `/recordings/<device>[/<file>]`.
pub const PATH_PREFIX: &str = "/recordings/";

/// Which bytes a `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable single range: the whole file (a server may ignore what it does not serve).
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// Nothing of the file lies in the range: 416.
    Unsatisfiable,
}

/// Reads a `Range` header (RFC 9110 §14.2): one `bytes=` range, `a-b`, `a-` or `-n`; several
/// ranges are answered with the whole file.
pub fn parse_range(value: Option<&str>, len: u64) -> RangeAnswer {
    let Some(value) = value else {
        return RangeAnswer::Whole;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let number = |text: &str| -> Option<u64> {
        let text = text.trim();
        (!text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    match (number(first), number(last), last.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (None, Some(suffix), _) if first.trim().is_empty() => {
            if suffix == 0 || len == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part {
                    start: len.saturating_sub(suffix),
                    end: len - 1,
                }
            }
        }
        (Some(start), None, true) if start < len => RangeAnswer::Part {
            start,
            end: len - 1,
        },
        (Some(start), Some(end), _) if start <= end && start < len => RangeAnswer::Part {
            start,
            end: end.min(len - 1),
        },
        (Some(start), _, _) if start >= len => RangeAnswer::Unsatisfiable,
        _ => RangeAnswer::Whole,
    }
}

/// The `from` and `to` of a listing's query, in milliseconds since the epoch; `Err` names the
/// parameter that is not an RFC 3339 time.
pub fn listing_window(query: Option<&str>) -> Result<(Option<u64>, Option<u64>), &'static str> {
    let mut window = (None, None);
    for pair in query.unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        // A '+' in a time's offset arrives percent-encoded or as a space.
        let value = value
            .replace("%2B", "+")
            .replace("%2b", "+")
            .replace("%3A", ":")
            .replace("%3a", ":");
        let parse = || clock::parse_rfc3339(&value);
        match name {
            "from" => window.0 = Some(parse().ok_or("from")?),
            "to" => window.1 = Some(parse().ok_or("to")?),
            _ => {}
        }
    }
    Ok(window)
}

/// Every camera's recordings.
pub struct RecordingsEndpoint {
    /// Each camera's folder, by device id; empty when nothing is recorded.
    cameras: HashMap<String, PathBuf>,
    token: Option<String>,
}

impl RecordingsEndpoint {
    pub fn new(cameras: HashMap<String, PathBuf>, token: Option<String>) -> Self {
        Self { cameras, token }
    }

    /// Serves a request whose path is under [`PATH_PREFIX`].
    pub async fn handle<B>(&self, request: &Request<B>) -> Response<SiteBody> {
        let rest = request.uri().path().strip_prefix(PATH_PREFIX).unwrap_or("");
        let (device, file) = match rest.split_once('/') {
            Some((device, file)) => (device, Some(file)),
            None => (rest, None),
        };
        let Some(dir) = self.cameras.get(device) else {
            return small(plain(
                StatusCode::NOT_FOUND,
                "no recordings of that camera\n",
            ));
        };
        if let Some(refusal) = super::bearer::refusal(request, self.token.as_deref()) {
            return small(refusal);
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return small(plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n"));
        }
        match file {
            None => small(
                self.listing(device, dir.clone(), request.uri().query())
                    .await,
            ),
            Some(name) if parse_name(name).is_some() => {
                serve_file(request, dir.join(name), "video/mp4").await
            }
            Some(name) if library::recording_of_thumbnail(name).is_some() => {
                serve_file(request, dir.join(name), "image/jpeg").await
            }
            Some(_) => small(plain(StatusCode::NOT_FOUND, "no such recording\n")),
        }
    }

    async fn listing(
        &self,
        device: &str,
        dir: PathBuf,
        query: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let (from, to) = match listing_window(query) {
            Ok(window) => window,
            Err(_) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "from and to must be RFC 3339 times (2026-12-08T03:17:20Z)\n",
                );
            }
        };
        let Ok(recordings) = tokio::task::spawn_blocking(move || library::list(&dir)).await else {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot list recordings\n",
            );
        };
        let entries: Vec<serde_json::Value> = recordings
            .into_iter()
            .filter(|r| from.is_none_or(|from| r.start_unix_ms >= from))
            .filter(|r| to.is_none_or(|to| r.start_unix_ms <= to))
            .map(|r| {
                serde_json::json!({
                    "start": clock::rfc3339(r.start_unix_ms),
                    "duration_secs": (r.duration_secs * 10.0).round() / 10.0,
                    "bytes": r.bytes,
                    "trigger": r.trigger.name(),
                    "url": format!("{PATH_PREFIX}{device}/{}", r.file_name),
                    "thumbnail": r.thumbnail.map(|jpg| format!("{PATH_PREFIX}{device}/{jpg}")),
                })
            })
            .collect();
        let mut response = Response::new(Full::new(Bytes::from(
            serde_json::to_vec(&entries).unwrap_or_default(),
        )));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}

fn small(response: Response<Full<Bytes>>) -> Response<SiteBody> {
    response.map(SiteBody::Full)
}

/// The file at `path` (a recording's), whole or the range asked for.
async fn serve_file<B>(
    request: &Request<B>,
    path: PathBuf,
    content_type: &'static str,
) -> Response<SiteBody> {
    let opened = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .await;
    let mut file = match opened {
        Ok(file) => file,
        Err(_) => return small(plain(StatusCode::NOT_FOUND, "no such recording\n")),
    };
    let len = match file.metadata().await {
        Ok(metadata) if metadata.is_file() => metadata.len(),
        _ => return small(plain(StatusCode::NOT_FOUND, "no such recording\n")),
    };
    let range = request.headers().get(RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match parse_range(range, len) {
        RangeAnswer::Whole => (StatusCode::OK, 0, len.saturating_sub(1)),
        RangeAnswer::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeAnswer::Unsatisfiable => {
            let mut response = plain(StatusCode::RANGE_NOT_SATISFIABLE, "outside the file\n");
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(CONTENT_RANGE, value);
            }
            return small(response);
        }
    };
    let length = if len == 0 { 0 } else { end - start + 1 };
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return small(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot read the recording\n",
        ));
    }
    let remaining = if request.method() == Method::HEAD {
        0
    } else {
        length
    };
    let mut response = Response::new(SiteBody::File(FileBody::new(file, remaining)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&length.to_string()) {
        headers.insert(CONTENT_LENGTH, value);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
    {
        headers.insert(CONTENT_RANGE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_as_rfc_9110_says() {
        use RangeAnswer::*;
        let len = 1000;
        assert_eq!(parse_range(None, len), Whole);
        assert_eq!(
            parse_range(Some("bytes=0-"), len),
            Part { start: 0, end: 999 }
        );
        assert_eq!(
            parse_range(Some("bytes=10-19"), len),
            Part { start: 10, end: 19 }
        );
        assert_eq!(
            parse_range(Some("bytes=990-5000"), len),
            Part {
                start: 990,
                end: 999
            }
        );
        assert_eq!(
            parse_range(Some("bytes=-100"), len),
            Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            parse_range(Some("bytes=-5000"), len),
            Part { start: 0, end: 999 }
        );
        assert_eq!(parse_range(Some("bytes=1000-"), len), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), len), Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=x-",
            "bytes=--1",
        ] {
            assert_eq!(parse_range(Some(ignored), len), Whole, "{ignored}");
        }
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(
            parse_range(Some("bytes=99999999999999999999-"), len),
            Whole,
            "a number too big to read"
        );
    }

    #[test]
    fn listing_windows_take_rfc_3339() {
        assert_eq!(listing_window(None), Ok((None, None)));
        assert_eq!(
            listing_window(Some(
                "from=2026-12-08T03:17:20Z&to=2026-12-08T04%3A17%3A20%2B01%3A00"
            )),
            Ok((Some(1_796_699_840_000), Some(1_796_699_840_000)))
        );
        assert_eq!(listing_window(Some("from=yesterday")), Err("from"));
    }
}
