//! The watchdog pings come from the loops that matter and stop when one hangs: with the camera
//! driver wedged inside DQBUF (the fake camera blocks the ioctl), campeer withholds WATCHDOG=1,
//! which is what makes systemd restart it; once the driver lets go, the pings resume.

use common::fakecam::{bars_camera, mount_or_skip};
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_camera_stops_the_watchdog_pings() {
    let _load = common::load::shared();
    let Some(camera) = mount_or_skip(bars_camera(&[b"YUYV"])) else {
        return;
    };
    let broker = Broker::start();
    let args = binary_args(&broker, "cam1", &camera.path().display().to_string());
    let (_daemon, notify) = run_under_systemd(&args, Duration::from_secs(2)).await;
    let viewer = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );
    let since = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        notify.count_since("WATCHDOG=1", since) >= 3,
        "pings while streaming"
    );

    camera.set_hung(true);
    // Stalled for half the watchdog time (1 s) stops the pings; allow for the last ones.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hung_since = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pings_while_hung = notify.count_since("WATCHDOG=1", hung_since);
    assert_eq!(
        pings_while_hung, 0,
        "the watchdog was pinged while the camera hung"
    );

    camera.set_hung(false);
    assert!(
        viewer
            .wait_for_more_frames(10, Duration::from_secs(15))
            .await,
        "video resumes"
    );
    let resumed = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        notify.count_since("WATCHDOG=1", resumed) >= 3,
        "pings resume"
    );
    viewer.close().await;
}
