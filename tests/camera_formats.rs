//! The real capture path without hardware: a fake V4L2 camera (FUSE) streams colour bars with
//! a moving marker in YUYV, NV12 and MJPEG; campeer negotiates, captures through MMAP,
//! converts, encodes, and the test viewer decodes the bars within codec tolerance.

mod common;

use common::fakecam::{BARS, bars_camera, mount_or_skip};
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
    let (size, grid, markers) = viewer.snapshot(|s| {
        let last = s.frames.last().expect("a frame");
        // Where the moving marker sits in the top grid row, frame by frame: the cell
        // brightest compared with its bar.
        let markers: Vec<usize> = s
            .frames
            .iter()
            .map(|f| {
                (0..8)
                    .max_by_key(|&i| i16::from(f.grid[i].0) - i16::from(BARS[i].0))
                    .unwrap_or(0)
            })
            .collect();
        ((last.width, last.height), last.grid.clone(), markers)
    });
    assert_eq!(size, (640, 480));
    // Rows 2..6 of the grid are plain bars: each cell matches its bar's colour.
    for row in 2..6 {
        for (col, &(y, u, v)) in BARS.iter().enumerate() {
            let got = grid[row * 8 + col];
            let close = |a: u8, b: u8| (i16::from(a) - i16::from(b)).abs() <= 12;
            assert!(
                close(got.0, y) && close(got.1, u) && close(got.2, v),
                "bar {col} in row {row}: got {got:?}, expected {:?}",
                (y, u, v)
            );
        }
    }
    let distinct: std::collections::HashSet<_> = markers.iter().collect();
    assert!(distinct.len() > 1, "the marker never moved: {markers:?}");
    assert!(camera.frames_served() >= 20);
    viewer.close().await;
    device.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn yuyv_camera() {
    streams_the_bars(b"YUYV").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nv12_camera() {
    streams_the_bars(b"NV12").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mjpeg_camera() {
    streams_the_bars(b"MJPG").await;
}
