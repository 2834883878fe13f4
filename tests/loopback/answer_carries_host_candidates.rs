//! campeer's answer carries its host candidates instead of trickling them just after: the
//! viewer then knows campeer's address before campeer's first connectivity check reaches it.
//! Met first, the check makes the address peer-reflexive to the viewer, and pion-style agents
//! (webrtc-rs among them) wait a second before nominating such a pair (before this, 1 join in
//! 6 took 1.1 s instead of 0.1 s). What the answer carried is not trickled again.

use campeer::sdp::is_host_candidate;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_answer_names_campeers_host_candidates() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let device = start_device(overrides(&broker, "cam1")).await;
    let viewer = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );
    assert!(
        wait_for(Duration::from_secs(5), || viewer
            .snapshot(|s| s.end_of_candidates))
        .await,
        "campeer never said its candidates were complete"
    );
    let (in_answer, lines) =
        viewer.snapshot(|s| (s.answer_candidates, s.remote_candidate_lines.clone()));
    assert!(in_answer >= 1, "the answer carried no candidate: {lines:?}");
    assert!(
        lines
            .iter()
            .take(in_answer)
            .all(|line| is_host_candidate(line)),
        "{lines:?}"
    );
    let mut unique = lines.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        lines.len(),
        "a candidate came twice: {lines:?}"
    );
    viewer.close().await;
    device.shutdown().await;
}
