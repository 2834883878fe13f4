//! Motion detection and snapshots on a camera whose picture the test controls (the FUSE
//! camera showing `common::scene`): a noisy still, a brightness step and motion inside an
//! ignored rectangle raise nothing for 30 s; an object moving elsewhere gives "on" within 1 s
//! with a retained snapshot (a JPEG under 64 KiB), and "off" after the quiet time. Nobody
//! watches all along: motion detection keeps the camera open by itself. Snapshots over HTTP
//! decode at the size asked for, and the test pattern's timestamp squares in one read within
//! a second of the request.

use campeer::config::{FileConfig, Overrides};
use common::fakecam::mount_or_skip;
use common::scene::{Region, Scene, decode_jpeg, jpeg_size};
use common::whep::http;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const DEVICE: &str = "cam-motion";
const QUIET_SECS: u64 = 3;

/// The top left quarter is ignored: a road, say.
const IGNORED: Region = Region {
    x: 0.0,
    y: 0.0,
    width: 0.5,
    height: 0.5,
};
/// The object moves here when it should be seen: the bottom right quarter.
const WATCHED: Region = Region {
    x: 0.55,
    y: 0.55,
    width: 0.4,
    height: 0.4,
};

const PRE_ROLL_SECS: u64 = 3;
const POST_ROLL_SECS: u64 = 1;

/// Motion detection with the top left quarter ignored, and clips of the motion recorded
/// into `recordings`.
fn motion_config(recordings: &std::path::Path) -> FileConfig {
    FileConfig::parse(&format!(
        "[motion]\nenabled = true\nquiet_secs = {QUIET_SECS}\n\
         ignore = [{{ x = 0.0, y = 0.0, width = 0.5, height = 0.5 }}]\n\
         [record]\nmode = \"motion\"\npath = {:?}\npre_roll_secs = {PRE_ROLL_SECS}\n\
         post_roll_secs = {POST_ROLL_SECS}\nkeep_free_mb = 1\n",
        recordings.display().to_string()
    ))
    .expect("a valid motion section")
}

