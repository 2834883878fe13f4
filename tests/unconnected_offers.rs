//! Two offers that never connect take both places of a device serving two viewers. They hold
//! them only until the first-connection deadline (10 s by default), not for the whole session
//! timeout: a real viewer retrying once a second, as the page does, is in well before.

mod common;

use campeer::config::Overrides;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offers_that_never_connect_give_their_places_back_soon() {
    let broker = Broker::start();
    let device = start_device(Overrides {
        max_viewers: Some(2),
        ..overrides(&broker, "cam1")
    })
    .await;
    let ghosts = TopicWatcher::start(&broker, "campeer/cam1/out/#").await;
    for ghost in ["ghost1", "ghost2"] {
        let sdp = offer_from_vanished_peer().await;
        ghosts
            .publish(
                &format!("campeer/cam1/in/{ghost}"),
                json!({"type": "offer", "sdp": sdp}).to_string(),
            )
            .await;
    }
    let offered = Instant::now();
    assert!(
        wait_for(Duration::from_secs(10), || ghosts
            .count(|m| m["type"] == "answer")
            == 2)
        .await
    );
    assert_eq!(device.viewers(), 2);

    // The real viewer tries again each second, with a fresh session each time.
    let mut tries = 0;
    let carol = loop {
        tries += 1;
        assert!(tries <= 30, "never got in");
        let viewer = TestViewer::join(&broker, "cam1", &format!("carol{tries}")).await;
        let answered = wait_for(Duration::from_secs(1), || {
            viewer.snapshot(|s| s.answers > 0 || !s.errors.is_empty())
        })
        .await;
        if answered && viewer.snapshot(|s| s.answers > 0) {
            break viewer;
        }
        viewer.close().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let waited = offered.elapsed();
    eprintln!("the real viewer got in {waited:?} after the ghosts' offers, on try {tries}");
    assert!(carol.wait_for_more_frames(5, Duration::from_secs(20)).await);
    assert!(
        waited < Duration::from_secs(15),
        "the real viewer waited {waited:?} for a place held by offers that never connected"
    );
    assert_eq!(
        ghosts.count(|m| m["type"] == "hangup"),
        2,
        "each ghost is told its session ended"
    );
    carol.close().await;
    device.shutdown().await;
}
