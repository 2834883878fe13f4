//! GStreamer's webrtcbin (Debian's gstreamer1.0-plugins-bad with libnice), a WebRTC stack and
//! SDP parser of its own, applies every kind of answer campeer makes and plays it: video
//! alone (H.264), video with sound, sound declined on a silent device, and VP8.

mod common;

use common::aiortc::{refusals, run_viewer_over_lab};
use common::network::{Lab, LabCampeer, require_lab};
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

/// The rtpmap of the answer's first video payload type, e.g. "VP8/90000".
fn answered_video_codec(lines: &[serde_json::Value]) -> Option<String> {
    let sdp = lines.iter().find_map(|v| v["answer"].as_str())?;
    let mut sections = sdp.split("m=").skip(1);
    let video = sections.find(|s| s.starts_with("video"))?;
    let first_pt = video.lines().next()?.split_whitespace().nth(3)?;
    video.lines().find_map(|line| {
        let rest = line.strip_prefix(&format!("a=rtpmap:{first_pt} "))?;
        Some(rest.trim().to_owned())
    })
}

#[test]
fn webrtcbin_applies_and_plays_every_answer() {
    if !require_lab() {
        return;
    }
    let Some(python) = gstreamer_python() else {
        return;
    };
    // (case, offer, the device's sound, the video codec answered, sound expected)
    let cases: [(&str, &[&str], &str, &str, bool); 4] = [
        ("video", &[], "none", "H264/90000", false),
        ("video-audio", &["--audio"], "test", "H264/90000", true),
        ("audio-declined", &["--audio"], "none", "H264/90000", false),
        ("vp8", &["--video-codec", "VP8"], "none", "VP8/90000", false),
    ];
    let mut failures = Vec::new();
    for (name, offer, sound, codec, audio) in cases {
        let lab = Lab::new();
        let link = lab.link();
        let device = format!("gst-{name}");
        let campeer = LabCampeer::start(&lab, &device, &["--audio-source", sound]);
        link.wait_for_settled_addresses();
        let mut extra = vec!["--seconds", "10"];
        extra.extend_from_slice(offer);
        let lines = run_viewer_over_lab(
            python,
            VIEWER,
            link,
            campeer.broker.port,
            &device,
            &format!("gst-{name}"),
            &extra,
        );
        let refused = refusals(&lines);
        let last = lines.last().cloned().unwrap_or_default();
        let frames = last["frames"].as_u64().unwrap_or(0);
        let audio_frames = last["audio_frames"].as_u64().unwrap_or(0);
        let answered = answered_video_codec(&lines);
        eprintln!("{name}: answered {answered:?}, {frames} video frames, {audio_frames} audio");
        if last["done"] != true {
            failures.push(format!("{name}: the viewer did not finish: {lines:?}"));
        }
        if !refused.is_empty() {
            failures.push(format!("{name}: webrtcbin refused: {refused:?}"));
        }
        if answered.as_deref() != Some(codec) {
            failures.push(format!("{name}: answered {answered:?}, expected {codec}"));
        }
        if frames < 60 {
            failures.push(format!("{name}: only {frames} video frames decoded"));
        }
        if audio != (audio_frames > 25) {
            failures.push(format!(
                "{name}: {audio_frames} audio frames (sound expected: {audio})"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
