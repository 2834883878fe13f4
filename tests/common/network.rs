//! A network lab for the tests: two network namespaces the test creates itself (campeer's and
//! the viewer's) joined by a veth pair with private 10.x addresses used only there, the link
//! from campeer to the viewer shaped with `tc tbf` and made lossy with iptables' statistic
//! match, and everything deleted on drop. No default route, no multicast route: nothing in
//! them can reach any other address.
//!
//! campeer runs in its namespace as the binary (`ip netns exec`); the test viewer runs on a
//! thread that has entered the viewer's namespace, so every socket it opens is there.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn run(args: &[&str]) -> Result<String, String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) -> String {
    run(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether this machine can build the lab (root, iproute2, tc, iptables). CI runs as root
/// and must have it; elsewhere the network tests skip and say why.
pub fn lab_available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("network namespaces need root".into());
    }
    for tool in ["ip", "tc", "iptables"] {
        run(&["sh", "-c", &format!("command -v {tool}")])
            .map_err(|_| format!("{tool} is not installed (tests/run installs it)"))?;
    }
    Ok(())
}

/// Skips (returns `false`) with the reason when the lab cannot be built, except under CI,
/// where a missing lab fails the test.
pub fn require_lab() -> bool {
    match lab_available() {
        Ok(()) => true,
        Err(reason) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: {reason}");
            false
        }
        Err(reason) => panic!("the network lab is required under CI: {reason}"),
    }
}

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Two namespaces joined by a veth pair: campeer's side and the viewer's.
pub struct Lab {
    pub campeer_ns: String,
    pub viewer_ns: String,
    pub campeer_if: String,
    pub viewer_if: String,
    pub campeer_ip: String,
    pub viewer_ip: String,
}

impl Lab {
    pub fn new() -> Self {
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{}", std::process::id() % 100_000, n);
        let subnet = (std::process::id() % 50) * 5 + n % 5 + 1;
        let lab = Self {
            campeer_ns: format!("cpc{tag}"),
            viewer_ns: format!("cpv{tag}"),
            campeer_if: format!("cpc{tag}"),
            viewer_if: format!("cpv{tag}"),
            campeer_ip: format!("10.77.{subnet}.1"),
            viewer_ip: format!("10.77.{subnet}.2"),
        };
        must(&["ip", "netns", "add", &lab.campeer_ns]);
        must(&["ip", "netns", "add", &lab.viewer_ns]);
        must(&[
            "ip",
            "link",
            "add",
            &lab.campeer_if,
            "netns",
            &lab.campeer_ns,
            "type",
            "veth",
            "peer",
            "name",
            &lab.viewer_if,
            "netns",
            &lab.viewer_ns,
        ]);
        for (ns, iface, ip) in [
            (&lab.campeer_ns, &lab.campeer_if, &lab.campeer_ip),
            (&lab.viewer_ns, &lab.viewer_if, &lab.viewer_ip),
        ] {
            must(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                iface,
            ]);
            must(&["ip", "-n", ns, "link", "set", iface, "up"]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // UDP to the viewer: first counted (what campeer offered), then the loss chain.
        lab.in_campeer(&["iptables", "-N", "CPLOSS"]);
        for jump in [&[][..], &["-j", "CPLOSS"][..]] {
            let mut rule = vec![
                "iptables",
                "-A",
                "OUTPUT",
                "-o",
                &lab.campeer_if,
                "-p",
                "udp",
            ];
            rule.extend_from_slice(jump);
            lab.in_campeer(&rule);
        }
        lab
    }

    /// Runs a command inside campeer's namespace.
    pub fn in_campeer(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.campeer_ns];
        full.extend_from_slice(args);
        must(&full)
    }

    /// Limits what campeer sends to the viewer to `kbit` kbit/s with a queue of about
    /// `queue` (tbf: a bottleneck router's buffer), replacing any earlier limit; `None`
    /// removes it.
    pub fn shape(&self, kbit: Option<u32>, queue: Duration) {
        let _ = run(&[
            "ip",
            "netns",
            "exec",
            &self.campeer_ns,
            "tc",
            "qdisc",
            "del",
            "dev",
            &self.campeer_if,
            "root",
        ]);
        let Some(kbit) = kbit else { return };
        let burst = (kbit as u64 * 1000 / 8 / 50).max(3_000);
        let latency = format!("{}ms", queue.as_millis());
        self.in_campeer(&[
            "tc",
            "qdisc",
            "add",
            "dev",
            &self.campeer_if,
            "root",
            "tbf",
            "rate",
            &format!("{kbit}kbit"),
            "burst",
            &burst.to_string(),
            "latency",
            &latency,
        ]);
    }

