//! `video.encoder = "auto"` on a board with the hardware encoder at /dev/video11 (the fake
//! bcm2835-codec) beside a USB camera at /dev/video0: `campeer devices` names the encoder,
//! `auto` finds it and the camera (passing over the encoder's node, which is no camera), and
//! the viewer watches the stream it encodes. campeer runs in a mount namespace whose /dev
//! holds only these two nodes.

use common::fakecam::{bars_camera, mount_or_skip};
use common::fakem2m::FakeEncoder;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_finds_the_hardware_encoder() {
    let _load = common::load::shared();
    let Some(camera) = mount_or_skip(bars_camera(&[b"YUYV"])) else {
        return;
    };
    let Some(encoder) = FakeEncoder::mount_or_skip() else {
        return;
    };
    let camera_path = camera.path();
    let encoder_path = encoder.path();
    let nodes = [
        ("video0", camera_path.as_path()),
        ("video11", encoder_path.as_path()),
    ];

    let json = devices_json_with_dev(&nodes, None);
    assert_eq!(json["hardware_encoder"], "/dev/video11", "{json:#}");

    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let _daemon = DaemonProcess::spawn_with_dev(&binary_args(&broker, "cam1", "auto"), &[], &nodes);
    assert!(
        status
            .wait_for_last(Duration::from_secs(20), |s| s["state"] == "online")
            .await,
        "campeer never came online"
    );
    let viewer = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(30, Duration::from_secs(30))
            .await,
        "no video: {:?}",
        status.last()
    );
    assert_shows_the_bars(&viewer, 640, 480);
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["video"]["encoder"]
                == "v4l2m2m")
            .await,
        "{:?}",
        status.last()
    );
    assert!(encoder.frames_encoded() >= 30);
    assert!(camera.frames_served() >= 30);
    viewer.close().await;
}
