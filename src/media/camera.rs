//! V4L2 capture (v4l crate): open a camera, negotiate its mode, stream with MMAP buffers, and
//! hand the encoder I420 frames, newest first.

use super::convert::{self, PixelFormat};
use super::negotiate::{self, CameraFormat, Choice, OfferedMode, Wanted};
use super::{CapturedFrame, H264Frame, SourceError, VideoSource};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use v4l::buffer::Type;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

/// Buffers the driver cycles through. Enough to never starve the driver, few enough that a
/// backlog (if the encoder falls behind) stays short; the newest frame is taken anyway.
const BUFFERS: u32 = 4;
/// What a device must do for campeer to stream from it.
const CAPTURE_CAPS: v4l::capability::Flags =
    v4l::capability::Flags::VIDEO_CAPTURE.union(v4l::capability::Flags::STREAMING);
/// A camera that delivers nothing for this long is treated as failed.
const FRAME_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a video capture device with streaming I/O")]
    NotCapture { path: String },
    #[error("{path}: {source}")]
    Negotiate {
        path: String,
        source: negotiate::NegotiateError,
    },
    #[error("{path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
}

/// V4L2 codec controls (linux/v4l2-controls.h): the codec class base plus each control's
/// offset. Set with the plain VIDIOC_S_CTRL, which every driver with controls answers.
const CODEC_CONTROLS: u32 = 0x0099_0900;
const CID_BITRATE: u32 = CODEC_CONTROLS + 207;
const CID_FORCE_KEY_FRAME: u32 = CODEC_CONTROLS + 229;
const CID_H264_I_PERIOD: u32 = CODEC_CONTROLS + 358;
/// `_IOWR('V', 28, struct v4l2_control)`: an id and a value, 8 bytes.
const VIDIOC_S_CTRL: libc::c_ulong = (3 << 30) | (8 << 16) | ((b'V' as libc::c_ulong) << 8) | 28;

#[repr(C)]
struct V4l2Control {
    id: u32,
    value: i32,
}

