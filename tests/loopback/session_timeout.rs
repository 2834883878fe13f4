//! A session whose ICE never connects is torn down after the session timeout and the viewer
//! is told with a hangup.

use campeer::config::Overrides;
use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unconnected_session_times_out_with_a_hangup() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let device = start_device(Overrides {
        session_timeout: Some(2),
        ..overrides(&broker, "cam1")
    })
    .await;
    let out = TopicWatcher::start_as(&broker, "ghost", "campeer/cam1/out/ghost").await;
    // As every viewer does: offer once campeer says it is online, which it says only once its
    // subscription to the viewers' topics is in place. An offer before that reaches nobody.
    assert!(wait_until_online(&broker, "cam1").await);

    let sdp = offer_from_vanished_peer().await;
    out.publish(
        "campeer/cam1/in/ghost",
        json!({"type": "offer", "sdp": sdp}).to_string(),
    )
    .await;

    assert!(
        out.wait_for_last(Duration::from_secs(10), |m| m["type"] != "error")
            .await
    );
    assert_eq!(out.count(|m| m["type"] == "answer"), 1);
    assert_eq!(device.viewers(), 1);
    assert!(
        out.wait_for_last(Duration::from_secs(10), |m| m["type"] == "hangup")
            .await,
        "no hangup after the timeout: {:?}",
        out.messages.lock().unwrap()
    );
    assert!(wait_for(Duration::from_secs(5), || device.viewers() == 0).await);
    // Nobody is watching any more; the encoder it started may idle out.
    assert_eq!(device.hub_stats().subscribers, 0);
    device.shutdown().await;
}
