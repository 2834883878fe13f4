//! A strict, independent WebRTC stack (aiortc) applies every kind of answer campeer makes and
//! plays it: video alone (H.264), video with sound, and VP8 for an offer without H.264. (An
//! audio section declined is `aiortc_audio_declined`.) aiortc refuses SDP that browsers let
//! pass, so an answer a browser plays but a strict stack cannot would fail here.

mod common;

use common::aiortc::{aiortc_python, refusals, watch_over_lab};
use common::network::{Lab, LabCampeer, require_lab};

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
fn aiortc_applies_and_plays_every_answer() {
    if !require_lab() {
        return;
    }
    let Some(python) = aiortc_python() else {
        return;
    };
    // (what is offered, the device's sound, the video codec answered, sound expected)
    let cases: [(&str, &[&str], &str, &str, bool); 3] = [
        ("video", &[], "none", "H264/90000", false),
        ("video+audio", &["--audio"], "test", "H264/90000", true),
        ("vp8", &["--video-codec", "VP8"], "none", "VP8/90000", false),
    ];
    let mut failures = Vec::new();
    for (name, offer, sound, codec, audio) in cases {
        let lab = Lab::new();
        let link = lab.link();
        let device = format!("strict-{}", name.replace('+', "-"));
        let campeer = LabCampeer::start(&lab, &device, &["--audio-source", sound]);
        let mut extra = vec!["--seconds", "10"];
        extra.extend_from_slice(offer);
        let lines = watch_over_lab(
            &python,
            link,
            campeer.broker.port,
            &device,
            &format!("aio-{device}"),
            &extra,
        );
        let refused = refusals(&lines);
        let last = lines.last().cloned().unwrap_or_default();
        let frames = last["frames"].as_u64().unwrap_or(0);
        let audio_frames = last["audio_frames"].as_u64().unwrap_or(0);
        let answered = answered_video_codec(&lines);
        eprintln!("{name}: answered {answered:?}, {frames} video frames, {audio_frames} audio");
        if !refused.is_empty() {
            failures.push(format!("{name}: aiortc refused: {refused:?}"));
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
