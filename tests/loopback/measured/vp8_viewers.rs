//! A viewer that cannot take H.264 (Firefox as Debian ships it offers VP8, VP9 and AV1) is
//! answered in VP8, beside an H.264 viewer: two VP8 viewers share one VP8 encoder, the H.264
//! viewer keeps its own, one camera feeds both. Every viewer decodes live pictures (the test
//! pattern's timestamp squares read in VP8 too, decoded by libvpx), the same picture looks the
//! same in both codecs, a VP8 viewer's keyframe request reaches the VP8 encoder, the status says
//! which codecs are sent, and the VP8 encoder stops when its viewers leave.

use common::*;
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vp8_viewers_share_one_vp8_encoder_beside_h264() {
    let _load = common::load::whole_machine();
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let device = start_device(campeer::config::Overrides {
        idle_grace: Some(1),
        ..overrides(&broker, "cam1")
    })
    .await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(10), |s| s["state"] == "online")
            .await
    );
    assert_eq!(
        status.last().unwrap()["video"]["codecs"],
        serde_json::json!(["H264", "VP8"]),
        "the status names every codec the device sends"
    );

    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    // What Firefox offers without OpenH264, in its order.
    let vp8_options = || ViewerOptions {
        h264_profiles: vec![],
        other_video: vec!["video/VP8", "video/VP9", "video/AV1"],
        ..Default::default()
    };
    let bob = TestViewer::join_with(&broker, "cam1", "bob", vp8_options()).await;
    let carol = TestViewer::join_with(&broker, "cam1", "carol", vp8_options()).await;
    for (name, viewer) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        assert!(
            viewer
                .wait_for_more_frames(30, Duration::from_secs(20))
                .await,
            "{name} decoded no video: {:?}",
            viewer.snapshot(|s| (
                s.rtp_packets,
                s.decode_errors,
                s.errors.clone(),
                s.connection_states.clone()
            ))
        );
    }
    assert_eq!(
        alice.snapshot(|s| s.video_codec.clone()).as_deref(),
        Some("video/H264")
    );
    for viewer in [&bob, &carol] {
        assert_eq!(
            viewer.snapshot(|s| s.video_codec.clone()).as_deref(),
            Some("video/VP8")
        );
        assert_eq!(viewer.snapshot(|s| s.payload_types.clone()), vec![96]);
    }

    // One VP8 encode per frame for both VP8 viewers, one H.264 encode per frame for alice: at
    // most the camera's 30 frames a second each (two encodes per frame would be twice that),
    // and still encoding (at least half of them, so that a busy machine is not a failure).
    let before = device.hub_stats();
    let (bob_before, carol_before) = (bob.frames(), carol.frames());
    let window_started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = device.hub_stats();
    let camera_frames = 30.0 * window_started.elapsed().as_secs_f64();
    let vp8_encoded = (after.vp8.frames_encoded - before.vp8.frames_encoded) as usize;
    let h264_encoded = (after.frames_encoded - before.frames_encoded) as usize;
    for (codec, encoded) in [("VP8", vp8_encoded), ("H.264", h264_encoded)] {
        let encoded_share = encoded as f64 / camera_frames;
        assert!(
            (0.5..=1.1).contains(&encoded_share),
            "{encoded} {codec} frames encoded while the camera made {camera_frames:.0}"
        );
    }
    for (name, got) in [
        ("bob", bob.frames() - bob_before),
        ("carol", carol.frames() - carol_before),
    ] {
        assert!(
            got * 10 >= vp8_encoded * 8 && got <= vp8_encoded + 3,
            "{name} decoded {got} of {vp8_encoded} VP8 frames"
        );
    }
    assert_eq!(
        after.pipeline_starts, 1,
        "one camera pipeline feeds both codecs"
    );
    assert_eq!(after.vp8.subscribers, 2);
    assert!(after.vp8.running);
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["video"]["sending"]
                == serde_json::json!(["H264", "VP8"]))
            .await,
        "the status says both codecs are sent: {:?}",
        status.last()
    );

    assert_live_frames(&alice, 640, 480);
    assert_live_frames(&bob, 640, 480);
    assert_live_frames(&carol, 640, 480);
    for viewer in [&alice, &bob, &carol] {
        assert_eq!(viewer.snapshot(|s| s.decode_errors), 0);
    }

    // The same picture in both codecs: frames with the same capture time look alike.
    let by_time = |v: &TestViewer| -> HashMap<u64, Vec<(u8, u8, u8)>> {
        v.snapshot(|s| {
            s.frames
                .iter()
                .skip(30)
                .map(|f| (f.capture_ms, f.grid.clone()))
                .collect()
        })
    };
    let (h264, vp8) = (by_time(&alice), by_time(&bob));
    let mut compared = 0;
    for (time, grid) in &vp8 {
        let Some(other) = h264.get(time) else {
            continue;
        };
        compared += 1;
        for (cell, (a, b)) in grid.iter().zip(other).enumerate() {
            let close = |x: u8, y: u8| x.abs_diff(y) <= 16;
            assert!(
                close(a.0, b.0) && close(a.1, b.1) && close(a.2, b.2),
                "cell {cell} of the picture captured at {time}: VP8 {a:?}, H.264 {b:?}"
            );
        }
    }
    assert!(
        compared >= 30,
        "only {compared} pictures seen in both codecs"
    );

    // A VP8 viewer's PLI reaches the VP8 encoder (not the H.264 one).
    let vp8_keyframes = device.hub_stats().vp8.keyframes_encoded;
    let h264_requests = device.hub_stats().keyframe_requests;
    bob.send_pli().await;
    assert!(
        wait_for(Duration::from_secs(5), || device
            .hub_stats()
            .vp8
            .keyframes_encoded
            > vp8_keyframes)
        .await,
        "no VP8 keyframe after a PLI"
    );
    assert_eq!(
        device.hub_stats().keyframe_requests,
        h264_requests,
        "a VP8 viewer's request went to the H.264 encoder"
    );

    // Both VP8 viewers leave: the VP8 encoder stops after the grace, H.264 goes on.
    bob.hangup().await;
    carol.hangup().await;
    bob.close().await;
    carol.close().await;
    assert!(
        wait_for(Duration::from_secs(10), || !device.hub_stats().vp8.running).await,
        "the VP8 encoder kept running without viewers: {:?}, {} viewers",
        device.hub_stats().vp8,
        device.viewers()
    );
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["video"]["sending"]
                == serde_json::json!(["H264"]))
            .await,
        "{:?}",
        status.last()
    );
    assert!(
        alice
            .wait_for_more_frames(30, Duration::from_secs(10))
            .await
    );

    alice.close().await;
    device.shutdown().await;
}
