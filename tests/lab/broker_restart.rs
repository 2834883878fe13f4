//! campeer comes back by itself after a broker outage: it reconnects, republishes its status,
//! subscribes again so new viewers can join, and a viewer already watching never notices
//! (media is peer-to-peer).

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_a_broker_restart() {
    let _load = common::load::shared();
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

/// A broker that speaks MQTT 3.1.1 only: RabbitMQ with its MQTT plugin closes the connection
/// on an MQTT 5 CONNECT. campeer falls back to 3.1.1, says once in its log what that loses,
/// and an aiortc viewer (paho, MQTT 3.1.1) watches through the broker. (Before: campeer
/// retried MQTT 5 for ever and nobody could watch.)
#[test]
fn campeer_serves_through_a_broker_that_speaks_only_mqtt_3_1_1() {
    let _load = common::load::shared();
    let Some(python) = common::aiortc::lab_and_python() else {
        return;
    };
    if !common::rabbitmq::available() {
        return;
    }
    let lab = common::network::Lab::new();
    let link = lab.link();
    let rabbit = common::rabbitmq::RabbitMq::start_in(&lab.campeer_ns);
    let broker = format!("mqtt://127.0.0.1:{}", rabbit.port());
    let (daemon, log_path) =
        DaemonProcess::on_brokers_in_namespace(&lab.campeer_ns, &broker, "rabbit");
    let lines = common::aiortc::watch_over_lab(
        &python,
        link,
        rabbit.port(),
        "rabbit",
        "aio-rabbit",
        &["--seconds", "12"],
    );
    drop(daemon);
    let log = std::fs::read_to_string(log_path.path()).unwrap_or_default();
    let last = lines.last().expect("aiortc reported");
    assert_eq!(last["done"], true, "{lines:?}\n{log}");
    let frames = last["frames"].as_u64().unwrap_or(0);
    assert!(
        frames >= 150,
        "aiortc decoded only {frames} frames through RabbitMQ: {lines:?}\n{log}"
    );
    assert_eq!(
        log.matches("refused MQTT 5").count(),
        1,
        "the fallback is told once: {log}"
    );
    assert!(log.contains("Maximum Packet Size"), "{log}");
    assert!(log.contains("(MQTT 3.1.1)"), "{log}");
}
