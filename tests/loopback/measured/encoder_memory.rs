//! What an encoder used goes back when it stops. With the binary and an idle grace of 0, each
//! viewer starts the pipeline and its leaving stops it; after a few viewers in turn the idle
//! daemon must hold about what it held after the first. glibc raises its mmap threshold on the
//! first big free, so without campeer's fixed threshold the next encoder's big buffers came
//! from the heap, were zeroed there, and stayed resident: 7.9 MB more anonymous memory after
//! four viewers than after one (0.8 MB with it).

use common::*;
use std::time::Duration;

/// Viewers in turn, each starting and stopping the pipeline.
const ROUNDS: usize = 4;
/// What the later rounds may add to the anonymous memory held after the first: fragments and
/// bounded tables filling up, not another encoder's buffers.
const GROWTH_ALLOWED_KIB: u64 = 3 * 1024;

/// The process's anonymous (heap and stack) resident memory.
fn anonymous_kib(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .expect("read the daemon's smaps_rollup");
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Anonymous:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("Anonymous in smaps_rollup")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_encoder_memory_goes_back_when_it_stops() {
    let _load = common::load::whole_machine();
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("mem1")).await;
    let mut args = binary_args(&broker, "mem1", "test");
    args.extend(["--idle-grace", "0"].map(str::to_owned));
    let daemon = DaemonProcess::spawn(&args);
    assert!(
        status
            .wait_for_last(Duration::from_secs(20), |s| s["state"] == "online")
            .await
    );

    let mut held = Vec::new();
    for round in 0..ROUNDS {
        let viewer = TestViewer::join(&broker, "mem1", &format!("round{round}")).await;
        assert!(
            viewer
                .wait_for_more_frames(10, Duration::from_secs(20))
                .await,
            "round {round}: no picture"
        );
        leave_all([viewer], &status).await;
        // The pipeline stops at once (idle grace 0); give its threads a moment to end.
        tokio::time::sleep(Duration::from_secs(1)).await;
        held.push(anonymous_kib(daemon.child.id()));
    }
    let (first, last) = (held[0], held[ROUNDS - 1]);
    assert!(
        last <= first + GROWTH_ALLOWED_KIB,
        "the idle daemon's anonymous memory after each viewer (KiB): {held:?}"
    );
}
