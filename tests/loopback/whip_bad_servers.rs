//! WHIP servers that misbehave, each behind a publication of its own: one answers junk, one
//! refuses (403, as a front-end does while an endpoint is still taken), one fails (500), one
//! never answers, one answers 201 without a Location, one 201 with HTML instead of SDP, one an
//! endless body. Each publication gets a clear, typed error, waits longer after each failure
//! (never hammering the server), and a viewer watching meanwhile is unaffected.

use campeer::config::{FileConfig, Overrides};
use campeer::publish::schedule::PublicationState;
use common::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SDP_ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

/// Each path's misbehaviour.
async fn misbehave(path: &str, stream: &mut TcpStream) {
    let reply: Vec<u8> = match path {
        "/junk" => b"\x16\x03\x01 not http at all\r\n\r\n".to_vec(),
        "/busy" => {
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 27\r\n\r\nEndpoint ID already in use\n"
                .to_vec()
        }
        "/broken" => b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_vec(),
        "/silent" => {
            // Takes the request and never answers: the client's own deadline must end it.
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        "/nowhere" => format!(
            "HTTP/1.1 201 Created\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP_ANSWER}",
            SDP_ANSWER.len()
        )
        .into_bytes(),
        "/html" => {
            b"HTTP/1.1 201 Created\r\nLocation: /r/1\r\nContent-Length: 13\r\n\r\n<html></html>"
                .to_vec()
        }
        "/endless" => {
            let head = "HTTP/1.1 201 Created\r\nLocation: /r/1\r\nContent-Length: 100000000\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // Streams until campeer stops reading (it reads 64 KiB at most).
            let chunk = vec![b'v'; 16 * 1024];
            for _ in 0..6_000 {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            return;
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    };
    let _ = stream.write_all(&reply).await;
}

/// Serves the misbehaving endpoints on a loopback port, counting requests by method and path.
async fn hostile_server() -> (u16, Arc<Mutex<HashMap<String, u32>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let counted = Arc::clone(&counts);
    tokio::spawn(async move {
        for _ in 0..1_000 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let mut words = text.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                *counted
                    .lock()
                    .unwrap()
                    .entry(format!("{method} {path}"))
                    .or_insert(0) += 1;
                let path = path.to_owned();
                misbehave(&path, &mut stream).await;
            });
        }
    });
    (port, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn misbehaving_whip_servers_get_typed_errors_and_backoff_and_viewers_play_on() {
    let _load = common::load::shared();
    let (port, counts) = hostile_server().await;
    let paths = [
        "/junk", "/busy", "/broken", "/silent", "/nowhere", "/html", "/endless",
    ];
    let file: String = paths
        .iter()
        .map(|path| format!("[[publish]]\nurl = \"http://127.0.0.1:{port}{path}\"\n"))
        .collect();
    let file = FileConfig::parse(&file).expect("the publications");
    let broker = Broker::start();
    let device = start_device_with(
        file,
        Overrides {
            ..overrides(&broker, "cam-whip-bad")
        },
    )
    .await;

    let status = TopicWatcher::start(&broker, &status_topic("cam-whip-bad")).await;
    let stats = TopicWatcher::start(&broker, &common::network::stats_topic("cam-whip-bad")).await;
    let viewer = TestViewer::join(&broker, "cam-whip-bad", "alice").await;
    // Long enough for the silent server's request to time out (10 s) and the others to fail
    // a few times with growing waits.
    tokio::time::sleep(Duration::from_secs(14)).await;
    assert!(
        viewer
            .wait_for_more_frames(60, Duration::from_secs(5))
            .await,
        "the viewer stopped playing while publications failed"
    );

    let statuses = device.publications();
    assert_eq!(statuses.len(), paths.len());
    let expected = [
        ("/junk", "HTTP with"),
        ("/busy", "answered 403: Endpoint ID already in use"),
        ("/broken", "answered 500"),
        ("/silent", "did not answer within 10s"),
        ("/nowhere", "without a usable Location"),
        ("/html", "not an SDP answer"),
        ("/endless", "HTTP with"),
    ];
    for (status, (path, said)) in statuses.iter().zip(expected) {
        assert!(status.url.ends_with(path), "{status:?}");
        let error = status.last_error.as_deref().unwrap_or("");
        assert!(
            error.contains(said),
            "{path}: the error says {error:?}, not {said:?}"
        );
        assert!(
            status.state != PublicationState::Publishing,
            "{path}: {status:?}"
        );
        // Waits of 1, 2, 4 and 8 s (each spread by a fifth) fit 3 to 5 attempts in 14 s;
        // the silent server's first attempt takes 10 s of them.
        let most = if path == "/silent" { 2 } else { 5 };
        assert!(
            (1..=most).contains(&status.attempts),
            "{path}: {} attempts in 14 s",
            status.attempts
        );
    }
    // The status topic tells each publication's course too.
    let told = status
        .wait_for_last(Duration::from_secs(5), |status| {
            status["publications"].as_array().is_some_and(|list| {
                list.len() == paths.len()
                    && list.iter().all(|p| {
                        p["attempts"].as_u64().is_some_and(|n| n >= 1) && p["url"].is_string()
                    })
                    && list.iter().any(|p| {
                        p["error"]
                            .as_str()
                            .is_some_and(|e| e.contains("answered 403"))
                    })
            })
        })
        .await;
    assert!(
        told,
        "the status does not tell the publications: {:?}",
        status.last()
    );
    let in_stats = stats
        .wait_for_last(Duration::from_secs(5), |stats| {
            stats["publications"]
                .as_array()
                .is_some_and(|list| list.len() == paths.len())
        })
        .await;
    assert!(
        in_stats,
        "the stats do not tell the publications: {:?}",
        stats.last()
    );
    let counts = counts.lock().unwrap().clone();
    for path in paths {
        let posts = counts.get(&format!("POST {path}")).copied().unwrap_or(0);
        assert!(
            (1..=5).contains(&posts),
            "{path} was posted to {posts} times"
        );
    }
    // The one encode went on for the viewer.
    assert_eq!(device.hub_stats().pipeline_starts, 1);
    viewer.close().await;
    device.shutdown().await;
}
