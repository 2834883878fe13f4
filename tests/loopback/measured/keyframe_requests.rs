//! PLI from a viewer forces an IDR, and a flood of them is rate-limited; NACKs for packets
//! campeer no longer holds bring one too. With periodic keyframes a minute apart, every
//! keyframe seen here was requested.

use campeer::config::Overrides;
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pli_forces_keyframes_but_a_flood_is_limited() {
    let _load = common::load::whole_machine();
    let broker = Broker::start();
    let device = start_device(Overrides {
        keyframe_interval: Some(60.0),
        keyframe_min_interval_ms: Some(500),
        ..overrides(&broker, "cam1")
    })
    .await;
    let viewer = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(30, Duration::from_secs(20))
            .await
    );
    // Let the joining keyframes settle and the rate limiter refill.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let before = device.hub_stats().keyframes_encoded;
    viewer.send_pli().await;
    assert!(
        a_keyframe_follows(&device, before).await,
        "a PLI did not produce a keyframe"
    );

    // A flood: a PLI every 10 ms for 2 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = device.hub_stats().keyframes_encoded;
    let start = Instant::now();
    for _ in 0..200 {
        viewer.send_pli().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let forced = device.hub_stats().keyframes_encoded - before;
    // A burst of two, then one per 500 ms.
    let ceiling = 2 + (elapsed / 0.5).ceil() as u64 + 1;
    assert!(forced >= 3, "only {forced} keyframes for a flood of PLIs");
    assert!(
        forced <= ceiling,
        "{forced} keyframes in {elapsed:.1} s: not rate-limited"
    );
    // The stream went on decoding throughout.
    assert!(
        viewer
            .wait_for_more_frames(15, Duration::from_secs(5))
            .await
    );
    assert_eq!(viewer.snapshot(|s| s.decode_errors), 0);

    // Loss beyond repair: NACKs for packets campeer no longer holds (far from any sent in the
    // last second) are refused, and past a few refusals campeer asks for a keyframe itself.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = device.hub_stats().keyframes_encoded;
    viewer.send_nack(&[12_345, 45_678]).await;
    assert!(
        a_keyframe_follows(&device, before).await,
        "NACKs campeer could not answer did not bring a keyframe"
    );

    viewer.close().await;
    device.shutdown().await;
}

/// Whether the device encodes a keyframe beyond the `before` it had counted, within 2 s.
async fn a_keyframe_follows(device: &campeer::device::DeviceHandle, before: u64) -> bool {
    wait_for(Duration::from_secs(2), || {
        device.hub_stats().keyframes_encoded > before
    })
    .await
}
