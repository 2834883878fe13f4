//! aiortc, an independent WebRTC stack from PyPI, as a viewer (tests/aiortc/viewer.py).

/// The aiortc virtual environment tests/run prepares; `None` (skip) off CI when it is missing.
pub fn aiortc_python() -> Option<std::path::PathBuf> {
    let python = crate::repo_root().join("target/aiortc-venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "aiortc is not installed in target/aiortc-venv (tests/run installs it)"
    );
    eprintln!("skipping: aiortc is not installed in target/aiortc-venv (tests/run installs it)");
    None
}

/// The network lab and aiortc's Python, for a test of aiortc across the lab; `None` (the
/// test skips, saying why) outside CI when either is missing.
pub fn lab_and_python() -> Option<std::path::PathBuf> {
    if !super::network::require_lab() {
        return None;
    }
    aiortc_python()
}

/// The viewer script.
pub const VIEWER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../aiortc/viewer.py");

/// The reference camera for the stream bench (tests/aiortc/camera.py).
pub const CAMERA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../aiortc/camera.py");

/// Runs the aiortc viewer inside `link`'s viewer namespace against the campeer across it,
/// with `extra` arguments (`--audio`, `--video-codec VP8`, `--seconds N`), and returns every
/// JSON line it printed once it is done (it exits by itself after its `--seconds`).
pub fn watch_over_lab(
    python: &std::path::Path,
    link: &super::network::LabLink,
    broker_port: u16,
    device: &str,
    session: &str,
    extra: &[&str],
) -> Vec<serde_json::Value> {
    super::stacks::run_viewer_over_lab(python, VIEWER, link, broker_port, device, session, extra)
}

/// The WHEP player (tests/aiortc/whep.py).
pub const WHEP_PLAYER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../aiortc/whep.py");
