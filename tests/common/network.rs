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

pub fn run(args: &[&str]) -> Result<String, String> {
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

pub fn must(args: &[&str]) -> String {
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

/// Campeer's namespace and one viewer namespace per link, each joined to campeer's by a veth
/// pair of its own, so that each viewer's link can be shaped and made lossy on its own.
pub struct Lab {
    pub campeer_ns: String,
    pub links: Vec<LabLink>,
}

/// One viewer's namespace and its veth to campeer's namespace, on a /24 of its own.
pub struct LabLink {
    pub campeer_ns: String,
    pub viewer_ns: String,
    pub campeer_if: String,
    pub viewer_if: String,
    pub campeer_ip: String,
    pub viewer_ip: String,
    loss_chain: String,
    /// Position of this link's counting rule in campeer's OUTPUT chain (1-based).
    count_rule: usize,
}

impl Lab {
    /// Campeer and one viewer.
    pub fn new() -> Self {
        Self::with_viewers(1)
    }

    /// Campeer and `viewers` viewers (at most 4), each on a link of its own.
    pub fn with_viewers(viewers: usize) -> Self {
        assert!((1..=4).contains(&viewers), "1 to 4 viewers");
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{}", std::process::id() % 100_000, n);
        let subnet = (std::process::id() % 50) * 5 + n % 5 + 1;
        let campeer_ns = format!("cpc{tag}");
        must(&["ip", "netns", "add", &campeer_ns]);
        must(&["ip", "-n", &campeer_ns, "link", "set", "lo", "up"]);
        let links = (0..viewers)
            .map(|i| {
                let link = LabLink {
                    campeer_ns: campeer_ns.clone(),
                    viewer_ns: format!("cpv{tag}{i}"),
                    campeer_if: format!("cpc{tag}{i}"),
                    viewer_if: format!("cpv{tag}{i}"),
                    campeer_ip: format!("10.{}.{subnet}.1", 77 + i),
                    viewer_ip: format!("10.{}.{subnet}.2", 77 + i),
                    loss_chain: format!("CPLOSS{i}"),
                    count_rule: 2 * i + 1,
                };
                link.create();
                link
            })
            .collect();
        Self { campeer_ns, links }
    }

    /// The first (or only) viewer's link.
    pub fn link(&self) -> &LabLink {
        &self.links[0]
    }

    /// Runs a command inside campeer's namespace.
    pub fn in_campeer(&self, args: &[&str]) -> String {
        in_ns(&self.campeer_ns, args)
    }
}

/// Runs a command inside namespace `ns`.
pub fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    must(&full)
}

impl LabLink {
    fn create(&self) {
        must(&["ip", "netns", "add", &self.viewer_ns]);
        must(&[
            "ip",
            "link",
            "add",
            &self.campeer_if,
            "netns",
            &self.campeer_ns,
            "type",
            "veth",
            "peer",
            "name",
            &self.viewer_if,
            "netns",
            &self.viewer_ns,
        ]);
        for (ns, iface, ip) in [
            (&self.campeer_ns, &self.campeer_if, &self.campeer_ip),
            (&self.viewer_ns, &self.viewer_if, &self.viewer_ip),
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
        self.in_campeer(&["iptables", "-N", &self.loss_chain]);
        for jump in [&[][..], &["-j", &self.loss_chain][..]] {
            let mut rule = vec![
                "iptables",
                "-A",
                "OUTPUT",
                "-o",
                &self.campeer_if,
                "-p",
                "udp",
            ];
            rule.extend_from_slice(jump);
            self.in_campeer(&rule);
        }
    }

    /// Runs a command inside campeer's namespace.
    pub fn in_campeer(&self, args: &[&str]) -> String {
        in_ns(&self.campeer_ns, args)
    }

    /// Limits what campeer sends to this viewer to `kbit` kbit/s with a queue of about
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

    /// Drops each UDP packet campeer sends to this viewer with probability `loss` (0 clears).
    pub fn lose(&self, loss: f64) {
        self.in_campeer(&["iptables", "-F", &self.loss_chain]);
        if loss > 0.0 {
            self.in_campeer(&[
                "iptables",
                "-A",
                &self.loss_chain,
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

    /// Bytes that left campeer's side of this link (the interface's own counter: after the
    /// loss rule and the shaper, so what the link carried).
    pub fn campeer_sent_bytes(&self) -> u64 {
        let path = format!("/sys/class/net/{}/statistics/tx_bytes", self.campeer_if);
        self.in_campeer(&["cat", &path]).trim().parse().unwrap_or(0)
    }

    /// UDP bytes campeer handed to this link, before the loss rule and the shaper: what it
    /// offered, from this link's counting rule in OUTPUT.
    pub fn offered_bytes(&self) -> u64 {
        let rule = self.count_rule.to_string();
        let listing = self.in_campeer(&["iptables", "-L", "OUTPUT", &rule, "-v", "-x", "-n"]);
        listing
            .split_whitespace()
            .nth(1)
            .and_then(|bytes| bytes.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth, and with it the peer.
        let _ = run(&["ip", "netns", "del", &self.campeer_ns]);
        for link in &self.links {
            let _ = run(&["ip", "netns", "del", &link.viewer_ns]);
        }
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
    /// Campeer in the lab's campeer namespace, its broker beside it.
    pub fn start(lab: &Lab, device: &str, extra: &[&str]) -> Self {
        let broker = NamespacedBroker::start(&lab.campeer_ns);
        Self::start_with_broker(&lab.campeer_ns, broker, "127.0.0.1", device, extra)
    }

    /// Campeer in namespace `ns`, connecting to `broker` at `broker_host`.
    pub fn start_with_broker(
        ns: &str,
        broker: NamespacedBroker,
        broker_host: &str,
        device: &str,
        extra: &[&str],
    ) -> Self {
        let mut args: Vec<String> = [
            "--broker",
            &format!("mqtt://{broker_host}:{}", broker.port),
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
        let daemon = super::DaemonProcess::spawn_in_namespace(ns, &args);
        Self {
            broker,
            daemon,
            device: device.to_owned(),
        }
    }
}

/// Runs `body` on a thread inside a link's viewer namespace, on a runtime of its own there.
pub fn in_viewer_namespace<T, F>(
    link: &LabLink,
    body: impl FnOnce() -> F + Send + 'static,
) -> std::thread::JoinHandle<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    run_in_namespace(&link.viewer_ns, body)
}

/// Runs async `body` on a thread inside namespace `ns`, on a runtime of its own there.
pub fn run_in_namespace<T, F>(
    ns: &str,
    body: impl FnOnce() -> F + Send + 'static,
) -> std::thread::JoinHandle<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    in_namespace(ns, move || {
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
    /// The viewer's own STUN/TURN servers, and whether it insists on relaying.
    pub ice_servers: Vec<webrtc::peer_connection::RTCIceServer>,
    pub relay_only: bool,
}

impl LabCampeer {
    pub fn target(&self, link: &LabLink) -> LabTarget {
        LabTarget {
            broker_host: link.campeer_ip.clone(),
            broker_port: self.broker.port,
            device: self.device.clone(),
            bind_ip: link.viewer_ip.clone(),
            ice_servers: Vec::new(),
            relay_only: false,
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
            ice_servers: target.ice_servers,
            relay_only: target.relay_only,
            ..Default::default()
        },
    )
    .await
}

/// One viewer to watch over a lab link: which link, its session name, and the loss its link
/// gets once it shows a first picture.
pub struct LabViewer<'a> {
    pub link: &'a LabLink,
    pub session: String,
    pub loss: f64,
}

/// Joins one test viewer per entry, each from its link's viewer namespace; once all show a
/// first picture, makes each link drop its `loss` of campeer's packets (the lossy stream is
/// what is measured; setting up a connection over a lossy link is another matter), lets
/// `ramp` pass, then measures all of them over the same `measure`: each viewer's playback
/// and campeer's rate on each link's wire.
pub fn watch_over_lab_links(
    campeer: &LabCampeer,
    viewers: &[LabViewer<'_>],
    ramp: Duration,
    measure: Duration,
) -> Vec<LinkReport> {
    let (pictured_tx, pictured_rx) = std::sync::mpsc::channel::<()>();
    let mut threads = Vec::new();
    for viewer in viewers {
        let target = campeer.target(viewer.link);
        let session = viewer.session.clone();
        let pictured_tx = pictured_tx.clone();
        let (start_tx, start_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = in_viewer_namespace(viewer.link, move || async move {
            let viewer = join_over_lab(target, &session).await;
            assert!(
                viewer
                    .wait_for_more_frames(1, Duration::from_secs(20))
                    .await,
                "{session}: no first picture over the lab link: {:?}",
                viewer.snapshot(|s| (s.errors.clone(), s.connection_states.clone()))
            );
            let _ = pictured_tx.send(());
            // Awaited, never blocked on: the viewer's peer connection runs on this thread.
            let _ = tokio::time::timeout(Duration::from_secs(60), start_rx).await;
            tokio::time::sleep(ramp).await;
            let from = std::time::Instant::now();
            tokio::time::sleep(measure).await;
            let to = std::time::Instant::now();
            // Stays connected until campeer's side has read its counters too.
            let _ = tokio::time::timeout(Duration::from_secs(5), done_rx).await;
            let report = viewer.snapshot(|s| {
                (
                    super::playback::playback(&s.frames, from, to),
                    s.decode_errors,
                )
            });
            viewer.close().await;
            report
        });
        threads.push((thread, start_tx, done_tx));
    }
    drop(pictured_tx);
    for _ in viewers {
        if pictured_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            break;
        }
    }
    for viewer in viewers {
        viewer.link.lose(viewer.loss);
    }
    let threads: Vec<_> = threads
        .into_iter()
        .map(|(thread, start, done)| {
            let _ = start.send(());
            (thread, done)
        })
        .collect();
    std::thread::sleep(ramp);
    let counters = |link: &LabLink| (link.offered_bytes(), link.campeer_sent_bytes());
    let before: Vec<_> = viewers.iter().map(|v| counters(v.link)).collect();
    let started = std::time::Instant::now();
    std::thread::sleep(measure);
    let seconds = started.elapsed().as_secs_f64();
    let after: Vec<_> = viewers.iter().map(|v| counters(v.link)).collect();
    let kbps = |bytes: u64| bytes as f64 * 8.0 / seconds / 1000.0;
    threads
        .into_iter()
        .zip(before.into_iter().zip(after))
        .map(
            |((thread, done), ((offered_0, carried_0), (offered_1, carried_1)))| {
                let _ = done.send(());
                let (playback, decode_errors) = thread.join().expect("viewer thread");
                LinkReport {
                    playback,
                    offered_kbps: kbps(offered_1 - offered_0),
                    delivered_kbps: kbps(carried_1 - carried_0),
                    decode_errors,
                }
            },
        )
        .collect()
}

/// [`watch_over_lab_links`] for the lab's only viewer.
pub fn watch_over_lab(
    lab: &Lab,
    campeer: &LabCampeer,
    session: &str,
    loss: f64,
    ramp: Duration,
    measure: Duration,
) -> LinkReport {
    let viewer = LabViewer {
        link: lab.link(),
        session: session.to_owned(),
        loss,
    };
    watch_over_lab_links(campeer, &[viewer], ramp, measure)
        .pop()
        .expect("one report")
}
