//! A microphone that is missing does not take video down: viewers get video, the status topic
//! says audio failed and why, campeer keeps retrying, and when the microphone appears its
//! sound reaches the viewer in the same session.

use common::alsamic::{self, LATE_MIC, LATE_MIC_FILE};
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn video_carries_on_and_audio_arrives_when_the_microphone_does() {
    let _load = common::load::shared();
    // The PCM is configured but its input file does not exist yet: opening it fails.
    let mics = alsamic::process_microphones();

    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let device = start_audio_device(&broker, "cam1", LATE_MIC).await;

    let viewer = TestViewer::join_with(&broker, "cam1", "alice", ViewerOptions::with_audio()).await;
    assert!(
        viewer
            .wait_for_more_frames(30, Duration::from_secs(20))
            .await,
        "video must not depend on the microphone"
    );
    assert!(
        status
            .wait_for_last(Duration::from_secs(10), |s| s["audio"]["state"] == "failed")
            .await,
        "{:?}",
        status.last()
    );
    let failed = status.last().expect("a status");
    let reason = failed["audio"]["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains(LATE_MIC),
        "the error names the device: {reason:?}"
    );
    assert_eq!(failed["video"]["state"], "live");
    assert_eq!(viewer.snapshot(|s| s.audio_packets), 0);

    // The microphone appears; the retry (at most 10 s apart) picks it up.
    mics.write_tone(LATE_MIC_FILE, 1000.0, 60);
    assert!(
        wait_for(Duration::from_secs(25), || viewer
            .snapshot(|s| s.audio_samples.len() >= 48_000))
        .await,
        "audio never arrived: {:?}",
        status.last()
    );
    assert_tone(&viewer, 1000.0);
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["audio"]["state"] == "live")
            .await
    );
    assert!(
        viewer
            .wait_for_more_frames(30, Duration::from_secs(10))
            .await
    );
    assert_eq!(
        viewer.snapshot(|s| s.hangups),
        0,
        "the same session throughout"
    );

    viewer.close().await;
    device.shutdown().await;
}
