//! `cargo bench --bench stream`: measures the release daemon streaming the test pattern on
//! loopback. Reports figures; asserts nothing about speed.
//!
//! - offer to first decoded frame, with the encoder cold (first viewer) and warm;
//! - the daemon's CPU (user+system, % of one core) and peak RSS while idle and while
//!   streaming 640x480@30 to one and to four viewers;
//! - the same for a reference camera doing the same job in the same run: aiortc with libx264
//!   (tests/aiortc/camera.py, a stamped pattern at 640x480@30 to one viewer), and the ratio.
//!
//! The daemon runs as its own process (the release binary), so its figures exclude the test
//! viewers, which decode in this process. Everything stays on 127.0.0.0/8.

use common::*;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(10);

fn clock_ticks_per_second() -> f64 {
    // Linux reports /proc CPU times in USER_HZ, 100 on every architecture campeer targets.
    100.0
}

/// (user + system CPU ticks, RSS in KiB) of a process.
fn cpu_and_rss(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

/// CPU % of one core and peak RSS over `window`.
async fn measure(pid: u32, window: Duration) -> (f64, u64) {
    let (start_ticks, mut peak) = cpu_and_rss(pid);
    let start = Instant::now();
    while start.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(cpu_and_rss(pid).1);
    }
    let (end_ticks, rss) = cpu_and_rss(pid);
    let cpu =
        (end_ticks - start_ticks) as f64 / clock_ticks_per_second() / start.elapsed().as_secs_f64()
            * 100.0;
    (cpu, peak.max(rss))
}

/// Offer published → first decoded frame, and its parts: → answer, → ICE+DTLS connected.
async fn time_to_first_frame(broker: &Broker, session: &str) -> ([Duration; 3], TestViewer) {
    time_to_first_frame_of(broker, "bench", session).await
}

