//! campeer itself, in-process or as its binary: the settings tests start it with, systemd's notification socket, and a private /dev.

use crate::broker::Broker;
use crate::{fakecam, free_port, init_logging, wait_for};
use campeer::config::{Config, FileConfig, Overrides};
use campeer::device::DeviceHandle;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Flags for an in-process campeer on `broker`, loopback-only ICE, 640x480@30 by default,
/// the viewer page on a port the kernel picks as campeer binds it (no other test can take it
/// in between; `DeviceHandle::http_addr` says which).
pub fn overrides(broker: &Broker, device: &str) -> Overrides {
    Overrides {
        broker: vec![broker.url()],
        device_id: Some(device.to_owned()),
        source: Some("test".into()),
        // Pinned like the video source, so a developer's own sound card changes nothing.
        audio_source: Some("none".into()),
        ice_loopback_only: Some(true),
        http_listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    }
}

pub async fn start_device(overrides: Overrides) -> DeviceHandle {
    start_device_with(FileConfig::default(), overrides).await
}

/// A device from a configuration file's settings as well as flags.
pub async fn start_device_with(file: FileConfig, overrides: Overrides) -> DeviceHandle {
    init_logging();
    let config = Config::resolve(file, overrides).expect("valid test config");
    campeer::device::start(config)
        .await
        .expect("campeer starts")
}

