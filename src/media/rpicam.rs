//! Raspberry Pi camera modules (CSI), streamed through `rpicam-vid`.
//!
//! Why a child process rather than libcamera bindings: on Raspberry Pi OS the camera modules
//! need libcamera *and* the Raspberry Pi's tuning and ISP control (its IPA), which rpicam-vid
//! brings ready and tuned, and which Raspberry Pi OS installs by default (`rpicam-apps`, or
//! `rpicam-apps-lite`). libcamera's C++ API is not stable between the releases Raspberry Pi
//! ships, so bindings would tie each campeer build to one libcamera build and make
//! cross-compiling need the Pi's own libcamera headers; a pipe ties it to nothing. A camera
//! stack that crashes takes rpicam-vid down, not campeer: the pipeline reports the camera
//! failed and starts it again, as it does for an unplugged V4L2 camera. The cost is one copy
//! of each picture through a pipe (14 MB/s at 640x480@30), small next to encoding it.
//!
//! rpicam-vid writes raw YUV420 frames, back to back, on its standard output
//! (`--codec yuv420 -o -`), and each frame's metadata as text on descriptor 3
//! (`--metadata /proc/self/fd/3 --metadata-format txt`: /dev/fd is missing from some minimal
//! /dev trees, /proc is not), from which campeer takes the sensor
//! timestamp: the moment the frame was exposed, on the monotonic clock.

use super::camera::{frame_age, monotonic_now};
use super::{CapturedFrame, SourceError, VideoSource};
use std::collections::VecDeque;
use std::io::{BufRead, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The program's names, newest first: rpicam-vid was libcamera-vid before Raspberry Pi OS
/// Bookworm.
const PROGRAM_NAMES: [&str; 2] = ["rpicam-vid", "libcamera-vid"];
/// How long the camera may take to deliver its first frame: starting the sensor and the ISP
/// takes a second or two on a Pi.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(8);
/// A camera that delivers nothing for this long after its first frame is treated as failed.
const FRAME_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `--list-cameras` may take before campeer gives up on it.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of rpicam-vid's own messages kept to explain why it stopped.
const STDERR_LINES: usize = 8;
/// The longest line of rpicam-vid's messages kept, and of its metadata parsed.
const MAX_LINE: usize = 1024;
/// Metadata not yet parsed into records; more than this means the stream is not metadata.
const MAX_PENDING_METADATA: usize = 64 * 1024;
/// The image signal processors on Raspberry Pi boards pad each row of a YUV420 picture to a
/// multiple of this many bytes, and rpicam-vid writes the padding; campeer asks for a width
/// that needs none so that each frame on the pipe is exactly a picture.
const ROW_ALIGNMENT: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum RpicamError {
    #[error(
        "no rpicam-vid (nor libcamera-vid) on PATH: install rpicam-apps (Raspberry Pi OS) or \
         set video.rpicam_vid"
    )]
    NotInstalled,
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} --list-cameras: {reason}")]
    List { program: String, reason: String },
    #[error("camera module {index}: {reason}")]
    Missing { index: u32, reason: String },
}

/// Finds the rpicam-vid program: the configured one (a path, or a name looked up on PATH), else
/// the first of its names on PATH.
pub fn find_program(configured: Option<&Path>) -> Option<PathBuf> {
    match configured {
        Some(program) if program.components().count() > 1 => {
            program.is_file().then(|| program.to_owned())
        }
        Some(name) => on_path(name),
        None => PROGRAM_NAMES
            .iter()
            .find_map(|name| on_path(Path::new(name))),
    }
}

fn on_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// One camera module, as `rpicam-vid --list-cameras` describes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CameraModule {
    pub index: u32,
    /// The sensor, e.g. "imx708".
    pub model: String,
    /// What the listing says of the sensor: its full size, bit depth and colour filter.
    pub sensor: String,
    /// libcamera's id of the camera (its place in the device tree).
    pub id: String,
    pub modes: Vec<SensorMode>,
}

