//! `video.encoder = "v4l2m2m:..."` naming a device that is not there (a Pi 5, a typo): campeer
//! says why in the log, encodes with openh264, and the status and stats say so; viewers watch
//! as usual.

use campeer::config::Overrides;
use campeer::media::encoding::EncoderKind;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_hardware_encoder_falls_back_to_openh264() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let device = start_device(Overrides {
        encoder: Some("v4l2m2m:/nonexistent/video11".into()),
        width: Some(320),
        height: Some(240),
        ..overrides(&broker, "cam1")
    })
    .await;
    let viewer = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(30, Duration::from_secs(20))
            .await
    );
    assert_live_frames(&viewer, 320, 240);
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["video"]["encoder"]
                == "openh264")
            .await,
        "{:?}",
        status.last()
    );
    let stats = device.hub_stats();
    assert_eq!(stats.encoder, EncoderKind::OpenH264);
    assert_eq!(stats.encoder_fallbacks, 1);
    viewer.close().await;
    device.shutdown().await;
}
