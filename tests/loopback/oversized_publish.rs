//! Another client publishes far more than any signaling message on campeer's inbound topic,
//! on a broker with no size limit. campeer speaks MQTT 5 and tells the broker the largest
//! packet it takes, so the broker keeps such messages from it: its connection stays up, its
//! status never says offline, viewers keep watching, and new viewers still get through.

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_huge_publish_does_not_knock_campeer_off_the_broker() {
    let _load = common::load::shared();
    huge_publishes_leave_campeer_connected(Broker::start()).await;
}

/// With the size limit of the shipped mosquitto configuration, the broker itself refuses the
/// packets; campeer is untouched all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shipped_mosquitto_limit_refuses_them_at_the_broker() {
    let _load = common::load::shared();
    let shipped = include_str!("../../packaging/mosquitto/campeer.conf");
    let limit = shipped
        .lines()
        .find(|line| line.starts_with("max_packet_size "))
        .expect("the shipped configuration limits the packet size");
    huge_publishes_leave_campeer_connected(Broker::start_with(limit)).await;
}

async fn huge_publishes_leave_campeer_connected(broker: Broker) {
    let device = start_device(overrides(&broker, "cam1")).await;
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(10), |s| s["state"] == "online")
            .await,
        "campeer did not come online"
    );
    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        alice.wait_for_more_frames(5, Duration::from_secs(20)).await,
        "alice saw no picture before the huge publishes"
    );

    // Every change of campeer's broker connection from here on.
    let mut summary = device.health().summary();
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch_drop = std::sync::Arc::clone(&dropped);
    let watcher = tokio::spawn(async move {
        while summary.changed().await.is_ok() {
            if !summary.borrow_and_update().broker_connected {
                watch_drop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let attacker = TopicWatcher::start(&broker, "campeer/cam1/out/attacker").await;
    // Big ones, then more just above campeer's limit than mosquitto 2.0 has delivery slots
    // (20, its max_inflight_messages): at QoS 1 each withheld message kept a slot for good,
    // and campeer heard no viewer after them.
    let sizes = [100 * 1024, 1024 * 1024, 8 * 1024 * 1024]
        .into_iter()
        .chain(std::iter::repeat_n(81 * 1024, 25));
    for size in sizes {
        attacker
            .publish("campeer/cam1/in/attacker", vec![b'a'; size])
            .await;
    }
    // Long enough for the broker to deliver them, for a dropped connection to show and for the
    // last will to go out.
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert_eq!(
        status.count(|s| s["state"] == "offline"),
        0,
        "campeer's connection dropped: {:?}",
        status.messages.lock().unwrap()
    );
    assert!(
        !dropped.load(std::sync::atomic::Ordering::Relaxed),
        "campeer's broker connection went down"
    );
    watcher.abort();
    assert!(
        alice
            .wait_for_more_frames(30, Duration::from_secs(10))
            .await,
        "alice's picture stopped after the huge publishes"
    );
    let bob = TestViewer::join(&broker, "cam1", "bob").await;
    assert!(
        bob.wait_for_more_frames(5, Duration::from_secs(20)).await,
        "bob, joining after the huge publishes, saw no picture"
    );

    for viewer in [alice, bob] {
        viewer.close().await;
    }
    device.shutdown().await;
}
