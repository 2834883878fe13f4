//! The page's MQTT WebSocket, on the page's own origin: campeer's HTTP server takes the
//! WebSocket upgrade on [`MQTT_PATH`], checks the browser's `Origin` against the page's host,
//! and splices the connection onto the embedded broker's WebSocket listener, which stays on
//! loopback. One origin means one port to open, and no other web page a browser on the network
//! opens can talk to the broker in that browser's name (cross-site WebSocket hijacking).

use super::response::plain;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HOST, HeaderMap, HeaderValue, ORIGIN, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the page finds the broker.
pub const MQTT_PATH: &str = "/mqtt";
/// Connecting to the broker's listener and its handshake, on loopback.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(5);
/// The broker's handshake response is a few hundred bytes.
const MAX_HANDSHAKE_BYTES: usize = 8 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpgradeRefusal {
    #[error("not a WebSocket upgrade")]
    NotWebSocket,
    #[error("the page's origin {origin:?} is not this server ({host:?})")]
    ForeignOrigin { origin: String, host: String },
}

/// Whether a browser's upgrade request comes from a page this server served. A request
/// without `Origin` does not come from a web page (browsers always send it on WebSocket
/// handshakes) and is let through: it is no cross-site risk.
pub fn check_upgrade(headers: &HeaderMap) -> Result<(), UpgradeRefusal> {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(UPGRADE, "websocket")
        || !has_token(CONNECTION, "upgrade")
        || !headers.contains_key("sec-websocket-key")
    {
        return Err(UpgradeRefusal::NotWebSocket);
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let same = !host.is_empty()
        && [("http://", host), ("https://", host)]
            .iter()
            .any(|(scheme, host)| {
                origin
                    .strip_prefix(scheme)
                    .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
            });
    if same {
        Ok(())
    } else {
        Err(UpgradeRefusal::ForeignOrigin {
            origin: origin.chars().take(100).collect(),
            host: host.chars().take(100).collect(),
        })
    }
}

/// Answers an upgrade request on [`MQTT_PATH`]: the broker's handshake response, and a task
/// that splices the two connections once hyper hands the upgraded one over.
pub async fn upgrade(mut request: Request<Incoming>, backend: SocketAddr) -> Response<Full<Bytes>> {
    if let Err(refusal) = check_upgrade(request.headers()) {
        tracing::info!("refused a WebSocket to the broker: {refusal}");
        let status = match refusal {
            UpgradeRefusal::NotWebSocket => StatusCode::BAD_REQUEST,
            UpgradeRefusal::ForeignOrigin { .. } => StatusCode::FORBIDDEN,
        };
        return plain(status, "refused\n");
    }
    let handshake = match tokio::time::timeout(
        BACKEND_TIMEOUT,
        backend_handshake(backend, request.headers()),
    )
    .await
    {
        Ok(Ok(handshake)) => handshake,
        Ok(Err(e)) => {
            tracing::warn!("the embedded broker's WebSocket listener failed: {e}");
            return plain(StatusCode::BAD_GATEWAY, "the broker is unavailable\n");
        }
        Err(_) => {
            tracing::warn!("the embedded broker's WebSocket listener did not answer in time");
            return plain(StatusCode::GATEWAY_TIMEOUT, "the broker is unavailable\n");
        }
    };
    let BackendHandshake {
        stream,
        accept,
        protocol,
        leftover,
    } = handshake;
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let client = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!("the page's WebSocket upgrade did not complete: {e}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut stream = stream;
        if !leftover.is_empty() && client.write_all(&leftover).await.is_err() {
            return;
        }
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut stream).await {
            tracing::debug!("the page's MQTT WebSocket ended: {e}");
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert("sec-websocket-accept", accept);
    if let Some(protocol) = protocol {
        headers.insert("sec-websocket-protocol", protocol);
    }
    response
}

struct BackendHandshake {
    stream: TcpStream,
    accept: HeaderValue,
    protocol: Option<HeaderValue>,
    /// Bytes the broker sent after its handshake response (its first frames, if any).
    leftover: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
enum BackendError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the broker's handshake response is malformed or refuses the upgrade")]
    Refused,
}

/// Opens the broker's WebSocket with the browser's key and protocol, so the broker's accept
/// value is the one the browser expects.
async fn backend_handshake(
    backend: SocketAddr,
    headers: &HeaderMap,
) -> Result<BackendHandshake, BackendError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.contains(['\r', '\n']))
    };
    let key = header("sec-websocket-key").ok_or(BackendError::Refused)?;
    let mut request = format!(
        "GET / HTTP/1.1\r\nHost: {backend}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    );
    if let Some(protocol) = header("sec-websocket-protocol") {
        request.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(backend).await?;
    stream.set_nodelay(true)?;
    stream.write_all(request.as_bytes()).await?;
    let mut buffer = Vec::with_capacity(1024);
    let end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buffer.len() >= MAX_HANDSHAKE_BYTES {
            return Err(BackendError::Refused);
        }
        let mut chunk = [0u8; 1024];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(BackendError::Refused);
        }
        buffer.extend_from_slice(chunk.get(..read).unwrap_or_default());
    };
    let head = std::str::from_utf8(buffer.get(..end).unwrap_or_default())
        .map_err(|_| BackendError::Refused)?;
    let (accept, protocol) = parse_switching_response(head).ok_or(BackendError::Refused)?;
    Ok(BackendHandshake {
        stream,
        accept,
        protocol,
        leftover: buffer.get(end..).unwrap_or_default().to_vec(),
    })
}

