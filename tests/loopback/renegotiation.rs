//! A new offer on a live session renegotiates the same peer connection, ICE restart included:
//! the viewer gets a second answer, keeps decoding, and is still one viewer.

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ice_restart_on_the_same_session_keeps_the_stream() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let device = start_device(overrides(&broker, "cam1")).await;
    let viewer = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );

    viewer.restart_ice().await;
    assert!(
        wait_for(Duration::from_secs(10), || viewer.snapshot(|s| s.answers)
            == 2)
        .await,
        "no answer to the renegotiation: {:?}",
        viewer.snapshot(|s| s.errors.clone())
    );
    assert!(
        viewer
            .wait_for_more_frames(30, Duration::from_secs(10))
            .await
    );
    assert_eq!(device.viewers(), 1);
    assert_eq!(
        device.hub_stats().subscribers,
        1,
        "the same session, not a new viewer"
    );
    assert!(viewer.snapshot(|s| s.errors.is_empty()));
    assert_live_frames(&viewer, 640, 480);

    viewer.close().await;
    device.shutdown().await;
}
