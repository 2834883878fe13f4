//! Headless Chromium and Firefox on campeer's page, driven by Node.js scripts, and the checks on what the pages show.

use crate::wait_for;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Headless Chromium or Firefox on campeer's page, driven by tests/browsers/driver/watch.mjs: one JSON line per
/// page every 500 ms with what the page shows.
pub struct BrowserRun {
    child: tokio::process::Child,
    pub lines: Arc<Mutex<Vec<Value>>>,
    reader: tokio::task::JoinHandle<()>,
    /// The script ends early once this file exists ([`BrowserRun::stop`]).
    stop_dir: tempfile::TempDir,
}

/// How long a script may run at most when its scenario ends it with [`BrowserRun::close`] once
/// its checks are done: far beyond what the checks take, only a bound.
pub const UNTIL_CLOSED_SECS: u64 = 90;

pub fn screenshot_prefix(name: &str) -> String {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/browser-screenshots"
    );
    std::fs::create_dir_all(dir).expect("create the screenshot folder");
    format!("{dir}/{name}")
}

/// Which browser [`BrowserRun`] drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Browser {
    /// Debian's chromium, through playwright-core.
    Chromium,
    /// Debian's firefox-esr, through puppeteer-core (WebDriver BiDi). `h264` turns on its
    /// H.264 through the system's FFmpeg, as a user can in about:config; without it Firefox
    /// is as Debian ships it, with no H.264 at all.
    Firefox { h264: bool },
}

impl BrowserRun {
    pub fn start(url: &str, pages: usize, seconds: u64, screenshot: &str) -> Self {
        Self::launch(
            Browser::Chromium,
            None,
            url,
            pages,
            seconds,
            screenshot,
            Vec::new(),
        )
    }

    /// One page of Chromium, which at the end stands in for a tab closed on a busy page: it
    /// fires `pagehide` and then keeps the page's thread busy for `frozen`, so no timer of the
    /// page runs meanwhile. What the page sends as it goes must leave at once. The script
    /// prints `{"pagehideFrozen":true}` as it fires the event.
    pub fn start_freezing_at_close(
        url: &str,
        seconds: u64,
        screenshot: &str,
        frozen: Duration,
    ) -> Self {
        Self::launch(
            Browser::Chromium,
            None,
            url,
            1,
            seconds,
            screenshot,
            vec![
                "--pagehide-frozen-ms".to_owned(),
                frozen.as_millis().to_string(),
            ],
        )
    }

    /// One page per URL, each opening its own.
    pub fn start_pages(urls: &[String], seconds: u64, screenshot: &str) -> Self {
        let first = urls.first().expect("at least one page");
        Self::launch(
            Browser::Chromium,
            None,
            first,
            urls.len(),
            seconds,
            screenshot,
            vec!["--page-urls".to_owned(), urls.join(",")],
        )
    }

    /// Chromium inside network namespace `ns` (`ip netns exec`), so that it sees only that
    /// namespace's network.
    pub fn start_in_namespace(
        ns: &str,
        url: &str,
        pages: usize,
        seconds: u64,
        screenshot: &str,
    ) -> Self {
        Self::launch(
            Browser::Chromium,
            Some(ns),
            url,
            pages,
            seconds,
            screenshot,
            Vec::new(),
        )
    }

    /// One page of `browser` inside network namespace `ns`.
    pub fn start_browser_in_namespace(
        browser: Browser,
        ns: &str,
        url: &str,
        seconds: u64,
        screenshot: &str,
    ) -> Self {
        Self::launch(browser, Some(ns), url, 1, seconds, screenshot, Vec::new())
    }

