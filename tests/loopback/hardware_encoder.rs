//! The hardware H.264 path end to end, through a fake bcm2835-codec (a FUSE V4L2 M2M encoder
//! that encodes with openh264 inside): camera frames in, H.264 out to a viewer who decodes the
//! colour bars at a size the encoder pads (424x236 in buffers of 448x240, cropped back);
//! keyframe requests (a new viewer, a PLI) reach the encoder's FORCE_KEY_FRAME control; the
//! bitrate is set through its control; when the encoder fails mid-stream campeer falls back
//! to openh264 and the viewer keeps watching, and the status says which encoder runs.

use campeer::config::Overrides;
use campeer::media::encoding::EncoderKind;
use common::fakecam::{CameraSpec, bars_frame, mount_or_skip};
use common::fakem2m::FakeEncoder;
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hardware_encoder_streams_takes_requests_and_falls_back_to_openh264() {
    let _load = common::load::shared();
    let Some(camera) = mount_or_skip(CameraSpec {
        formats: vec![(*b"YUYV", vec![(424, 236)])],
        fps: 30,
        make_frame: Box::new(bars_frame),
    }) else {
        return;
    };
    let Some(encoder) = FakeEncoder::mount_or_skip() else {
        return;
    };
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam1")).await;
    let device = start_device(Overrides {
        source: Some(camera.path().display().to_string()),
        encoder: Some(format!("v4l2m2m:{}", encoder.path().display())),
        width: Some(424),
        height: Some(236),
        ..overrides(&broker, "cam1")
    })
    .await;
    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(
        alice
            .wait_for_more_frames(60, Duration::from_secs(30))
            .await,
        "no video through the hardware encoder: {:?}",
        status.last()
    );
    assert_shows_the_bars(&alice, 424, 236);
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["video"]["encoder"]
                == "v4l2m2m")
            .await,
        "{:?}",
        status.last()
    );
    assert_eq!(device.hub_stats().encoder, EncoderKind::V4l2M2m);
    assert!(encoder.frames_encoded() >= 60);
    assert_eq!(
        encoder.picture_sizes(),
        [(424, 236)],
        "the padded buffer was not cropped to the picture"
    );
    assert!(
        encoder.repeats_headers(),
        "SPS/PPS not asked for with every IDR"
    );
    assert_eq!(encoder.bitrates().first(), Some(&1_500_000));

    // A new viewer's keyframe request reaches the encoder, and the viewer sees a picture at
    // once rather than at the encoder's own keyframe a minute later.
    let forced = encoder.keyframes_forced();
    let joined = Instant::now();
    let bob = TestViewer::join(&broker, "cam1", "bob").await;
    assert!(
        bob.wait_for_more_frames(1, Duration::from_secs(5)).await,
        "bob saw nothing"
    );
    eprintln!("bob's first picture after {:?}", joined.elapsed());
    assert!(
        encoder.keyframes_forced() > forced,
        "no keyframe forced for bob"
    );
    let forced = encoder.keyframes_forced();
    alice.send_pli().await;
    assert!(
        wait_for(Duration::from_secs(3), || encoder.keyframes_forced()
            > forced)
        .await,
        "a PLI did not reach the encoder"
    );
    bob.close().await;

    // Rows padded to 448 bytes: every picture is copied into the encoder's buffers.
    let stats = device.hub_stats();
    assert_eq!(stats.pictures_in_place, 0, "{stats:?}");
    assert!(stats.pictures_copied >= 60, "{stats:?}");

    // The encoder fails: openh264 takes over, alice keeps watching the same picture.
    encoder.set_failing(true);
    let before = alice.frames();
    assert!(
        alice
            .wait_for_more_frames(30, Duration::from_secs(10))
            .await,
        "video stopped when the hardware encoder failed ({before} frames before)"
    );
    assert_shows_the_bars(&alice, 424, 236);
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["video"]["encoder"]
                == "openh264"
                && s["video"]["state"] == "live")
            .await,
        "the status does not say openh264 took over: {:?}",
        status.last()
    );
    let stats = device.hub_stats();
    assert_eq!(stats.encoder, EncoderKind::OpenH264);
    assert_eq!(stats.encoder_fallbacks, 1);
    alice.close().await;
    device.shutdown().await;
}
