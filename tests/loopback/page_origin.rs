//! The page and the embedded broker's WebSocket share one origin: the page's HTTP server takes
//! the upgrade on /mqtt and checks the browser's Origin, so a page from anywhere else cannot
//! use a visitor's browser to watch or to hang up on viewers. Every response carries the
//! security headers, and the page's files go out compressed to clients that take gzip.

use common::*;
use std::io::{Read, Write};
use std::time::Duration;

/// Sends a raw HTTP request and returns the response head.
fn exchange(port: u16, request: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn upgrade(port: u16, origin: &str) -> String {
    exchange(
        port,
        &format!(
            "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n\
             Origin: {origin}\r\n\r\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_broker_websocket_takes_only_the_pages_own_origin() {
    let _load = common::load::shared();
    let device = start_device(zero_config_overrides("cam1")).await;
    let port = device.http_addr().port();
    let library = move |accept_encoding: &str| {
        exchange(
            port,
            &format!(
                "GET /vendor/mqtt.esm.js HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept_encoding}\
                 Connection: close\r\n\r\n"
            ),
        )
        .to_ascii_lowercase()
    };
    let (page, own, foreign, gzipped, plain) = tokio::task::spawn_blocking(move || {
        (
            exchange(
                port,
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            ),
            upgrade(port, &format!("http://127.0.0.1:{port}")),
            upgrade(port, "http://evil.example"),
            library("Accept-Encoding: gzip, deflate, br\r\n"),
            library(""),
        )
    })
    .await
    .unwrap();
    let page = page.to_ascii_lowercase();
    for header in [
        "content-security-policy: default-src 'none'",
        "frame-ancestors 'none'",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "referrer-policy: no-referrer",
    ] {
        assert!(page.contains(header), "{header} missing:\n{page}");
    }
    let source_len = std::fs::metadata("page/assets/vendor/mqtt.esm.js")
        .expect("the page's MQTT library")
        .len();
    let content_length = |head: &str| -> u64 {
        head.lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .and_then(|length| length.trim().parse().ok())
            .unwrap_or_else(|| panic!("no content-length:\n{head}"))
    };
    assert!(gzipped.contains("content-encoding: gzip"), "{gzipped}");
    assert!(gzipped.contains("vary: accept-encoding"), "{gzipped}");
    assert!(content_length(&gzipped) < source_len / 2, "{gzipped}");
    assert!(!plain.contains("content-encoding"), "{plain}");
    assert_eq!(content_length(&plain), source_len, "{plain}");
    assert!(own.starts_with("HTTP/1.1 101"), "{own}");
    // RFC 6455's sample key and its accept value: the broker's own handshake came through.
    assert!(own.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{own}");
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    device.shutdown().await;
}
