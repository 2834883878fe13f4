//! GStreamer's webrtcbin (Debian's gstreamer1.0-plugins-bad with libnice), a WebRTC stack and
//! SDP parser of its own, applies every kind of answer campeer makes and plays it: video
//! alone (H.264), video with sound, sound declined on a silent device, and VP8.

use common::network::require_lab;
use common::stacks::{SOUND_DECLINED, VIDEO_AND_SOUND, VIDEO_ONLY, VP8_ONLY, check_every_answer};
use std::path::Path;

const VIEWER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gstreamer/viewer.py");

/// Debian's python3 with GStreamer's bindings, or `None` (skip) off CI when they are missing.
fn gstreamer_python() -> Option<&'static Path> {
    let python = Path::new("/usr/bin/python3");
    let found = std::process::Command::new(python)
        .args([
            "-c",
            "import gi; gi.require_version('GstWebRTC', '1.0'); import paho.mqtt",
        ])
        .status()
        .is_ok_and(|status| status.success());
    if found {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "GStreamer's webrtcbin or its Python bindings are missing (tests/run installs them)"
    );
    eprintln!("skipping: GStreamer's webrtcbin or its Python bindings are missing");
    None
}

#[test]
fn webrtcbin_applies_and_plays_every_answer() {
    let _load = common::load::shared();
    if !require_lab() {
        return;
    }
    let Some(python) = gstreamer_python() else {
        return;
    };
    let cases = [VIDEO_ONLY, VIDEO_AND_SOUND, SOUND_DECLINED, VP8_ONLY];
    let failures = check_every_answer(python, VIEWER, "webrtcbin", &cases);
    assert!(failures.is_empty(), "{failures:#?}");
}
