//! A microphone captured through ALSA: campeer opens a capture PCM by name (here alsa-lib's
//! `file` plugin feeding a 1 kHz tone, no sound card needed), encodes Opus, and the viewer
//! decodes a 1 kHz tone arriving in real time even though the device itself is not paced.

use common::alsamic::{self, TONE_MIC};
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_1khz_tone_from_an_alsa_device_reaches_the_viewer() {
    let _load = common::load::shared();
    alsamic::process_microphones();

    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let device = start_audio_device(&broker, "cam1", TONE_MIC).await;

    let viewer = TestViewer::join_with(&broker, "cam1", "alice", ViewerOptions::with_audio()).await;
    assert!(
        viewer
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );
    assert!(
        wait_for(Duration::from_secs(10), || viewer
            .snapshot(|s| s.audio_samples.len() >= 48_000))
        .await,
        "no second of audio decoded: {:?}",
        viewer.snapshot(|s| (s.audio_packets, s.audio_decode_errors))
    );
    assert_tone(&viewer, 1000.0);
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["audio"]["state"] == "live")
            .await,
        "{:?}",
        status.last()
    );

    // The file plugin delivers as fast as it is read; campeer holds it to real time.
    let before = viewer.snapshot(|s| s.audio_packets);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = viewer.snapshot(|s| s.audio_packets) - before;
    assert!((120..=180).contains(&got), "{got} packets in 3 s");
    let stats = device.audio_stats().expect("audio");
    assert!(stats.packets >= 150);

    viewer.close().await;
    device.shutdown().await;
}
