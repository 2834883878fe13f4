//! A network lab for the tests: two network namespaces the test creates itself (campeer's and
//! the viewer's) joined by a veth pair with private 10.x addresses used only there, the link
//! from campeer to the viewer shaped with `tc tbf` and made lossy with iptables' statistic
//! match, and everything deleted on drop. No default route, no multicast route: nothing in
//! them can reach any other address.
//!
//! campeer runs in its namespace as the binary (`ip netns exec`); the test viewer runs on a
//! thread that has entered the viewer's namespace, so every socket it opens is there.

use crate::Watching;
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

/// Joins namespaces `a` and `b` with a veth pair, each end with its /24 address and up.
pub fn veth_pair((ns_a, if_a, ip_a): (&str, &str, &str), (ns_b, if_b, ip_b): (&str, &str, &str)) {
    must(&[
        "ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns",
        ns_b,
    ]);
    for (ns, iface, ip) in [(ns_a, if_a, ip_a), (ns_b, if_b, ip_b)] {
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
    }
}

/// The packets and bytes iptables rule `rule` (1-based) of `chain` in namespace `ns` matched.
pub fn rule_counters(ns: &str, chain: &str, rule: usize) -> (u64, u64) {
    let rule = rule.to_string();
    let listing = in_ns(ns, &["iptables", "-L", chain, &rule, "-v", "-x", "-n"]);
    let mut figures = listing
        .split_whitespace()
        .map(|figure| figure.parse().unwrap_or(0));
    (figures.next().unwrap_or(0), figures.next().unwrap_or(0))
}

/// Waits (up to `tries` × 20 ms) until something in namespace `ns` accepts TCP at `addr`.
pub fn wait_for_tcp(ns: &str, addr: String, tries: u32) -> bool {
    in_namespace(ns, move || {
        (0..tries).any(|_| {
            let ok = std::net::TcpStream::connect(&addr).is_ok();
            if !ok {
                std::thread::sleep(Duration::from_millis(20));
            }
            ok
        })
    })
    .join()
    .expect("probe thread")
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
    require(lab_available())
}

/// As [`require_lab`], for the NAT lab, which also needs coturn and openssl.
pub fn require_nat_lab() -> bool {
    require(lab_available().and_then(|()| {
        for (tool, package) in [("turnserver", "coturn"), ("openssl", "openssl")] {
            run(&["sh", "-c", &format!("command -v {tool}")])
                .map_err(|_| format!("{package} is not installed (tests/run installs it)"))?;
        }
        Ok(())
    }))
}