/// A sensor mode: a raw format at a size, with the fastest frame rate it reaches.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SensorMode {
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
}

/// Parses `rpicam-vid --list-cameras`. Lines it does not understand are skipped: the listing
/// is meant for people and its details change between releases.
pub fn parse_camera_list(text: &str) -> Vec<CameraModule> {
    let mut modules: Vec<CameraModule> = Vec::new();
    let mut format = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(module) = parse_camera_line(trimmed) {
            modules.push(module);
            format.clear();
            continue;
        }
        let Some(module) = modules.last_mut() else {
            continue;
        };
        let mut rest = trimmed.strip_prefix("Modes:").unwrap_or(trimmed).trim();
        // "'SRGGB10_CSI2P' : 1536x864 [120.13 fps - ...]" starts a format's sizes.
        if let Some(quoted) = rest.strip_prefix('\'')
            && let Some((name, after)) = quoted.split_once('\'')
        {
            format = name.to_owned();
            rest = after.trim().trim_start_matches(':').trim();
        }
        if let Some(mode) = parse_mode(&format, rest) {
            module.modes.push(mode);
        }
    }
    modules
}

/// "0 : imx708 [4608x2592 10-bit RGGB] (/base/soc/i2c0mux/i2c@1/imx708@1a)"
fn parse_camera_line(line: &str) -> Option<CameraModule> {
    let (index, rest) = line.split_once(" : ")?;
    let index = index.trim().parse().ok()?;
    let (model, rest) = rest.split_once(" [")?;
    let (sensor, rest) = rest.split_once(']')?;
    let id = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(CameraModule {
        index,
        model: model.trim().to_owned(),
        sensor: sensor.to_owned(),
        id: id.to_owned(),
        modes: Vec::new(),
    })
}

/// "1536x864 [120.13 fps - (768, 432)/3072x1728 crop]"
fn parse_mode(format: &str, text: &str) -> Option<SensorMode> {
    if format.is_empty() {
        return None;
    }
    let (size, rest) = text.split_once(" [")?;
    let (width, height) = size.trim().split_once('x')?;
    let (fps, _) = rest.split_once(" fps")?;
    Some(SensorMode {
        format: format.to_owned(),
        width: width.parse().ok()?,
        height: height.parse().ok()?,
        fps: fps.trim().parse().ok()?,
    })
}

/// Asks rpicam-vid which camera modules the board has. `Ok(empty)` when it says none.
pub fn list_camera_modules(program: &Path) -> Result<Vec<CameraModule>, RpicamError> {
    let name = program.display().to_string();
    let mut child = Command::new(program)
        .arg("--list-cameras")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| RpicamError::Spawn {
            program: name.clone(),
            source,
        })?;
    let mut stdout = child.stdout.take().ok_or_else(|| RpicamError::List {
        program: name.clone(),
        reason: "no output pipe".to_owned(),
    })?;
    // The listing is small; read it on a thread so that a hung program is killed on time
    // rather than waited for. The thread ends when the program's output closes.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("rpicam-list".into())
        .spawn(move || {
            let mut text = String::new();
            let result = (&mut stdout)
                .take(1 << 20)
                .read_to_string(&mut text)
                .map(|_| text);
            let _ = tx.send(result);
        })
        .map_err(|source| RpicamError::Spawn {
            program: name.clone(),
            source,
        })?;
    let output = rx.recv_timeout(LIST_TIMEOUT);
    let status = match output {
        Ok(_) => wait_briefly(&mut child, Duration::from_secs(2)),
        Err(_) => None,
    };
    if status.is_none() {
        stop_child(child);
    }
    match output {
        Ok(Ok(text)) => Ok(parse_camera_list(&text)),
        Ok(Err(e)) => Err(RpicamError::List {
            program: name,
            reason: e.to_string(),
        }),
        Err(_) => Err(RpicamError::List {
            program: name,
            reason: format!("no answer in {LIST_TIMEOUT:?}"),
        }),
    }
}