    /// Drops each UDP packet campeer sends to the viewer with probability `loss` (0 clears).
    pub fn lose(&self, loss: f64) {
        self.in_campeer(&["iptables", "-F", "CPLOSS"]);
        if loss > 0.0 {
            self.in_campeer(&[
                "iptables",
                "-A",
                "CPLOSS",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &format!("{loss:.4}"),
                "-j",
                "DROP",
            ]);
        }
    }

    /// Bytes that left campeer's side of the link (the interface's own counter: after the
    /// loss rule and the shaper, so what the link carried).
    pub fn campeer_sent_bytes(&self) -> u64 {
        let path = format!("/sys/class/net/{}/statistics/tx_bytes", self.campeer_if);
        self.in_campeer(&["cat", &path]).trim().parse().unwrap_or(0)
    }

    /// UDP bytes campeer handed to the link, before the loss rule and the shaper: what it
    /// offered, from the counting rule that comes first in OUTPUT.
    pub fn offered_bytes(&self) -> u64 {
        let listing = self.in_campeer(&["iptables", "-L", "OUTPUT", "1", "-v", "-x", "-n"]);
        listing
            .split_whitespace()
            .nth(1)
            .and_then(|bytes| bytes.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and with it the peer.
        let _ = run(&["ip", "netns", "del", &self.campeer_ns]);
        let _ = run(&["ip", "netns", "del", &self.viewer_ns]);
    }
}

/// Runs `body` on a thread of its own inside network namespace `ns`, with a tokio runtime
/// of its own there: every socket the body opens (its WebRTC peer, its MQTT connection)
/// belongs to that namespace.
pub fn in_namespace<T: Send + 'static>(
    ns: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        use std::os::fd::AsRawFd;
        // SAFETY: setns on this thread only, with a valid namespace file descriptor.
        let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            done,
            0,
            "setns into {path}: {}",
            std::io::Error::last_os_error()
        );
        body()
    })
}

/// A real mosquitto inside namespace `ns`, on `port` on every address there (loopback and
/// the lab's veth), stopped on drop.
pub struct NamespacedBroker {
    pub port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl NamespacedBroker {
    pub fn start(ns: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port}\nallow_anonymous true\npersistence false\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n"
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "/usr/sbin/mosquitto", "-c"])
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start mosquitto in the namespace");
        let probe_ns = ns.to_owned();
        let up = in_namespace(&probe_ns, move || {
            (0..500).any(|_| {
                let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
                if !ok {
                    std::thread::sleep(Duration::from_millis(20));
                }
                ok
            })
        })
        .join()
        .expect("probe thread");
        assert!(up, "mosquitto did not start in {ns}");
        Self {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for NamespacedBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one viewer got over a lab link, and what campeer put on it.
#[derive(Debug, Clone)]
pub struct LinkReport {
    pub playback: super::playback::Playback,
    /// What campeer offered to the link, before loss and shaping, in kbit/s.
    pub offered_kbps: f64,
    /// What the link carried from campeer, in kbit/s.
    pub delivered_kbps: f64,
    pub decode_errors: usize,
}

/// Campeer (the binary, test pattern, no sound) in the lab's campeer namespace with a broker
/// beside it, ready for viewers in the other namespace.
pub struct LabCampeer {
    pub broker: NamespacedBroker,
    pub daemon: super::DaemonProcess,
    pub device: String,
}

impl LabCampeer {
    pub fn start(lab: &Lab, device: &str, extra: &[&str]) -> Self {
        let broker = NamespacedBroker::start(&lab.campeer_ns);
        let mut args: Vec<String> = [
            "--broker",
            &format!("mqtt://127.0.0.1:{}", broker.port),
            "--device-id",
            device,
            "--source",
            "test",
            "--audio-source",
            "none",
            "--http-listen",
            &format!("127.0.0.1:{}", super::free_port()),
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        // CAMPEER_TEST_DAEMON_LOG=campeer=debug shows the daemon's rate decisions.
        if let Ok(filter) = std::env::var("CAMPEER_TEST_DAEMON_LOG") {
            args.extend(["--log".to_owned(), filter]);
        }
        let daemon = super::DaemonProcess::spawn_in_namespace(&lab.campeer_ns, &args);
        Self {
            broker,
            daemon,
            device: device.to_owned(),
        }
    }
}

/// Runs `body` on a thread inside the lab's viewer namespace, on a runtime of its own there.
pub fn in_viewer_namespace<T, F>(
    lab: &Lab,
    body: impl FnOnce() -> F + Send + 'static,
) -> std::thread::JoinHandle<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    in_namespace(&lab.viewer_ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(body())
    })
}

