//! `cargo bench --bench signaling`: what a stranger's messages cost the device's signaling
//! path. The time to read a browser's offer, to refuse the largest hostile offer the protocol
//! takes (64 KiB, twelve thousand payload types), and for the signaling core to take a flood
//! of junk, offers with hangups, and candidates. Reports figures; asserts nothing.

use campeer::protocol::Segment;
use campeer::protocol::VideoCodec;
use campeer::sdp;
use campeer::signaling::{Limits, Signaling};
use std::hint::black_box;
use std::time::{Duration, Instant};

const CHROMIUM_OFFER: &str = include_str!("../../fuzz/seeds/offer/chromium.sdp");

/// The offer with `count` payload types listed in front of its video formats.
fn bloated(count: usize) -> String {
    let filler: String = (0..count).map(|n| format!(" {}", n % 128)).collect();
    CHROMIUM_OFFER.replace(
        "m=video 9 UDP/TLS/RTP/SAVPF",
        &format!("m=video 9 UDP/TLS/RTP/SAVPF{filler}"),
    )
}

/// Mean time per call over `runs` calls.
fn per_call(runs: u32, mut call: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..runs {
        call();
    }
    started.elapsed() / runs
}

fn main() {
    let good = per_call(2_000, || {
        black_box(sdp::negotiate(
            black_box(CHROMIUM_OFFER),
            &[VideoCodec::H264, VideoCodec::Vp8],
            true,
        ))
        .ok();
    });
    let hostile = bloated(12_000);
    let refused = per_call(200, || {
        black_box(sdp::negotiate(
            black_box(&hostile),
            &[VideoCodec::H264, VideoCodec::Vp8],
            true,
        ))
        .ok();
    });
    let widest = bloated(100);
    let widest_ok = per_call(2_000, || {
        black_box(sdp::negotiate(
            black_box(&widest),
            &[VideoCodec::H264, VideoCodec::Vp8],
            true,
        ))
        .ok();
    });
    println!(
        "offer (Chromium, {} bytes): {good:?} to negotiate",
        CHROMIUM_OFFER.len()
    );
    println!(
        "offer with 100 extra payload types ({} bytes, accepted): {widest_ok:?}",
        widest.len()
    );
    println!(
        "hostile offer ({} bytes, 12,000 payload types, refused): {refused:?}",
        hostile.len()
    );

    let offer_json = serde_json::json!({"type": "offer", "sdp": CHROMIUM_OFFER})
        .to_string()
        .into_bytes();
    let candidate_json = serde_json::json!({"type": "candidate", "candidate": {
        "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50001 typ host", "sdpMid": "0"}})
    .to_string()
    .into_bytes();
    let sessions: Vec<Segment> = (0..1000)
        .map(|n| Segment::parse(&format!("s{n}")).expect("a segment"))
        .collect();
    let mut core = Signaling::new(Limits::new(4, Duration::from_secs(30)), true);
    let now = Instant::now();
    let mut n = 0;
    let junk = per_call(100_000, || {
        n += 1;
        core.handle_message(now, sessions[n % 1000].clone(), b"{not json");
        while black_box(core.poll_action()).is_some() {}
    });
    let mut core = Signaling::new(Limits::new(4, Duration::from_secs(30)), true);
    let flood = per_call(20_000, || {
        n += 1;
        let id = sessions[n % 1000].clone();
        core.handle_message(now, id.clone(), &offer_json);
        core.handle_message(now, id, br#"{"type":"hangup"}"#);
        while black_box(core.poll_action()).is_some() {}
    });
    let mut core = Signaling::new(Limits::new(4, Duration::from_secs(30)), true);
    core.handle_message(now, sessions[0].clone(), &offer_json);
    let candidates = per_call(100_000, || {
        core.handle_message(now, sessions[0].clone(), &candidate_json);
        while black_box(core.poll_action()).is_some() {}
    });
    println!("signaling core, junk message: {junk:?}");
    println!("signaling core, offer + hangup (at the limit): {flood:?}");
    println!("signaling core, candidate into a session (capped): {candidates:?}");
}
