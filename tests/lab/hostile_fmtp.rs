//! An offer whose H.264 `profile-level-id` is six bytes but not six characters (`aé001`: the
//! `é` is two bytes) used to panic campeer's offer check on a slice inside that character:
//! as a new offer it killed the device task (campeer went offline for everyone), as a
//! renegotiation it killed that session's task, whose viewer slot then stayed taken until
//! restart. Both must now get an `unsupported` error while everyone else keeps watching.

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
    let _load = common::load::shared();
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

/// The same renegotiation from aiortc (an independent stack, which offers VP8 beside H.264) on
/// a live session: every offer gets exactly one reply, an answer or an error with its code,
/// within 5 s, and the stream goes on. (Before: no reply and nothing in the log.)
#[test]
fn a_hostile_renegotiation_from_aiortc_gets_exactly_one_reply() {
    let _load = common::load::shared();
    let Some(python) = common::aiortc::lab_and_python() else {
        return;
    };
    let lab = common::network::Lab::new();
    let link = lab.link();
    let campeer = common::network::LabCampeer::start(&lab, "hostile", &[]);
    let lines = common::aiortc::watch_over_lab(
        &python,
        link,
        campeer.broker.port,
        "hostile",
        "aio-hostile",
        &["--seconds", "14", "--hostile-renegotiation", "5"],
    );
    let replies: Vec<_> = lines
        .iter()
        .filter(|line| !line["renegotiation_reply"].is_null())
        .collect();
    eprintln!("replies to the hostile renegotiation: {replies:?}");
    assert_eq!(replies.len(), 1, "{lines:?}");
    let reply = &replies[0];
    assert!(
        reply["after"].as_f64().is_some_and(|after| after < 5.0),
        "{reply}"
    );
    let message = &reply["renegotiation_reply"];
    assert!(
        message["type"] == "answer" || message["code"].is_string(),
        "neither an answer nor an error with its code: {message}"
    );
    let frames = |line: &serde_json::Value| line["frames"].as_u64();
    let at_reply = lines
        .iter()
        .take_while(|line| line["renegotiation_reply"].is_null())
        .filter_map(frames)
        .last()
        .unwrap_or(0);
    let last = lines.last().expect("aiortc reported");
    assert_eq!(last["done"], true, "{lines:?}");
    let end = frames(last).unwrap_or(0);
    assert!(
        end >= at_reply + 100,
        "the stream stopped after the renegotiation: {at_reply} then {end} frames"
    );
}
