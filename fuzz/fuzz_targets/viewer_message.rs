//! A viewer's signaling message: any bytes parse to a message or a typed error.
#![no_main]

use campeer::protocol::ViewerMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ViewerMessage::Candidate(Some(candidate))) = ViewerMessage::parse(data) {
        let _ = campeer::sdp::candidate_ip(&candidate.candidate);
    }
});
