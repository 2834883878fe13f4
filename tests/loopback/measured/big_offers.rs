//! Offers of the largest size the protocol takes, with twelve thousand payload types, sent
//! while a viewer watches. Each is refused as a bad request after one linear pass over its
//! text, before any peer connection sees it: the watching viewer does not freeze, and a good
//! offer right behind them is answered.

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const BIG_OFFERS: usize = 10;

/// A valid offer whose video section lists `count` payload types (cycling through 0..128) in
/// front of its own: about 40 KiB.
fn bloated(sdp: &str, count: usize) -> String {
    let filler: String = (0..count).map(|n| format!(" {}", n % 128)).collect();
    let lines: Vec<String> = sdp
        .lines()
        .map(
            |line| match line.strip_prefix("m=video 9 UDP/TLS/RTP/SAVPF") {
                Some(formats) => format!("m=video 9 UDP/TLS/RTP/SAVPF{filler}{formats}"),
                None => line.to_owned(),
            },
        )
        .collect();
    lines.join("\r\n") + "\r\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn huge_offers_are_refused_without_freezing_anyone() {
    let _load = common::load::whole_machine();
    let broker = Broker::start();
    let device = start_device(overrides(&broker, "cam1")).await;
    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        alice
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );

    let sdp = bloated(&offer_from_vanished_peer().await, 12_000);
    let offer = json!({"type": "offer", "sdp": sdp}).to_string();
    assert!(
        offer.len() > 32 * 1024 && offer.len() <= 64 * 1024,
        "{}",
        offer.len()
    );
    let replies = TopicWatcher::start(&broker, "campeer/cam1/out/#").await;
    let from = Instant::now();
    for n in 0..BIG_OFFERS {
        replies
            .publish(&format!("campeer/cam1/in/big{n}"), offer.clone())
            .await;
    }
    let bob = TestViewer::join(&broker, "cam1", "bob").await;
    // Bob's answer comes on the same wildcard: count the big offers' replies only.
    let big = "campeer/cam1/out/big";
    assert!(
        wait_for(Duration::from_secs(20), || replies
            .count_on(big, |m| m["type"] == "error")
            == BIG_OFFERS)
        .await,
        "not every big offer was refused: {:?}",
        replies.messages.lock().unwrap()
    );
    assert_eq!(
        replies.count_on(big, |m| m["type"] == "error" && m["code"] == "bad-request"),
        BIG_OFFERS
    );
    assert_eq!(replies.count_on(big, |m| m["type"] == "answer"), 0);
    assert!(bob.wait_for_more_frames(5, Duration::from_secs(20)).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frames = alice.snapshot(|s| s.frames.clone());
    let watched = common::playback::playback(&frames, from, Instant::now());
    eprintln!("alice while {BIG_OFFERS} big offers came in: {watched}");
    assert!(
        watched.longest_freeze < Duration::from_secs(1),
        "alice froze while the big offers came in: {watched}"
    );
    for viewer in [alice, bob] {
        viewer.close().await;
    }
    device.shutdown().await;
}
