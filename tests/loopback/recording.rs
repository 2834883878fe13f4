//! Recording from the one encode, played back by ffmpeg: continuous segments on a small
//! tmpfs (every file decodes, its streams last as long as the test pattern's timestamps say,
//! sound included, nothing lost between files; rotation deletes the oldest first when the
//! free-space floor is reached); the recordings API lists them newest first and serves them
//! with ranges, and no path a client sends reaches another file. A campeer killed with
//! SIGKILL mid-segment leaves a file that plays to within a second of the kill.

use campeer::config::{FileConfig, Overrides};
use common::recordings::{Tmpfs, decode_all, files_in, first_and_last_capture, probe};
use common::whep::http;
use common::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const DEVICE: &str = "cam-rec";
const SEGMENT_SECS: u64 = 10;
const TOKEN: &str = "s3cret";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continuous_segments_play_rotate_oldest_first_and_are_served_safely() {
    let _load = common::load::shared();
    if !common::rtsp::available() {
        return;
    }
    // 16 MiB, 13 MB of which another program's: room for about three segments above the
    // 2 MB floor.
    let disk = Tmpfs::mount(16);
    std::fs::write(disk.path().join("someone-elses.bin"), vec![7u8; 13_000_000]).unwrap();
    let file = FileConfig::parse(&format!(
        "[record]\nmode = \"continuous\"\npath = {:?}\nsegment_secs = {SEGMENT_SECS}\n\
         keep_free_mb = 2\n",
        disk.path().display().to_string()
    ))
    .unwrap();
    let broker = Broker::start();
    let device = start_device_with(
        file,
        Overrides {
            audio_source: Some("test".into()),
            whep_token: Some(TOKEN.into()),
            ..overrides(&broker, DEVICE)
        },
    )
    .await;
    let dir = disk.path().join(DEVICE);
    // Every file seen, to tell which rotation deleted.
    let mut seen = BTreeSet::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3 * SEGMENT_SECS + 4) {
        seen.extend(files_in(&dir));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = TopicWatcher::start(&broker, &status_topic(DEVICE)).await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["record"]["state"]
                == "recording"
                && s["record"]["mode"] == "continuous")
            .await,
        "the status does not say it records: {:?}",
        status.last()
    );
    let port = device.http_addr().port();
    let api = format!("/recordings/{DEVICE}");
    let bearer = [("Authorization", "Bearer s3cret")];
    assert_eq!(http(port, "GET", &api, &[], "").await.status, 401);
    let listing = http(port, "GET", &api, &bearer, "").await;
    assert_eq!(listing.status, 200, "{}", listing.body);
    device.shutdown().await;

    let kept = files_in(&dir);
    let deleted: Vec<_> = seen.iter().filter(|f| !kept.contains(f)).collect();
    assert!(
        !deleted.is_empty(),
        "nothing was deleted with the disk at its floor: {seen:?}"
    );
    assert!(
        seen.iter().take(deleted.len()).eq(deleted.iter().copied()),
        "rotation did not delete the oldest first: deleted {deleted:?} of {seen:?}"
    );
    assert!(kept.len() >= 2, "{kept:?}");
    assert!(disk.path().join("someone-elses.bin").exists());

    // Every kept file plays; the whole ones last a segment, sound included; one file takes
    // over where the last left off.
    let mut previous_last: Option<u64> = None;
    for (i, path) in kept.iter().enumerate() {
        decode_all(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let probe = probe(path).unwrap();
        let video = probe.duration_of("h264").expect("a video stream");
        let audio = probe.duration_of("opus").expect("a sound stream");
        assert!(probe.times_increase(), "{}: times go back", path.display());
        assert!(
            probe.video_packets.first().is_some_and(|(_, key)| *key),
            "{} does not start on a keyframe",
            path.display()
        );
        assert!(
            (video - audio).abs() < 0.3,
            "video {video} s, sound {audio} s"
        );
        let whole = i + 1 < kept.len();
        if whole {
            assert!(
                (video - SEGMENT_SECS as f64).abs() < 0.6,
                "{}: {video} s in a segment of {SEGMENT_SECS} s",
                path.display()
            );
        }
        let (first, last) = first_and_last_capture(path, 640, 480).expect("timestamps read");
        let spanned = (last - first) as f64 / 1000.0;
        assert!(
            (spanned + 1.0 / 30.0 - video).abs() < 0.15,
            "{}: pictures span {spanned} s, the stream says {video} s",
            path.display()
        );
        if let Some(previous) = previous_last {
            assert!(
                first.saturating_sub(previous) < 100,
                "{} ms of pictures missing between two files",
                first.saturating_sub(previous)
            );
        }
        previous_last = Some(last);
    }

    // The listing named what was on disk then, newest first.
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listing.body).unwrap();
    assert!(listed.len() >= 2);
    let starts: Vec<&str> = listed.iter().filter_map(|r| r["start"].as_str()).collect();
    assert!(starts.windows(2).all(|w| w[0] > w[1]), "{starts:?}");
    assert!(listed.iter().all(|r| r["trigger"] == "continuous"));
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recordings_are_served_with_ranges_and_nothing_else_is() {
    let _load = common::load::shared();
    let root = tempfile::tempdir().unwrap();
    let file = FileConfig::parse(&format!(
        "[record]\nmode = \"continuous\"\npath = {:?}\nsegment_secs = {SEGMENT_SECS}\n\
         keep_free_mb = 1\n",
        root.path().display().to_string()
    ))
    .unwrap();
    let broker = Broker::start();
    let device = start_device_with(file, overrides(&broker, DEVICE)).await;
    let dir = root.path().join(DEVICE);
    assert!(
        wait_for(Duration::from_secs(15), || files_in(&dir)
            .first()
            .is_some_and(|f| f.metadata().is_ok_and(|m| m.len() > 100_000)))
        .await,
        "nothing recorded"
    );
    // A secret beside the recordings, and links that look like recordings.
    std::fs::write(root.path().join("secret.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink(
        "/etc/passwd",
        dir.join("2026-01-01T00-00-00.000Z-motion.mp4"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        root.path().join("secret.txt"),
        dir.join("2026-01-01T00-00-01.000Z-continuous.mp4"),
    )
    .unwrap();
    let port = device.http_addr().port();
    // Each recording gets a thumbnail of its first moments.
    assert!(
        wait_for(Duration::from_secs(5), || files_in(&dir)
            .iter()
            .any(|f| f.with_extension("jpg").exists()))
        .await,
        "no thumbnail beside the recording"
    );
    let listing = http(port, "GET", &format!("/recordings/{DEVICE}"), &[], "").await;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listing.body).unwrap();
    assert_eq!(listed.len(), 1, "links are not recordings: {listed:?}");
    let url = listed[0]["url"].as_str().unwrap().to_owned();
    let thumbnail = listed[0]["thumbnail"].as_str().expect("a thumbnail listed");
    let picture = http(port, "GET", thumbnail, &[], "").await;
    assert_eq!(picture.status, 200);
    assert_eq!(picture.header("content-type"), Some("image/jpeg"));
    assert_eq!(common::scene::jpeg_size(&picture.bytes), Some((320, 240)));
    let name = url.rsplit('/').next().unwrap();
    let on_disk = std::fs::read(dir.join(name)).unwrap();
    let part = http(port, "GET", &url, &[("Range", "bytes=0-1023")], "").await;
    assert_eq!(part.status, 206);
    // The file grows while it is recorded: its length is whatever it was then.
    assert!(
        part.header("content-range")
            .is_some_and(|range| range.starts_with("bytes 0-1023/")),
        "{:?}",
        part.header("content-range")
    );
    assert!(
        part.bytes == on_disk[..1024],
        "the range is not the file's start"
    );
    assert_eq!(&part.bytes[4..8], b"ftyp");
    let tail = http(port, "GET", &url, &[("Range", "bytes=-100")], "").await;
    assert_eq!(tail.status, 206);
    assert_eq!(tail.bytes.len(), 100);
    let beyond = http(port, "GET", &url, &[("Range", "bytes=999999999-")], "").await;
    assert_eq!(beyond.status, 416);

    for path in [
        format!("/recordings/{DEVICE}/../../etc/passwd"),
        format!("/recordings/{DEVICE}/..%2F..%2Fetc%2Fpasswd"),
        format!("/recordings/{DEVICE}/%2e%2e/secret.txt"),
        format!("/recordings/{DEVICE}//etc/passwd"),
        format!("/recordings/{DEVICE}/../secret.txt"),
        "/recordings/../secret.txt".to_owned(),
        format!("/recordings/{DEVICE}/2026-01-01T00-00-00.000Z-motion.mp4"),
        format!("/recordings/{DEVICE}/2026-01-01T00-00-01.000Z-continuous.mp4"),
        "/recordings/nobody".to_owned(),
    ] {
        let reply = http(port, "GET", &path, &[], "").await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert!(!reply.body.contains("root:") && !reply.body.contains("secret"));
    }
    device.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_campeer_leaves_a_file_that_plays_to_within_a_second() {
    let _load = common::load::shared();
    if !common::rtsp::available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let (mut args, _) = zero_config_args("cam-kill");
    args.extend(
        [
            "--record",
            "continuous",
            "--record-path",
            &root.path().display().to_string(),
            "--record-segment-secs",
            "60",
            "--record-keep-free-mb",
            "1",
        ]
        .map(str::to_owned),
    );
    let mut campeer = DaemonProcess::spawn(&args);
    let dir = root.path().join("cam-kill");
    assert!(
        wait_for(Duration::from_secs(20), || !files_in(&dir).is_empty()).await,
        "nothing recorded"
    );
    // Mid-segment, and mid-fragment: 7.3 s into a 60 s file.
    tokio::time::sleep(Duration::from_millis(7300)).await;
    let killed_at = unix_ms_now();
    campeer.signal("KILL");
    assert!(campeer.wait(Duration::from_secs(5)).is_some());
    let files = files_in(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let path = &files[0];
    decode_all(path).unwrap_or_else(|e| panic!("the partial file does not play: {e}"));
    let probe = probe(path).unwrap();
    let duration = probe.duration_of("h264").expect("video");
    let (first, last) = first_and_last_capture(path, 640, 480).expect("timestamps read");
    let lost_ms = killed_at.saturating_sub(last);
    eprintln!(
        "killed {:.1} s into the file: {duration:.2} s of it play, the last picture captured \
         {lost_ms} ms before the kill",
        (killed_at - first) as f64 / 1000.0
    );
    assert!(duration > 5.0, "only {duration} s kept");
    assert!(
        lost_ms <= 1000,
        "{lost_ms} ms of pictures before the kill are not in the file"
    );
}
