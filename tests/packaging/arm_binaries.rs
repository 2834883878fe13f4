//! The Raspberry Pi builds, proven rather than merely linked: tests/run cross-compiles campeer
//! for aarch64 and armv7 with Debian's cross toolchains and passes the binaries in
//! CAMPEER_AARCH64_BINARY and CAMPEER_ARMV7_BINARY. Each must need no glibc newer than 2.36
//! (Raspberry Pi OS Bookworm) and run under qemu-user; the aarch64 one then streams the test
//! pattern over loopback mosquitto to the host's test viewer, which decodes the frames.
//!
//! Under CI=true the binaries must be there; elsewhere the tests skip and say why.

use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Raspberry Pi OS Bookworm's glibc.
const BOARD_GLIBC: (u32, u32) = (2, 36);

fn binary(variable: &str) -> Option<PathBuf> {
    match std::env::var_os(variable) {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{variable} is not set: tests/run cross-compiles the board binaries first")
        }
        None => {
            eprintln!("skipping: {variable} is not set (tests/run sets it after cross-compiling)");
            None
        }
    }
}

/// The newest GLIBC_x.y symbol version the binary needs, from its dynamic symbol table.
fn newest_glibc(binary: &PathBuf) -> (u32, u32) {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(binary)
        .output()
        .expect("run objdump");
    assert!(
        out.status.success(),
        "objdump failed on {}",
        binary.display()
    );
    let table = String::from_utf8_lossy(&out.stdout);
    table
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(|version| {
            let mut parts = version.split('.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next().unwrap_or("0").parse().ok()?;
            Some((major, minor))
        })
        .max()
        .expect("the binary links glibc")
}

fn run_under(qemu: &str, binary: &PathBuf, args: &[&str]) -> std::process::Output {
    Command::new(qemu)
        .arg(binary)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {qemu} (Debian's qemu-user): {e}"))
}

fn check_binary(variable: &str, qemu: &str) -> Option<PathBuf> {
    let binary = binary(variable)?;
    let needed = newest_glibc(&binary);
    println!("{variable}: needs glibc {}.{}", needed.0, needed.1);
    assert!(
        needed <= BOARD_GLIBC,
        "{} needs glibc {needed:?}, the board has {BOARD_GLIBC:?}",
        binary.display()
    );
    let version = run_under(qemu, &binary, &["--version"]);
    assert!(version.status.success(), "{qemu} --version failed");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("campeer {}", env!("CARGO_PKG_VERSION"))
    );
    let devices = run_under(qemu, &binary, &["devices", "--json"]);
    assert!(devices.status.success(), "{qemu} devices failed");
    let listing: serde_json::Value =
        serde_json::from_slice(&devices.stdout).expect("devices prints JSON");
    assert!(listing["cameras"].is_array() && listing["microphones"].is_array());
    Some(binary)
}

#[test]
fn armv7_binary_runs_on_bookworm_glibc() {
    let _load = common::load::shared();
    check_binary("CAMPEER_ARMV7_BINARY", "qemu-arm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aarch64_binary_streams_under_qemu() {
    let _load = common::load::shared();
    let Some(binary) = check_binary("CAMPEER_AARCH64_BINARY", "qemu-aarch64") else {
        return;
    };
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("pi")).await;
    let url = broker.url();
    let http = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let mut daemon = std::process::Command::new("qemu-aarch64")
        .arg(&binary)
        .args([
            "--http-listen",
            http.as_str(),
            "--broker",
            url.as_str(),
            "--device-id",
            "pi",
            "--source",
            "test",
            "--audio-source",
            "test",
            "--width",
            "320",
            "--height",
            "240",
            "--fps",
            "15",
            "--ice-loopback-only",
        ])
        .env("CAMPEER_LOG", "campeer=info")
        .spawn()
        .expect("start campeer under qemu-aarch64");
    let _guard = KillOnDrop(&mut daemon);

    assert!(
        status
            .wait_for_last(Duration::from_secs(60), |s| s["state"] == "online")
            .await,
        "the aarch64 campeer never came online"
    );
    let viewer =
        TestViewer::join_with(&broker, "pi", "host-viewer", ViewerOptions::with_audio()).await;
    assert!(
        viewer
            .wait_for_more_frames(30, Duration::from_secs(60))
            .await,
        "no frames from the aarch64 campeer: {:?}",
        viewer.snapshot(|s| (s.rtp_packets, s.decode_errors, s.connection_states.clone()))
    );
    assert_live_frames(&viewer, 320, 240);
    assert!(
        wait_for(Duration::from_secs(20), || viewer
            .snapshot(|s| s.audio_samples.len() >= 48_000))
        .await,
        "no sound from the aarch64 campeer"
    );
    assert_tone(&viewer, 440.0);
    println!(
        "aarch64 campeer under qemu: online and 30 frames plus a second of sound decoded {:.1} s \
         after start",
        started.elapsed().as_secs_f64()
    );
    viewer.close().await;
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
