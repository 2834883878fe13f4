//! With the test tone as its audio source, campeer sends one Opus stream to every viewer that
//! asks for audio: the viewers decode a 440 Hz tone, in real time, in the same media stream as
//! the video; a viewer that offers video only gets video only; one audio encoder serves all;
//! the status topic describes the audio.

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_tone_reaches_every_viewer_that_asks_for_audio() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let device = start_audio_device(&broker, "cam1", "test").await;

    assert!(
        status
            .wait_for_last(Duration::from_secs(10), |s| s["audio"]["codec"] == "opus")
            .await,
        "the status describes the audio: {:?}",
        status.last()
    );
    let described = status.last().expect("a status");
    assert_eq!(described["audio"]["sample_rate"], 48_000);
    assert_eq!(described["audio"]["channels"], 1);

    let alice = TestViewer::join_with(&broker, "cam1", "alice", ViewerOptions::with_audio()).await;
    let bob = TestViewer::join(&broker, "cam1", "bob").await;
    let carol = TestViewer::join_with(&broker, "cam1", "carol", ViewerOptions::with_audio()).await;
    for viewer in [&alice, &bob, &carol] {
        assert!(
            viewer
                .wait_for_more_frames(20, Duration::from_secs(20))
                .await,
            "{} decoded no video",
            viewer.session
        );
    }
    for viewer in [&alice, &carol] {
        assert!(
            wait_for(Duration::from_secs(10), || viewer
                .snapshot(|s| s.audio_samples.len() >= 48_000))
            .await,
            "{} decoded no second of audio: {:?}",
            viewer.session,
            viewer.snapshot(|s| (s.audio_packets, s.audio_decode_errors))
        );
        assert_tone(viewer, 440.0);
        viewer.snapshot(|s| {
            assert_eq!(s.audio_decode_errors, 0);
            assert_eq!(
                s.audio_payload_types,
                vec![111],
                "the offered Opus payload type"
            );
            // 20 ms packets: the RTP clock advances 960 ticks each.
            let steps: Vec<u32> = s
                .audio_rtp_timestamps
                .windows(2)
                .map(|w| w[1].wrapping_sub(w[0]))
                .collect();
            assert!(steps.iter().all(|&d| d == 960), "RTP steps {steps:?}");
            // Audio and video arrive in one media stream, so the browser keeps them in sync.
            let streams: Vec<&String> = s.stream_ids.iter().map(|(_, id)| id).collect();
            assert_eq!(streams.len(), 2, "{:?}", s.stream_ids);
            assert_eq!(streams[0], streams[1]);
        });
    }
    assert_eq!(
        bob.snapshot(|s| s.audio_packets),
        0,
        "a video-only viewer gets no audio"
    );

    // Real time: over three seconds each listener gets about 150 packets, not a flood.
    let before = alice.snapshot(|s| s.audio_packets);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = alice.snapshot(|s| s.audio_packets) - before;
    assert!((120..=180).contains(&got), "{got} packets in 3 s");

    let audio = device.audio_stats().expect("the device has audio");
    assert_eq!(
        audio.pipeline_starts, 1,
        "one audio pipeline for every listener"
    );
    assert_eq!(audio.subscribers, 2, "alice and carol listen; bob does not");
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["audio"]["state"] == "live")
            .await
    );

    alice.close().await;
    bob.close().await;
    carol.close().await;
    device.shutdown().await;
}