/// Sets one V4L2 control.
fn set_control(device: &Device, id: u32, value: i32) -> std::io::Result<()> {
    let mut control = V4l2Control { id, value };
    // SAFETY: VIDIOC_S_CTRL reads and writes exactly one struct v4l2_control, which
    // `control` is, for the duration of the call; the descriptor belongs to `device`.
    let result = unsafe {
        libc::ioctl(
            device.handle().fd(),
            VIDIOC_S_CTRL as _,
            &mut control as *mut V4l2Control,
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// When a frame was captured, from the driver's timestamp when it is on the monotonic clock
/// (the moment the frame was taken, not when campeer got to it), else from now. Returns the
/// moment on the monotonic clock and in milliseconds since the Unix epoch.
fn capture_time(meta: &v4l::buffer::Metadata) -> (Instant, u64) {
    let now = Instant::now();
    let wall = SystemTime::now();
    let driver_stamp = || {
        if !meta.flags.contains(v4l::buffer::Flags::TIMESTAMP_MONOTONIC) {
            return None;
        }
        let taken = Duration::new(
            u64::try_from(meta.timestamp.sec).ok()?,
            u32::try_from(meta.timestamp.usec).ok()?.checked_mul(1000)?,
        );
        frame_age(taken, monotonic_now())
    };
    let age = driver_stamp().unwrap_or_default();
    let captured_at = now.checked_sub(age).unwrap_or(now);
    let unix = wall.checked_sub(age).unwrap_or(wall);
    (captured_at, super::pattern::unix_millis(unix))
}

/// How long ago a frame stamped `taken` was captured, given the clock reads `now`; `None` for
/// a stamp that cannot be right (in the future, or older than any buffer queue could hold).
pub fn frame_age(taken: Duration, now: Duration) -> Option<Duration> {
    let age = now.checked_sub(taken)?;
    (age < Duration::from_secs(2)).then_some(age)
}

pub(crate) fn monotonic_now() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    Duration::new(
        now.tv_sec.max(0) as u64,
        now.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The sizes a device offers in `fourcc`, each with its frame rates. A stepwise range is
/// represented by its largest and smallest sizes.
fn sizes_and_rates(device: &Device, fourcc: FourCC) -> Vec<(u32, u32, Vec<f64>)> {
    let mut out = Vec::new();
    for size in device.enum_framesizes(fourcc).unwrap_or_default() {
        let sizes = match size.size {
            FrameSizeEnum::Discrete(d) => vec![(d.width, d.height)],
            FrameSizeEnum::Stepwise(s) => {
                vec![(s.max_width, s.max_height), (s.min_width, s.min_height)]
            }
        };
        for (width, height) in sizes {
            let rates = device
                .enum_frameintervals(fourcc, width, height)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|interval| match interval.interval {
                    FrameIntervalEnum::Discrete(f) if f.numerator > 0 => {
                        Some(f64::from(f.denominator) / f64::from(f.numerator))
                    }
                    FrameIntervalEnum::Stepwise(s) if s.min.numerator > 0 => {
                        Some(f64::from(s.min.denominator) / f64::from(s.min.numerator))
                    }
                    _ => None,
                })
                .collect();
            out.push((width, height, rates));
        }
    }
    out
}

/// Every mode the device offers, in campeer's terms. Unknown formats are skipped.
pub fn offered_modes(device: &Device) -> std::io::Result<Vec<OfferedMode>> {
    let mut modes = Vec::new();
    for description in device.enum_formats()? {
        let Some(format) = CameraFormat::from_fourcc(description.fourcc.repr) else {
            continue;
        };
        for (width, height, rates) in sizes_and_rates(device, description.fourcc) {
            modes.push(OfferedMode {
                format,
                width,
                height,
                rates,
            });
        }
    }
    Ok(modes)
}

pub struct V4l2Camera {
    path: PathBuf,
    choice: Choice,
    /// `None`: the camera sends H.264, passed through as it comes.
    pixel_format: Option<PixelFormat>,
    stride: usize,
    device: Device,
    stream: v4l::io::mmap::Stream<'static>,
    pool: super::FramePool,
}

impl V4l2Camera {
    pub fn open(path: &Path, wanted: Wanted) -> Result<Self, CameraError> {
        let name = path.display().to_string();
        let io = |what: &'static str| {
            let path = name.clone();
            move |source| CameraError::Io { path, what, source }
        };
        let device = Device::with_path(path).map_err(|source| CameraError::Open {
            path: name.clone(),
            source,
        })?;
        let caps = device.query_caps().map_err(io("query capabilities"))?;
        if !caps.capabilities.contains(CAPTURE_CAPS) {
            return Err(CameraError::NotCapture { path: name });
        }
        let offered = offered_modes(&device).map_err(io("list formats"))?;
        let choice =
            negotiate::choose(&offered, wanted).map_err(|source| CameraError::Negotiate {
                path: name.clone(),
                source,
            })?;
        let pixel_format = match choice.format {
            CameraFormat::Raw(format) => Some(format),
            CameraFormat::H264 => None,
        };
        let request = v4l::Format::new(
            choice.width,
            choice.height,
            FourCC::new(&choice.format.fourcc()),
        );
        let format = device.set_format(&request).map_err(io("set the format"))?;
        if format.width != choice.width
            || format.height != choice.height
            || format.fourcc != request.fourcc
        {
            return Err(CameraError::Io {
                path: name,
                what: "set the format",
                source: std::io::Error::other(format!(
                    "the driver answered {}x{} {} instead",
                    format.width, format.height, format.fourcc
                )),
            });
        }
        let fps = choice.fps.round().max(1.0) as u32;
        if let Err(e) = device.set_params(&v4l::video::capture::Parameters::with_fps(fps)) {
            tracing::warn!("{name}: cannot set {fps} fps ({e}); using the driver's rate");
        }
        if pixel_format.is_none() {
            configure_encoder(&device, &name, wanted, fps);
        }
        let mut stream = v4l::io::mmap::Stream::with_buffers(&device, Type::VideoCapture, BUFFERS)
            .map_err(io("map capture buffers"))?;
        stream.set_timeout(FRAME_TIMEOUT);
        tracing::info!(
            "camera {name} ({}, {}): {}",
            caps.card,
            caps.driver,
            choice.reason
        );
        Ok(Self {
            path: path.to_owned(),
            stride: format.stride as usize,
            pixel_format,
            choice,
            device,
            stream,
            pool: super::FramePool::default(),
        })
    }

    pub fn choice(&self) -> &Choice {
        &self.choice
    }
}

/// Asks a camera's own H.264 encoder for campeer's bitrate and keyframe spacing. Best effort:
/// many cameras have no such controls, and then stream as they were set.
fn configure_encoder(device: &Device, name: &str, wanted: Wanted, fps: u32) {
    let bitrate = i32::try_from(wanted.bitrate_bps).unwrap_or(i32::MAX);
    if let Err(e) = set_control(device, CID_BITRATE, bitrate) {
        tracing::info!("{name}: the camera's H.264 bitrate cannot be set ({e})");
    }
    if let Some(interval) = wanted.keyframe_interval {
        let frames = (interval.as_secs_f64() * f64::from(fps)).round().max(1.0) as i32;
        if let Err(e) = set_control(device, CID_H264_I_PERIOD, frames) {
            tracing::info!("{name}: the camera's keyframe period cannot be set ({e})");
        }
    }
}

/// Whether the driver already holds another filled buffer.
fn newer_frame_waiting(device: &Device) -> bool {
    device
        .handle()
        .poll(libc::POLLIN, 0)
        .is_ok_and(|ready| ready > 0)
}

impl VideoSource for V4l2Camera {
    fn next_frame(&mut self) -> Result<CapturedFrame, SourceError> {
        let (width, height) = (self.choice.width as usize, self.choice.height as usize);
        let name = self.path.display().to_string();
        let mut skipped = 0;
        loop {
            let (data, meta) = self
                .stream
                .next()
                .map_err(|e| SourceError::Fatal(format!("{name}: {e}")))?;
            let used = (meta.bytesused as usize).min(data.len());
            let (captured_at, capture_unix_ms) = capture_time(meta);
            let Some(pixel_format) = self.pixel_format else {
                // H.264 is passed through whole: skipping a frame would break the ones that
                // refer to it, and there is no encoding to fall behind on.
                return Ok(CapturedFrame::H264(H264Frame {
                    data: bytes::Bytes::copy_from_slice(&data[..used]),
                    width: self.choice.width,
                    height: self.choice.height,
                    capture_unix_ms,
                    captured_at,
                }));
            };
            // Newest frame wins: if the encoder fell behind, skip what queued up meanwhile.
            if skipped < BUFFERS && newer_frame_waiting(&self.device) {
                skipped += 1;
                continue;
            }
            // The conversion writes every pixel: a reused buffer needs no clearing.
            let mut frame = self.pool.frame(width, height);
            frame.captured_at = captured_at;
            frame.capture_unix_ms = capture_unix_ms;
            // A frame that does not convert is that frame's fault, not the camera's.
            convert::to_i420(pixel_format, &data[..used], self.stride, &mut frame)
                .map_err(|e| SourceError::Transient(format!("{name}: {e}")))?;
            return Ok(CapturedFrame::Raw(frame));
        }
    }

    fn frame_pool(&self) -> Option<&super::FramePool> {
        Some(&self.pool)
    }

    fn describe(&self) -> String {
        format!(
            "camera {} {}x{}@{:.0}{}",
            self.path.display(),
            self.choice.width,
            self.choice.height,
            self.choice.fps,
            if self.pixel_format.is_none() {
                " in H.264, passed through"
            } else {
                ""
            }
        )
    }

    fn set_bitrate(&mut self, bps: u32) -> bool {
        let value = i32::try_from(bps).unwrap_or(i32::MAX);
        match set_control(&self.device, CID_BITRATE, value) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("{}: cannot set the bitrate: {e}", self.path.display());
                false
            }
        }
    }

    fn request_keyframe(&mut self) -> bool {
        match set_control(&self.device, CID_FORCE_KEY_FRAME, 1) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("{}: cannot force a keyframe: {e}", self.path.display());
                false
            }
        }
    }
}

