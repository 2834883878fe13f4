//! A NAT lab: campeer and the viewer each on a private network behind a router of its own
//! that masquerades (iptables MASQUERADE, as a home router does), both routers joined to a
//! "public" namespace that stands in for the internet and holds a STUN/TURN server (Debian's
//! coturn) and the MQTT broker. Every namespace and address (10.90–10.93.x) is created here
//! and deleted on drop; the public namespace has no default route, so nothing leaves the lab.
//!
//! ```text
//! campeer ns ── campeer router (NAT) ──┐
//!                                      public ns (coturn, mosquitto)
//! viewer ns  ── viewer router (NAT)  ──┘
//! ```

use crate::Watching;
use crate::network::{
    LabCampeer, LabTarget, NamespacedBroker, in_ns, join_over_lab, must, rule_counters, run,
    run_in_namespace, veth_pair, wait_for_tcp,
};
use crate::tls::TestCa;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// coturn's port for STUN and TURN (UDP and TCP), and its relay port range.
pub const TURN_PORT: u16 = 3478;
/// coturn's port for TURN over TLS, when started with a certificate.
pub const TURN_TLS_PORT: u16 = 5349;
const RELAY_PORTS: (u16, u16) = (50_000, 50_200);
pub const TURN_USER: &str = "campeer";
pub const TURN_PASSWORD: &str = "lab-secret";

static NEXT_NAT_LAB: AtomicU32 = AtomicU32::new(0);

pub struct NatLab {
    pub public_ns: String,
    pub campeer_router_ns: String,
    pub viewer_router_ns: String,
    pub campeer_ns: String,
    pub viewer_ns: String,
    /// The public server's address (coturn, the broker): the public namespace's side of the
    /// campeer router's link, reachable from both private networks through their NATs.
    pub server_ip: String,
    pub campeer_ip: String,
    pub viewer_ip: String,
    /// The routers' public addresses: what the other side sees after NAT.
    pub campeer_public_ip: String,
    pub viewer_public_ip: String,
    /// The viewer router's interface on the public side, where it masquerades.
    viewer_router_public_if: String,
    turn: Option<Child>,
    turn_dir: Option<tempfile::TempDir>,
}

