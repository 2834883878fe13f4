//! RabbitMQ with its MQTT plugin (Debian's rabbitmq-server 3.10): a real broker that speaks
//! MQTT 3.1.1 only, as several cloud brokers do. A node runs inside a lab namespace as the
//! `rabbitmq` user, with its own directory, node name and ports, and is killed (with its
//! Erlang port mapper) on drop.

use std::os::unix::process::CommandExt;
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

pub struct RabbitMq {
    /// The MQTT listener's port, on every address in the namespace.
    pub port: u16,
    epmd: Child,
    server: Child,
    _dir: tempfile::TempDir,
}

/// A command inside namespace `ns` as the `rabbitmq` user, in a process group of its own so
/// that everything it starts can be killed together.
fn as_rabbitmq(ns: &str, dir: &std::path::Path, program: &str) -> Command {
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
        .env("HOME", dir)
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0);
    command
}

impl RabbitMq {
    /// Starts a node in namespace `ns` and waits until its MQTT listener takes connections.
    pub fn start_in(ns: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        let path = dir.path();
        std::fs::write(
            path.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{amqp}\n\
                 mqtt.listeners.tcp.default = {port}\n\
                 mqtt.allow_anonymous = true\n\
                 loopback_users = none\n",
                amqp = super::free_port()
            ),
        )
        .expect("write rabbitmq.conf");
        std::fs::write(path.join("enabled_plugins"), "[rabbitmq_mqtt].\n")
            .expect("write enabled_plugins");
        let owned = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(owned, "chown the RabbitMQ directory");
        let epmd = as_rabbitmq(ns, path, "/usr/bin/epmd")
            .args(["-address", "127.0.0.1"])
            .spawn()
            .expect("start epmd in the namespace");
        let server = as_rabbitmq(ns, path, SERVER)
            .env("RABBITMQ_NODENAME", "campeer@localhost")
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_DIST_PORT", super::free_port().to_string())
            .env("RABBITMQ_CONFIG_FILE", path.join("rabbitmq"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                path.join("enabled_plugins"),
            )
            .env("RABBITMQ_MNESIA_BASE", path.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", path.join("log"))
            .env("RABBITMQ_PID_FILE", path.join("pid"))
            .spawn()
            .expect("start rabbitmq-server in the namespace");
        let broker = Self {
            port,
            epmd,
            server,
            _dir: dir,
        };
        let started = Instant::now();
        let up = super::network::wait_for_tcp(ns, format!("127.0.0.1:{port}"), 4_500);
        let log = std::fs::read_dir(broker._dir.path().join("log"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
            .collect::<String>();
        assert!(
            up && started.elapsed() < START_LIMIT,
            "RabbitMQ did not take MQTT connections within {START_LIMIT:?}: {log}"
        );
        eprintln!("RabbitMQ took {:?} to start", started.elapsed());
        broker
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        for child in [&mut self.server, &mut self.epmd] {
            // The process group: the server script, the Erlang VM and its helpers.
            if let Ok(group) = i32::try_from(child.id()) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
            let _ = child.wait();
        }
    }
}
