//! RabbitMQ with its MQTT plugin (Debian's rabbitmq-server 3.10): a real broker that speaks
//! MQTT 3.1.1 only, as several cloud brokers do, alone or as a cluster of nodes. Nodes run
//! inside a lab namespace as the `rabbitmq` user, each with its own directory, node name and
//! ports, sharing one Erlang port mapper and cookie, and are killed (the mapper too) on drop.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// A node takes about 10 s to start here; more on a loaded machine.
const START_LIMIT: Duration = Duration::from_secs(90);

/// Whether Debian's rabbitmq-server is installed; CI must have it (tests/run installs it).
pub fn available() -> bool {
    let found = std::path::Path::new(SERVER).exists();
    assert!(
        found || std::env::var_os("CI").is_none(),
        "rabbitmq-server is not installed (tests/run installs it)"
    );
    if !found {
        eprintln!("skipping: rabbitmq-server is not installed (tests/run installs it)");
    }
    found
}

/// One RabbitMQ node.
pub struct Node {
    /// The MQTT listener's port, on every address in the namespace.
    pub port: u16,
    server: Option<Child>,
    dir: PathBuf,
}

impl Node {
    /// Kills the node at once, as a crash or a power cut would: no goodbye to its clients or
    /// to the cluster.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            // The process group: the server script, the Erlang VM and its helpers.
            if let Ok(group) = i32::try_from(server.id()) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
            let _ = server.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_dir(self.dir.join("log"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
            .collect()
    }
}

/// Nodes sharing one Erlang port mapper and cookie: a cluster when they are told of each
/// other.
pub struct RabbitMq {
    /// The nodes, the first started first.
    pub nodes: Vec<Node>,
    epmd: Child,
    _home: tempfile::TempDir,
}

/// A command inside namespace `ns` as the `rabbitmq` user, in a process group of its own so
/// that everything it starts can be killed together.
fn as_rabbitmq(ns: &str, home: &Path, program: &str) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", ns, "setpriv"])
        .args([
            "--reuid=rabbitmq",
            "--regid=rabbitmq",
            "--init-groups",
            "--",
        ])
        .arg(program)
        .env("HOME", home)
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0);
    command
}

impl RabbitMq {
    /// Starts one node in namespace `ns` and waits until its MQTT listener takes connections.
    pub fn start_in(ns: &str) -> Self {
        Self::cluster_in(ns, 1)
    }

    /// Starts `count` nodes in namespace `ns` as one cluster (each names the others in its
    /// configuration and joins the first when it boots), and waits until every node's MQTT
    /// listener takes connections.
    pub fn cluster_in(ns: &str, count: usize) -> Self {
        let home = tempfile::tempdir().expect("temp dir");
        // One cookie for every node, written before any starts (each would make its own).
        let cookie = home.path().join(".erlang.cookie");
        std::fs::write(&cookie, format!("CAMPEERTEST{}", std::process::id()))
            .expect("write the Erlang cookie");
        let names: Vec<String> = (1..=count)
            .map(|n| format!("campeer{n}@localhost"))
            .collect();
        let mut nodes: Vec<Node> = names
            .iter()
            .map(|name| configure(home.path(), name, &names))
            .collect();
        let owned = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(home.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(owned, "chown the RabbitMQ directory");
        std::fs::set_permissions(&cookie, std::os::unix::fs::PermissionsExt::from_mode(0o400))
            .expect("the cookie is the owner's alone");
        let epmd = as_rabbitmq(ns, home.path(), "/usr/bin/epmd")
            .args(["-address", "127.0.0.1"])
            .spawn()
            .expect("start epmd in the namespace");
        let mut cluster = Self {
            nodes: Vec::new(),
            epmd,
            _home: home,
        };
        let started = Instant::now();
        // The first node alone, so that the others find it running and join it rather than
        // form clusters of their own.
        let mut rest = nodes.split_off(1.min(nodes.len()));
        let each = nodes.iter_mut().chain(rest.iter_mut()).zip(&names);
        for (index, (node, name)) in each.enumerate() {
            node.server = Some(spawn(ns, cluster._home.path(), node, name));
            if index == 0 {
                wait_until_up(ns, node, started);
            }
        }
        for node in &rest {
            wait_until_up(ns, node, started);
        }
        cluster.nodes = nodes.into_iter().chain(rest).collect();
        eprintln!(
            "RabbitMQ: {count} node(s) took {:?} to start",
            started.elapsed()
        );
        cluster
    }

    /// The first node's MQTT port.
    pub fn port(&self) -> u16 {
        self.nodes.first().map_or(0, |node| node.port)
    }
}

/// A node's directory and configuration.
fn configure(home: &Path, name: &str, cluster: &[String]) -> Node {
    let dir = home.join(name.split('@').next().unwrap_or(name));
    std::fs::create_dir_all(&dir).expect("a node directory");
    let port = super::free_port();
    let mut conf = format!(
        "listeners.tcp.default = 127.0.0.1:{amqp}\n\
         mqtt.listeners.tcp.default = {port}\n\
         mqtt.allow_anonymous = true\n\
         loopback_users = none\n",
        amqp = super::free_port()
    );
    if cluster.len() > 1 {
        conf.push_str("cluster_formation.peer_discovery_backend = classic_config\n");
        for (n, peer) in cluster.iter().enumerate() {
            conf.push_str(&format!(
                "cluster_formation.classic_config.nodes.{} = {peer}\n",
                n + 1
            ));
        }
    }
    std::fs::write(dir.join("rabbitmq.conf"), conf).expect("write rabbitmq.conf");
    std::fs::write(dir.join("enabled_plugins"), "[rabbitmq_mqtt].\n")
        .expect("write enabled_plugins");
    Node {
        port,
        server: None,
        dir,
    }
}

fn spawn(ns: &str, home: &Path, node: &Node, name: &str) -> Child {
    let dir = &node.dir;
    as_rabbitmq(ns, home, SERVER)
        .env("RABBITMQ_NODENAME", name)
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_DIST_PORT", super::free_port().to_string())
        .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
        .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", dir.join("log"))
        .env("RABBITMQ_PID_FILE", dir.join("pid"))
        .spawn()
        .expect("start rabbitmq-server in the namespace")
}

fn wait_until_up(ns: &str, node: &Node, started: Instant) {
    let up = super::network::wait_for_tcp(ns, format!("127.0.0.1:{}", node.port), 4_500);
    assert!(
        up && started.elapsed() < START_LIMIT,
        "RabbitMQ did not take MQTT connections within {START_LIMIT:?}: {}",
        node.log()
    );
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        if let Ok(group) = i32::try_from(self.epmd.id()) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.epmd.wait();
    }
}
