//! An offer's SDP text through everything campeer does with one before webrtc sees it, and
//! the answer completion on the same text.
#![no_main]

use campeer::media::VideoCodec;
use campeer::session::offer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = std::str::from_utf8(data) else {
        return;
    };
    let _ = offer::check_shape(sdp);
    let _ = offer::negotiate(sdp, &[VideoCodec::H264, VideoCodec::Vp8], true);
    let _ = offer::negotiate(sdp, &[VideoCodec::H264, VideoCodec::Vp8], false);
    let _ = offer::for_webrtc(sdp);
    let _ = offer::keep_loopback_candidates(sdp);
    let _ = offer::first_mid_and_ufrag(sdp);
    let _ = offer::complete_answer(sdp);
    for line in sdp.lines() {
        let _ = offer::is_loopback_candidate(line);
    }
});
