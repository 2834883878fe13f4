//! A Raspberry Pi camera module through rpicam-vid (a fake of the program): the viewer decodes
//! the colour bars at the size asked; the RTP timestamps follow the sensor's timestamps, not
//! the moments frames came through the pipe; the module is unplugged (the status says failed,
//! with rpicam-vid's own words) and campeer brings it back by itself.

use common::rpicam::FakeRpicam;
use common::*;
use std::time::Duration;

/// 90 kHz ticks per frame at 30 fps.
const FRAME_TICKS: i64 = 3000;

/// How far an RTP timestamp step is from a whole number of frame periods, in ticks.
fn off_the_frame_grid(step: u32) -> i64 {
    let step = i64::from(step);
    let nearest = (step + FRAME_TICKS / 2) / FRAME_TICKS * FRAME_TICKS;
    (step - nearest).abs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_camera_module_streams_and_comes_back_after_unplugging() {
    let _load = common::load::shared();
    // Frames leave the camera 5 ms and 25 ms after exposure in turn: through the pipe they
    // arrive 53 ms and 13 ms apart, though they were taken 33 ms apart.
    let fake = FakeRpicam::install(&["imx219"], [5, 25]);
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let device = start_device(campeer::config::Overrides {
        source: Some("rpicam".into()),
        rpicam_vid: Some(fake.program()),
        width: Some(320),
        height: Some(240),
        ..overrides(&broker, "cam1")
    })
    .await;
    let viewer = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(60, Duration::from_secs(30))
            .await,
        "no video from the camera module: {:?}",
        status.last()
    );
    assert_shows_the_bars(&viewer, 320, 240);
    let starts = fake.starts();
    let args = starts.first().expect("rpicam-vid was started").join(" ");
    for wanted in [
        "--camera 0",
        "--width 320",
        "--height 240",
        "--framerate 30",
        "--codec yuv420",
    ] {
        assert!(args.contains(wanted), "{wanted:?} not in {args:?}");
    }

    let steps: Vec<u32> = viewer.snapshot(|s| {
        s.frames
            .windows(2)
            .map(|pair| pair[1].rtp_timestamp.wrapping_sub(pair[0].rtp_timestamp))
            .collect()
    });
    let on_grid = steps
        .iter()
        .filter(|&&step| off_the_frame_grid(step) <= 450)
        .count();
    eprintln!(
        "RTP timestamp steps on the 33 ms grid (within 5 ms): {on_grid} of {}; first steps {:?}",
        steps.len(),
        steps.iter().take(12).collect::<Vec<_>>()
    );
    assert!(
        on_grid * 10 >= steps.len() * 9,
        "RTP timestamps follow the pipe, not the sensor: {steps:?}"
    );

    fake.set_unplugged(true);
    assert!(
        status
            .wait_for_last(Duration::from_secs(10), |s| s["video"]["state"] == "failed"
                && s["video"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("rpicam-vid")))
            .await,
        "the status does not report the failed camera module: {:?}",
        status.last()
    );
    let reason = status.last().expect("a status")["video"]["error"].clone();
    eprintln!("while unplugged: {reason}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frames_before = viewer.frames();
    fake.set_unplugged(false);
    assert!(
        viewer
            .wait_for_more_frames(30, Duration::from_secs(20))
            .await,
        "video did not resume after the camera module came back ({} frames before)",
        frames_before
    );
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["video"]["state"] == "live")
            .await,
        "{:?}",
        status.last()
    );
    assert!(fake.starts().len() >= 2, "rpicam-vid was not started again");
    viewer.close().await;
    device.shutdown().await;
}
