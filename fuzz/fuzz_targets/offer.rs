//! An offer's SDP text through everything campeer does with one before webrtc sees it, and
//! the answer completion on the same text.
#![no_main]

use campeer::protocol::VideoCodec;
use campeer::sdp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = std::str::from_utf8(data) else {
        return;
    };
    let _ = sdp::check_shape(sdp);
    let _ = sdp::negotiate(sdp, &[VideoCodec::H264, VideoCodec::Vp8], true);
    let _ = sdp::negotiate(sdp, &[VideoCodec::H264, VideoCodec::Vp8], false);
    let _ = sdp::for_webrtc(sdp);
    let _ = sdp::keep_loopback_candidates(sdp);
    let _ = sdp::first_mid_and_ufrag(sdp);
    let _ = sdp::complete_answer(sdp);
    for line in sdp.lines() {
        let _ = sdp::is_loopback_candidate(line);
    }
});
