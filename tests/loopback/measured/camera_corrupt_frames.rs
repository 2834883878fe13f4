//! An MJPEG camera on a flaky USB link: now and then a frame arrives that is no JPEG at all.
//! campeer skips that frame and keeps the camera open, so the viewer sees a picture at the
//! camera's pace minus the lost frames, never a reopened camera and a freeze; the status
//! stays `live`. A camera that sends nothing usable at all is still reported failed.

use common::fakecam::{CameraSpec, bars_frame, mount_or_skip};
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One frame in this many is junk while the link is flaky.
const JUNK_EVERY: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_frames_are_skipped_without_reopening_the_camera() {
    let _load = common::load::whole_machine();
    let all_junk = Arc::new(AtomicBool::new(false));
    let junk_switch = Arc::clone(&all_junk);
    let spec = CameraSpec {
        formats: vec![(*b"MJPG", vec![(640, 480)])],
        fps: 30,
        make_frame: Box::new(move |fourcc, width, height, sequence| {
            if junk_switch.load(Ordering::Relaxed) || sequence % JUNK_EVERY == 0 {
                b"\xff\xd8 this is not a JPEG frame ".repeat(64)
            } else {
                bars_frame(fourcc, width, height, sequence)
            }
        }),
    };
    let Some(camera) = mount_or_skip(spec) else {
        return;
    };
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let device = start_camera_device(&broker, &camera, "cam1").await;
    let viewer = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(20, Duration::from_secs(30))
            .await,
        "no steady picture: {} frames in 30 s, camera opened {} times",
        viewer.frames(),
        device.hub_stats().source_opens
    );

    let from = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let watched =
        common::playback::playback(&viewer.snapshot(|s| s.frames.clone()), from, Instant::now());
    let stats = device.hub_stats();
    eprintln!(
        "with one frame in {JUNK_EVERY} corrupt: {:.1} fps, longest freeze {:?}; {} frames \
         skipped, camera opened {} times",
        watched.fps, watched.longest_freeze, stats.frames_unusable, stats.source_opens
    );
    assert!(
        stats.frames_unusable >= 20,
        "the junk frames were not seen: {stats:?}"
    );
    assert_eq!(
        stats.source_opens, 1,
        "the camera was reopened for a corrupt frame"
    );
    assert_eq!(
        status.count(|s| s["video"]["state"] == "failed"),
        0,
        "a corrupt frame was reported as a failed camera: {:?}",
        status.last()
    );
    assert!(
        watched.fps >= 18.0 && watched.longest_freeze < Duration::from_millis(500),
        "the picture suffered more than the lost frames: {:.1} fps, longest freeze {:?}",
        watched.fps,
        watched.longest_freeze
    );
    assert_shows_the_bars(&viewer, 640, 480);

    // Nothing usable at all is a failed camera, reported as such and reopened.
    all_junk.store(true, Ordering::Relaxed);
    assert!(
        status
            .wait_for_last(Duration::from_secs(10), |s| s["video"]["state"] == "failed"
                && s["video"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("unusable frames in a row")))
            .await,
        "a camera sending only junk was not reported failed: {:?}",
        status.last()
    );
    all_junk.store(false, Ordering::Relaxed);
    assert!(
        viewer
            .wait_for_more_frames(20, Duration::from_secs(20))
            .await,
        "the picture did not come back after the junk stopped"
    );
    assert!(device.hub_stats().source_opens >= 2);

    viewer.close().await;
    device.shutdown().await;
}
