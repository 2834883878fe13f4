//! A viewer sends twenty thousand candidates into its session. The session takes a bounded
//! number per offer and ignores the rest: memory stays put, the viewer's own picture and
//! another viewer's keep coming.

use common::*;
use std::time::{Duration, Instant};

const CANDIDATES: u32 = 20_000;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_candidate_flood_is_capped() {
    let _load = common::load::whole_machine();
    let broker = Broker::start();
    let device = start_device(overrides(&broker, "cam1")).await;
    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    let mallory = TestViewer::join(&broker, "cam1", "mallory").await;
    assert!(
        alice
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );
    assert!(
        mallory
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let before = resident_kib();
    let from = Instant::now();
    for n in 0..CANDIDATES {
        // Distinct host candidates on loopback addresses nobody answers on (the tests run
        // campeer loopback-only, which would drop any other address before ICE sees it).
        let line = format!(
            "candidate:{n} 1 udp {} 127.{}.{}.{} {} typ host",
            2_000_000_000 - n,
            1 + ((n >> 16) & 0xff),
            (n >> 8) & 0xff,
            n & 0xff,
            10_000 + n % 50_000
        );
        mallory
            .publish(serde_json::json!({"type": "candidate", "candidate": {
                "candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}}))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let grown_kib = resident_kib().saturating_sub(before);
    eprintln!("the process grew by {grown_kib} KiB during the flood");

    let frames = alice.snapshot(|s| s.frames.clone());
    let watched = common::playback::playback(&frames, from, Instant::now());
    assert!(
        watched.longest_freeze < Duration::from_secs(1),
        "alice froze during the flood: {watched}"
    );
    assert!(
        mallory
            .wait_for_more_frames(30, Duration::from_secs(10))
            .await
    );
    assert!(
        grown_kib < 8 * 1024,
        "the process grew by {grown_kib} KiB while {CANDIDATES} candidates came in"
    );
    assert_eq!(device.viewers(), 2);
    for viewer in [alice, mallory] {
        viewer.close().await;
    }
    device.shutdown().await;
}
