//! An offer whose H.264 `profile-level-id` is six bytes but not six characters (`aé001`: the
//! `é` is two bytes) used to panic campeer's offer check on a slice inside that character:
//! as a new offer it killed the device task (campeer went offline for everyone), as a
//! renegotiation it killed that session's task, whose viewer slot then stayed taken until
//! restart. Both must now get an `unsupported` error while everyone else keeps watching.

mod common;

use campeer::config::Overrides;
use common::*;
use serde_json::json;
use std::time::Duration;

/// `sdp` with every H.264 profile-level-id replaced by `aé001`.
fn with_hostile_profiles(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .map(|line| match line.find("profile-level-id=") {
            Some(at) => {
                let value = at + "profile-level-id=".len();
                let rest = line.get(value + 6..).unwrap_or_default();
                format!("{}aé001{rest}", line.get(..value).unwrap_or_default())
            }
            None => line.to_owned(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_profile_split_inside_a_character_is_refused_not_a_crash() {
    let broker = Broker::start();
    let device = start_device(Overrides {
        max_viewers: Some(2),
        ..overrides(&broker, "cam1")
    })
    .await;
    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        alice
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );
    let bob = TestViewer::join(&broker, "cam1", "bob").await;
    assert!(bob.wait_for_more_frames(10, Duration::from_secs(20)).await);
    let hostile = with_hostile_profiles(&bob.local_sdp().await);
    assert!(hostile.contains("profile-level-id=aé001"), "{hostile}");

    // As a new offer.
    let mallory = TopicWatcher::start_as(&broker, "mallory", "campeer/cam1/out/mallory").await;
    mallory
        .publish(
            "campeer/cam1/in/mallory",
            json!({"type": "offer", "sdp": hostile})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert!(
        wait_for(Duration::from_secs(10), || mallory
            .count(|m| m["type"] == "error")
            >= 1)
        .await,
        "no reply to the hostile offer"
    );
    // Busy (both places taken) or unsupported: refused either way, and nothing crashed.
    assert_eq!(mallory.count(|m| m["type"] == "answer"), 0);
    assert!(
        alice.wait_for_more_frames(30, Duration::from_secs(5)).await,
        "the viewer already watching stopped getting pictures"
    );

    // As a renegotiation of bob's live session.
    bob.publish(json!({"type": "offer", "sdp": hostile})).await;
    assert!(
        wait_for(Duration::from_secs(10), || bob.snapshot(|s| s
            .errors
            .iter()
            .any(|(code, _)| code == "unsupported")))
        .await,
        "the hostile renegotiation was not refused: {:?}",
        bob.snapshot(|s| s.errors.clone())
    );
    assert!(
        bob.wait_for_more_frames(30, Duration::from_secs(5)).await,
        "bob's session did not survive its refused renegotiation"
    );
    assert_eq!(device.viewers(), 2);

    // Bob's place is free once he leaves (a dead session task would keep it).
    bob.hangup().await;
    assert!(
        wait_for(Duration::from_secs(5), || device.viewers() == 1).await,
        "bob's session never ended"
    );
    let carol = TestViewer::join(&broker, "cam1", "carol").await;
    assert!(
        carol
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );

    for viewer in [alice, bob, carol] {
        viewer.close().await;
    }
    device.shutdown().await;
}
