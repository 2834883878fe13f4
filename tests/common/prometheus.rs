//! A real Prometheus (Debian 12's 2.42, unpacked by tests/run under target/prometheus) scraping
//! campeer every second, its HTTP API for queries, and its `promtool` to check a scrape.

use crate::whep::{HttpReply, http};
use serde_json::Value;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A fresh Prometheus is ready in about a second here; more on a loaded machine.
const READY_LIMIT: Duration = Duration::from_secs(60);

fn tool(name: &str) -> std::path::PathBuf {
    crate::repo_root()
        .join("target/prometheus/usr/bin")
        .join(name)
}

/// Whether target/prometheus holds Prometheus; CI must have it (tests/run unpacks it).
pub fn available() -> bool {
    let found = tool("prometheus").exists() && tool("promtool").exists();
    assert!(
        found || std::env::var_os("CI").is_none(),
        "Prometheus is not unpacked in target/prometheus (tests/run does it)"
    );
    if !found {
        eprintln!("skipping: Prometheus is not unpacked in target/prometheus (tests/run does it)");
    }
    found
}

/// What `promtool check metrics` says of `exposition`: `Ok` with its output when it finds
/// nothing wrong.
pub fn promtool_check(exposition: &str) -> Result<String, String> {
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(said)
    } else {
        Err(said)
    }
}

/// One sample of an instant query: its labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: Value,
    pub value: f64,
}

pub struct Prometheus {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` (`127.0.0.1:PORT`) at `/metrics` every second, sending `token` as a
    /// bearer token when given, and waits until it is ready.
    pub async fn scrape(target: &str, token: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = crate::free_port();
        let authorization = token
            .map(|token| format!("    authorization:\n      credentials: '{token}'\n"))
            .unwrap_or_default();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: campeer\n{authorization}    static_configs:\n      \
             - targets: ['{target}']\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("a log file");
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Self {
            port,
            child,
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(reply) = prometheus.get("/-/ready").await
                && reply.status == 200
            {
                return prometheus;
            }
            assert!(
                started.elapsed() < READY_LIMIT,
                "Prometheus not ready within {READY_LIMIT:?}: {}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Result<HttpReply, String> {
        if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            return Err("not listening".into());
        }
        let mut reply = http(self.port, "GET", path, &[], "").await;
        let chunked = reply
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            reply.body = dechunk(&reply.body);
        }
        Ok(reply)
    }

    /// An instant query's samples (PromQL `query`).
    pub async fn query(&self, query: &str) -> Vec<Sample> {
        let reply = self
            .get(&format!("/api/v1/query?query={}", percent_encode(query)))
            .await
            .expect("Prometheus answers");
        let answer: Value = serde_json::from_str(&reply.body)
            .unwrap_or_else(|e| panic!("a JSON answer ({e}): {}", reply.body));
        assert_eq!(answer["status"], "success", "{query}: {answer}");
        answer["data"]["result"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .map(|result| Sample {
                        labels: result["metric"].clone(),
                        value: result["value"][1]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(f64::NAN),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Queries every 250 ms until `want` holds for the samples, for at most `limit`; the
    /// last samples either way.
    pub async fn wait_for(
        &self,
        query: &str,
        limit: Duration,
        want: impl Fn(&[Sample]) -> bool,
    ) -> Result<Vec<Sample>, Vec<Sample>> {
        let deadline = Instant::now() + limit;
        loop {
            let samples = self.query(query).await;
            if want(&samples) {
                return Ok(samples);
            }
            if Instant::now() >= deadline {
                return Err(samples);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A chunked HTTP/1.1 body, joined.
fn dechunk(body: &str) -> String {
    let mut rest = body;
    let mut joined = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        joined.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    joined
}