/// Where a viewer in the lab's viewer namespace finds campeer: its broker and device, and
/// the viewer's own address.
#[derive(Debug, Clone)]
pub struct LabTarget {
    pub broker_host: String,
    pub broker_port: u16,
    pub device: String,
    pub bind_ip: String,
}

impl LabCampeer {
    pub fn target(&self, lab: &Lab) -> LabTarget {
        LabTarget {
            broker_host: lab.campeer_ip.clone(),
            broker_port: self.broker.port,
            device: self.device.clone(),
            bind_ip: lab.viewer_ip.clone(),
        }
    }
}

/// Waits for campeer to say it is online, then joins it as `session` over the lab link.
/// Call from [`in_viewer_namespace`].
pub async fn join_over_lab(target: LabTarget, session: &str) -> super::TestViewer {
    let status = super::TopicWatcher::start_on_host(
        &target.broker_host,
        target.broker_port,
        &super::status_topic(&target.device),
    )
    .await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(20), |s| s["state"] == "online")
            .await,
        "campeer never came online"
    );
    super::TestViewer::join_port(
        target.broker_port,
        &target.device,
        session,
        super::ViewerOptions {
            bind_ip: Some(target.bind_ip),
            broker_host: Some(target.broker_host),
            ..Default::default()
        },
    )
    .await
}

/// Joins one test viewer from the viewer namespace; once it shows a first picture, makes the
/// link drop `loss` of campeer's packets (the lossy stream is what is measured; setting up a
/// connection over a lossy link is another matter), lets `ramp` pass, then measures for
/// `measure`: the viewer's playback and campeer's rate on the wire.
pub fn watch_over_lab(
    lab: &Lab,
    campeer: &LabCampeer,
    session: &str,
    loss: f64,
    ramp: Duration,
    measure: Duration,
) -> LinkReport {
    let target = campeer.target(lab);
    let session = session.to_owned();
    let (marks_tx, marks_rx) = std::sync::mpsc::channel::<()>();
    let (pictured_tx, pictured_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let viewer = in_viewer_namespace(lab, move || async move {
        let viewer = join_over_lab(target, &session).await;
        assert!(
            viewer
                .wait_for_more_frames(1, Duration::from_secs(20))
                .await,
            "no first picture over the lab link: {:?}",
            viewer.snapshot(|s| (s.errors.clone(), s.connection_states.clone()))
        );
        let _ = pictured_tx.send(());
        tokio::time::sleep(ramp).await;
        let _ = marks_tx.send(());
        let from = std::time::Instant::now();
        tokio::time::sleep(measure).await;
        let to = std::time::Instant::now();
        let _ = go_rx.recv_timeout(Duration::from_secs(5));
        let report = viewer.snapshot(|s| {
            (
                super::playback::playback(&s.frames, from, to),
                s.decode_errors,
            )
        });
        viewer.close().await;
        report
    });
    if pictured_rx.recv_timeout(Duration::from_secs(60)).is_ok() {
        lab.lose(loss);
    }
    marks_rx
        .recv_timeout(ramp + Duration::from_secs(60))
        .expect("the viewer started measuring");
    let (offered_0, carried_0) = (lab.offered_bytes(), lab.campeer_sent_bytes());
    let started = std::time::Instant::now();
    std::thread::sleep(measure);
    let seconds = started.elapsed().as_secs_f64();
    let (offered_1, carried_1) = (lab.offered_bytes(), lab.campeer_sent_bytes());
    let _ = go_tx.send(());
    let (playback, decode_errors) = viewer.join().expect("viewer thread");
    LinkReport {
        playback,
        offered_kbps: (offered_1 - offered_0) as f64 * 8.0 / seconds / 1000.0,
        delivered_kbps: (carried_1 - carried_0) as f64 * 8.0 / seconds / 1000.0,
        decode_errors,
    }
}