fn require(available: Result<(), String>) -> bool {
    match available {
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
    // Made, never defaulted: it creates namespaces, links and addresses in the kernel.
    #[allow(clippy::new_without_default)]
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
        veth_pair(
            (&self.campeer_ns, &self.campeer_if, &self.campeer_ip),
            (&self.viewer_ns, &self.viewer_if, &self.viewer_ip),
        );
        must(&["ip", "-n", &self.viewer_ns, "link", "set", "lo", "up"]);
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

    /// Waits (up to 5 s) until the viewer's veth has its IPv6 link-local address and it is
    /// no longer tentative. The address appears once the link has carrier and stays tentative
    /// for a second or two of duplicate address detection; libnice (GStreamer's ICE) gathering
    /// that starts meanwhile never completes.
    pub fn wait_for_settled_addresses(&self) {
        for _ in 0..50 {
            let link_local = in_ns(
                &self.viewer_ns,
                &[
                    "ip",
                    "-6",
                    "addr",
                    "show",
                    "dev",
                    &self.viewer_if,
                    "scope",
                    "link",
                ],
            );
            if link_local.contains("inet6") && !link_local.contains("tentative") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{}'s link-local address never settled", self.viewer_if);
    }

    /// Gives the viewer's namespace a default route through campeer's end of the link, as a
    /// home router would be. Browsers gather host candidates only on the interface of their
    /// default route (Firefox never on loopback), so a browser with no default route offers
    /// none. Campeer's namespace forwards nothing: no packet leaves the two namespaces.
    pub fn route_viewer_through_campeer(&self) {
        in_ns(
            &self.viewer_ns,
            &["ip", "route", "add", "default", "via", &self.campeer_ip],
        );
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
        rule_counters(&self.campeer_ns, "OUTPUT", self.count_rule).1
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

/// Runs async `body` inside namespace `ns` on a multi-threaded runtime of its own there
/// (campeer in-process needs one; the threads it starts are in `ns` too), waits for it and
/// re-raises its panic, so that the test fails with the body's own message.
pub fn serve_in_namespace<T, F>(ns: &str, body: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    let outcome = in_namespace(ns, move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(body())
    })
    .join();
    outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A lab for browsers as on a home network: one viewer namespace routed through campeer's
/// ([`LabLink::route_viewer_through_campeer`]). Returns the lab (deleted on drop), the viewer's
/// namespace and campeer's address.
pub fn browser_lab() -> (Lab, String, String) {
    let lab = Lab::new();
    let link = lab.link();
    link.route_viewer_through_campeer();
    let (viewer_ns, campeer_ip) = (link.viewer_ns.clone(), link.campeer_ip.clone());
    (lab, viewer_ns, campeer_ip)
}

/// Campeer's zero configuration (embedded broker, test pattern, no sound) serving its page on
/// `ip`, an address of the namespace it runs in, with ICE on every interface there.
pub fn lan_overrides(device: &str, ip: &str) -> campeer::config::Overrides {
    campeer::config::Overrides {
        http_listen: Some(format!("{ip}:0")),
        ice_loopback_only: Some(false),
        ..super::zero_config_overrides(device)
    }
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
        Self::start_with_extra(ns, "")
    }

    /// Also with a WebSocket listener for pages, on every IPv4 address in `ns`; its port.
    pub fn start_with_websockets(ns: &str) -> (Self, u16) {
        let ws_port = super::free_port();
        // mosquitto 2.0 ignores a websockets listener's address unless socket_domain is set.
        let extra = format!("listener {ws_port}\nprotocol websockets\nsocket_domain ipv4\n");
        (Self::start_with_extra(ns, &extra), ws_port)
    }

    fn start_with_extra(ns: &str, extra_listeners: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nallow_anonymous true\npersistence false\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n\
                 listener {port}\n{extra_listeners}"
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "/usr/sbin/mosquitto", "-c"])
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start mosquitto in the namespace");
        let up = wait_for_tcp(ns, format!("127.0.0.1:{port}"), 500);
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
    /// Of what campeer sent this viewer, the share that was retransmissions (campeer's stats
    /// topic over the same window).
    pub retransmitted_share: f64,
    pub decode_errors: usize,
}

/// The share of retransmissions in what campeer sent `session`, over the stats messages
/// published in a window.
pub fn retransmitted_share(stats: &[serde_json::Value], session: &str) -> f64 {
    let (mut sent, mut retransmitted) = (0.0, 0.0);
    for message in stats {
        let viewers = message["viewers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for viewer in viewers.iter().filter(|v| v["session"] == session) {
            sent += viewer["sent_kbps"].as_f64().unwrap_or(0.0);
            retransmitted += viewer["retransmitted_kbps"].as_f64().unwrap_or(0.0);
        }
    }
    if sent > 0.0 {
        retransmitted / sent
    } else {
        0.0
    }
}

/// campeer's stats topic for `device`.
pub fn stats_topic(device: &str) -> String {
    format!("{}/{device}/stats", super::PREFIX)
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
        ]
        .map(str::to_owned)
        .to_vec();
        if !extra.contains(&"--audio-source") {
            args.extend(["--audio-source".to_owned(), "none".to_owned()]);
        }
        if !extra.contains(&"--http-listen") {
            args.extend([
                "--http-listen".to_owned(),
                format!("127.0.0.1:{}", super::free_port()),
            ]);
        }
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
    /// The viewer hides its host addresses behind mDNS names, as browsers do.
    pub mdns: bool,
    /// The viewer drops campeer's candidates: only campeer's checks can then connect them.
    pub ignore_device_candidates: bool,
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
            mdns: false,
            ignore_device_candidates: false,
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
            mdns: target.mdns,
            ignore_device_candidates: target.ignore_device_candidates,
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
            let stats = super::TopicWatcher::start_on_host(
                &target.broker_host,
                target.broker_port,
                &stats_topic(&target.device),
            )
            .await;
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
            let stats_from = stats.messages.lock().unwrap().len();
            tokio::time::sleep(measure).await;
            let to = std::time::Instant::now();
            let share = {
                let messages = stats.messages.lock().unwrap();
                let window = messages.get(stats_from..).unwrap_or_default();
                // CAMPEER_TEST_SHOW_STATS=1 prints campeer's stats over the window.
                if std::env::var_os("CAMPEER_TEST_SHOW_STATS").is_some() {
                    for message in window {
                        eprintln!("{session} stats: {message}");
                    }
                }
                retransmitted_share(window, &session)
            };
            // Stays connected until campeer's side has read its counters too.
            let _ = tokio::time::timeout(Duration::from_secs(5), done_rx).await;
            let report = viewer.snapshot(|s| {
                (
                    super::playback::playback(&s.frames, from, to),
                    s.decode_errors,
                    share,
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
                let (playback, decode_errors, retransmitted_share) =
                    thread.join().expect("viewer thread");
                LinkReport {
                    playback,
                    offered_kbps: kbps(offered_1 - offered_0),
                    delivered_kbps: kbps(carried_1 - carried_0),
                    retransmitted_share,
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

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Campeer's stats messages for `device`, collected by a thread inside campeer's namespace
/// (where its broker is) until [`StatsCollector::finish`]; each with the Unix time it came.
pub struct StatsCollector {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Vec<(u64, serde_json::Value)>>,
}

/// The paths (campeer's stats `path`: candidate types and the viewer's address) reported for
/// `session`, oldest first.
pub fn reported_paths(stats: &[(u64, serde_json::Value)], session: &str) -> Vec<serde_json::Value> {
    stats
        .iter()
        .filter_map(|(_, message)| message["viewers"].as_array())
        .flatten()
        .filter(|viewer| viewer["session"] == session)
        .map(|viewer| viewer["path"].clone())
        .filter(|path| !path.is_null())
        .collect()
}

impl StatsCollector {
    pub fn start(ns: &str, broker_port: u16, device: &str) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let topic = stats_topic(device);
        let thread = run_in_namespace(ns, move || async move {
            let watcher =
                super::TopicWatcher::start_on_host("127.0.0.1", broker_port, &topic).await;
            let mut seen = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
            tokio::pin!(stopped);
            loop {
                let ended = tokio::time::timeout(Duration::from_millis(100), &mut stopped).await;
                let now = unix_ms();
                let mut messages = watcher.messages.lock().unwrap();
                seen.extend(messages.drain(..).map(|m| (now, m)));
                if ended.is_ok() || tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            seen
        });
        Self { stop, thread }
    }

    pub fn finish(self) -> Vec<(u64, serde_json::Value)> {
        let _ = self.stop.send(());
        self.thread.join().expect("stats thread")
    }
}

/// Headless Chromium in the lab's viewer namespace watches campeer's page (served on the lab
/// link, its broker's WebSocket listener beside it); once it shows a first picture the link
/// drops `loss` of campeer's packets; after `ramp`, what the page showed over `measure`
/// (from its frame log) and what campeer put on the link.
pub async fn watch_page_over_lab(
    lab: &Lab,
    device: &str,
    loss: f64,
    ramp: Duration,
    measure: Duration,
) -> LinkReport {
    let link = lab.link();
    // A viewer's machine has a default route; so does this one. Chromium in a namespace
    // without one gathers no candidate at all (the page sends no packet and stays
    // "connecting"); its other start-up gap is bridged by BrowserRun's ICE warm-up.
    link.route_viewer_through_campeer();
    let (broker, ws_port) = NamespacedBroker::start_with_websockets(&lab.campeer_ns);
    let broker_port = broker.port;
    let http_port = super::free_port();
    let ws_url = format!("ws://{}:{ws_port}", link.campeer_ip);
    let listen = format!("{}:{http_port}", link.campeer_ip);
    let _campeer = LabCampeer::start_with_broker(
        &lab.campeer_ns,
        broker,
        "127.0.0.1",
        device,
        &["--broker-ws-url", &ws_url, "--http-listen", &listen],
    );
    let stats = StatsCollector::start(&lab.campeer_ns, broker_port, device);
    let url = format!("http://{listen}/");
    let limit = Duration::from_secs(40) + ramp + measure;
    let browser = super::BrowserRun::start_in_namespace(
        &link.viewer_ns,
        &url,
        1,
        limit.as_secs(),
        &super::screenshot_prefix(&format!("lab-{device}")),
    );
    let pictured = browser
        .wait_for(Duration::from_secs(30), 0, |v| {
            v["stats"]["framesDecoded"].as_u64().unwrap_or(0) > 0
        })
        .await;
    assert!(
        pictured,
        "{device}: the page showed no picture: {:?}",
        browser.latest(0)
    );
    link.lose(loss);
    tokio::time::sleep(ramp).await;
    let (from, offered_0, carried_0) = (unix_ms(), link.offered_bytes(), link.campeer_sent_bytes());
    tokio::time::sleep(measure).await;
    let (to, offered_1, carried_1) = (unix_ms(), link.offered_bytes(), link.campeer_sent_bytes());
    browser.stop();
    let lines = browser.finish(Duration::from_secs(30)).await;
    let frame_log = lines
        .iter()
        .find(|l| l["page"] == 0 && l.get("frameLog").is_some())
        .map(|l| l["frameLog"].clone())
        .unwrap_or_default();
    let stats: Vec<serde_json::Value> = stats
        .finish()
        .into_iter()
        .filter(|(at, _)| (from..=to).contains(at))
        .map(|(_, message)| message)
        .collect();
    // The page does not show its session id; campeer's only viewer is the page.
    let session = stats
        .iter()
        .find_map(|m| m["viewers"][0]["session"].as_str().map(str::to_owned));
    let seconds = (to - from) as f64 / 1000.0;
    let kbps = |bytes: u64| bytes as f64 * 8.0 / seconds / 1000.0;
    LinkReport {
        playback: super::playback::page_playback(&frame_log, from, to),
        offered_kbps: kbps(offered_1 - offered_0),
        delivered_kbps: kbps(carried_1 - carried_0),
        retransmitted_share: session
            .map(|s| retransmitted_share(&stats, &s))
            .unwrap_or(0.0),
        decode_errors: 0,
    }
}

/// One row of the link matrix: a link campeer must serve well.
#[derive(Debug, Clone, Copy)]
pub struct LinkCase {
    pub name: &'static str,
    /// The bottleneck's rate (tbf, 200 ms queue); `None`: unshaped.
    pub kbit: Option<u32>,
    /// Random loss of campeer's packets once the viewer has a picture.
    pub loss: f64,
    /// The frame rate the viewer must keep: 25 where the link carries the full stream.
    pub min_fps: f64,
}

pub const LINK_MATRIX: &[LinkCase] = &[
    LinkCase {
        name: "open",
        kbit: None,
        loss: 0.0,
        min_fps: 25.0,
    },
    LinkCase {
        name: "2m",
        kbit: Some(2_000),
        loss: 0.0,
        min_fps: 25.0,
    },
    LinkCase {
        name: "600k",
        kbit: Some(600),
        loss: 0.0,
        min_fps: 25.0,
    },
    LinkCase {
        name: "300k-2pc",
        kbit: Some(300),
        loss: 0.02,
        min_fps: 15.0,
    },
    LinkCase {
        name: "3pc",
        kbit: None,
        loss: 0.03,
        min_fps: 25.0,
    },
];

/// The link matrix, or the cases named in CAMPEER_LINK_CASES (comma-separated), to look at one.
pub fn selected_link_cases() -> Vec<LinkCase> {
    match std::env::var("CAMPEER_LINK_CASES") {
        Ok(names) => names
            .split(',')
            .map(|n| LinkCase::by_name(n.trim()))
            .collect(),
        Err(_) => LINK_MATRIX.to_vec(),
    }
}

pub const LINK_QUEUE: Duration = Duration::from_millis(200);
pub const LINK_RAMP: Duration = Duration::from_secs(5);
pub const LINK_MEASURE: Duration = Duration::from_secs(10);

impl LinkCase {
    pub fn by_name(name: &str) -> Self {
        *LINK_MATRIX
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no link case {name}"))
    }

    /// A lab with this case's bottleneck (the loss comes later, once there is a picture).
    pub fn lab(&self) -> Lab {
        let lab = Lab::new();
        lab.link().shape(self.kbit, LINK_QUEUE);
        lab
    }

    /// What the report breaks of the bar: at least `min_fps`, no freeze over a
    /// second, a 90th-percentile latency of at most 400 ms, at most 1.3× the link offered.
    pub fn shortfalls(&self, report: &LinkReport) -> Vec<String> {
        let p = &report.playback;
        let mut wrong = Vec::new();
        if p.fps < self.min_fps {
            wrong.push(format!("{:.1} fps < {}", p.fps, self.min_fps));
        }
        if p.longest_freeze > Duration::from_secs(1) {
            wrong.push(format!("a freeze of {} ms", p.longest_freeze.as_millis()));
        }
        if p.latency_p90_ms > 400 {
            wrong.push(format!("p90 latency {} ms", p.latency_p90_ms));
        }
        if let Some(kbit) = self.kbit
            && report.offered_kbps > 1.3 * f64::from(kbit)
        {
            wrong.push(format!(
                "{:.0} kbit/s offered to a {kbit} kbit/s link",
                report.offered_kbps
            ));
        }
        wrong
    }
}

impl std::fmt::Display for LinkReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} · offered {:.0} kbit/s, delivered {:.0} kbit/s, {:.1} % retransmitted",
            self.playback,
            self.offered_kbps,
            self.delivered_kbps,
            100.0 * self.retransmitted_share
        )
    }
}
