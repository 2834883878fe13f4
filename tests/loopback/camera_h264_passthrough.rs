//! H.264 passthrough: a camera that encodes H.264 itself (the fake camera, with a keyframe only
//! every 10 s of its own) is streamed as it comes, with no encoding in campeer. Keyframe
//! requests go to the camera through its FORCE_KEY_FRAME control, so a viewer, and a viewer
//! who joins later, sees a picture at once rather than at the camera's next keyframe. A
//! snapshot of such a camera is its next keyframe (asked for at once) decoded.

use common::fakecam::{bars_camera, mount_or_skip};
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_h264_camera_is_passed_through_and_forced_to_keyframes() {
    let _load = common::load::shared();
    let Some(camera) = mount_or_skip(bars_camera(&[b"YUYV", b"H264"])) else {
        return;
    };
    let broker = Broker::start();
    let device = start_device(campeer::config::Overrides {
        source: Some(camera.path().display().to_string()),
        h264_passthrough: Some(true),
        // Keyframes only on request: the camera's own are 10 s apart.
        keyframe_interval: Some(0.0),
        ..overrides(&broker, "cam1")
    })
    .await;

    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        alice
            .wait_for_more_frames(20, Duration::from_secs(20))
            .await,
        "no video from the H.264 camera: {:?}",
        alice.snapshot(|s| (s.rtp_packets, s.decode_errors, s.connection_states.clone()))
    );
    assert_shows_the_bars(&alice, 640, 480);
    let stats = device.hub_stats();
    assert!(stats.frames_encoded >= 20);
    assert_eq!(
        stats.frames_passed_through, stats.frames_encoded,
        "every frame came from the camera's encoder, none from campeer's"
    );
    // The camera's own encoder follows the viewer's link like campeer's would: its V4L2
    // bitrate control gets the target set from the link's estimate (which starts below the
    // configured 1500 kbit/s).
    assert!(
        wait_for(Duration::from_secs(5), || {
            let target = device.hub_stats().target_bitrate_bps;
            camera.bitrate_set() == Some(target as i32) && target < 1_500_000
        })
        .await,
        "the camera was asked for {:?}, the link-driven target is {}",
        camera.bitrate_set(),
        device.hub_stats().target_bitrate_bps
    );

    // A late joiner: well within the camera's 10 s keyframe spacing, its request is served.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let forced_before = camera.keyframes_forced();
    let bob = TestViewer::join(&broker, "cam1", "bob").await;
    assert!(
        wait_for(Duration::from_secs(10), || bob
            .snapshot(|s| s.connected_at.is_some()))
        .await
    );
    let connected = bob.snapshot(|s| s.connected_at).expect("connected");
    assert!(bob.wait_for_more_frames(1, Duration::from_secs(8)).await);
    let first = bob.snapshot(|s| s.frames[0].decoded_at);
    let waited = first.saturating_duration_since(connected);
    assert!(
        waited < Duration::from_secs(3),
        "the late joiner waited {waited:?} for a picture: the camera was not asked"
    );
    assert!(camera.keyframes_forced() > forced_before);
    assert_eq!(bob.snapshot(|s| s.decode_errors), 0);

    // A snapshot: campeer has no raw picture of this camera, so it decodes a keyframe, which
    // it asks the camera for rather than wait up to 10 s.
    let forced_before = camera.keyframes_forced();
    let started = std::time::Instant::now();
    let port = device.http_addr().port();
    let reply = common::whep::http(port, "GET", "/snapshot/cam1.jpg?width=320", &[], "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(camera.keyframes_forced() > forced_before);
    assert_eq!(common::scene::jpeg_size(&reply.bytes), Some((320, 240)));
    let picture = common::scene::decode_jpeg(&reply.bytes).expect("the snapshot decodes");
    // The bars: bright on the left (white, yellow), dark on the right (blue, black).
    let row = &picture.y_plane()[120 * 320..121 * 320];
    assert!(row[10] > 150 && row[310] < 80, "{} / {}", row[10], row[310]);

    alice.close().await;
    bob.close().await;
    device.shutdown().await;
}
