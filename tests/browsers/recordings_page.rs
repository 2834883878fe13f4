//! The page's camera panel in headless Chromium, as a person uses it: with campeer recording
//! motion clips (the test pattern never stops moving: one clip after another, cut at the
//! segment length), the panel says so; the snapshot button shows the camera's picture; the
//! recordings view lists the clips with thumbnails, marked as motion, and plays a finished one
//! in the video element (seekable, with its controls); back to live plays live again.
//! Screenshots of each step are kept to look at.

use campeer::config::{FileConfig, Overrides};
use common::*;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_takes_snapshots_and_plays_recordings() {
    let _load = common::load::shared();
    let recordings = tempfile::tempdir().unwrap();
    let file = FileConfig::parse(&format!(
        "[motion]\nenabled = true\n[record]\nmode = \"motion\"\npath = {:?}\n\
         segment_secs = 10\nkeep_free_mb = 1\npre_roll_secs = 1\n",
        recordings.path().display().to_string()
    ))
    .unwrap();
    let device = start_device_with(
        file,
        Overrides {
            audio_source: Some("test".into()),
            ..zero_config_overrides("cam-page")
        },
    )
    .await;
    // The stats topic, which goes out while anyone watches, tells motion and recording too.
    let broker_port = device
        .embedded_broker()
        .expect("the embedded broker")
        .listen
        .port();
    let stats = TopicWatcher::start_on(broker_port, None, "campeer/cam-page/stats").await;
    // One finished segment and one being written.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let shots = screenshot_prefix("recordings-page");
    let url = format!("http://{}/", device.http_addr());
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("node")
            .arg(repo_root().join("tests/browsers/driver/recordings.mjs"))
            .args(["--url", &url, "--screenshot", &shots, "--seconds", "60"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the page script ends within its bound")
    .expect("run node (tests/run installs it)");
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    for line in &lines {
        eprintln!("page: {line}");
    }
    let step = |name: &str| {
        lines
            .iter()
            .find(|line| line["step"] == name && line.get("timedOut").is_none())
            .cloned()
            .unwrap_or_else(|| panic!("the page never got to {name}: {lines:?}"))
    };
    assert!(
        lines
            .iter()
            .all(|l| l.get("pageerror").is_none() && l.get("error").is_none()),
        "{lines:?}"
    );
    let live = step("live");
    let state = live["cameraState"].as_str().unwrap_or("");
    assert!(
        state.contains("Recording: recording (motion)") && state.contains("MB free"),
        "{state}"
    );
    assert!(state.contains("otion"), "{state}");
    assert_eq!(step("snapshot")["camera"]["snapshotWidth"], 640);
    let list = step("list");
    assert!(
        list["recordings"].as_array().is_some_and(|r| r.len() >= 2),
        "{list}"
    );
    assert!(list["thumbnails"].as_u64().unwrap_or(0) >= 1, "{list}");
    assert!(list["motionBadges"].as_u64().unwrap_or(0) >= 2, "{list}");
    let playing = step("playing");
    assert!(
        playing["video"]["src"]
            .as_str()
            .is_some_and(|src| src.contains("/recordings/cam-page/") && src.ends_with(".mp4"))
    );
    assert_eq!(playing["video"]["width"], 640);
    assert_eq!(playing["video"]["controls"], true);
    assert_eq!(step("back")["live"], "playing");
    assert!(
        stats.count(|m| m["motion"]["state"].is_string() && m["record"]["mode"] == "motion") > 0,
        "the stats do not tell motion and recording: {:?}",
        stats.last()
    );
    for name in ["snapshot", "list", "playing"] {
        assert!(std::path::Path::new(&format!("{shots}-{name}.png")).exists());
    }
    device.shutdown().await;
}