async fn time_to_first_frame_of(
    broker: &Broker,
    device: &str,
    session: &str,
) -> ([Duration; 3], TestViewer) {
    let viewer = TestViewer::join(broker, device, session).await;
    assert!(
        viewer
            .wait_for_more_frames(1, Duration::from_secs(30))
            .await,
        "no frame decoded"
    );
    let times = viewer.snapshot(|s| {
        let offer = s.offer_sent_at.expect("offer sent");
        let since = |t: Option<Instant>| t.map(|t| t.duration_since(offer)).unwrap_or_default();
        [
            since(Some(s.frames[0].decoded_at)),
            since(s.answered_at),
            since(s.connected_at),
        ]
    });
    (times, viewer)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let broker = Broker::start();
    let url = broker.url();
    let http = format!("127.0.0.1:{}", free_port());
    let daemon = DaemonProcess::spawn(&[
        "--http-listen",
        &http,
        "--broker",
        &url,
        "--device-id",
        "bench",
        "--source",
        "test",
        "--ice-loopback-only",
        "--idle-grace",
        "0",
        "--log",
        "warn",
    ]);
    let pid = daemon.child.id();
    let status = TopicWatcher::start(&broker, &status_topic("bench")).await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(20), |s| s["state"] == "online")
            .await
    );

    println!("campeer stream bench: 640x480@30, 1500 kbit/s, release build, loopback");
    let mut cold = vec![];
    let mut warm = vec![];
    for round in 0..5 {
        // Cold: no viewer, the pipeline is stopped (idle grace 0), so the offer starts it.
        let (cold_time, first) = time_to_first_frame(&broker, &format!("cold{round}")).await;
        cold.push(cold_time);
        // Warm: a second viewer while the first keeps the encoder running.
        let (warm_time, second) = time_to_first_frame(&broker, &format!("warm{round}")).await;
        warm.push(warm_time);
        leave_all(vec![first, second], &status).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = |runs: &[[Duration; 3]], part: usize| {
        let mut v: Vec<Duration> = runs.iter().map(|r| r[part]).collect();
        v.sort();
        ms(v[v.len() / 2])
    };
    for (name, runs) in [("cold", &cold), ("warm", &warm)] {
        println!(
            "offer -> first decoded frame, encoder {name}: median {:.0} ms \
             (answer at {:.0} ms, connected at {:.0} ms; runs: {:?} ms)",
            median(runs, 0),
            median(runs, 1),
            median(runs, 2),
            runs.iter().map(|r| ms(r[0]).round()).collect::<Vec<_>>()
        );
    }

    let (idle_cpu, idle_rss) = measure(pid, Duration::from_secs(3)).await;
    println!("idle (no viewer):  CPU {idle_cpu:5.1} % of one core, RSS {idle_rss} KiB");

    let mut one_viewer_cpu = None;
    for count in [1usize, 4] {
        let mut viewers = Vec::new();
        for i in 0..count {
            viewers.push(TestViewer::join(&broker, "bench", &format!("load{count}x{i}")).await);
        }
        for viewer in &viewers {
            assert!(
                viewer
                    .wait_for_more_frames(10, Duration::from_secs(30))
                    .await
            );
        }
        let before: Vec<usize> = viewers.iter().map(TestViewer::frames).collect();
        let bytes_before = viewers[0].snapshot(|s| s.rtp_payload_bytes);
        let (cpu, rss) = measure(pid, WINDOW).await;
        let fps: Vec<String> = viewers
            .iter()
            .zip(&before)
            .map(|(v, b)| format!("{:.1}", (v.frames() - b) as f64 / WINDOW.as_secs_f64()))
            .collect();
        let kbps = (viewers[0].snapshot(|s| s.rtp_payload_bytes) - bytes_before) as f64 * 8.0
            / WINDOW.as_secs_f64()
            / 1000.0;
        if count == 1 {
            one_viewer_cpu = Some(cpu);
        }
        println!(
            "{count} viewer(s):       CPU {cpu:5.1} % of one core, peak RSS {rss} KiB, \
             decoded fps per viewer [{}], video {kbps:.0} kbit/s per viewer",
            fps.join(", ")
        );
        leave_all(viewers, &status).await;
    }
    daemon.signal("TERM");
    if let (Some(python), Some(campeer_cpu)) = (common::aiortc::aiortc_python(), one_viewer_cpu) {
        reference(&broker, &python, campeer_cpu).await;
    }
}

/// The same job done by aiortc with libx264, measured the same way, for the ratio.
async fn reference(broker: &Broker, python: &std::path::Path, campeer_cpu: f64) {
    use tokio::io::AsyncBufReadExt;
    let mut camera = tokio::process::Command::new(python)
        .arg(common::aiortc::CAMERA)
        .args(["--host", "127.0.0.1", "--port", &broker.port.to_string()])
        .args(["--device", "reference", "--seconds", "120"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the reference camera");
    let pid = camera.id().expect("a running reference camera");
    let mut lines = tokio::io::BufReader::new(camera.stdout.take().expect("piped")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("ready") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(ready, Ok(true)),
        "the reference camera never got ready"
    );
    let (times, viewer) = time_to_first_frame_of(broker, "reference", "reference1").await;
    assert!(
        viewer
            .wait_for_more_frames(10, Duration::from_secs(30))
            .await
    );
    let before = viewer.frames();
    let (cpu, rss) = measure(pid, WINDOW).await;
    let fps = (viewer.frames() - before) as f64 / WINDOW.as_secs_f64();
    println!(
        "reference (aiortc + libx264, 1 viewer): CPU {cpu:5.1} % of one core, peak RSS {rss} KiB, \
         decoded fps {fps:.1}, offer -> first decoded frame {:.0} ms",
        times[0].as_secs_f64() * 1000.0
    );
    println!(
        "campeer / reference CPU with one viewer: {:.2}",
        campeer_cpu / cpu.max(0.01)
    );
    viewer.close().await;
    let _ = camera.kill().await;
}
