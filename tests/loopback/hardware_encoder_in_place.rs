//! When the hardware encoder lays a picture out as campeer does (640x480: no row or height
//! padding), the camera's frames are converted straight into the encoder's own mapped input
//! buffers, and nothing is copied between capture and encoder. The viewer sees the camera's
//! picture; when the encoder fails, openh264 takes over from frames in campeer's own memory.

use campeer::config::Overrides;
use campeer::media::encoding::EncoderKind;
use common::fakecam::{CameraSpec, bars_frame, mount_or_skip};
use common::fakem2m::FakeEncoder;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn camera_frames_are_made_in_the_encoders_buffers() {
    let _load = common::load::shared();
    let Some(camera) = mount_or_skip(CameraSpec {
        formats: vec![(*b"YUYV", vec![(640, 480)])],
        fps: 30,
        make_frame: Box::new(bars_frame),
    }) else {
        return;
    };
    let Some(encoder) = FakeEncoder::mount_or_skip() else {
        return;
    };
    let broker = Broker::start();
    let device = start_device(Overrides {
        source: Some(camera.path().display().to_string()),
        encoder: Some(format!("v4l2m2m:{}", encoder.path().display())),
        width: Some(640),
        height: Some(480),
        ..overrides(&broker, "cam1")
    })
    .await;
    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        alice
            .wait_for_more_frames(90, Duration::from_secs(30))
            .await,
        "no video through the hardware encoder"
    );
    assert_shows_the_bars(&alice, 640, 480);
    let stats = device.hub_stats();
    eprintln!(
        "pictures in place {}, copied {}",
        stats.pictures_in_place, stats.pictures_copied
    );
    assert_eq!(stats.encoder, EncoderKind::V4l2M2m);
    assert!(stats.pictures_in_place >= 60, "{stats:?}");
    // The first picture comes before the encoder exists; later ones are copied only when
    // every buffer is busy, which a steady stream should not see.
    assert!(
        stats.pictures_copied * 20 <= stats.pictures_in_place,
        "{stats:?}"
    );
    assert!(encoder.frames_encoded() >= 60);

    // The encoder fails with frames made in its buffers: openh264 takes over, the source
    // makes frames in memory of its own again, and alice keeps watching the same picture.
    encoder.set_failing(true);
    assert!(
        alice
            .wait_for_more_frames(60, Duration::from_secs(10))
            .await,
        "video stopped when the hardware encoder failed"
    );
    assert_shows_the_bars(&alice, 640, 480);
    let stats = device.hub_stats();
    assert_eq!(stats.encoder, EncoderKind::OpenH264);
    assert_eq!(stats.encoder_fallbacks, 1);
    alice.close().await;
    device.shutdown().await;
}
