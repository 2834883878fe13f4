//! The real capture path without hardware: a fake V4L2 camera (FUSE) streams colour bars with
//! a moving marker in YUYV, NV12 and MJPEG; campeer negotiates, captures through MMAP,
//! converts, encodes, and the test viewer decodes the bars within codec tolerance.

use common::fakecam::{bars_camera, mount_or_skip};
use common::*;
use std::time::Duration;

async fn streams_the_bars(fourcc: &[u8; 4]) {
    let Some(camera) = mount_or_skip(bars_camera(&[fourcc])) else {
        return;
    };
    let broker = Broker::start();
    let device = start_camera_device(&broker, &camera, "cam1").await;
    let viewer = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(20, Duration::from_secs(30))
            .await,
        "no video from the {} camera: {:?}",
        String::from_utf8_lossy(fourcc),
        viewer.snapshot(|s| (s.rtp_packets, s.connection_states.clone()))
    );
    assert_shows_the_bars(&viewer, 640, 480);
    assert!(camera.frames_served() >= 20);
    viewer.close().await;
    device.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn yuyv_camera() {
    let _load = common::load::shared();
    streams_the_bars(b"YUYV").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nv12_camera() {
    let _load = common::load::shared();
    streams_the_bars(b"NV12").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mjpeg_camera() {
    let _load = common::load::shared();
    streams_the_bars(b"MJPG").await;
}
