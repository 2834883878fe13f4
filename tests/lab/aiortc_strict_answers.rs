//! A strict, independent WebRTC stack (aiortc) applies every kind of answer campeer makes and
//! plays it: video alone (H.264), video with sound, and VP8 for an offer without H.264. (An
//! audio section declined is `aiortc_audio_declined`.) aiortc refuses SDP that browsers let
//! pass, so an answer a browser plays but a strict stack cannot would fail here.

use common::aiortc::{VIEWER, lab_and_python};
use common::stacks::{VIDEO_AND_SOUND, VIDEO_ONLY, VP8_ONLY, check_every_answer};

#[test]
fn aiortc_applies_and_plays_every_answer() {
    let _load = common::load::shared();
    let Some(python) = lab_and_python() else {
        return;
    };
    let cases = [VIDEO_ONLY, VIDEO_AND_SOUND, VP8_ONLY];
    let failures = check_every_answer(&python, VIEWER, "aiortc", &cases);
    assert!(failures.is_empty(), "{failures:#?}");
}
