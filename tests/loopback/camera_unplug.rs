//! A camera that is unplugged and plugged back: the viewer's session stays up, campeer reopens
//! the camera with backoff, and video resumes in the same session within seconds.

use common::fakecam::{bars_camera, mount_or_skip};
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn video_resumes_after_the_camera_comes_back() {
    let _load = common::load::shared();
    let Some(camera) = mount_or_skip(bars_camera(&[b"YUYV"])) else {
        return;
    };
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let device = start_camera_device(&broker, &camera, "cam1").await;
    let viewer = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(20, Duration::from_secs(30))
            .await
    );
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["video"]["state"] == "live")
            .await,
        "{:?}",
        status.last()
    );

    camera.set_unplugged(true);
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["video"]["state"] == "failed"
                && s["video"]["error"].is_string())
            .await,
        "the status does not report the camera failure: {:?}",
        status.last()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled = viewer.frames();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        viewer.frames() <= stalled + 1,
        "frames kept coming from an unplugged camera"
    );

    camera.set_unplugged(false);
    assert!(
        viewer
            .wait_for_more_frames(20, Duration::from_secs(15))
            .await,
        "video did not resume after the camera came back"
    );
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["video"]["state"] == "live")
            .await
    );
    // The same session throughout: one answer, no hangup, still one viewer.
    assert_eq!(viewer.snapshot(|s| (s.answers, s.hangups)), (1, 0));
    assert_eq!(device.viewers(), 1);
    assert!(device.hub_stats().pipeline_starts == 1);

    viewer.close().await;
    device.shutdown().await;
}
