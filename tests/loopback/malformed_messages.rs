//! Malformed messages get `bad-request` on their session's out topic and change nothing else:
//! a viewer already watching keeps its stream, and the viewer count stays put.

use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_leaves_a_running_viewer_untouched() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let device = start_device(overrides(&broker, "cam1")).await;
    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        alice
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );

    let mallory = TopicWatcher::start_as(&broker, "mallory", "campeer/cam1/out/mallory").await;
    let garbage: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80],
        b"[1,2,3]".to_vec(),
        br#"{"no":"type"}"#.to_vec(),
        br#"{"type":42}"#.to_vec(),
        br#"{"type":"dance"}"#.to_vec(),
        br#"{"type":"offer"}"#.to_vec(),
        br#"{"type":"offer","sdp":17}"#.to_vec(),
        br#"{"type":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}"#.to_vec(),
        br#"{"type":"answer","sdp":"v=0"}"#.to_vec(),
        json!({"type": "offer", "sdp": "x".repeat(70 * 1024)})
            .to_string()
            .into_bytes(),
        // Well-formed JSON, but not SDP anyone could answer.
        br#"{"type":"offer","sdp":"v=0\r\nthis is not sdp\r\n"}"#.to_vec(),
    ];
    let expected_bad_requests = garbage.len() - 1; // the last one is "unsupported"
    for payload in &garbage {
        mallory
            .publish("campeer/cam1/in/mallory", payload.clone())
            .await;
    }
    // Topics that are not well-formed sessions are ignored (there is no out topic to answer).
    mallory
        .publish("campeer/cam1/in/bad.session", b"{}".to_vec())
        .await;
    mallory
        .publish(
            &format!("campeer/cam1/in/{}", "x".repeat(65)),
            b"{}".to_vec(),
        )
        .await;
    // Garbage on alice's own session is answered there, and her stream goes on.
    alice.publish_raw(b"{\"type\":".to_vec()).await;

    assert!(
        wait_for(Duration::from_secs(10), || mallory
            .count(|m| m["type"] == "error")
            >= garbage.len())
        .await,
        "replies: {:?}",
        mallory.messages.lock().unwrap()
    );
    let bad_requests = mallory.count(|m| m["code"] == "bad-request");
    let unsupported = mallory.count(|m| m["code"] == "unsupported");
    assert_eq!(bad_requests, expected_bad_requests);
    assert_eq!(unsupported, 1, "the non-SDP offer has no H.264");
    assert_eq!(mallory.count(|m| m["type"] == "answer"), 0);
    assert!(
        wait_for(Duration::from_secs(5), || alice.snapshot(|s| s
            .errors
            .iter()
            .any(|(code, _)| code == "bad-request")))
        .await
    );

    assert!(alice.wait_for_more_frames(30, Duration::from_secs(5)).await);
    assert_eq!(device.viewers(), 1);
    assert_eq!(alice.snapshot(|s| s.hangups), 0);
    assert_live_frames(&alice, 640, 480);

    alice.close().await;
    device.shutdown().await;
}