fn ons(watcher: &TopicWatcher) -> usize {
    watcher.count(|m| m["state"] == "on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn motion_is_seen_where_it_should_be_and_nowhere_else() {
    let _load = common::load::shared();
    let scene = Scene::new();
    let Some(camera) = mount_or_skip(scene.camera(320, 240)) else {
        return;
    };
    let recordings = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let motion = TopicWatcher::start(&broker, &format!("{PREFIX}/{DEVICE}/motion")).await;
    let snapshots = TopicWatcher::start(&broker, &format!("{PREFIX}/{DEVICE}/snapshot")).await;
    let device = start_device_with(
        motion_config(recordings.path()),
        Overrides {
            source: Some(camera.path().display().to_string()),
            width: Some(320),
            height: Some(240),
            ..overrides(&broker, DEVICE)
        },
    )
    .await;
    assert!(
        motion
            .wait_for_last(Duration::from_secs(15), |m| m["state"] == "off")
            .await,
        "no retained \"off\" on the motion topic at start: {:?}",
        motion.last()
    );

    // Thirty seconds of a still with noise, a brightness step at 10 s, and an object moving
    // only inside the ignored rectangle from 18 s to 26 s: none of it is motion.
    let still_from = Instant::now();
    let served_at_start = camera.frames_served();
    tokio::time::sleep(Duration::from_secs(10)).await;
    scene.set_brightness(40);
    tokio::time::sleep(Duration::from_secs(8)).await;
    scene.set_object(Some(IGNORED));
    tokio::time::sleep(Duration::from_secs(8)).await;
    scene.set_object(None);
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(still_from.elapsed())).await;
    assert_eq!(
        ons(&motion),
        0,
        "motion reported on noise, a brightness step or the ignored rectangle: {:?}",
        motion.messages.lock().unwrap()
    );
    let served = camera.frames_served() - served_at_start;
    assert!(
        served >= 600,
        "with nobody watching, motion detection kept the camera open for only {served} frames \
         in 30 s"
    );
    assert_eq!(device.viewers(), 0);

    // An object moving where it counts: "on" within a second, with a snapshot.
    let moved_at = Instant::now();
    scene.set_object(Some(WATCHED));
    assert!(
        wait_for(Duration::from_secs(5), || ons(&motion) > 0).await,
        "no motion reported for an object moving in the open"
    );
    let seen_after = moved_at.elapsed();
    eprintln!(
        "motion reported {} ms after it started",
        seen_after.as_millis()
    );
    assert!(
        seen_after < Duration::from_secs(1),
        "motion reported only after {seen_after:?}"
    );
    let on = motion.last().expect("the \"on\" message");
    let area = on["area"].as_f64().unwrap_or(0.0);
    assert!(area > 0.0 && area < 0.2, "area {area} for a 48x48 object");
    assert!(
        on["at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z') && at.contains('T')),
        "{on}"
    );
    assert!(
        wait_for(Duration::from_secs(3), || !snapshots
            .others
            .lock()
            .unwrap()
            .is_empty())
        .await,
        "no snapshot with the motion"
    );
    let (topic, jpeg) = snapshots.others.lock().unwrap()[0].clone();
    assert_eq!(topic, format!("{PREFIX}/{DEVICE}/snapshot"));
    assert!(
        jpeg.len() <= 64 * 1024,
        "a snapshot of {} bytes",
        jpeg.len()
    );
    assert_eq!(jpeg_size(&jpeg), Some((320, 240)));
    let picture = decode_jpeg(&jpeg).expect("the motion snapshot decodes");
    let dark = picture.y_plane().iter().filter(|&&luma| luma < 50).count();
    assert!(
        dark >= 48 * 48 / 2,
        "the object is not in the snapshot ({dark} dark pixels)"
    );

    // The object keeps moving for 3 s, then goes: "off" once the quiet time has passed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    scene.set_object(None);
    let gone_at = Instant::now();
    assert!(
        motion
            .wait_for_last(Duration::from_secs(QUIET_SECS + 5), |m| m["state"] == "off")
            .await,
        "motion never stopped: {:?}",
        motion.last()
    );
    let off_after = gone_at.elapsed();
    assert!(
        // Quiet is counted from the last picture that changed enough, which may come a
        // little before the object goes (passing over the checkerboard, it changes less).
        off_after >= Duration::from_secs(QUIET_SECS) - Duration::from_millis(600)
            && off_after < Duration::from_secs(QUIET_SECS) + Duration::from_millis(1500),
        "\"off\" {off_after:?} after the object went, with quiet_secs = {QUIET_SECS}"
    );
    assert_eq!(ons(&motion), 1, "one motion, one \"on\"");
    let clips_dir = recordings.path().join(DEVICE);
    let before_motion = common::recordings::files_in(&clips_dir);

    // The status tells it too, and the HTTP snapshot shows the camera as it is now.
    // The clip goes on for the post-roll, then the recording waits for the next motion.
    let status = TopicWatcher::start(&broker, &status_topic(DEVICE)).await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(POST_ROLL_SECS + 5), |s| {
                s["motion"]["events"] == 1
                    && s["motion"]["state"] == "off"
                    && s["record"]["state"] == "waiting"
            })
            .await,
        "the status does not tell the motion and the clip's end: {:?}",
        status.last()
    );
    let port = device.http_addr().port();
    let reply = http(
        port,
        "GET",
        &format!("/snapshot/{DEVICE}.jpg?width=160"),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("image/jpeg"));
    assert_eq!(jpeg_size(&reply.bytes), Some((160, 120)));
    assert!(decode_jpeg(&reply.bytes).is_some());
    device.shutdown().await;
    check_the_clip(&clips_dir, &motion, &before_motion);
}