impl NatLab {
    // Made, never defaulted: it creates namespaces, links and addresses in the kernel.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let n = NEXT_NAT_LAB.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{}", std::process::id() % 100_000, n);
        let s = (std::process::id() % 50) * 5 + n % 5 + 1;
        let name = |role: &str| format!("cpn{tag}{role}");
        let lab = Self {
            public_ns: name("p"),
            campeer_router_ns: name("rc"),
            viewer_router_ns: name("rv"),
            campeer_ns: name("c"),
            viewer_ns: name("v"),
            server_ip: format!("10.90.{s}.1"),
            campeer_public_ip: format!("10.90.{s}.2"),
            viewer_public_ip: format!("10.91.{s}.2"),
            campeer_ip: format!("10.92.{s}.2"),
            viewer_ip: format!("10.93.{s}.2"),
            viewer_router_public_if: name("rvp"),
            turn: None,
            turn_dir: None,
        };
        for ns in [
            &lab.public_ns,
            &lab.campeer_router_ns,
            &lab.viewer_router_ns,
            &lab.campeer_ns,
            &lab.viewer_ns,
        ] {
            must(&["ip", "netns", "add", ns]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // The internet: the public namespace forwards between the two routers.
        veth_pair(
            (&lab.public_ns, &name("pc"), &format!("10.90.{s}.1")),
            (&lab.campeer_router_ns, &name("rcp"), &lab.campeer_public_ip),
        );
        veth_pair(
            (&lab.public_ns, &name("pv"), &format!("10.91.{s}.1")),
            (
                &lab.viewer_router_ns,
                &lab.viewer_router_public_if,
                &lab.viewer_public_ip,
            ),
        );
        // The private networks behind each router.
        veth_pair(
            (
                &lab.campeer_router_ns,
                &name("rcl"),
                &format!("10.92.{s}.1"),
            ),
            (&lab.campeer_ns, &name("cl"), &lab.campeer_ip),
        );
        veth_pair(
            (&lab.viewer_router_ns, &name("rvl"), &format!("10.93.{s}.1")),
            (&lab.viewer_ns, &name("vl"), &lab.viewer_ip),
        );
        for ns in [
            &lab.public_ns,
            &lab.campeer_router_ns,
            &lab.viewer_router_ns,
        ] {
            in_ns(ns, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        }
        for (router, public_if, upstream) in [
            (&lab.campeer_router_ns, name("rcp"), format!("10.90.{s}.1")),
            (
                &lab.viewer_router_ns,
                lab.viewer_router_public_if.clone(),
                format!("10.91.{s}.1"),
            ),
        ] {
            must(&[
                "ip", "-n", router, "route", "add", "default", "via", &upstream,
            ]);
            in_ns(
                router,
                &[
                    "iptables",
                    "-t",
                    "nat",
                    "-A",
                    "POSTROUTING",
                    "-o",
                    &public_if,
                    "-j",
                    "MASQUERADE",
                ],
            );
            // A home router's firewall: nothing unsolicited from outside reaches the router
            // itself. Without it, a peer's check that arrives before ours went out leaves a
            // connection-tracking entry that takes our port, and MASQUERADE then maps our
            // socket to another port than the one STUN saw (the srflx candidate goes stale).
            in_ns(
                router,
                &[
                    "iptables",
                    "-A",
                    "INPUT",
                    "-i",
                    &public_if,
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "NEW",
                    "-j",
                    "DROP",
                ],
            );
        }
        must(&[
            "ip",
            "-n",
            &lab.campeer_ns,
            "route",
            "add",
            "default",
            "via",
            &format!("10.92.{s}.1"),
        ]);
        must(&[
            "ip",
            "-n",
            &lab.viewer_ns,
            "route",
            "add",
            "default",
            "via",
            &format!("10.93.{s}.1"),
        ]);
        // Counts what reaches the TURN server's relay ports (rule 1: proof that media went
        // through it), its TCP port (rule 2: a client that reached it over TCP) and its TLS
        // port (rule 3).
        let relay_ports = format!("{}:{}", RELAY_PORTS.0, RELAY_PORTS.1);
        let (turn_port, tls_port) = (TURN_PORT.to_string(), TURN_TLS_PORT.to_string());
        for (chain, protocol, direction, ports) in [
            ("INPUT", "udp", "--dport", &relay_ports),
            ("INPUT", "tcp", "--dport", &turn_port),
            ("INPUT", "tcp", "--dport", &tls_port),
            // And what leaves the relay ports (OUTPUT rule 1): media relayed towards a peer.
            ("OUTPUT", "udp", "--sport", &relay_ports),
        ] {
            in_ns(
                &lab.public_ns,
                &["iptables", "-A", chain, "-p", protocol, direction, ports],
            );
        }
        lab
    }

    /// Starts coturn in the public namespace (STUN, and TURN over UDP and TCP with a long-term
    /// credential), waits until it accepts TCP connections.
    pub fn start_turn(&mut self) {
        let dir = tempfile::tempdir().expect("temp dir");
        self.spawn_turn(dir, &["--no-tls".to_owned()]);
    }

    /// Starts coturn as [`start_turn`](Self::start_turn) does, and over TLS too (port
    /// [`TURN_TLS_PORT`]) with a certificate for the server's address from a CA of the lab's
    /// own; returns that CA's certificate (PEM), the one thing a client must trust.
    pub fn start_turn_with_tls(&mut self) -> PathBuf {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestCa::create(dir.path(), &self.server_ip);
        self.spawn_turn(
            dir,
            &[
                format!("--cert={}", pki.server_cert.display()),
                format!("--pkey={}", pki.server_key.display()),
                format!("--tls-listening-port={TURN_TLS_PORT}"),
            ],
        );
        pki.ca_cert
    }

    fn spawn_turn(&mut self, dir: tempfile::TempDir, tls: &[String]) {
        let pid = dir.path().join("turnserver.pid");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.public_ns, "turnserver", "-n"])
            .args([
                &format!("--listening-ip={}", self.server_ip),
                &format!("--relay-ip={}", self.server_ip),
                &format!("--listening-port={TURN_PORT}"),
                &format!("--min-port={}", RELAY_PORTS.0),
                &format!("--max-port={}", RELAY_PORTS.1),
                "--realm=campeer.test",
                &format!("--user={TURN_USER}:{TURN_PASSWORD}"),
                "--lt-cred-mech",
                "--fingerprint",
                "--no-dtls",
                "--no-cli",
                "--no-multicast-peers",
                // As a TURN server on the internet is set up: relaying to private addresses is
                // refused (403 to the permission request). Without it coturn tries campeer's
                // private host candidate, gets "network unreachable" and closes the viewer's
                // whole allocation.
                "--denied-peer-ip=10.92.0.0-10.93.255.255",
                "--simple-log",
                "--verbose",
            ])
            .args(tls)
            .arg(format!(
                "--log-file={}",
                dir.path().join("turn.log").display()
            ))
            .arg(format!("--pidfile={}", pid.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start coturn (Debian's coturn package; tests/run installs it)");
        self.turn = Some(child);
        self.turn_dir = Some(dir);
        let server = format!("{}:{TURN_PORT}", self.server_ip);
        let up = wait_for_tcp(&self.public_ns, server, 250);
        assert!(up, "coturn did not start in {}", self.public_ns);
    }

    pub fn stun_url(&self) -> String {
        format!("stun:{}:{TURN_PORT}", self.server_ip)
    }

    /// The lab's STUN server as a viewer configures it.
    pub fn stun_server(&self) -> webrtc::peer_connection::RTCIceServer {
        webrtc::peer_connection::RTCIceServer {
            urls: vec![self.stun_url()],
            ..Default::default()
        }
    }

    /// The TURN server as a viewer configures it, over `transport` ("udp" or "tcp").
    pub fn turn_server(&self, transport: &str) -> webrtc::peer_connection::RTCIceServer {
        webrtc::peer_connection::RTCIceServer {
            urls: vec![format!(
                "turn:{}:{TURN_PORT}?transport={transport}",
                self.server_ip
            )],
            username: TURN_USER.into(),
            credential: TURN_PASSWORD.into(),
        }
    }

    /// UDP packets through the TURN server's relay ports, in from a peer or out to one:
    /// media relayed, whichever side allocated the relay.
    pub fn relayed_packets(&self) -> u64 {
        self.public_packets("INPUT", 1) + self.public_packets("OUTPUT", 1)
    }

    /// TCP packets that reached the TURN server's port (a client using TURN over TCP).
    pub fn turn_tcp_packets(&self) -> u64 {
        self.public_packets("INPUT", 2)
    }

    /// TCP packets that reached the TURN server's TLS port.
    pub fn turn_tls_packets(&self) -> u64 {
        self.public_packets("INPUT", 3)
    }

    /// Campeer's router lets no UDP out to the public side (as many office and hotel networks
    /// do): campeer reaches STUN and TURN over UDP no more, only over TCP.
    pub fn block_udp_from_campeer(&self) {
        in_ns(
            &self.campeer_router_ns,
            &[
                "iptables",
                "-I",
                "FORWARD",
                "1",
                "-p",
                "udp",
                "-s",
                &self.campeer_ip,
                "-j",
                "DROP",
            ],
        );
    }

    /// UDP packets from campeer that its router dropped (after [`block_udp_from_campeer`]).
    pub fn campeer_udp_dropped(&self) -> u64 {
        rule_counters(&self.campeer_router_ns, "FORWARD", 1).0
    }

    fn public_packets(&self, chain: &str, rule: usize) -> u64 {
        rule_counters(&self.public_ns, chain, rule).0
    }

    /// Campeer behind its NAT with `config` (TOML) as its configuration file, the broker on
    /// the public side. The file lives as long as the returned handle.
    pub fn start_campeer_with_config(
        &self,
        device: &str,
        config: &str,
        extra: &[&str],
    ) -> (LabCampeer, tempfile::NamedTempFile) {
        let file = tempfile::NamedTempFile::new().expect("a config file");
        std::fs::write(file.path(), config).expect("write the config");
        let broker = NamespacedBroker::start(&self.public_ns);
        let path = file.path().display().to_string();
        let mut args = vec!["--config", path.as_str()];
        args.extend_from_slice(extra);
        let campeer =
            LabCampeer::start_with_broker(&self.campeer_ns, broker, &self.server_ip, device, &args);
        (campeer, file)
    }

    /// The lab's TURN server at `url`, with its credential, as a TOML inline table for
    /// `ice.servers` or `web.ice_servers`.
    pub fn turn_server_toml(&self, url: &str) -> String {
        format!(
            "{{ urls = [\"{url}\"], username = \"{TURN_USER}\", credential = \"{TURN_PASSWORD}\" }}"
        )
    }

    /// The test viewer, in the viewer's namespace, joins campeer through the public broker
    /// with `ice_servers` of its own and watches for up to 30 s.
    pub fn watch(
        &self,
        campeer: &LabCampeer,
        session: &str,
        ice_servers: Vec<webrtc::peer_connection::RTCIceServer>,
        relay_only: bool,
    ) -> NatWatch {
        let target = LabTarget {
            broker_host: self.server_ip.clone(),
            broker_port: campeer.broker.port,
            device: campeer.device.clone(),
            bind_ip: self.viewer_ip.clone(),
            ice_servers,
            relay_only,
            mdns: false,
            ignore_device_candidates: false,
        };
        let session = session.to_owned();
        run_in_namespace(&self.viewer_ns, move || async move {
            let viewer = join_over_lab(target, &session).await;
            let played = viewer
                .wait_for_more_frames(60, Duration::from_secs(30))
                .await;
            let (errors, remote_candidates) =
                viewer.snapshot(|s| (s.errors.clone(), s.remote_candidate_lines.clone()));
            viewer.close().await;
            NatWatch {
                played,
                errors,
                remote_candidates,
            }
        })
        .join()
        .expect("viewer thread")
    }

    /// Forwards TCP `port` on the campeer router's public address to campeer (a port forward,
    /// as for publishing the viewer page); the viewer reaches it at `campeer_public_ip`.
    pub fn forward_to_campeer(&self, port: u16) {
        let port = port.to_string();
        in_ns(
            &self.campeer_router_ns,
            &[
                "iptables",
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-d",
                &self.campeer_public_ip,
                "-p",
                "tcp",
                "--dport",
                &port,
                "-j",
                "DNAT",
                "--to-destination",
                &format!("{}:{port}", self.campeer_ip),
            ],
        );
    }

    /// coturn's log (sessions, permissions, refusals), for failure messages.
    pub fn turn_log(&self) -> String {
        let Some(dir) = &self.turn_dir else {
            return "coturn is not running".into();
        };
        std::fs::read_to_string(dir.path().join("turn.log")).unwrap_or_else(|e| e.to_string())
    }

    /// Makes the viewer's router a symmetric NAT, as some carrier-grade and corporate NATs are:
    /// every destination gets a port of its own (MASQUERADE --random-fully), so the port STUN
    /// saw is of no use to anyone else, and only a relay connects the two.
    pub fn make_viewer_nat_symmetric(&self) {
        let public_if = &self.viewer_router_public_if;
        in_ns(
            &self.viewer_router_ns,
            &["iptables", "-t", "nat", "-F", "POSTROUTING"],
        );
        in_ns(
            &self.viewer_router_ns,
            &[
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                public_if,
                "-j",
                "MASQUERADE",
                "--random-fully",
            ],
        );
    }

    /// The routers' connection-tracking tables, for failure messages: which mappings the NATs
    /// made and which flows never got a reply.
    pub fn nat_tables(&self) -> String {
        [&self.campeer_router_ns, &self.viewer_router_ns]
            .iter()
            .map(|ns| {
                let table = run(&["ip", "netns", "exec", ns, "cat", "/proc/net/nf_conntrack"])
                    .unwrap_or_else(|e| e);
                format!("{ns}:\n{table}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What the test viewer saw through the NATs.
pub struct NatWatch {
    pub played: bool,
    pub errors: Vec<(String, String)>,
    /// Campeer's candidates as the viewer received them.
    pub remote_candidates: Vec<String>,
}

impl NatWatch {
    /// Asserts the viewer got its picture without errors and the media went through the TURN
    /// server's relay ports (`through` names the way, for the failure message).
    pub fn assert_played_through_relay(&self, lab: &NatLab, through: &str) {
        assert!(self.errors.is_empty(), "errors: {:?}", self.errors);
        assert!(
            self.played,
            "no picture through {through}; campeer's candidates: {:?}\n{}\ncoturn:\n{}",
            self.remote_candidates,
            lab.nat_tables(),
            lab.turn_log()
        );
        let relayed = lab.relayed_packets();
        assert!(
            relayed >= 60,
            "only {relayed} packets reached the TURN server's relay ports"
        );
    }

    /// Whether campeer sent a candidate of `kind` ("srflx", "relay") at `ip`.
    pub fn has_candidate(&self, kind: &str, ip: &str) -> bool {
        self.remote_candidates
            .iter()
            .any(|c| c.contains(&format!("typ {kind}")) && c.contains(ip))
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        if let Some(mut turn) = self.turn.take() {
            let _ = turn.kill();
            let _ = turn.wait();
        }
        for ns in [
            &self.campeer_ns,
            &self.viewer_ns,
            &self.campeer_router_ns,
            &self.viewer_router_ns,
            &self.public_ns,
        ] {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}
