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
pub mod jitter;
pub mod load;
pub mod nat;
pub mod network;
pub mod playback;
pub mod rabbitmq;
pub mod rpicam;
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

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
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