/// One camera as `campeer devices` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CameraInfo {
    pub path: String,
    pub driver: String,
    pub card: String,
    pub bus: String,
    pub capture: bool,
    pub formats: Vec<FormatInfo>,
    /// Why the device could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FormatInfo {
    pub fourcc: String,
    pub description: String,
    /// Whether campeer can use it.
    pub supported: bool,
    pub sizes: Vec<SizeInfo>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SizeInfo {
    pub width: u32,
    pub height: u32,
    pub fps: Vec<f64>,
}

/// The video devices under /dev, in number order.
pub fn device_paths() -> Vec<PathBuf> {
    let mut paths: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let number = name.strip_prefix("video")?.parse().ok()?;
                    Some((number, entry.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths.into_iter().map(|(_, path)| path).collect()
}

/// The first device that gives a picture campeer can use, for a camera not named in the
/// configuration. Nodes that capture only what campeer cannot use are passed over: on a
/// Raspberry Pi the camera module's own node gives raw Bayer from the sensor, and the ISP's
/// nodes are not cameras at all.
/// `skip` passes over devices that are spoken for (another camera's configured source).
pub fn first_capture_device(skip: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    device_paths().into_iter().find(|path| {
        if skip(path) {
            return false;
        }
        let usable = gives_a_usable_picture(path);
        if !usable {
            tracing::debug!("{} gives no picture campeer can use", path.display());
        }
        usable
    })
}

/// Whether a device captures video with streaming I/O in a format campeer can use.
fn gives_a_usable_picture(path: &Path) -> bool {
    let Ok(device) = Device::with_path(path) else {
        return false;
    };
    let captures = device
        .query_caps()
        .is_ok_and(|caps| caps.capabilities.contains(CAPTURE_CAPS));
    captures
        && device.enum_formats().is_ok_and(|formats| {
            formats
                .iter()
                .any(|f| CameraFormat::from_fourcc(f.fourcc.repr).is_some())
        })
}

/// Everything a device offers, the way `v4l2-ctl --list-formats-ext` shows it.
pub fn describe_device(path: &Path) -> CameraInfo {
    let mut info = CameraInfo {
        path: path.display().to_string(),
        driver: String::new(),
        card: String::new(),
        bus: String::new(),
        capture: false,
        formats: Vec::new(),
        error: None,
    };
    let device = match Device::with_path(path) {
        Ok(device) => device,
        Err(e) => {
            info.error = Some(e.to_string());
            return info;
        }
    };
    match device.query_caps() {
        Ok(caps) => {
            info.driver = caps.driver;
            info.card = caps.card;
            info.bus = caps.bus;
            info.capture = caps.capabilities.contains(CAPTURE_CAPS);
        }
        Err(e) => {
            info.error = Some(e.to_string());
            return info;
        }
    }
    if !info.capture {
        return info;
    }
    let formats = match device.enum_formats() {
        Ok(formats) => formats,
        Err(e) => {
            info.error = Some(e.to_string());
            return info;
        }
    };
    for description in formats {
        let fourcc = description.fourcc;
        let sizes = sizes_and_rates(&device, fourcc)
            .into_iter()
            .map(|(width, height, fps)| SizeInfo { width, height, fps })
            .collect();
        info.formats.push(FormatInfo {
            fourcc: String::from_utf8_lossy(&fourcc.repr).into_owned(),
            description: description.description,
            supported: CameraFormat::from_fourcc(fourcc.repr).is_some(),
            sizes,
        });
    }
    info
}

/// A readable table of cameras.
pub fn format_devices(cameras: &[CameraInfo]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if cameras.is_empty() {
        out.push_str("No video devices found (campeer streams its test pattern without one).\n");
    }
    for camera in cameras {
        let _ = writeln!(out, "{}", camera.path);
        if let Some(error) = &camera.error {
            let _ = writeln!(out, "  cannot read it: {error}");
            continue;
        }
        let _ = writeln!(
            out,
            "  {} (driver {}, bus {}){}",
            camera.card,
            camera.driver,
            camera.bus,
            if camera.capture {
                ""
            } else {
                ": not a capture device"
            }
        );
        for format in &camera.formats {
            let _ = writeln!(
                out,
                "  {} {}{}",
                format.fourcc,
                format.description,
                if format.supported {
                    ""
                } else {
                    " (not usable by campeer)"
                }
            );
            for size in &format.sizes {
                let rates: Vec<String> = size.fps.iter().map(|f| format!("{f:.0}")).collect();
                let _ = writeln!(
                    out,
                    "    {}x{} @ {} fps",
                    size.width,
                    size.height,
                    rates.join(", ")
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_timestamps_give_the_frame_age_unless_they_cannot_be_right() {
        let now = Duration::from_secs(1000);
        assert_eq!(
            frame_age(Duration::from_millis(999_960), now),
            Some(Duration::from_millis(40))
        );
        assert_eq!(frame_age(now, now), Some(Duration::ZERO));
        assert_eq!(
            frame_age(now + Duration::from_millis(1), now),
            None,
            "future"
        );
        assert_eq!(frame_age(Duration::from_secs(10), now), None, "too old");
    }

    #[test]
    fn the_control_ioctl_number_is_vidioc_s_ctrl() {
        // From linux/videodev2.h on a 64-bit host: _IOWR('V', 28, struct v4l2_control).
        assert_eq!(VIDIOC_S_CTRL, 0xc008_561c);
        assert_eq!(CID_FORCE_KEY_FRAME, 0x0099_09e5);
        assert_eq!(std::mem::size_of::<V4l2Control>(), 8);
    }
}
