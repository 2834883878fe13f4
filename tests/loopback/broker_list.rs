//! Past one broker: campeer given a list of brokers skips the dead ones, hands its audience
//! over to the next broker when its own goes away, and two mosquittos joined by a bridge carry
//! a camera on one to a viewer on the other.

use campeer::config::Overrides;
use common::*;
use std::time::{Duration, Instant};

/// A list with a dead entry first: campeer connects to the first live broker; when that one
/// dies, it moves to the next, says it is online there, and a viewer there watches, while
/// the viewer already watching keeps its picture (media does not go through the broker).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_broker_hands_campeer_over_to_the_next_in_the_list() {
    let _load = common::load::shared();
    let dead = format!("mqtt://127.0.0.1:{}", free_port());
    let mut first = Broker::start();
    let second = Broker::start();
    let device = start_device(Overrides {
        broker: vec![dead, first.url(), second.url()],
        ..overrides(&first, "fleet1")
    })
    .await;
    let alice = TestViewer::join(&first, "fleet1", "alice").await;
    assert!(
        alice
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await,
        "no picture through the first live broker"
    );

    let on_second = TopicWatcher::start(&second, &status_topic("fleet1")).await;
    first.kill();
    let lost_at = Instant::now();
    assert!(
        on_second
            .wait_for_last(Duration::from_secs(20), |s| s["state"] == "online")
            .await,
        "campeer never said it is online on the second broker: {:?}",
        on_second.last()
    );
    let online_after = lost_at.elapsed();
    let bob = TestViewer::join(&second, "fleet1", "bob").await;
    assert!(
        bob.wait_for_more_frames(10, Duration::from_secs(20)).await,
        "a viewer on the second broker could not watch"
    );
    let watching_after = lost_at.elapsed();
    assert_live_frames(&bob, 640, 480);
    assert!(
        alice.wait_for_more_frames(30, Duration::from_secs(5)).await,
        "the viewer already watching lost its picture with the broker"
    );
    eprintln!(
        "broker lost: campeer online on the next after {online_after:?}, \
         a new viewer watching after {watching_after:?}"
    );

    alice.close().await;
    bob.close().await;
    device.shutdown().await;
}

/// Two mosquittos joined by a bridge (`topic campeer/# both 1`): campeer on one, a viewer on
/// the other sees its status and watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bridge_carries_a_camera_on_one_broker_to_a_viewer_on_another() {
    let _load = common::load::shared();
    let camera_side = Broker::start();
    let camera_port = camera_side.port;
    let viewer_side = Broker::start_custom(|port| {
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             log_dest stderr\nlog_type error\nlog_type warning\n\
             connection campeer-bridge\naddress 127.0.0.1:{camera_port}\n\
             topic campeer/# both 1\nbridge_protocol_version mqttv311\n\
             restart_timeout 1\n"
        )
    });
    let device = start_device(overrides(&camera_side, "bridged")).await;
    let viewer = TestViewer::join(&viewer_side, "bridged", "carol").await;
    assert!(
        viewer
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await,
        "no picture across the bridge"
    );
    assert_live_frames(&viewer, 640, 480);
    assert_eq!(device.viewers(), 1);
    viewer.close().await;
    device.shutdown().await;
}
