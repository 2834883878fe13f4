//! Under systemd (Type=notify): the binary says READY=1 once the broker connection is up, keeps
//! STATUS= current with the viewer count, pings the watchdog at the interval systemd asks for,
//! and says STOPPING=1 on SIGTERM. systemd's socket is played by a test datagram socket.

use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ready_status_watchdog_and_stopping_reach_systemd() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let args = binary_args(&broker, "cam1", "test");
    let (mut daemon, notify) = run_under_systemd(&args, Duration::from_secs(1)).await;
    assert!(
        notify
            .wait_for(Duration::from_secs(5), |l| l
                == "STATUS=0 viewers; connected to the broker")
            .await,
        "{:?}",
        notify.lines()
    );

    // A one-second watchdog wants a ping every quarter second.
    let since = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pings = notify.count_since("WATCHDOG=1", since);
    assert!((4..=12).contains(&pings), "{pings} pings in 2 s");

    let viewer = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );
    assert!(
        notify
            .wait_for(Duration::from_secs(5), |l| l
                == "STATUS=1 viewer; connected to the broker")
            .await,
        "{:?}",
        notify.lines()
    );

    daemon.signal("TERM");
    assert!(
        daemon
            .wait(Duration::from_secs(15))
            .is_some_and(|s| s.success())
    );
    assert!(notify.lines().iter().any(|l| l == "STOPPING=1"));
    viewer.close().await;
}
