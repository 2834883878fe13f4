//! What campeer recorded, read by the tools people play it with: ffprobe for the streams and
//! their packets, ffmpeg decoding every frame, and the test pattern's timestamp squares in
//! the first and last pictures. And a small tmpfs to fill.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One recording as ffprobe sees it.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Each stream's codec and duration in seconds.
    pub streams: Vec<(String, f64)>,
    /// Each video packet's presentation time and whether it is a keyframe.
    pub video_packets: Vec<(f64, bool)>,
    pub audio_packets: Vec<f64>,
}

impl Probe {
    pub fn duration_of(&self, codec: &str) -> Option<f64> {
        self.streams
            .iter()
            .find(|(name, _)| name == codec)
            .map(|(_, duration)| *duration)
    }

    /// Whether each stream's packets come in increasing time.
    pub fn times_increase(&self) -> bool {
        let video: Vec<f64> = self.video_packets.iter().map(|(t, _)| *t).collect();
        [video.as_slice(), self.audio_packets.as_slice()]
            .iter()
            .all(|times| times.windows(2).all(|w| w[1] > w[0]))
    }
}

/// What ffprobe reads of `path`.
pub fn probe(path: &Path) -> Result<Probe, String> {
    let streams = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,duration",
            "-of",
            "csv=p=0",
        ],
        path,
    )?;
    let packets = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts_time,flags",
            "-of",
            "csv=p=0",
        ],
        path,
    )?;
    let streams = streams
        .lines()
        .filter_map(|line| {
            let (codec, duration) = line.split_once(',')?;
            Some((codec.to_owned(), duration.parse().unwrap_or(0.0)))
        })
        .collect();
    let mut video_packets = Vec::new();
    let mut audio_packets = Vec::new();
    for line in packets.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(index), Some(time), Some(flags)) = (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let Ok(time) = time.parse::<f64>() else {
            continue;
        };
        match *index {
            "0" => video_packets.push((time, flags.contains('K'))),
            _ => audio_packets.push(time),
        }
    }
    Ok(Probe {
        streams,
        video_packets,
        audio_packets,
    })
}

/// Decodes every frame of every stream; `Err` with ffmpeg's complaints if any. Frames keep
/// their own times (a camera's frames come a little unevenly, which ffmpeg's default constant
/// frame rate output would round onto each other).
pub fn decode_all(path: &Path) -> Result<(), String> {
    let options = [
        "-v",
        "error",
        "-xerror",
        "-fps_mode",
        "passthrough",
        "-enc_time_base",
        "-1",
        "-f",
        "null",
        "-",
    ];
    let errors = run("ffmpeg", &options, path)?;
    if errors.trim().is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The capture times the test pattern drew into the first and the last picture of `path`
/// (`width`×`height`), in Unix milliseconds.
pub fn first_and_last_capture(path: &Path, width: usize, height: usize) -> Option<(u64, u64)> {
    let frame_bytes = width * height * 3 / 2;
    let first = raw_frames(path, &["-frames:v", "1"])?;
    let tail = raw_frames_from_end(path)?;
    let last = tail.get(tail.len().checked_sub(frame_bytes)?..)?;
    Some((
        timestamp(first.get(..frame_bytes)?, width, height)?,
        timestamp(last, width, height)?,
    ))
}

fn timestamp(raw: &[u8], width: usize, height: usize) -> Option<u64> {
    let mut frame = campeer::media::I420Frame::new(width, height);
    frame.data_mut().copy_from_slice(raw);
    campeer::media::pattern::read_timestamp(&frame)
}

fn raw_frames(path: &Path, options: &[&str]) -> Option<Vec<u8>> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(options)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
        .output()
        .ok()?;
    output.status.success().then_some(output.stdout)
}

/// The pictures of the last two seconds.
fn raw_frames_from_end(path: &Path) -> Option<Vec<u8>> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-sseof", "-2", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
        .output()
        .ok()?;
    output.status.success().then_some(output.stdout)
}

fn run(program: &str, options: &[&str], path: &Path) -> Result<String, String> {
    let mut command = Command::new(program);
    if program == "ffmpeg" {
        command.arg("-i").arg(path).args(options);
    } else {
        command.args(options).arg(path);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(format!("{program} failed on {}: {stderr}", path.display()));
    }
    Ok(if program == "ffmpeg" { stderr } else { stdout })
}

/// The `.mp4` files in `dir`, sorted by name (their start times).
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "mp4"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A tmpfs of its own, unmounted when dropped: a small disk to fill.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(megabytes: u64) -> Self {
        let dir = tempfile::tempdir().expect("a mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "cannot mount a tmpfs (needs root)");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
