//! Two viewers at once are served by one encoder: both decode live 640x480 frames carrying the
//! same capture times, and the encoder runs once per frame, not once per viewer. Alice offers
//! what Chromium offers (42001f, then 42e01f); Bob offers only 42e01f: both work.

use common::*;
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_viewers_share_one_encoder() {
    let _load = common::load::whole_machine();
    let broker = Broker::start();
    let device = start_device(overrides(&broker, "cam1")).await;

    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    let bob_options = ViewerOptions {
        h264_profiles: vec!["42e01f"],
        ..Default::default()
    };
    let bob = TestViewer::join_with(&broker, "cam1", "bob", bob_options).await;
    assert!(
        alice
            .wait_for_more_frames(30, Duration::from_secs(20))
            .await,
        "alice decoded no video: {:?}",
        alice.snapshot(|s| (s.rtp_packets, s.decode_errors, s.connection_states.clone()))
    );
    assert!(bob.wait_for_more_frames(30, Duration::from_secs(20)).await);

    // Measure over a window in which both are watching.
    let encoded_before = device.hub_stats().frames_encoded;
    let (alice_before, bob_before) = (alice.frames(), bob.frames());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let encoded = (device.hub_stats().frames_encoded - encoded_before) as usize;
    let (alice_got, bob_got) = (alice.frames() - alice_before, bob.frames() - bob_before);

    // One encode per frame: each viewer decoded about as many frames as were encoded, and
    // the encoder did not run twice (once per viewer).
    assert!(
        encoded >= 60,
        "only {encoded} frames encoded in 3 s at 30 fps"
    );
    assert!(
        encoded <= 100,
        "{encoded} frames encoded in 3 s at 30 fps: more than one encoder?"
    );
    for (name, got) in [("alice", alice_got), ("bob", bob_got)] {
        assert!(
            got * 10 >= encoded * 8 && got <= encoded + 3,
            "{name} decoded {got} of {encoded} encoded frames"
        );
    }
    let stats = device.hub_stats();
    assert_eq!(stats.pipeline_starts, 1, "one pipeline serves both");
    assert_eq!(device.viewers(), 2);

    // Both received the very same pictures: their capture times overlap almost entirely.
    let times = |v: &TestViewer| -> HashSet<u64> {
        v.snapshot(|s| s.frames.iter().skip(30).map(|f| f.capture_ms).collect())
    };
    let (a, b) = (times(&alice), times(&bob));
    let shared = a.intersection(&b).count();
    assert!(
        shared * 10 >= a.len().min(b.len()) * 8,
        "only {shared} shared capture times ({} and {})",
        a.len(),
        b.len()
    );

    assert_live_frames(&alice, 640, 480);
    assert_live_frames(&bob, 640, 480);
    assert_eq!(alice.snapshot(|s| s.decode_errors), 0);

    alice.close().await;
    bob.close().await;
    device.shutdown().await;
}

/// Viewers that send only receiver reports (no transport-cc, no REMB: campeer estimates their
/// links from loss alone), two at once for 20 s: each gets the whole stream, at least 28
/// frames a second from 5 s after its first frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_with_receiver_reports_only_get_the_whole_stream() {
    let _load = common::load::whole_machine();
    let broker = Broker::start();
    let device = start_device(overrides(&broker, "cam1")).await;
    let viewers = [
        TestViewer::join(&broker, "cam1", "rr1").await,
        TestViewer::join(&broker, "cam1", "rr2").await,
    ];
    for viewer in &viewers {
        assert!(
            viewer
                .wait_for_more_frames(1, Duration::from_secs(20))
                .await
        );
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before: Vec<usize> = viewers.iter().map(|v| v.frames()).collect();
    let window = Duration::from_secs(15);
    tokio::time::sleep(window).await;
    let rates: Vec<f64> = viewers
        .iter()
        .zip(before)
        .map(|(v, before)| (v.frames() - before) as f64 / window.as_secs_f64())
        .collect();
    eprintln!("two receiver-report viewers: frames a second {rates:?}");
    for (n, rate) in rates.iter().enumerate() {
        assert!(*rate >= 28.0, "viewer {n} got {rate:.1} frames a second");
    }
    for viewer in viewers {
        viewer.close().await;
    }
    device.shutdown().await;
}