/// Stands in for systemd's notification socket: a datagram socket in a temporary directory
/// (pass [`NotifySocket::path`] as NOTIFY_SOCKET) that keeps every message received.
pub struct NotifySocket {
    dir: tempfile::TempDir,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl NotifySocket {
    pub fn bind() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let socket = std::os::unix::net::UnixDatagram::bind(dir.path().join("notify"))
            .expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a read timeout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (kept, stopping) = (Arc::clone(&messages), Arc::clone(&stop));
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buffer) {
                    let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    for line in text.lines() {
                        kept.lock().unwrap().push((Instant::now(), line.to_owned()));
                    }
                }
            }
        });
        Self {
            dir,
            messages,
            stop,
            reader: Some(reader),
        }
    }

    pub fn path(&self) -> String {
        self.dir.path().join("notify").display().to_string()
    }

    /// Every line received so far, e.g. "READY=1".
    pub fn lines(&self) -> Vec<String> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// How many lines equal to `line` arrived after `since`.
    pub fn count_since(&self, line: &str, since: Instant) -> usize {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, l)| *at >= since && l == line)
            .count()
    }

    pub async fn wait_for(&self, limit: Duration, want: impl Fn(&str) -> bool) -> bool {
        wait_for(limit, || self.lines().iter().any(|l| want(l))).await
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// campeer in-process on `broker` with `audio_source` for sound (and the test pattern).
pub async fn start_audio_device(broker: &Broker, device: &str, audio_source: &str) -> DeviceHandle {
    start_device(Overrides {
        audio_source: Some(audio_source.to_owned()),
        ..overrides(broker, device)
    })
    .await
}

/// Flags for the campeer binary on `broker`: `source` for video, no sound, the page on a free
/// loopback port, loopback-only ICE.
pub fn binary_args(broker: &Broker, device: &str, source: &str) -> Vec<String> {
    [
        "--http-listen",
        &format!("127.0.0.1:{}", free_port()),
        "--broker",
        &broker.url(),
        "--device-id",
        device,
        "--source",
        source,
        "--audio-source",
        "none",
        "--ice-loopback-only",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The binary as systemd runs it: NOTIFY_SOCKET on a stand-in socket and a watchdog of
/// `watchdog`. Returns once it said READY=1.
pub async fn run_under_systemd(
    args: &[String],
    watchdog: Duration,
) -> (DaemonProcess, NotifySocket) {
    let notify = NotifySocket::bind();
    let socket = notify.path();
    let usec = watchdog.as_micros().to_string();
    let daemon = DaemonProcess::spawn_with_env(
        args,
        &[
            ("NOTIFY_SOCKET", socket.as_str()),
            ("WATCHDOG_USEC", usec.as_str()),
        ],
    );
    assert!(
        notify
            .wait_for(Duration::from_secs(20), |l| l == "READY=1")
            .await,
        "no READY=1: {:?}",
        notify.lines()
    );
    (daemon, notify)
}

/// A shell script that mounts a fresh /dev with null, zero and urandom and the given video
/// nodes as links, then runs its arguments in place (`exec`), so the child is campeer itself.
pub fn private_dev_script(video_nodes: &[(&str, &std::path::Path)]) -> String {
    let mut script = String::from(
        "set -e; mount -t tmpfs campeer-test-dev /dev; \
         mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5; \
         mknod -m 666 /dev/urandom c 1 9; ln -s /proc/self/fd /dev/fd; ",
    );
    for (name, target) in video_nodes {
        script += &format!("ln -s '{}' '/dev/{name}'; ", target.display());
    }
    script + "exec \"$@\""
}

/// `campeer devices --json` run under a private /dev holding only `video_nodes` (see
/// [`private_dev_script`]), with `PATH` set when given.
pub fn devices_json_with_dev(
    video_nodes: &[(&str, &std::path::Path)],
    path: Option<&str>,
) -> Value {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(private_dev_script(video_nodes))
        .arg("sh")
        .arg(crate::campeer_binary())
        .args(["devices", "--json"]);
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let listing = command.output().expect("run campeer devices");
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    serde_json::from_slice(&listing.stdout).expect("JSON")
}

/// Runs the campeer binary as a child process.
pub struct DaemonProcess {
    pub child: Child,
}

impl DaemonProcess {
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Self {
        Self::spawn_with_env(args, &[])
    }

    pub fn spawn_with_env<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Self {
        let child = Command::new(crate::campeer_binary())
            .args(args)
            .env("CAMPEER_LOG", "campeer=info")
            .envs(env.iter().copied())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the campeer binary");
        Self { child }
    }

    /// Runs the binary in a mount namespace of its own whose /dev holds only `video_nodes`
    /// (name, the fake device it stands for) and the few character devices a process needs:
    /// what `auto` finds there is exactly what the test put, whatever the machine has.
    pub fn spawn_with_dev<S: AsRef<std::ffi::OsStr>>(
        args: &[S],
        env: &[(&str, &str)],
        video_nodes: &[(&str, &std::path::Path)],
    ) -> Self {
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(private_dev_script(video_nodes))
            .arg("sh")
            .arg(crate::campeer_binary())
            .args(args)
            .env("CAMPEER_LOG", "campeer=info")
            .envs(env.iter().copied())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the campeer binary in a mount namespace");
        Self { child }
    }

    /// Runs the binary inside network namespace `ns` (`ip netns exec` execs it in place, so
    /// the child is campeer itself).
    pub fn spawn_in_namespace<S: AsRef<std::ffi::OsStr>>(ns: &str, args: &[S]) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(crate::campeer_binary())
            .args(args)
            .env("CAMPEER_LOG", "campeer=info")
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the campeer binary in a namespace");
        Self { child }
    }

    /// As [`DaemonProcess::spawn_in_namespace`], its output going to `log` (a file the test
    /// reads).
    pub fn spawn_in_namespace_logging<S: AsRef<std::ffi::OsStr>>(
        ns: &str,
        args: &[S],
        log: std::fs::File,
    ) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(crate::campeer_binary())
            .args(args)
            .env("CAMPEER_LOG", "campeer=info")
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("start the campeer binary in a namespace");
        Self { child }
    }

    /// The campeer binary in namespace `ns` serving the test pattern as `device`, without sound,
    /// through `brokers` (one URL or several, comma-separated), its log in the file returned.
    pub fn on_brokers_in_namespace(
        ns: &str,
        brokers: &str,
        device: &str,
    ) -> (Self, tempfile::NamedTempFile) {
        let log_path = tempfile::NamedTempFile::new().expect("a log file");
        let log = log_path.reopen().expect("the log file");
        let http = format!("127.0.0.1:{}", crate::free_port());
        let args = [
            "--broker",
            brokers,
            "--device-id",
            device,
            "--source",
            "test",
            "--audio-source",
            "none",
            "--http-listen",
            &http,
        ];
        (Self::spawn_in_namespace_logging(ns, &args, log), log_path)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit; its exit status.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Flags for an in-process campeer with its embedded broker (no --broker), every listener on a
/// loopback port the kernel picks as campeer binds it (pages reach the broker through the
/// page's origin).
pub fn zero_config_overrides(device: &str) -> Overrides {
    Overrides {
        device_id: Some(device.to_owned()),
        source: Some("test".into()),
        audio_source: Some("none".into()),
        ice_loopback_only: Some(true),
        http_listen: Some("127.0.0.1:0".into()),
        embedded_broker_listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    }
}

/// Campeer streaming from `camera` on `broker`, in-process.
pub async fn start_camera_device(
    broker: &Broker,
    camera: &fakecam::FakeCamera,
    device: &str,
) -> DeviceHandle {
    start_device(Overrides {
        source: Some(camera.path().display().to_string()),
        ..overrides(broker, device)
    })
    .await
}

/// The campeer binary in its zero-config form (embedded broker, page), every listener on a free
/// loopback port, loopback-only ICE. Returns the arguments and the page's port.
pub fn zero_config_args(device: &str) -> (Vec<String>, u16) {
    let (http, mqtt) = (free_port(), free_port());
    let args = [
        "--device-id",
        device,
        "--source",
        "test",
        "--audio-source",
        "none",
        "--ice-loopback-only",
        "--http-listen",
        &format!("127.0.0.1:{http}"),
        "--embedded-broker-listen",
        &format!("127.0.0.1:{mqtt}"),
    ]
    .map(str::to_owned)
    .to_vec();
    (args, http)
}