    fn launch(
        browser: Browser,
        ns: Option<&str>,
        url: &str,
        pages: usize,
        seconds: u64,
        screenshot: &str,
        extra_args: Vec<String>,
    ) -> Self {
        let root = crate::repo_root().display().to_string();
        let (executable, driver, browser_args) = match browser {
            // In a namespace made moments before, Chromium first waits until its WebRTC sees
            // the namespace's network (watch.mjs's --ice-warmup).
            Browser::Chromium => (
                "/usr/bin/chromium",
                "playwright-core",
                match ns {
                    Some(_) => vec!["--ice-warmup".to_owned(), "1".to_owned()],
                    None => vec![],
                },
            ),
            Browser::Firefox { h264 } => (
                "/usr/bin/firefox-esr",
                "puppeteer-core",
                vec![
                    "--browser".to_owned(),
                    "firefox".to_owned(),
                    "--firefox-h264".to_owned(),
                    if h264 { "1" } else { "0" }.to_owned(),
                ],
            ),
        };
        assert!(
            Path::new(executable).exists(),
            "{executable} is not installed; tests/run installs it (apt-get install chromium firefox-esr)"
        );
        assert!(
            Path::new(&format!(
                "{root}/tests/browsers/driver/node_modules/{driver}"
            ))
            .exists(),
            "{driver} is not installed; tests/run installs it (npm ci --prefix tests/browsers/driver)"
        );
        let mut command = match ns {
            Some(ns) => {
                let mut command = tokio::process::Command::new("ip");
                command.args(["netns", "exec", ns, "node"]);
                command
            }
            None => tokio::process::Command::new("node"),
        };
        let stop_dir = tempfile::tempdir().expect("a temporary directory");
        let stop_file = stop_dir.path().join("stop").display().to_string();
        let mut child = command
            .arg(format!("{root}/tests/browsers/driver/watch.mjs"))
            .args(["--stop-file", &stop_file])
            .args(browser_args)
            .args(["--url", url, "--pages", &pages.to_string()])
            .args(extra_args)
            .args([
                "--seconds",
                &seconds.to_string(),
                "--screenshot",
                screenshot,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("run node (tests/run installs it)");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) => {
                        if ["console", "pageerror", "iceWarmup"]
                            .iter()
                            .any(|key| value.get(key).is_some())
                        {
                            eprintln!("browser: {value}");
                        }
                        sink.lock().unwrap().push(value);
                    }
                    Err(_) => eprintln!("browser: {line}"),
                }
            }
        });
        Self {
            child,
            lines,
            reader,
            stop_dir,
        }
    }

    /// Tells the script to take its screenshots and finish now, not at the end of its time.
    pub fn stop(&self) {
        std::fs::write(self.stop_dir.path().join("stop"), b"").expect("write the stop file");
    }

    /// Whether the script has printed a line with `key`.
    pub fn saw(&self, key: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|v| v.get(key).is_some())
    }

    /// The latest snapshot of `page`.
    pub fn latest(&self, page: usize) -> Option<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|v| v["page"] == page && v.get("stats").is_some())
            .cloned()
    }

    /// Waits until the latest snapshot of `page` satisfies `want`.
    pub async fn wait_for(
        &self,
        limit: Duration,
        page: usize,
        want: impl Fn(&Value) -> bool,
    ) -> bool {
        wait_for(limit, || self.latest(page).is_some_and(|v| want(&v))).await
    }

    /// Tells the script to finish now and waits until it has (screenshots taken, pages closed
    /// as a person closes a tab); every line it printed. For scenarios that check what they
    /// need while the script runs: its `seconds` is then only an upper bound, so a slow start
    /// on a busy machine never ends the script before the checks are done.
    pub async fn close(self, limit: Duration) -> Vec<Value> {
        self.stop();
        self.finish(limit).await
    }

    /// Waits for the script to finish (screenshots taken); every line it printed.
    pub async fn finish(mut self, limit: Duration) -> Vec<Value> {
        let done = wait_for(limit, || {
            self.lines.lock().unwrap().iter().any(|v| v["done"] == true)
        })
        .await;
        assert!(done, "the browser script did not finish");
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        self.reader.abort();
        self.lines.lock().unwrap().clone()
    }
}

/// Waits for `page` to play at least `min_frames` frames, failing with what it shows.
pub async fn assert_page_plays(browser: &BrowserRun, page: usize, min_frames: u64) {
    assert!(
        browser
            .wait_for(Duration::from_secs(30), page, |v| is_playing(v, min_frames))
            .await,
        "page {page} never played: {:?}",
        browser.latest(page)
    );
}

/// The uncaught errors the pages raised, in a browser run's lines.
pub fn page_errors(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| line.get("pageerror"))
        .map(|error| error.to_string())
        .collect()
}

/// A page is playing live video of the test pattern.
pub fn is_playing(snapshot: &Value, min_frames: u64) -> bool {
    let stats = &snapshot["stats"];
    stats["state"] == "playing" && stats["framesDecoded"].as_u64().unwrap_or(0) >= min_frames
}