/// The camera modules the board has, or none when rpicam-vid is missing or fails (logged).
pub fn available_camera_modules(configured: Option<&Path>) -> Vec<CameraModule> {
    let Some(program) = find_program(configured) else {
        return Vec::new();
    };
    match list_camera_modules(&program) {
        Ok(modules) => modules,
        Err(e) => {
            tracing::warn!("cannot list camera modules: {e}");
            Vec::new()
        }
    }
}

/// A readable list of camera modules, for `campeer devices`.
pub fn format_camera_modules(
    program: Option<&Path>,
    modules: &Result<Vec<CameraModule>, String>,
) -> String {
    use std::fmt::Write;
    let Some(program) = program else {
        return "Camera modules: none (no rpicam-vid on PATH to ask; Raspberry Pi OS has it in \
                rpicam-apps)\n"
            .to_owned();
    };
    let modules = match modules {
        Ok(modules) if modules.is_empty() => {
            return format!("Camera modules: none ({} lists none)\n", program.display());
        }
        Ok(modules) => modules,
        Err(e) => return format!("Camera modules: cannot list them: {e}\n"),
    };
    let mut out = format!("Camera modules (through {}):\n", program.display());
    for module in modules {
        let _ = writeln!(
            out,
            "rpicam:{}\n  {} [{}] ({})",
            module.index, module.model, module.sensor, module.id
        );
        for mode in &module.modes {
            let _ = writeln!(
                out,
                "    {} {}x{} @ up to {:.0} fps",
                mode.format, mode.width, mode.height, mode.fps
            );
        }
    }
    out
}

/// The width campeer asks rpicam-vid for: the wanted width rounded down to whole ISP row
/// alignment, so that no row carries padding.
pub fn unpadded_width(wanted: u32) -> u32 {
    (wanted / ROW_ALIGNMENT * ROW_ALIGNMENT).max(ROW_ALIGNMENT)
}

/// Reads rpicam-vid's `--metadata-format txt` output: `Name=value` lines, one record per frame,
/// each ended by an empty line. Keeps the newest sensor timestamp of the records completed.
#[derive(Debug, Default)]
pub struct MetadataReader {
    pending: Vec<u8>,
    in_record: Option<u64>,
    newest: Option<u64>,
}

impl MetadataReader {
    /// Takes bytes as they come; a line too long or a stream that never ends a line is dropped.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim();
            if line.is_empty() {
                if let Some(stamp) = self.in_record.take() {
                    self.newest = Some(stamp);
                }
            } else if line.len() <= MAX_LINE
                && let Some(value) = line.strip_prefix("SensorTimestamp=")
            {
                self.in_record = value.trim().parse().ok();
            }
        }
        if self.pending.len() > MAX_PENDING_METADATA {
            self.pending.clear();
        }
    }

    /// The newest sensor timestamp (nanoseconds on the monotonic clock) completed since the
    /// last call.
    pub fn take_newest(&mut self) -> Option<u64> {
        self.newest.take()
    }
}

/// The tail of what rpicam-vid printed, to say why it stopped.
#[derive(Default)]
struct StderrTail {
    lines: VecDeque<String>,
    closed: bool,
}

/// A camera module streaming through an rpicam-vid child process.
pub struct RpicamCamera {
    program: String,
    index: u32,
    width: u32,
    height: u32,
    fps: u32,
    child: Option<Child>,
    frames: ChildStdout,
    metadata: std::fs::File,
    metadata_reader: MetadataReader,
    stderr: Arc<Mutex<StderrTail>>,
    delivered: u64,
    pool: super::FramePool,
}

