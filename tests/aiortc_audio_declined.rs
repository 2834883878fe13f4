//! A strict, independent WebRTC stack (aiortc) offers audio and video to a device without
//! sound. campeer declines the audio section, and its answer must still be valid SDP for a
//! strict parser: every section, a rejected one too, carries its ICE credentials (aiortc
//! refuses an answer without them: "ICE username fragment or password is missing"). The
//! video plays.

mod common;

use common::aiortc::{VIEWER, aiortc_python};
use common::network::{Lab, LabCampeer, require_lab};
use std::io::BufRead;

#[test]
fn aiortc_offering_audio_to_a_silent_device_gets_video() {
    if !require_lab() {
        return;
    }
    let Some(python) = aiortc_python() else {
        return;
    };
    let lab = Lab::new();
    let link = lab.link();
    let campeer = LabCampeer::start(&lab, "silent", &[]);
    let port = campeer.broker.port.to_string();
    let mut viewer = std::process::Command::new("ip")
        .args(["netns", "exec", &link.viewer_ns])
        .arg(&python)
        .args([VIEWER, "--host", &link.campeer_ip, "--port", &port])
        .args(["--device", "silent", "--session", "aio-audio"])
        .args(["--seconds", "12", "--audio"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the aiortc viewer");
    let stdout = viewer.stdout.take().expect("piped stdout");
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stdout).lines().take(1000) {
        let Ok(line) = line else { break };
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(value) => lines.push(value),
            Err(_) => eprintln!("aiortc: {line}"),
        }
    }
    let _ = viewer.wait();
    let errors: Vec<_> = lines
        .iter()
        .filter(|v| v.get("error").is_some() || v.get("signal").is_some())
        .collect();
    assert!(errors.is_empty(), "aiortc refused campeer: {errors:?}");
    let last = lines.last().expect("aiortc reported");
    assert_eq!(last["done"], true, "{lines:?}");
    let frames = last["frames"].as_u64().unwrap_or(0);
    assert!(
        frames >= 60,
        "aiortc decoded only {frames} frames: {lines:?}"
    );
}