/// The accept value and protocol of a `101 Switching Protocols` response.
fn parse_switching_response(head: &str) -> Option<(HeaderValue, Option<HeaderValue>)> {
    let mut lines = head.split("\r\n");
    let status = lines.next()?;
    if !status.starts_with("HTTP/1.1 101") {
        return None;
    }
    let mut accept = None;
    let mut protocol = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = HeaderValue::from_str(value.trim()).ok();
        if name.trim().eq_ignore_ascii_case("sec-websocket-accept") {
            accept = value;
        } else if name.trim().eq_ignore_ascii_case("sec-websocket-protocol") {
            protocol = value;
        }
    }
    Some((accept?, protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(
            "sec-websocket-key",
            HeaderValue::from_static("dGhlIHNhbXBsZQ=="),
        );
        headers.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn only_the_pages_own_origin_may_upgrade() {
        let host = "pi.local:8080";
        assert_eq!(
            check_upgrade(&upgrade_headers(Some("http://pi.local:8080"), host)),
            Ok(())
        );
        assert_eq!(
            check_upgrade(&upgrade_headers(Some("https://PI.local:8080"), host)),
            Ok(())
        );
        assert_eq!(
            check_upgrade(&upgrade_headers(None, host)),
            Ok(()),
            "not a browser"
        );
        for foreign in [
            "http://evil.example",
            "http://pi.local:8081",
            "null",
            "http://pi.local:8080.evil",
        ] {
            assert!(
                matches!(
                    check_upgrade(&upgrade_headers(Some(foreign), host)),
                    Err(UpgradeRefusal::ForeignOrigin { .. })
                ),
                "{foreign}"
            );
        }
        let mut plain_get = upgrade_headers(None, host);
        plain_get.remove(UPGRADE);
        assert_eq!(check_upgrade(&plain_get), Err(UpgradeRefusal::NotWebSocket));
    }

    #[test]
    fn the_brokers_answer_is_read() {
        let head = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nsec-websocket-protocol: mqtt\r\n\r\n";
        let (accept, protocol) = parse_switching_response(head).unwrap();
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(protocol.unwrap(), "mqtt");
        assert!(parse_switching_response("HTTP/1.1 400 Bad Request\r\n\r\n").is_none());
        assert!(
            parse_switching_response("HTTP/1.1 101 OK\r\n\r\n").is_none(),
            "no accept"
        );
    }
}
