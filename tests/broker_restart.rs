//! campeer comes back by itself after a broker outage: it reconnects, republishes its status,
//! subscribes again so new viewers can join, and a viewer already watching never notices
//! (media is peer-to-peer).

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_a_broker_restart() {
    let mut broker = Broker::start();
    let device = start_device(overrides(&broker, "cam1")).await;
    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        alice
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );

    broker.restart(Duration::from_secs(2));
    // The video kept flowing while the broker was away.
    assert!(alice.wait_for_more_frames(30, Duration::from_secs(5)).await);

    // The restarted broker lost every retained message: what a new subscriber sees was
    // published again after the reconnection.
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(20), |s| s["state"] == "online"
                && s["viewers"] == 1)
            .await,
        "no status after the broker came back: {:?}",
        status.last()
    );
    let bob = TestViewer::join(&broker, "cam1", "bob").await;
    assert!(
        bob.wait_for_more_frames(10, Duration::from_secs(20)).await,
        "a new viewer could not join after the outage"
    );
    assert_live_frames(&bob, 640, 480);
    assert_eq!(device.viewers(), 2);

    alice.close().await;
    bob.close().await;
    device.shutdown().await;
}
