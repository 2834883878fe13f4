//! Format negotiation against a camera: campeer takes the mode the rules say (exact size over
//! a cheaper format; the nearest size when the configured one is not offered), and the status
//! topic reports the size actually streamed.

use common::fakecam::{CameraSpec, bars_frame, mount_or_skip};
use common::*;
use std::time::Duration;

async fn stream(spec: CameraSpec, device_id: &str) -> Option<((usize, usize), serde_json::Value)> {
    let camera = mount_or_skip(spec)?;
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic(device_id)).await;
    let device = start_camera_device(&broker, &camera, device_id).await;
    let viewer = TestViewer::join(&broker, device_id, "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(10, Duration::from_secs(30))
            .await
    );
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["video"]["state"] == "live")
            .await
    );
    let size = viewer.snapshot(|s| {
        let last = s.frames.last().expect("a frame");
        (last.width, last.height)
    });
    // Read before shutting down, which publishes the offline status.
    let live = status.last().expect("a status");
    viewer.close().await;
    device.shutdown().await;
    Some((size, live))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_exact_size_beats_a_cheaper_format() {
    let _load = common::load::shared();
    let spec = CameraSpec {
        formats: vec![(*b"YUYV", vec![(320, 240)]), (*b"MJPG", vec![(640, 480)])],
        fps: 30,
        make_frame: Box::new(bars_frame),
    };
    let Some((size, status)) = stream(spec, "cam1").await else {
        return;
    };
    assert_eq!(
        size,
        (640, 480),
        "MJPEG 640x480 should win over YUYV 320x240"
    );
    assert_eq!(status["video"]["width"], 640);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unoffered_size_streams_the_nearest_and_says_so() {
    let _load = common::load::shared();
    let spec = CameraSpec {
        formats: vec![(*b"NV12", vec![(320, 240), (160, 120)])],
        fps: 30,
        make_frame: Box::new(bars_frame),
    };
    let Some((size, status)) = stream(spec, "cam2").await else {
        return;
    };
    assert_eq!(size, (320, 240));
    assert_eq!(
        (
            status["video"]["width"].as_u64(),
            status["video"]["height"].as_u64()
        ),
        (Some(320), Some(240))
    );
}
