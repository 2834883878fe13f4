//! A flood of offers, each hung up at once, against a device serving at most two viewers while
//! one real viewer watches. Admission control holds: a session counts until its task has
//! ended, so no more than two run at once; the status is coalesced instead of published per
//! event; error replies are rate-limited; the real viewer keeps watching, and a new one gets
//! in once the flood is over.

mod common;

use campeer::config::Overrides;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const PAIRS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offers_and_hangups_in_a_flood_stay_within_the_limit() {
    let broker = Broker::start();
    let device = start_device(Overrides {
        max_viewers: Some(2),
        ..overrides(&broker, "cam1")
    })
    .await;
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(alice.wait_for_more_frames(5, Duration::from_secs(20)).await);

    let replies = TopicWatcher::start(&broker, "campeer/cam1/out/#").await;
    let sdp = offer_from_vanished_peer().await;
    let offer = json!({"type": "offer", "sdp": sdp}).to_string();
    let hangup = json!({"type": "hangup"}).to_string();
    let statuses_before = status.count(|_| true);
    let started = Instant::now();
    for n in 0..PAIRS {
        let topic = format!("campeer/cam1/in/flood{n}");
        replies.publish(&topic, offer.clone()).await;
        replies.publish(&topic, hangup.clone()).await;
    }
    // Until every flood session has ended (only alice's task is left).
    assert!(
        wait_for(Duration::from_secs(30), || device.session_tasks().0 == 1).await,
        "flood sessions still running: {:?}",
        device.session_tasks()
    );
    let flood = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (running, peak) = device.session_tasks();
    assert_eq!(running, 1);
    assert!(peak <= 2, "{peak} sessions ran at once with a limit of 2");
    // Coalesced: at most two a second, plus the last.
    let statuses = status.count(|_| true) - statuses_before;
    let most = 2 * flood.as_secs() as usize + 4;
    assert!(
        statuses <= most,
        "{statuses} status publishes in {flood:?} (at most {most})"
    );
    let errors = replies.count(|m| m["type"] == "error");
    eprintln!(
        "{PAIRS} offer+hangup pairs in {flood:?}: at most {peak} sessions at once, \
         {statuses} status publishes, {errors} error replies"
    );
    let most_errors = 20 + 10 * (flood.as_secs() as usize + 2);
    assert!(
        errors <= most_errors,
        "{errors} error replies in {flood:?} (at most {most_errors})"
    );
    let last = status.last().expect("a status");
    assert_eq!(
        last["viewers"], 1,
        "the last status counts alice only: {last}"
    );

    assert!(
        alice
            .wait_for_more_frames(30, Duration::from_secs(10))
            .await
    );
    let bob = TestViewer::join(&broker, "cam1", "bob").await;
    assert!(bob.wait_for_more_frames(5, Duration::from_secs(20)).await);
    for viewer in [alice, bob] {
        viewer.close().await;
    }
    device.shutdown().await;
}
