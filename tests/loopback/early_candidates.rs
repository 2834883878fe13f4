//! Candidates that arrive before their session's offer are held and applied after it. The
//! viewer ignores the device's candidates, so the connection can only come up if the device
//! used the early ones.

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn candidates_sent_before_the_offer_still_connect() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let device = start_device(overrides(&broker, "cam1")).await;
    let options = ViewerOptions {
        candidates_before_offer: true,
        ignore_device_candidates: true,
        ..Default::default()
    };
    let viewer = TestViewer::join_with(&broker, "cam1", "eager", options).await;
    assert!(
        viewer
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await,
        "no video: {:?}",
        viewer.snapshot(|s| s.connection_states.clone())
    );
    assert_live_frames(&viewer, 640, 480);
    viewer.close().await;
    device.shutdown().await;
}
