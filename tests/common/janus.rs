//! Janus (Debian's 1.1.2) with a WHIP front-end, for campeer to publish into: Meetecho's
//! simple-whip-server from Debian's package, unpacked by tests/run into target/whip-server with
//! its npm dependencies (the package itself conflicts with NodeSource's Node.js). Janus never
//! gathers loopback candidates, so everything runs in a network namespace of the lab's own:
//! a veth pair with both ends inside it (campeer's end and Janus'), private addresses used only
//! there, deleted on drop. Janus' VideoRoom room 1234 takes H.264 and Opus; viewers subscribe
//! to it through Janus' HTTP API (tests/aiortc/janus_viewer.py).

use crate::network::{in_namespace, must, run};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The VideoRoom room publications go to.
pub const ROOM: u32 = 1234;
const WHIP_PORT: u16 = 7080;
const JANUS_HTTP_PORT: u16 = 8088;
const JANUS_WS_PORT: u16 = 8188;

/// The viewers' script.
pub const VIEWER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../aiortc/janus_viewer.py");

fn front_end_dir() -> PathBuf {
    crate::repo_root().join("target/whip-server")
}

/// Whether Janus and the front-end are installed (tests/run does both); under CI their
/// absence fails the test.
pub fn available() -> bool {
    let janus = Path::new("/usr/bin/janus").exists();
    let front_end = front_end_dir().join("node_modules/websocket").exists()
        && front_end_dir().join("src/server.js").exists();
    let found = janus && front_end;
    assert!(
        found || std::env::var_os("CI").is_none(),
        "Janus or the WHIP front-end is missing (tests/run installs them)"
    );
    if !found {
        eprintln!("skipping: Janus or the WHIP front-end in target/whip-server is missing");
    }
    found
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Janus, its WHIP front-end and campeer's side of the link, in one namespace.
pub struct JanusLab {
    pub ns: String,
    pub campeer_ip: String,
    pub janus_ip: String,
    janus_if: String,
    dir: tempfile::TempDir,
    janus: Option<Child>,
    front_end: Option<Child>,
}

impl JanusLab {
    /// The namespace, Janus, the front-end and endpoint `endpoint` for room [`ROOM`], behind
    /// bearer token `token`.
    pub fn start(endpoint: &str, token: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let subnet = (std::process::id() % 50) * 5 + n % 5 + 1;
        let ns = format!("cpj{tag}");
        let (campeer_if, janus_if) = (format!("cpjc{tag}"), format!("cpjj{tag}"));
        let (campeer_ip, janus_ip) = (format!("10.90.{subnet}.1"), format!("10.90.{subnet}.2"));
        must(&["ip", "netns", "add", &ns]);
        let lab = Self {
            ns: ns.clone(),
            campeer_ip: campeer_ip.clone(),
            janus_ip: janus_ip.clone(),
            janus_if: janus_if.clone(),
            // Inside target/, so that the front-end's copy finds target/whip-server's modules.
            dir: tempfile::tempdir_in(front_end_dir()).expect("a directory for Janus"),
            janus: None,
            front_end: None,
        };
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        must(&[
            "ip",
            "-n",
            &ns,
            "link",
            "add",
            &campeer_if,
            "type",
            "veth",
            "peer",
            "name",
            &janus_if,
        ]);
        for (interface, ip) in [(&campeer_if, &campeer_ip), (&janus_if, &janus_ip)] {
            must(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                interface,
            ]);
            must(&["ip", "-n", &ns, "link", "set", interface, "up"]);
        }
        // Both ends in one namespace: the kernel drops their packets unless told they may come
        // from a local address and skip the reverse-path check.
        for interface in ["all", campeer_if.as_str(), janus_if.as_str()] {
            for setting in ["accept_local=1", "rp_filter=0"] {
                let key = format!("net.ipv4.conf.{interface}.{setting}");
                must(&["ip", "netns", "exec", &ns, "sysctl", "-qw", &key]);
            }
        }
        // A default route: webrtc's gatherers and Janus' look for one.
        must(&[
            "ip",
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "dev",
            &campeer_if,
        ]);
        let mut lab = lab;
        lab.write_janus_config();
        lab.start_janus();
        lab.start_front_end();
        lab.create_endpoint(endpoint, token);
        lab
    }

    /// The WHIP URL of `endpoint`, as campeer is given it.
    pub fn endpoint_url(&self, endpoint: &str) -> String {
        format!(
            "http://{}:{WHIP_PORT}/whip/endpoint/{endpoint}",
            self.janus_ip
        )
    }

    /// Janus' HTTP API, for the viewers.
    pub fn janus_api(&self) -> String {
        format!("http://{}:{JANUS_HTTP_PORT}/janus", self.janus_ip)
    }

    fn write_janus_config(&self) {
        let libraries = janus_libraries();
        let dir = self.dir.path();
        let config = format!(
            "general: {{\n configs_folder = \"{dir}\"\n plugins_folder = \"{lib}/plugins\"\n \
             transports_folder = \"{lib}/transports\"\n events_folder = \"{lib}/events\"\n \
             loggers_folder = \"{lib}/loggers\"\n debug_level = 4\n}}\n\
             media: {{ rtp_port_range = \"20000-20200\" }}\n\
             nat: {{ ice_tcp = false\n ignore_mdns = true }}\n\
             plugins: {{ disable = \"libjanus_audiobridge.so,libjanus_echotest.so,libjanus_nosip.so,\
             libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,\
             libjanus_videocall.so,libjanus_voicemail.so,libjanus_duktape.so,libjanus_lua.so\" }}\n\
             transports: {{ disable = \"libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,\
             libjanus_rabbitmq.so\" }}\n\
             events: {{ broadcast = false }}\n\
             loggers: {{ disable = \"libjanus_jsonlog.so\" }}\n",
            dir = dir.display(),
            lib = libraries.display(),
        );
        std::fs::write(dir.join("janus.jcfg"), config).expect("janus.jcfg");
        // A room as an SFU operator sets one up: H.264 and Opus, a 2 Mbit/s cap for publishers.
        let room = format!(
            "general: {{}}\nroom-{ROOM}: {{\n description = \"campeer\"\n publishers = 4\n \
             bitrate = 2000000\n fir_freq = 0\n audiocodec = \"opus\"\n videocodec = \"h264\"\n \
             h264_profile = \"42e01f\"\n}}\n"
        );
        std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), room).expect("videoroom");
        let http = format!(
            "general: {{ json = \"indented\"\n base_path = \"/janus\"\n http = true\n \
             port = {JANUS_HTTP_PORT}\n https = false }}\nadmin: {{ admin_http = false }}\n"
        );
        std::fs::write(dir.join("janus.transport.http.jcfg"), http).expect("http transport");
        let ws = format!(
            "general: {{ json = \"indented\"\n ws = true\n ws_port = {JANUS_WS_PORT}\n \
             wss = false }}\nadmin: {{ admin_ws = false }}\n"
        );
        std::fs::write(dir.join("janus.transport.websockets.jcfg"), ws).expect("ws transport");
    }

    /// Starts Janus, gathering on its own end of the veth only, and waits for its API.
    pub fn start_janus(&mut self) {
        let config = self.dir.path().join("janus.jcfg").display().to_string();
        let folder = self.dir.path().display().to_string();
        let args = [
            "janus",
            "-o",
            "-C",
            &config,
            "-F",
            &folder,
            "-E",
            &self.janus_if,
        ];
        self.janus = Some(self.spawn_logged(&args, &[], "janus.log", JANUS_HTTP_PORT));
    }

    /// Starts `args` inside the namespace, its output in `log` under the lab's directory, and
    /// waits until it listens on `port` of Janus' address.
    fn spawn_logged(&self, args: &[&str], env: &[(&str, &str)], log: &str, port: u16) -> Child {
        let file = std::fs::File::create(self.dir.path().join(log)).expect("a log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .envs(env.iter().copied())
            .stdout(file.try_clone().expect("the log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?}: {e}"));
        let addr = format!("{}:{port}", self.janus_ip);
        assert!(
            crate::network::wait_for_tcp(&self.ns, addr, 500),
            "{args:?} does not listen on {port}:\n{}",
            std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default()
        );
        child
    }

    /// Kills Janus at once, as a crash would.
    pub fn kill_janus(&mut self) {
        if let Some(mut janus) = self.janus.take() {
            let _ = janus.kill();
            let _ = janus.wait();
        }
    }

    fn start_front_end(&mut self) {
        let copy = self.dir.path().join("src");
        std::fs::create_dir_all(&copy).expect("the front-end's copy");
        for entry in std::fs::read_dir(front_end_dir().join("src")).expect("the front-end") {
            let entry = entry.expect("an entry");
            if entry.file_name() != "config.js" {
                std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy");
            }
        }
        let config = format!(
            "module.exports = {{ janus: {{ address: 'ws://{}:{JANUS_WS_PORT}' }}, port: {WHIP_PORT}, \
             rest: '/whip', allowTrickle: true, strictETags: false, iceServers: [] }};\n",
            self.janus_ip
        );
        std::fs::write(copy.join("config.js"), config).expect("config.js");
        let server = copy.join("server.js").display().to_string();
        let env = [("DEBUG", "whip:*,janus:info,janus:warn,janus:error")];
        self.front_end = Some(self.spawn_logged(&["node", &server], &env, "whip.log", WHIP_PORT));
    }

    /// Makes a WHIP endpoint for the room (the front-end's own API) that publishers must give
    /// `token` to, as a bearer token.
    pub fn create_endpoint(&self, endpoint: &str, token: &str) {
        let body = format!("{{\"id\":\"{endpoint}\",\"room\":{ROOM},\"token\":\"{token}\"}}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // The front-end takes endpoints once it has its Janus session.
            let (status, said) = self.http(WHIP_PORT, "POST", "/whip/create", &body);
            if status == 200 || said.contains("already exists") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cannot create endpoint {endpoint}: {status} {said}\n{}",
                self.front_end_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The front-end's endpoints, as it lists them (`enabled`: a publisher is on it).
    pub fn endpoints(&self) -> serde_json::Value {
        let (_, body) = self.http(WHIP_PORT, "GET", "/whip/endpoints", "");
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
    }

    /// One HTTP/1.0 request to the Janus side of the lab, from inside the namespace.
    fn http(&self, port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
        http_in(
            &self.ns,
            &format!("{}:{port}", self.janus_ip),
            method,
            path,
            body,
        )
    }

    pub fn janus_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("janus.log")).unwrap_or_default()
    }

    pub fn front_end_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("whip.log")).unwrap_or_default()
    }

    /// Runs the viewers' script in the namespace with `args` until it exits by itself; every
    /// JSON line it printed.
    pub fn watch(&self, python: &Path, args: &[&str]) -> Vec<serde_json::Value> {
        let api = self.janus_api();
        let mut all = vec!["--janus", api.as_str()];
        all.extend_from_slice(args);
        crate::stacks::run_script_in(&self.ns, python, VIEWER, &all)
    }
}

impl Drop for JanusLab {
    fn drop(&mut self) {
        for child in [self.front_end.take(), self.janus.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = run(&["ip", "netns", "delete", &self.ns]);
    }
}

/// Where Debian put Janus' plugins and transports (`/usr/lib/<triplet>/janus`).
fn janus_libraries() -> PathBuf {
    std::fs::read_dir("/usr/lib")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("janus"))
        .find(|path| path.join("plugins/libjanus_videoroom.so").exists())
        .expect("Janus' libraries under /usr/lib/<triplet>/janus")
}

/// One HTTP/1.0 request from inside namespace `ns` to `addr`: the status and the body.
pub fn http_in(ns: &str, addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let addr = addr.to_owned();
    in_namespace(ns, move || {
        let Ok(mut stream) = std::net::TcpStream::connect(&addr) else {
            return (0, String::new());
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        if stream.write_all(request.as_bytes()).is_err() {
            return (0, String::new());
        }
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        let status = reply
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = reply
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    })
    .join()
    .unwrap_or((0, String::new()))
}