/// One clip was recorded, of the one motion: it plays, starts on a keyframe at least the
/// pre-roll before the motion, and ends the post-roll after it.
fn check_the_clip(
    dir: &std::path::Path,
    motion: &TopicWatcher,
    while_moving: &[std::path::PathBuf],
) {
    if !common::rtsp::available() {
        return;
    }
    let clips = common::recordings::files_in(dir);
    assert_eq!(clips.len(), 1, "{clips:?}");
    assert_eq!(while_moving.len(), 1, "the clip was written as it was made");
    let clip = &clips[0];
    assert!(clip.to_string_lossy().ends_with("-motion.mp4"), "{clip:?}");
    common::recordings::decode_all(clip).unwrap_or_else(|e| panic!("the clip does not play: {e}"));
    let probe = common::recordings::probe(clip).unwrap();
    assert!(
        probe.video_packets.first().is_some_and(|(_, key)| *key),
        "the clip does not start on a keyframe"
    );
    let duration = probe.duration_of("h264").expect("video in the clip");
    let at = |state: &str| {
        motion
            .messages
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m["state"] == state)
            .and_then(|m| m["at"].as_str().map(str::to_owned))
            .and_then(|at| campeer::clock::parse_rfc3339(&at))
            .expect("a time")
    };
    let (on, off) = (at("on"), at("off"));
    // The clip ends at the first frame past off + post-roll; so it starts no later than
    // that end less its duration, a frame's worth of slack aside.
    let end = off as f64 / 1000.0 + POST_ROLL_SECS as f64 + 0.05;
    let pre_roll = on as f64 / 1000.0 - (end - duration);
    eprintln!("the clip lasts {duration:.2} s and starts {pre_roll:.2} s before the motion");
    assert!(
        pre_roll >= PRE_ROLL_SECS as f64,
        "the clip starts only {pre_roll:.2} s before the motion"
    );
    assert!(
        pre_roll <= PRE_ROLL_SECS as f64 + 2.1,
        "the clip starts {pre_roll:.2} s before the motion: more than a GOP past the pre-roll"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_over_http_are_fresh_guarded_and_refused_while_the_camera_is_down() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let device = start_device(Overrides {
        whep_token: Some("s3cret".into()),
        ..overrides(&broker, "cam-snap")
    })
    .await;
    let port = device.http_addr().port();
    let path = "/snapshot/cam-snap.jpg";
    let bearer = [("Authorization", "Bearer s3cret")];

    let refused = http(port, "GET", path, &[], "").await;
    assert_eq!(refused.status, 401);
    let unknown = http(port, "GET", "/snapshot/nobody.jpg", &bearer, "").await;
    assert_eq!(unknown.status, 404);
    let bad_width = http(port, "GET", &format!("{path}?width=wide"), &bearer, "").await;
    assert_eq!(bad_width.status, 400);

    // Nobody watches: the first snapshot opens the camera. Each one is of a picture captured
    // after the request (the test pattern's squares carry its capture time).
    for (width, size) in [(None, (640, 480)), (Some(320), (320, 240))] {
        let asked_at = unix_ms_now();
        let started = Instant::now();
        let query = width.map(|w| format!("?width={w}")).unwrap_or_default();
        let reply = http(port, "GET", &format!("{path}{query}"), &bearer, "").await;
        let took = started.elapsed();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(jpeg_size(&reply.bytes), Some(size));
        let picture = decode_jpeg(&reply.bytes).expect("the snapshot decodes");
        if width.is_none() {
            let captured = campeer::media::pattern::read_timestamp(&picture)
                .expect("the timestamp squares read from the snapshot");
            let age = asked_at.abs_diff(captured);
            eprintln!(
                "snapshot of {} bytes in {} ms, captured {age} ms from the request",
                reply.bytes.len(),
                took.as_millis()
            );
            assert!(
                captured + 50 >= asked_at && age < 1000,
                "the snapshot was captured {age} ms from the request ({captured} vs {asked_at})"
            );
        }
    }
    device.shutdown().await;

    // A camera that cannot be opened: 503 with Retry-After, and campeer goes on serving.
    let broken = start_device(Overrides {
        source: Some("/dev/campeer-no-such-camera".into()),
        ..overrides(&broker, "cam-broken")
    })
    .await;
    let port = broken.http_addr().port();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let reply = http(port, "GET", "/snapshot/cam-broken.jpg", &[], "").await;
        statuses.push((reply.status, reply.header("retry-after").map(str::to_owned)));
    }
    assert!(
        statuses
            .iter()
            .all(|(status, retry)| *status == 503 && retry.as_deref() == Some("2")),
        "{statuses:?}"
    );
    let page = http(port, "GET", "/config.json", &[], "").await;
    assert_eq!(page.status, 200);
    let _: Value = serde_json::from_str(&page.body).expect("the page's config still served");
    broken.shutdown().await;
}
