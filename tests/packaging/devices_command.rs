//! `campeer devices` lists a camera's formats, sizes and frame rates, in a table and as JSON,
//! the way v4l2-ctl --list-formats-ext does. Run against the fake camera.

use common::fakecam::{bars_camera, mount_or_skip};
use std::process::Command;

#[test]
fn devices_lists_the_fake_camera() {
    let _load = common::load::shared();
    let Some(camera) = mount_or_skip(bars_camera(&[b"YUYV", b"MJPG"])) else {
        return;
    };
    let path = camera.path().display().to_string();
    let run = |json: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_campeer"));
        command.arg("devices");
        if json {
            command.arg("--json");
        }
        let out = command.arg(&path).output().expect("run campeer devices");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    };

    let table = run(false);
    for expected in [
        "campeer fake camera",
        "YUYV",
        "MJPG",
        "640x480 @ 30 fps",
        "320x240 @ 30 fps",
    ] {
        assert!(
            table.contains(expected),
            "missing {expected:?} in:\n{table}"
        );
    }

    let json: serde_json::Value = serde_json::from_str(&run(true)).expect("valid JSON");
    let cam = &json["cameras"][0];
    assert_eq!(cam["path"], path.as_str());
    assert_eq!(cam["driver"], "fakecam");
    assert_eq!(cam["capture"], true);
    let formats = cam["formats"].as_array().unwrap();
    assert_eq!(formats.len(), 2);
    assert_eq!(formats[0]["fourcc"], "YUYV");
    assert_eq!(formats[0]["supported"], true);
    assert_eq!(formats[0]["sizes"][0]["width"], 640);
    assert_eq!(formats[0]["sizes"][0]["fps"][0], 30.0);
}

#[test]
fn a_missing_device_is_reported_not_fatal() {
    let _load = common::load::shared();
    let out = Command::new(env!("CARGO_BIN_EXE_campeer"))
        .args(["devices", "/nonexistent/video9"])
        .output()
        .expect("run campeer devices");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/nonexistent/video9") && text.contains("cannot read it"),
        "{text}"
    );
}

#[test]
fn devices_lists_alsa_capture_devices() {
    let _load = common::load::shared();
    let mics = common::alsamic::FileMicrophones::new(&[common::alsamic::FileMic {
        name: "benchmic",
        file: "bench.raw",
    }]);
    let run = |json: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_campeer"));
        command
            .env("ALSA_CONFIG_PATH", mics.config_path())
            .args(["devices", "/nonexistent/video9"]);
        if json {
            command.arg("--json");
        }
        let out = command.output().expect("run campeer devices");
        assert!(out.status.success());
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let table = run(false);
    assert!(
        table.contains("ALSA capture devices") && table.contains("benchmic"),
        "{table}"
    );
    assert!(
        table.contains("campeer test microphone benchmic"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&run(true)).expect("valid JSON");
    assert_eq!(json["microphones"][0]["name"], "benchmic");
}
