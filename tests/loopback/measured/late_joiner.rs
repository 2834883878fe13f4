//! A viewer joining a running stream sees a decodable picture at once: its connection gets an
//! on-demand keyframe instead of waiting for the periodic one (here a minute away).

use campeer::config::Overrides;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_joiner_gets_a_picture_within_a_second() {
    let _load = common::load::whole_machine();
    let broker = Broker::start();
    let device = start_device(Overrides {
        keyframe_interval: Some(60.0),
        ..overrides(&broker, "cam1")
    })
    .await;

    let early = TestViewer::join(&broker, "cam1", "early").await;
    assert!(
        early
            .wait_for_more_frames(45, Duration::from_secs(20))
            .await
    );
    let keyframes_before = device.hub_stats().keyframes_encoded;

    let late = TestViewer::join(&broker, "cam1", "late").await;
    assert!(late.wait_for_more_frames(1, Duration::from_secs(20)).await);
    let (connected_at, first_frame_at) = late.snapshot(|s| {
        (
            s.connected_at.expect("connected before decoding"),
            s.frames[0].decoded_at,
        )
    });
    let wait = first_frame_at.saturating_duration_since(connected_at);
    assert!(
        wait < Duration::from_secs(1),
        "the late viewer waited {wait:?} after connecting for its first picture"
    );
    assert!(
        device.hub_stats().keyframes_encoded > keyframes_before,
        "the late viewer's picture must come from an on-demand keyframe"
    );
    assert_live_frames(&late, 640, 480);
    // The early viewer was not disturbed.
    assert!(early.wait_for_more_frames(15, Duration::from_secs(5)).await);
    assert_eq!(early.snapshot(|s| s.decode_errors), 0);

    early.close().await;
    late.close().await;
    device.shutdown().await;
}
