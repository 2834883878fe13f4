//! A strict, independent WebRTC stack (aiortc) offers audio and video to a device without
//! sound. campeer declines the audio section, and its answer must still be valid SDP for a
//! strict parser: every section, a rejected one too, carries its ICE credentials (aiortc
//! refuses an answer without them: "ICE username fragment or password is missing"). The
//! video plays.

use common::aiortc::{lab_and_python, watch_over_lab};
use common::network::{Lab, LabCampeer};
use common::stacks::refusals;

#[test]
fn aiortc_offering_audio_to_a_silent_device_gets_video() {
    let _load = common::load::shared();
    let Some(python) = lab_and_python() else {
        return;
    };
    let lab = Lab::new();
    let link = lab.link();
    let campeer = LabCampeer::start(&lab, "silent", &[]);
    let lines = watch_over_lab(
        &python,
        link,
        campeer.broker.port,
        "silent",
        "aio-audio",
        &["--seconds", "12", "--audio"],
    );
    let errors = refusals(&lines);
    assert!(errors.is_empty(), "aiortc refused campeer: {errors:?}");
    let last = lines.last().expect("aiortc reported");
    assert_eq!(last["done"], true, "{lines:?}");
    let frames = last["frames"].as_u64().unwrap_or(0);
    assert!(
        frames >= 60,
        "aiortc decoded only {frames} frames: {lines:?}"
    );
}
