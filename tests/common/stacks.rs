//! WebRTC stacks other than campeer's and the browsers', as viewers run in a lab namespace:
//! aiortc (tests/aiortc) and GStreamer's webrtcbin (tests/gstreamer). Their viewer scripts
//! take the same arguments and print the same JSON lines.

use crate::network::{Lab, LabCampeer};

/// Runs viewer `script` (aiortc's, or another stack's taking the same arguments and printing
/// the same lines) with `python` inside `link`'s viewer namespace; every JSON line it printed.
pub fn run_viewer_over_lab(
    python: &std::path::Path,
    script: &str,
    link: &super::network::LabLink,
    broker_port: u16,
    device: &str,
    session: &str,
    extra: &[&str],
) -> Vec<serde_json::Value> {
    let port = broker_port.to_string();
    let mut args = vec![
        "--host",
        link.campeer_ip.as_str(),
        "--port",
        &port,
        "--device",
        device,
        "--session",
        session,
    ];
    args.extend_from_slice(extra);
    run_script_in(&link.viewer_ns, python, script, &args)
}

/// Runs `script` with `python` and `args` inside namespace `ns` until it exits by itself;
/// every JSON line it printed (others go to stderr).
pub fn run_script_in(
    ns: &str,
    python: &std::path::Path,
    script: &str,
    args: &[&str],
) -> Vec<serde_json::Value> {
    use std::io::BufRead;
    let mut viewer = std::process::Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(python)
        .arg(script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the viewer script");
    let stdout = viewer.stdout.take().expect("piped stdout");
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stdout).lines().take(1000) {
        let Ok(line) = line else { break };
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(value) => lines.push(value),
            Err(_) => eprintln!("viewer: {line}"),
        }
    }
    let _ = viewer.wait();
    lines
}

/// What the viewer refused or was told: answers it could not apply, error replies, hangups.
pub fn refusals(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    lines
        .iter()
        .filter(|v| v.get("error").is_some() || v.get("signal").is_some())
        .collect()
}

/// One kind of answer for [`check_every_answer`]: what the viewer offers, the device's
/// sound, and what the answer must carry.
pub struct AnswerCase {
    pub name: &'static str,
    /// The viewer script's arguments for its offer (`--audio`, `--video-codec VP8`).
    pub offer: &'static [&'static str],
    /// The device's `--audio-source`.
    pub sound: &'static str,
    /// The rtpmap of the answer's video codec, e.g. "VP8/90000".
    pub video_codec: &'static str,
    pub plays_sound: bool,
}

/// Video alone, from a device without sound.
pub const VIDEO_ONLY: AnswerCase = AnswerCase {
    name: "video",
    offer: &[],
    sound: "none",
    video_codec: "H264/90000",
    plays_sound: false,
};

/// Video and sound, from a device with the test tone.
pub const VIDEO_AND_SOUND: AnswerCase = AnswerCase {
    name: "video-audio",
    offer: &["--audio"],
    sound: "test",
    video_codec: "H264/90000",
    plays_sound: true,
};

/// Sound offered to a device without any: the audio section declined, the video plays.
pub const SOUND_DECLINED: AnswerCase = AnswerCase {
    name: "audio-declined",
    offer: &["--audio"],
    sound: "none",
    video_codec: "H264/90000",
    plays_sound: false,
};

/// An offer without H.264: VP8.
pub const VP8_ONLY: AnswerCase = AnswerCase {
    name: "vp8",
    offer: &["--video-codec", "VP8"],
    sound: "none",
    video_codec: "VP8/90000",
    plays_sound: false,
};

/// Runs viewer `script` against a fresh campeer in a fresh lab for each case, for 10 s, and
/// says what went wrong: a refusal, the wrong codec, fewer than 60 video frames, sound where
/// none was due or none where it was.
pub fn check_every_answer(
    python: &std::path::Path,
    script: &str,
    stack: &str,
    cases: &[AnswerCase],
) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let name = case.name;
        let lab = Lab::new();
        let link = lab.link();
        let device = format!("{stack}-{name}");
        let campeer = LabCampeer::start(&lab, &device, &["--audio-source", case.sound]);
        link.wait_for_settled_addresses();
        let mut extra = vec!["--seconds", "10"];
        extra.extend_from_slice(case.offer);
        let lines = run_viewer_over_lab(
            python,
            script,
            link,
            campeer.broker.port,
            &device,
            &device,
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
            failures.push(format!("{name}: {stack} refused: {refused:?}"));
        }
        if answered.as_deref() != Some(case.video_codec) {
            failures.push(format!(
                "{name}: answered {answered:?}, expected {}",
                case.video_codec
            ));
        }
        if frames < 60 {
            failures.push(format!("{name}: only {frames} video frames decoded"));
        }
        if case.plays_sound != (audio_frames > 25) {
            failures.push(format!(
                "{name}: {audio_frames} audio frames (sound expected: {})",
                case.plays_sound
            ));
        }
    }
    failures
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
