//! Two offers that never connect take both places of a device serving two viewers. A real
//! viewer offering right after them waits, and takes the place of the first one still
//! unconnected 3 s after its answer: it streams within 5 s of its one offer, never told busy.
//! The displaced ghost is told with a hangup; the other gives its place back at the
//! first-connection deadline. (Before: the real viewer was told busy for 10 s.)

use campeer::config::Overrides;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_viewer_takes_the_place_of_an_offer_that_never_connected() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let device = start_device(Overrides {
        max_viewers: Some(2),
        ..overrides(&broker, "cam1")
    })
    .await;
    let ghosts = TopicWatcher::start(&broker, "campeer/cam1/out/#").await;
    // Offer only once the device listens, as every viewer does: an offer published before
    // its subscription is in place is simply never delivered.
    assert!(wait_until_online(&broker, "cam1").await);
    for ghost in ["ghost1", "ghost2"] {
        let sdp = offer_from_vanished_peer().await;
        ghosts
            .publish(
                &format!("campeer/cam1/in/{ghost}"),
                json!({"type": "offer", "sdp": sdp}).to_string(),
            )
            .await;
    }
    assert!(
        wait_for(Duration::from_secs(10), || ghosts
            .count(|m| m["type"] == "answer")
            == 2)
        .await
    );
    assert_eq!(device.viewers(), 2);

    let offered = Instant::now();
    let carol = TestViewer::join(&broker, "cam1", "carol").await;
    let streaming = carol.wait_for_more_frames(5, Duration::from_secs(5)).await;
    let waited = offered.elapsed();
    eprintln!("the real viewer streamed {waited:?} after its offer");
    assert!(
        streaming,
        "the real viewer did not stream within 5 s of its offer: {:?}",
        carol.snapshot(|s| s.errors.clone())
    );
    assert!(
        carol.snapshot(|s| s.errors.is_empty()),
        "{:?}",
        carol.snapshot(|s| s.errors.clone())
    );
    assert_eq!(
        ghosts.count(|m| m["type"] == "hangup"),
        1,
        "the displaced ghost is told its session ended"
    );
    // The other ghost gives its place back at the first-connection deadline.
    assert!(
        wait_for(Duration::from_secs(15), || ghosts
            .count(|m| m["type"] == "hangup")
            == 2)
        .await
    );
    assert!(carol.wait_for_more_frames(30, Duration::from_secs(5)).await);
    carol.close().await;
    device.shutdown().await;
}
