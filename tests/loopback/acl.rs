//! The example mosquitto ACL fences each viewer to its own session: a viewer still gets its
//! stream, and another client can neither read that viewer's signaling nor hang up on it.

use campeer::config::Overrides;
use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acl_fences_viewers_to_their_own_sessions() {
    let _load = common::load::shared();
    let acl = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/mosquitto/campeer.acl"
    );
    let broker = Broker::start_with(&format!("acl_file {acl}"));
    let device = start_device(Overrides {
        mqtt_username: Some("campeer".into()),
        ..overrides(&broker, "cam1")
    })
    .await;
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(10), |s| s["state"] == "online")
            .await,
        "viewers may read the status"
    );

    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        alice
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );

    // Mallory listens on alice's out topic and tries to hang up on her.
    let snoop = TopicWatcher::start_as(&broker, "mallory", "campeer/cam1/out/alice").await;
    snoop
        .publish(
            "campeer/cam1/in/alice",
            json!({"type": "hangup"}).to_string(),
        )
        .await;
    // Trigger traffic on alice's out topic that mallory must not see.
    alice.publish_raw(b"not json".to_vec()).await;
    assert!(
        wait_for(Duration::from_secs(5), || alice
            .snapshot(|s| !s.errors.is_empty()))
        .await,
        "alice gets her own replies"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(snoop.count(|_| true), 0, "mallory read alice's signaling");
    assert_eq!(device.viewers(), 1, "mallory hung up on alice");
    assert!(alice.wait_for_more_frames(15, Duration::from_secs(5)).await);

    // Mallory can still use her own session.
    let mallory_out =
        TopicWatcher::start_as(&broker, "mallory2", "campeer/cam1/out/mallory2").await;
    mallory_out
        .publish("campeer/cam1/in/mallory2", b"{}".to_vec())
        .await;
    assert!(
        mallory_out
            .wait_for_last(Duration::from_secs(5), |m| m["code"] == "bad-request")
            .await
    );

    alice.close().await;
    device.shutdown().await;
}
