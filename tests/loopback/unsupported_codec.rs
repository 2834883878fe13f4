//! An offer with nothing campeer sends (neither usable H.264 nor VP8: AV1 alone) is answered
//! with `unsupported`, naming what the device sends and what the offer had, and no peer
//! connection.

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn av1_only_offer_is_unsupported() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let device = start_device(overrides(&broker, "cam1")).await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(10), |s| s["state"] == "online")
            .await
    );

    let options = ViewerOptions {
        h264_profiles: vec![],
        other_video: vec!["video/AV1"],
        ..Default::default()
    };
    let viewer = TestViewer::join_with(&broker, "cam1", "av1fan", options).await;
    assert!(
        wait_for(Duration::from_secs(10), || viewer
            .snapshot(|s| !s.errors.is_empty()))
        .await
    );
    let (errors, answers) = viewer.snapshot(|s| (s.errors.clone(), s.answers));
    assert_eq!(errors[0].0, "unsupported", "{errors:?}");
    let message = &errors[0].1;
    assert!(
        message.contains("H.264") && message.contains("VP8") && message.contains("AV1"),
        "{errors:?}"
    );
    assert_eq!(answers, 0);
    assert_eq!(device.viewers(), 0);
    assert_eq!(
        device.hub_stats().pipeline_starts,
        0,
        "no encoder for a refused offer"
    );
    assert_eq!(status.last().unwrap()["viewers"], 0);

    viewer.close().await;
    device.shutdown().await;
}
