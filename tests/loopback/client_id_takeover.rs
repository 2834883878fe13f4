//! Another client that connects with campeer's MQTT client id takes over campeer's
//! connection: the broker drops the older one, campeer's last will says offline, campeer
//! reconnects and drops the other in turn. With the id campeer used to take by default
//! (`campeer-{device}`) anyone could knock it offline at will; the default now carries a
//! random suffix, so the guessable id collides with nothing.

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_reusing_the_guessable_id_does_not_flap_campeer() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let device = start_device(overrides(&broker, "cam1")).await;
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        alice
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );
    let offline_before = status.count(|s| s["state"] == "offline");

    for _ in 0..5 {
        let intruder = TopicWatcher::start_as(&broker, "campeer-cam1", "campeer/cam1/x").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(intruder);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let offline = status.count(|s| s["state"] == "offline") - offline_before;
    assert_eq!(
        offline, 0,
        "campeer went offline {offline} times while another client used campeer-cam1"
    );
    assert!(
        alice.wait_for_more_frames(30, Duration::from_secs(5)).await,
        "the viewer stopped getting pictures"
    );
    let bob = TestViewer::join(&broker, "cam1", "bob").await;
    assert!(bob.wait_for_more_frames(10, Duration::from_secs(20)).await);
    for viewer in [alice, bob] {
        viewer.close().await;
    }
    device.shutdown().await;
}
