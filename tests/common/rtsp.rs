//! RTSP readers as NVRs and players are: Debian's ffmpeg and GStreamer's rtspsrc, each
//! decoding what campeer serves into grey pictures whose timestamp squares a test reads; and
//! a raw connection for what no player sends (junk, floods, a reader that stops reading).

use crate::viewer::read_timestamp_squares;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Whether ffmpeg, ffprobe and gst-launch are installed: tests/run installs them, so in CI
/// their absence is a failure, not a skip.
pub fn available() -> bool {
    let found = ["ffmpeg", "ffprobe", "gst-launch-1.0"].iter().all(|tool| {
        Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    assert!(
        found || std::env::var_os("CI").is_none(),
        "ffmpeg, ffprobe or gst-launch-1.0 is missing (tests/run installs them)"
    );
    if !found {
        eprintln!("skipping: ffmpeg, ffprobe or gst-launch-1.0 is missing");
    }
    found
}

/// Which program reads, and over what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Ffmpeg { udp: bool },
    Gstreamer { udp: bool },
}

/// One decoded picture.
#[derive(Debug, Clone, Copy)]
pub struct ReadFrame {
    pub at: Instant,
    /// When the reader had it, on the wall clock.
    pub unix_ms: u64,
    /// The capture time the picture's timestamp squares say.
    pub capture_ms: u64,
}

impl ReadFrame {
    /// Glass to glass: from capture to the decoded picture, in milliseconds.
    pub fn latency_ms(&self) -> i64 {
        self.unix_ms as i64 - self.capture_ms as i64
    }
}

/// A player reading `rtsp://…` and decoding every picture, until dropped.
pub struct RtspReader {
    child: Child,
    pub started: Instant,
    frames: Arc<Mutex<Vec<ReadFrame>>>,
    stderr: Arc<Mutex<String>>,
}

impl RtspReader {
    /// Starts `client` on `url` (credentials in it for ffmpeg, given apart for GStreamer), its
    /// pictures `width`×`height`.
    pub fn start(client: Client, url: &str, width: usize, height: usize) -> Self {
        let mut command = match client {
            Client::Ffmpeg { udp } => {
                let mut command = Command::new("ffmpeg");
                // Not `-fflags nobuffer`: ffmpeg then drops what it read while probing the
                // streams, the keyframe each PLAY starts with included, and shows nothing until
                // the next one.
                command.args(["-nostdin", "-v", "error", "-flags", "low_delay"]);
                command.arg("-rtsp_transport");
                command.arg(if udp { "udp" } else { "tcp" });
                command.args(["-i", url, "-map", "0:v:0", "-f", "rawvideo"]);
                command.args(["-pix_fmt", "gray", "-"]);
                command
            }
            Client::Gstreamer { udp } => {
                let (location, user, password) = split_credentials(url);
                let mut command = Command::new("gst-launch-1.0");
                command
                    .arg("-q")
                    .arg("rtspsrc")
                    .arg(format!("location={location}"));
                if let (Some(user), Some(password)) = (user, password) {
                    command.arg(format!("user-id={user}"));
                    command.arg(format!("user-pw={password}"));
                }
                command.arg(format!("protocols={}", if udp { "udp" } else { "tcp" }));
                command.args(["latency=0", "!", "rtph264depay", "!", "avdec_h264", "!"]);
                command.args(["videoconvert", "!", "video/x-raw,format=GRAY8", "!"]);
                command.args(["fdsink", "fd=1", "sync=false"]);
                command
            }
        };
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the RTSP reader starts");
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().expect("piped stdout");
        let kept = Arc::clone(&frames);
        std::thread::spawn(move || {
            // GStreamer's GRAY8 rows are padded to 4 bytes; 640 and the sizes used are already.
            let mut picture = vec![0u8; width * height];
            while stdout.read_exact(&mut picture).is_ok() {
                let frame = ReadFrame {
                    at: Instant::now(),
                    unix_ms: unix_ms(),
                    capture_ms: read_timestamp_squares(&picture, width, width, height),
                };
                kept.lock().unwrap().push(frame);
            }
        });
        let mut errors = child.stderr.take().expect("piped stderr");
        let said = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = errors.read_to_string(&mut text);
            *said.lock().unwrap() = text;
        });
        Self {
            child,
            started: Instant::now(),
            frames,
            stderr,
        }
    }

    pub fn frames(&self) -> Vec<ReadFrame> {
        self.frames.lock().unwrap().clone()
    }

    /// Waits until at least `count` pictures were decoded in all; `false` after `limit`.
    pub async fn wait_for_frames(&self, count: usize, limit: Duration) -> bool {
        crate::wait_for(limit, || self.frames.lock().unwrap().len() >= count).await
    }

    /// Whether the player has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// What the player printed on stderr (complete once it exited).
    pub fn said(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for RtspReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rtsp://user:password@host/...` → the URL without them, and them.
fn split_credentials(url: &str) -> (String, Option<String>, Option<String>) {
    let Some(rest) = url.strip_prefix("rtsp://") else {
        return (url.to_owned(), None, None);
    };
    match rest.split_once('@') {
        Some((login, place)) => {
            let (user, password) = login.split_once(':').unwrap_or((login, ""));
            (
                format!("rtsp://{place}"),
                Some(user.to_owned()),
                Some(password.to_owned()),
            )
        }
        None => (url.to_owned(), None, None),
    }
}

/// What ffprobe finds at `url` over TCP: each stream's codec name, or its error output.
pub fn probe(url: &str) -> Result<Vec<String>, String> {
    let output = Command::new("timeout")
        .args(["20", "ffprobe", "-v", "error", "-rtsp_transport", "tcp"])
        .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0", url])
        .output()
        .expect("ffprobe runs");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| line.trim().to_owned())
            .filter(|line| !line.is_empty())
            .collect())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The median glass-to-glass latency of `frames`, in milliseconds.
pub fn median_latency_ms(frames: &[ReadFrame]) -> Option<i64> {
    let mut latencies: Vec<i64> = frames.iter().map(ReadFrame::latency_ms).collect();
    latencies.sort_unstable();
    latencies.get(latencies.len() / 2).copied()
}

/// Whether every picture's timestamp is a plausible capture time (within a minute of now)
/// and they never go backwards.
pub fn timestamps_readable(frames: &[ReadFrame]) -> bool {
    let now = unix_ms();
    frames
        .iter()
        .all(|f| f.capture_ms + 60_000 > now && f.capture_ms <= now + 1_000)
        && frames
            .windows(2)
            .all(|w| w[0].capture_ms <= w[1].capture_ms)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The answer to one request written by hand on `stream`: its status line and headers.
pub async fn request(
    stream: &mut tokio::net::TcpStream,
    text: &str,
    limit: Duration,
) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(text.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
            .await
            .ok()?
            .ok()?;
        if read == 0 {
            return None;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    Some(String::from_utf8_lossy(&answer).into_owned())
}