impl RpicamCamera {
    /// Starts rpicam-vid for camera module `index` at (about) `width`x`height`@`fps`.
    pub fn open(
        program: &Path,
        index: u32,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<Self, RpicamError> {
        let name = program.display().to_string();
        let spawn_error = |source| RpicamError::Spawn {
            program: name.clone(),
            source,
        };
        let stream_width = unpadded_width(width);
        if stream_width != width {
            tracing::info!(
                "camera module {index}: asking for {stream_width}x{height} rather than \
                 {width}x{height}: the ISP pads rows to {ROW_ALIGNMENT} bytes"
            );
        }
        let (metadata_read, metadata_write) = pipe().map_err(spawn_error)?;
        let metadata_fd = metadata_write.as_raw_fd();
        let mut command = Command::new(program);
        command
            .args(["--camera", &index.to_string()])
            .args(["--width", &stream_width.to_string()])
            .args(["--height", &height.to_string()])
            .args(["--framerate", &fps.to_string()])
            .args([
                "--codec",
                "yuv420",
                "--timeout",
                "0",
                "--nopreview",
                "--flush",
            ])
            .args(["--metadata", "/proc/self/fd/3", "--metadata-format", "txt"])
            .args(["--output", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure only makes async-signal-safe calls (dup2, fcntl, prctl) on
        // descriptors that exist in the child, as `pre_exec` requires.
        unsafe {
            command.pre_exec(move || {
                // Descriptor 3 is the metadata pipe; dup2 clears close-on-exec on the copy.
                if metadata_fd == 3 {
                    if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(metadata_fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // rpicam-vid must not outlive the pipeline thread that started it, even if
                // campeer is killed: the camera would stay busy for the next campeer.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(spawn_error)?;
        drop(metadata_write);
        let (Some(frames), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            stop_child(child);
            return Err(spawn_error(std::io::Error::other("no output pipes")));
        };
        let tail = Arc::new(Mutex::new(StderrTail::default()));
        let tail_writer = Arc::clone(&tail);
        let collector = std::thread::Builder::new()
            .name("rpicam-stderr".into())
            .spawn(move || collect_stderr(stderr, &tail_writer));
        if let Err(source) = collector {
            stop_child(child);
            return Err(spawn_error(source));
        }
        let metadata = std::fs::File::from(metadata_read);
        set_nonblocking(&metadata).map_err(spawn_error)?;
        tracing::info!(
            "camera module {index} through {name}: {stream_width}x{height}@{fps} YUV420"
        );
        Ok(Self {
            program: name,
            index,
            width: stream_width,
            height,
            fps,
            child: Some(child),
            frames,
            metadata,
            metadata_reader: MetadataReader::default(),
            stderr: tail,
            delivered: 0,
            pool: super::FramePool::default(),
        })
    }

    /// Why rpicam-vid stopped: its exit status and its last messages.
    fn exit_reason(&mut self) -> String {
        let status = self
            .child
            .as_mut()
            .and_then(|child| wait_briefly(child, Duration::from_secs(1)));
        // Its messages end when it does; give the collector a moment to read the last ones.
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline && !lock(&self.stderr).closed {
            std::thread::sleep(Duration::from_millis(10));
        }
        let said: Vec<String> = lock(&self.stderr).lines.iter().cloned().collect();
        let status = match status {
            Some(status) => format!("exited ({status})"),
            None => "closed its output".to_owned(),
        };
        if said.is_empty() {
            format!("{} {status}", self.program)
        } else {
            format!("{} {status}: {}", self.program, said.join(" / "))
        }
    }

    /// Fills `buffer` from the frame pipe, waiting at most until `deadline`.
    fn read_frame(&mut self, buffer: &mut [u8], deadline: Instant) -> Result<(), SourceError> {
        let mut filled = 0;
        while filled < buffer.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wait_readable(&self.frames, left) {
                return Err(SourceError::Fatal(format!(
                    "camera module {}: no frame for {:?}",
                    self.index,
                    if self.delivered == 0 {
                        FIRST_FRAME_TIMEOUT
                    } else {
                        FRAME_TIMEOUT
                    }
                )));
            }
            let Some(rest) = buffer.get_mut(filled..) else {
                break;
            };
            match self.frames.read(rest) {
                Ok(0) => return Err(SourceError::Fatal(self.exit_reason())),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(SourceError::Fatal(format!(
                        "camera module {}: {e}",
                        self.index
                    )));
                }
            }
        }
        Ok(())
    }

    /// The sensor timestamp of the frame just read: rpicam-vid writes a frame's metadata
    /// right after the frame, so it is there or due within moments.
    fn sensor_timestamp(&mut self) -> Option<u64> {
        let deadline = Instant::now() + Duration::from_millis(20);
        let mut chunk = [0u8; 4096];
        loop {
            match self.metadata.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    self.metadata_reader
                        .push(chunk.get(..n).unwrap_or_default());
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.metadata_reader.newest.is_some()
                || left.is_zero()
                || !wait_readable(&self.metadata, left)
            {
                break;
            }
        }
        self.metadata_reader.take_newest()
    }
}

impl VideoSource for RpicamCamera {
    fn next_frame(&mut self) -> Result<CapturedFrame, SourceError> {
        let timeout = if self.delivered == 0 {
            FIRST_FRAME_TIMEOUT
        } else {
            FRAME_TIMEOUT
        };
        let deadline = Instant::now() + timeout;
        // Read whole from the pipe: a reused buffer needs no clearing.
        let mut frame = self.pool.frame(self.width as usize, self.height as usize);
        self.read_frame(frame.data_mut(), deadline)?;
        let now = Instant::now();
        let wall = SystemTime::now();
        let age = self
            .sensor_timestamp()
            .and_then(|stamp| frame_age(Duration::from_nanos(stamp), monotonic_now()))
            .unwrap_or_default();
        frame.captured_at = now.checked_sub(age).unwrap_or(now);
        frame.capture_unix_ms = super::pattern::unix_millis(wall.checked_sub(age).unwrap_or(wall));
        self.delivered += 1;
        Ok(CapturedFrame::Raw(frame))
    }

    fn frame_pool(&self) -> Option<&super::FramePool> {
        Some(&self.pool)
    }

    fn describe(&self) -> String {
        format!(
            "camera module {} {}x{}@{} through {}",
            self.index, self.width, self.height, self.fps, self.program
        )
    }
}

impl Drop for RpicamCamera {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}

/// Kills a child and reaps it; one stuck in the kernel is left to a thread of its own so that
/// nobody waits for it.
fn stop_child(mut child: Child) {
    let _ = child.kill();
    if wait_briefly(&mut child, Duration::from_millis(500)).is_none() {
        let _ = std::thread::Builder::new()
            .name("rpicam-reaper".into())
            .spawn(move || {
                let _ = child.wait();
            });
    }
}

/// The child's exit status, if it exits within `limit`.
fn wait_briefly(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

fn collect_stderr(stderr: std::process::ChildStderr, tail: &Mutex<StderrTail>) {
    let mut reader = std::io::BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line).trim().to_owned();
                if text.is_empty() {
                    continue;
                }
                tracing::debug!("rpicam-vid: {text}");
                let mut tail = lock(tail);
                if tail.lines.len() == STDERR_LINES {
                    tail.lines.pop_front();
                }
                tail.lines.push_back(text);
            }
        }
    }
    lock(tail).closed = true;
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A pipe whose ends are both closed on exec (the child gets its end as descriptor 3).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(file: &impl AsRawFd) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor the caller owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `file` has something to read (or has closed) within `limit`.
fn wait_readable(file: &impl AsRawFd, limit: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = limit.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: poll reads and writes the one pollfd it is given.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    ready > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "Available cameras
-----------------
0 : imx708 [4608x2592 10-bit RGGB] (/base/soc/i2c0mux/i2c@1/imx708@1a)
    Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]
                             2304x1296 [56.03 fps - (0, 0)/4608x2592 crop]
                             4608x2592 [14.35 fps - (0, 0)/4608x2592 crop]

1 : imx219 [3280x2464 8-bit RGGB] (/base/soc/i2c0mux/i2c@0/imx219@10)
    Modes: 'SRGGB10_CSI2P' : 640x480 [103.33 fps - (1000, 752)/1280x960 crop]
                             1640x1232 [41.85 fps - (0, 0)/3280x2464 crop]
           'SRGGB8' : 640x480 [103.33 fps - (1000, 752)/1280x960 crop]
";

    #[test]
    fn the_camera_listing_gives_each_module_and_its_modes() {
        let modules = parse_camera_list(LISTING);
        assert_eq!(modules.len(), 2);
        let first = &modules[0];
        assert_eq!(
            (first.index, first.model.as_str(), first.id.as_str()),
            (0, "imx708", "/base/soc/i2c0mux/i2c@1/imx708@1a")
        );
        assert_eq!(first.sensor, "4608x2592 10-bit RGGB");
        assert_eq!(first.modes.len(), 3);
        assert_eq!(
            first.modes[0],
            SensorMode {
                format: "SRGGB10_CSI2P".into(),
                width: 1536,
                height: 864,
                fps: 120.13
            }
        );
        let second = &modules[1];
        assert_eq!(second.index, 1);
        assert_eq!(second.modes.len(), 3);
        assert_eq!(second.modes[2].format, "SRGGB8");
        assert_eq!((second.modes[2].width, second.modes[2].height), (640, 480));
    }

    #[test]
    fn a_board_without_modules_or_garbage_lists_none() {
        assert!(parse_camera_list("No cameras available!\n").is_empty());
        assert!(parse_camera_list("").is_empty());
        assert!(parse_camera_list("x : y [z\n : [] ()\n\u{0}\u{1}é : é [é] (é)x").is_empty());
    }

    #[test]
    fn widths_are_asked_for_without_row_padding() {
        assert_eq!(unpadded_width(640), 640);
        assert_eq!(unpadded_width(1920), 1920);
        assert_eq!(unpadded_width(800), 768);
        assert_eq!(unpadded_width(16), 64);
    }

    #[test]
    fn metadata_records_give_the_newest_sensor_timestamp() {
        let mut reader = MetadataReader::default();
        reader.push(b"ExposureTime=10000\nSensorTimestamp=1000");
        assert_eq!(reader.take_newest(), None, "the record is not complete");
        reader.push(b"500\nLux=400\n\n");
        assert_eq!(reader.take_newest(), Some(1_000_500));
        assert_eq!(reader.take_newest(), None, "taken once");
        reader.push(b"SensorTimestamp=7\n\nSensorTimestamp=9\n\nSensorTimestamp=11\n");
        assert_eq!(reader.take_newest(), Some(9), "the newest complete record");
        reader.push(b"\n");
        assert_eq!(reader.take_newest(), Some(11));
        // A record without a timestamp, a bad one, and junk give nothing.
        reader.push(b"Lux=1\n\nSensorTimestamp=-4\n\n\xff\xfe\n\n");
        assert_eq!(reader.take_newest(), None);
        // A stream that never ends a line is not kept forever.
        reader.push(&vec![b'x'; MAX_PENDING_METADATA + 1]);
        assert!(reader.pending.is_empty());
    }

    #[test]
    fn an_explicit_program_path_must_exist() {
        assert_eq!(
            find_program(Some(Path::new("/nonexistent/rpicam-vid"))),
            None
        );
        assert_eq!(
            find_program(Some(Path::new("/bin/sh"))),
            Some(PathBuf::from("/bin/sh"))
        );
        assert!(find_program(Some(Path::new("sh"))).is_some());
    }
}
