//! A hangup tears the session down: the status drops to zero viewers, media stops flowing, and
//! once the grace period passes the source and encoder stop too.

use campeer::config::Overrides;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hangup_tears_the_session_down_and_idles_the_encoder() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let device = start_device(Overrides {
        idle_grace: Some(1),
        ..overrides(&broker, "cam1")
    })
    .await;

    let viewer = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["viewers"] == 1)
            .await
    );
    assert!(device.hub_stats().pipeline_running);

    viewer.hangup().await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["viewers"] == 0)
            .await,
        "status still shows a viewer: {:?}",
        status.last()
    );
    assert_eq!(device.viewers(), 0);

    // Media stops: after a moment to drain, no more packets arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let packets = viewer.snapshot(|s| s.rtp_packets);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        viewer.snapshot(|s| s.rtp_packets),
        packets,
        "RTP still flowing"
    );
    // The viewer hung up itself, so it is not sent a hangup back.
    assert_eq!(viewer.snapshot(|s| s.hangups), 0);

    // Nobody watches: the pipeline stops after the 1 s grace period.
    assert!(
        wait_for(Duration::from_secs(5), || !device
            .hub_stats()
            .pipeline_running)
        .await
    );
    let frames = device.hub_stats().frames_encoded;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        device.hub_stats().frames_encoded,
        frames,
        "still encoding with no viewer"
    );

    viewer.close().await;
    device.shutdown().await;
}
