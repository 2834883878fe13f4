//! The helpers campeer's integration tests (tests/loopback, lab, browsers, packaging) and
//! benchmarks share, one module per topic:
//!
//! - [`broker`]: a real mosquitto on a loopback port, topic watchers; [`rabbitmq`]: RabbitMQ
//!   nodes (MQTT 3.1.1 only), [`tls`]: a CA and certificates made for the test.
//! - [`daemon`]: campeer in-process or as its binary, under a stand-in systemd, in a private
//!   /dev.
//! - [`viewer`]: a webrtc-rs viewer that joins over MQTT exactly as a browser would and
//!   decodes what it receives; [`whep`]: the same over WHEP; [`playback`], [`jitter`]: what
//!   the decoded frames say about smoothness and delay.
//! - [`browser`]: headless Chromium and Firefox on campeer's page.
//! - [`network`], [`nat`]: the network-namespace lab (shaped and lossy links, NATs, TURN);
//!   [`aiortc`], [`stacks`]: other WebRTC stacks in it.
//! - Fakes of the devices' interfaces, never of campeer's code: [`fakecam`] (a V4L2 camera
//!   in FUSE), [`fakem2m`] (a V4L2 M2M encoder), [`rpicam`] (rpicam-vid on PATH),
//!   [`alsamic`] (an ALSA microphone over the file plugin).
//!
//! Every address used is on 127.0.0.0/8 or inside namespaces the lab makes, and every wait is
//! bounded.

pub mod aiortc;
pub mod alsamic;
pub mod broker;
pub mod browser;
pub mod daemon;
pub mod fakecam;
pub mod fakem2m;
pub mod janus;
pub mod jitter;
pub mod load;
pub mod nat;
pub mod network;
pub mod playback;
pub mod prometheus;
pub mod rabbitmq;
pub mod recordings;
pub mod rpicam;
pub mod rtsp;
pub mod scene;
pub mod stacks;
pub mod tls;
pub mod viewer;
pub mod whep;

// What nearly every scenario uses, at the root (`use common::*`).
pub use broker::*;
pub use browser::*;
pub use daemon::*;
pub use viewer::*;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The repository's root: where the test drivers (tests/browsers/driver, tests/aiortc, ...) and
/// target/ are.
pub fn repo_root() -> &'static Path {
    // This crate lives in tests/common.
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The campeer binary that cargo built beside the running test or benchmark: test binaries
/// sit in `<profile>/deps/`, the package's binaries in `<profile>/`. (`CARGO_BIN_EXE_campeer`
/// exists only in the test targets themselves, not in this library.)
pub fn campeer_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary in <target>/<profile>/deps");
    let binary = profile_dir.join("campeer");
    assert!(
        binary.exists(),
        "{} is missing: cargo builds it for integration tests and benchmarks",
        binary.display()
    );
    binary
}

pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAMPEER_TEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("campeer=info")),
        )
        .with_test_writer()
        .try_init();
}

/// A TCP port on 127.0.0.1 that nothing listens on now, for a server the test starts next
/// (mosquitto, campeer's listeners in a child process, a TURN server).
///
/// The port comes from below the kernel's ephemeral range, never from inside it: between this
/// call and the server's bind, a port-0 listener of an in-process campeer, or an outgoing
/// connection's source port, could otherwise take it, and a test would reach another test's
/// server. Each process walks its own stretch of that range (by process id) and never hands a
/// port out twice, so test binaries running side by side do not pick the same one either.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static RANGE: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    let &(first, count) = RANGE.get_or_init(ports_below_the_ephemeral_range);
    let stretches = count / STRETCH;
    let start = first + (std::process::id() % stretches) * STRETCH;
    for _ in 0..STRETCH {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % STRETCH;
        let Ok(port) = u16::try_from(start + offset) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {start}..{}", start + STRETCH);
}

/// How many ports each process walks before it starts over.
const STRETCH: u32 = 1_000;

/// The ports below the kernel's ephemeral range (`ip_local_port_range`), above the privileged
/// ones: `(first, count)`.
fn ports_below_the_ephemeral_range() -> (u32, u32) {
    const FIRST_UNPRIVILEGED: u32 = 1_024;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let first = ephemeral_low.saturating_sub(12_000).max(FIRST_UNPRIVILEGED);
    assert!(
        ephemeral_low >= first + STRETCH,
        "the kernel's ephemeral ports start at {ephemeral_low}: too few ports below for the tests"
    );
    (first, ephemeral_low - first)
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
pub async fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Waits (bounded) until something accepts TCP connections on a loopback port.
pub async fn wait_for_listener(port: u16) -> bool {
    wait_for(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await
}
