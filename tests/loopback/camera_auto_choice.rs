//! `auto` on a board laid out like a Raspberry Pi with a camera module and a USB camera: the
//! module's own V4L2 node gives only raw Bayer (the FUSE camera offering only Bayer formats),
//! the USB camera gives YUYV, and rpicam-vid (a fake) knows the module. `campeer devices`
//! lists the module and marks the Bayer node unusable; `auto` streams the module; without a
//! module it passes over the Bayer node and streams the USB camera. campeer runs in a mount
//! namespace whose /dev holds only these two nodes.

use common::fakecam::{bars_camera, mount_or_skip};
use common::rpicam::FakeRpicam;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_prefers_the_camera_module_and_skips_bayer_nodes() {
    let _load = common::load::shared();
    let Some(bayer) = mount_or_skip(bars_camera(&[b"pRAA", b"RGGB"])) else {
        return;
    };
    let Some(usb) = mount_or_skip(bars_camera(&[b"YUYV"])) else {
        return;
    };
    let fake = FakeRpicam::install(&["imx708"], [0, 0]);
    let path = format!(
        "{}:{}",
        fake.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [("PATH", path.as_str())];
    let bayer_path = bayer.path();
    let usb_path = usb.path();
    let nodes = [
        ("video0", bayer_path.as_path()),
        ("video1", usb_path.as_path()),
    ];

    let json = devices_json_with_dev(&nodes, Some(&path));
    assert_eq!(json["camera_modules"][0]["model"], "imx708", "{json:#}");
    assert_eq!(json["camera_modules"][0]["index"], 0);
    assert_eq!(json["camera_modules"][0]["modes"][0]["width"], 640);
    assert_eq!(json["cameras"][0]["path"], "/dev/video0");
    let bayer_formats = json["cameras"][0]["formats"].as_array().expect("formats");
    assert_eq!(bayer_formats.len(), 2);
    assert!(
        bayer_formats.iter().all(|f| f["supported"] == false),
        "{json:#}"
    );
    assert_eq!(json["cameras"][1]["formats"][0]["supported"], true);

    // A camera module is there: auto streams it.
    let broker = Broker::start();
    let daemon = DaemonProcess::spawn_with_dev(&binary_args(&broker, "cam1", "auto"), &env, &nodes);
    assert!(
        wait_until_online(&broker, "cam1").await,
        "cam1 never came online"
    );
    let viewer = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(30, Duration::from_secs(30))
            .await,
        "no video with a camera module present"
    );
    assert_shows_the_bars(&viewer, 640, 480);
    assert_eq!(fake.starts().len(), 1, "the camera module was not streamed");
    assert_eq!(
        usb.frames_served(),
        0,
        "the USB camera was streamed instead"
    );
    viewer.close().await;
    drop(daemon);

    // No module: auto passes over the Bayer-only node and streams the USB camera.
    fake.set_unplugged(true);
    let daemon = DaemonProcess::spawn_with_dev(&binary_args(&broker, "cam2", "auto"), &env, &nodes);
    assert!(
        wait_until_online(&broker, "cam2").await,
        "cam2 never came online"
    );
    let viewer = TestViewer::join(&broker, "cam2", "bob").await;
    assert!(
        viewer
            .wait_for_more_frames(30, Duration::from_secs(30))
            .await,
        "no video from the USB camera"
    );
    assert_shows_the_bars(&viewer, 640, 480);
    assert!(usb.frames_served() > 0);
    assert_eq!(bayer.frames_served(), 0, "the Bayer node was streamed");
    assert_eq!(fake.starts().len(), 1);
    viewer.close().await;
    drop(daemon);
}
