//! V4L2 capture (v4l crate): open a camera, negotiate its mode, stream with MMAP buffers, and
//! hand the encoder I420 frames, newest first.

use super::convert::{self, PixelFormat};
use super::negotiate::{self, CameraFormat, Choice, OfferedMode, Wanted};
use super::{I420Frame, SourceError, VideoSource};
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
    #[error("{path}: H.264 passthrough is not supported yet")]
    Passthrough { path: String },
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
    pixel_format: PixelFormat,
    stride: usize,
    device: Device,
    stream: v4l::io::mmap::Stream<'static>,
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
        let CameraFormat::Raw(pixel_format) = choice.format else {
            return Err(CameraError::Passthrough { path: name });
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
        })
    }

    pub fn choice(&self) -> &Choice {
        &self.choice
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
    fn next_frame(&mut self) -> Result<I420Frame, SourceError> {
        let (pixel_format, stride) = (self.pixel_format, self.stride);
        let (width, height) = (self.choice.width as usize, self.choice.height as usize);
        let name = self.path.display().to_string();
        let mut skipped = 0;
        loop {
            let (data, meta) = self
                .stream
                .next()
                .map_err(|e| SourceError::Device(format!("{name}: {e}")))?;
            // Newest frame wins: if the encoder fell behind, skip what queued up meanwhile.
            if skipped < BUFFERS && newer_frame_waiting(&self.device) {
                skipped += 1;
                continue;
            }
            let used = (meta.bytesused as usize).min(data.len());
            let mut frame = I420Frame::new(width, height);
            frame.captured_at = Instant::now();
            frame.capture_unix_ms = super::pattern::unix_millis(SystemTime::now());
            convert::to_i420(pixel_format, &data[..used], stride, &mut frame)
                .map_err(|e| SourceError::Device(format!("{name}: {e}")))?;
            return Ok(frame);
        }
    }

    fn describe(&self) -> String {
        format!(
            "camera {} {}x{}@{:.0}",
            self.path.display(),
            self.choice.width,
            self.choice.height,
            self.choice.fps
        )
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

/// The first device that can capture video, for a camera not named in the configuration.
pub fn first_capture_device() -> Option<PathBuf> {
    device_paths().into_iter().find(|path| can_capture(path))
}

/// Whether a device captures video with streaming I/O (capabilities only, no enumeration).
fn can_capture(path: &Path) -> bool {
    Device::with_path(path)
        .and_then(|device| device.query_caps())
        .is_ok_and(|caps| caps.capabilities.contains(CAPTURE_CAPS))
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
