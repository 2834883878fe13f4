//! aiortc, an independent WebRTC stack from PyPI, as a viewer (tests/aiortc/viewer.py).

/// The aiortc virtual environment tests/run prepares; `None` (skip) off CI when it is missing.
pub fn aiortc_python() -> Option<std::path::PathBuf> {
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/aiortc-venv/bin/python");
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

/// The viewer script.
pub const VIEWER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aiortc/viewer.py");

/// The reference camera for the stream bench (tests/aiortc/camera.py).
pub const CAMERA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aiortc/camera.py");

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
    run_viewer_over_lab(python, VIEWER, link, broker_port, device, session, extra)
}

/// Runs viewer `script` (aiortc's, or another stack's taking the same arguments and printing
/// the same lines) with `python` inside `link`'s viewer namespace; every JSON line it printed.
pub fn run_viewer_over_lab(
    python: &std::path::Path,
    script: &str,
    link: &super::network::LabLink,
    broker_port: u16,
    device: &str,
    session: &str,
    extra: &[&str],
) -> Vec<serde_json::Value> {
    use std::io::BufRead;
    let mut viewer = std::process::Command::new("ip")
        .args(["netns", "exec", &link.viewer_ns])
        .arg(python)
        .args([script, "--host", &link.campeer_ip])
        .args(["--port", &broker_port.to_string()])
        .args(["--device", device, "--session", session])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the aiortc viewer");
    let stdout = viewer.stdout.take().expect("piped stdout");
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stdout).lines().take(1000) {
        let Ok(line) = line else { break };
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(value) => lines.push(value),
            Err(_) => eprintln!("viewer: {line}"),
        }
    }
    let _ = viewer.wait();
    lines
}

/// What the viewer refused or was told: answers it could not apply, error replies, hangups.
pub fn refusals(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    lines
        .iter()
        .filter(|v| v.get("error").is_some() || v.get("signal").is_some())
        .collect()
}
