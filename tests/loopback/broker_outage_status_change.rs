//! A status change while the broker is away is queued, and goes out as soon as campeer is back.
//! It says "online": a viewer who sees it and offers at once must be heard, so campeer's
//! subscription has to reach the broker before anything that was queued during the outage.
//! (Before the fix, the queued status went first and the subscription some 40 ms later, behind
//! Nagle's delay; the offer in between was lost and the viewer never got an answer.)

use campeer::config::Overrides;
use common::*;
use serde_json::json;
use std::time::Duration;

const CAMPEER_ID: &str = "campeer-under-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_who_sees_the_queued_status_can_join() {
    let _load = common::load::shared();
    // The broker logs every packet it receives, in the order it handles them.
    let log_dir = tempfile::tempdir().expect("temp dir");
    let log = log_dir.path().join("mosquitto.log");
    // mosquitto started as root writes as its own user.
    std::fs::write(&log, "").expect("create the broker's log");
    std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .expect("let the broker write its log");
    std::fs::set_permissions(
        log_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("let the broker reach its log");
    let mut broker = Broker::start_with(&format!("log_type all\nlog_dest file {}", log.display()));
    let device = start_device(Overrides {
        connect_timeout: Some(2),
        client_id: Some(CAMPEER_ID.to_owned()),
        ..overrides(&broker, "cam1")
    })
    .await;
    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        alice
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );
    // An offer that never connects: its session ends by itself 2 s after the answer.
    let ghost = TopicWatcher::start(&broker, "campeer/cam1/out/#").await;
    ghost
        .publish(
            "campeer/cam1/in/ghost",
            json!({"type": "offer", "sdp": offer_from_vanished_peer().await}).to_string(),
        )
        .await;
    assert!(
        wait_for(Duration::from_secs(10), || ghost
            .count(|m| m["type"] == "answer")
            == 1)
        .await
    );
    assert_eq!(device.viewers(), 2);

    // The ghost's session ends while the broker is away: the status that says one viewer waits
    // in the MQTT queue.
    broker.kill();
    assert!(
        wait_for(Duration::from_secs(10), || device.viewers() == 1).await,
        "the ghost's session did not end"
    );
    // Long enough for link figures (every 2 s) to queue up behind the status too: a burst
    // of small writes on the new connection, as after a real outage.
    tokio::time::sleep(Duration::from_secs(4)).await;
    broker.start_again();
    // The quickest viewer there can be waits for the status and offers from its MQTT event
    // loop the instant it sees "online".
    let quick =
        QuickOfferer::start(&broker, "cam1", "quick", offer_from_vanished_peer().await).await;
    assert!(
        wait_for(Duration::from_secs(20), || quick.offered()).await,
        "no online status after the broker came back"
    );
    let answered = wait_for(Duration::from_secs(5), || quick.answers() == 1).await;
    // What the broker handled from campeer since it came back: the subscription first.
    let log = std::fs::read_to_string(&log).expect("read the broker's log");
    let since_reconnect = log
        .rsplit_once(&format!(" as {CAMPEER_ID} "))
        .map(|(_, after)| after)
        .expect("campeer connected again");
    let position = |what: &str| since_reconnect.find(&format!("{what} from {CAMPEER_ID}"));
    let subscribe = position("Received SUBSCRIBE").expect("campeer subscribed again");
    let first_publish = position("Received PUBLISH").expect("campeer published again");
    assert!(
        subscribe < first_publish,
        "campeer published before its subscription was in place:\n{since_reconnect}"
    );
    assert!(
        answered,
        "the offer sent on seeing the status was lost: campeer was not subscribed yet"
    );

    // And a real viewer joins and watches.
    let bob = TestViewer::join(&broker, "cam1", "bob").await;
    assert!(
        bob.wait_for_more_frames(10, Duration::from_secs(20)).await,
        "bob could not join after the outage"
    );
    assert!(alice.wait_for_more_frames(10, Duration::from_secs(5)).await);

    alice.close().await;
    bob.close().await;
    device.shutdown().await;
}
