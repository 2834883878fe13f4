//! Choosing a camera mode: which pixel format, frame size and frame rate to ask a V4L2 device
//! for, given what it offers and what the operator configured. Pure, so every rule is tested
//! without a camera; the capture code only enumerates and applies.
//!
//! The rules, in order: a mode that reaches the configured frame rate beats one that does not
//! (a stuttering picture is worse than a smaller one); then the size nearest the configured
//! one (an exact match, else the smallest larger size, else the largest smaller); then the
//! format cheapest to turn into I420 (I420, NV12, YUYV, then MJPEG, which needs decoding).
//! With H.264 passthrough configured, a camera that offers H.264 is taken in H.264.

use super::convert::PixelFormat;

/// A format a camera offers, as campeer understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraFormat {
    Raw(PixelFormat),
    H264,
}

impl CameraFormat {
    /// The V4L2 fourcc code.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            CameraFormat::Raw(PixelFormat::Yuyv) => *b"YUYV",
            CameraFormat::Raw(PixelFormat::Nv12) => *b"NV12",
            CameraFormat::Raw(PixelFormat::I420) => *b"YU12",
            CameraFormat::Raw(PixelFormat::Mjpeg) => *b"MJPG",
            CameraFormat::H264 => *b"H264",
        }
    }

    pub fn from_fourcc(code: [u8; 4]) -> Option<Self> {
        Some(match &code {
            b"YUYV" => CameraFormat::Raw(PixelFormat::Yuyv),
            b"NV12" => CameraFormat::Raw(PixelFormat::Nv12),
            b"YU12" => CameraFormat::Raw(PixelFormat::I420),
            b"MJPG" | b"JPEG" => CameraFormat::Raw(PixelFormat::Mjpeg),
            b"H264" => CameraFormat::H264,
            _ => return None,
        })
    }

    /// Relative cost of getting I420 out of it (lower is better).
    fn conversion_cost(self) -> u8 {
        match self {
            CameraFormat::Raw(PixelFormat::I420) => 0,
            CameraFormat::Raw(PixelFormat::Nv12) => 1,
            CameraFormat::Raw(PixelFormat::Yuyv) => 2,
            CameraFormat::Raw(PixelFormat::Mjpeg) => 3,
            CameraFormat::H264 => 4,
        }
    }
}

/// One size a camera offers in one format, with the frame rates it offers at that size.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferedMode {
    pub format: CameraFormat,
    pub width: u32,
    pub height: u32,
    /// Frames per second available at this size.
    pub rates: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wanted {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Take H.264 from the camera when it offers it, instead of encoding.
    pub passthrough: bool,
    /// For a camera that encodes: the bitrate and keyframe spacing to ask it for.
    pub bitrate_bps: u32,
    pub keyframe_interval: Option<std::time::Duration>,
}

/// The mode to ask for, and why, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub format: CameraFormat,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError {
    #[error(
        "the camera offers no format campeer can use (it needs YUYV, NV12, YU12, MJPEG or H.264)"
    )]
    NoUsableFormat,
}

pub fn choose(offered: &[OfferedMode], wanted: Wanted) -> Result<Choice, NegotiateError> {
    let usable: Vec<&OfferedMode> = offered
        .iter()
        .filter(|m| m.width > 0 && m.height > 0 && m.width % 2 == 0 && m.height % 2 == 0)
        .filter(|m| wanted.passthrough || m.format != CameraFormat::H264)
        .collect();
    let passthrough: Vec<&OfferedMode> = usable
        .iter()
        .copied()
        .filter(|m| m.format == CameraFormat::H264)
        .collect();
    let pool = if wanted.passthrough && !passthrough.is_empty() {
        passthrough
    } else {
        usable
            .into_iter()
            .filter(|m| m.format != CameraFormat::H264)
            .collect()
    };
    let target = f64::from(wanted.fps);
    let best = pool
        .into_iter()
        .map(|mode| {
            // The rate nearest the target, preferring one that reaches it.
            let rate = mode
                .rates
                .iter()
                .copied()
                .filter(|r| r.is_finite() && *r > 0.0)
                .min_by(|a, b| rate_rank(*a, target).total_cmp(&rate_rank(*b, target)))
                .unwrap_or(0.0);
            (mode, rate)
        })
        .min_by(|(a, ra), (b, rb)| {
            let reaches = |r: f64| r + 0.01 < target;
            reaches(*ra)
                .cmp(&reaches(*rb))
                .then(size_rank(a, wanted).total_cmp(&size_rank(b, wanted)))
                .then(a.format.conversion_cost().cmp(&b.format.conversion_cost()))
        })
        .ok_or(NegotiateError::NoUsableFormat)?;
    let (mode, fps) = best;
    let fourcc = String::from_utf8_lossy(&mode.format.fourcc()).into_owned();
    let mut reason = format!(
        "asked for {}x{}@{}, chose {fourcc} {}x{}@{fps:.0}",
        wanted.width, wanted.height, wanted.fps, mode.width, mode.height
    );
    if (mode.width, mode.height) != (wanted.width, wanted.height) {
        reason.push_str(": the nearest size the camera offers");
    }
    if fps + 0.01 < target {
        reason.push_str(&format!("; the camera cannot do {} fps there", wanted.fps));
    }
    if mode.format == CameraFormat::Raw(PixelFormat::Mjpeg) {
        reason.push_str("; MJPEG is decoded on the CPU");
    }
    Ok(Choice {
        format: mode.format,
        width: mode.width,
        height: mode.height,
        fps,
        reason,
    })
}

/// Lower is better: a rate at or above the target ranks by how little it overshoots; one
/// below ranks after all of those.
fn rate_rank(rate: f64, target: f64) -> f64 {
    if rate + 0.01 >= target {
        rate - target
    } else {
        1e6 + (target - rate)
    }
}

/// Lower is better: exact, then the smallest larger size, then the largest smaller one.
fn size_rank(mode: &OfferedMode, wanted: Wanted) -> f64 {
    let area = f64::from(mode.width) * f64::from(mode.height);
    let target = f64::from(wanted.width) * f64::from(wanted.height);
    if mode.width >= wanted.width && mode.height >= wanted.height {
        area - target
    } else {
        1e12 + (target - area).abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(format: CameraFormat, width: u32, height: u32, rates: &[f64]) -> OfferedMode {
        OfferedMode {
            format,
            width,
            height,
            rates: rates.to_vec(),
        }
    }

    const YUYV: CameraFormat = CameraFormat::Raw(PixelFormat::Yuyv);
    const MJPG: CameraFormat = CameraFormat::Raw(PixelFormat::Mjpeg);
    const NV12: CameraFormat = CameraFormat::Raw(PixelFormat::Nv12);

    fn wanted(width: u32, height: u32, fps: u32) -> Wanted {
        Wanted {
            width,
            height,
            fps,
            passthrough: false,
            bitrate_bps: 1_500_000,
            keyframe_interval: None,
        }
    }

    /// A typical USB2 webcam: YUYV is only fast at small sizes, MJPEG everywhere.
    fn webcam() -> Vec<OfferedMode> {
        vec![
            mode(YUYV, 640, 480, &[30.0, 15.0]),
            mode(YUYV, 1280, 720, &[10.0, 5.0]),
            mode(MJPG, 640, 480, &[30.0]),
            mode(MJPG, 1280, 720, &[30.0]),
            mode(CameraFormat::H264, 1280, 720, &[30.0]),
        ]
    }

    #[test]
    fn exact_size_and_rate_takes_the_cheapest_format() {
        let choice = choose(&webcam(), wanted(640, 480, 30)).unwrap();
        assert_eq!(
            (choice.format, choice.width, choice.height),
            (YUYV, 640, 480)
        );
        assert_eq!(choice.fps, 30.0);
    }

    #[test]
    fn reaching_the_frame_rate_beats_a_cheaper_format() {
        let choice = choose(&webcam(), wanted(1280, 720, 30)).unwrap();
        assert_eq!((choice.format, choice.width), (MJPG, 1280));
        assert!(choice.reason.contains("MJPEG"), "{}", choice.reason);
    }

    #[test]
    fn an_unoffered_size_gets_the_nearest_larger_one() {
        let choice = choose(&webcam(), wanted(800, 600, 30)).unwrap();
        assert_eq!((choice.width, choice.height), (1280, 720));
        assert!(choice.reason.contains("nearest"), "{}", choice.reason);
        let small_only = [mode(NV12, 320, 240, &[30.0]), mode(NV12, 640, 360, &[30.0])];
        let choice = choose(&small_only, wanted(1920, 1080, 30)).unwrap();
        assert_eq!((choice.width, choice.height), (640, 360));
    }

    #[test]
    fn a_too_slow_camera_is_still_used_and_the_reason_says_so() {
        let slow = [mode(YUYV, 640, 480, &[5.0, 10.0])];
        let choice = choose(&slow, wanted(640, 480, 30)).unwrap();
        assert_eq!(choice.fps, 10.0);
        assert!(
            choice.reason.contains("cannot do 30 fps"),
            "{}",
            choice.reason
        );
    }

    #[test]
    fn the_rate_nearest_above_the_target_is_taken() {
        let fast = [mode(NV12, 640, 480, &[60.0, 30.0, 15.0])];
        assert_eq!(choose(&fast, wanted(640, 480, 25)).unwrap().fps, 30.0);
    }

    #[test]
    fn h264_only_with_passthrough() {
        let mut want = wanted(1280, 720, 30);
        assert_eq!(choose(&webcam(), want).unwrap().format, MJPG);
        want.passthrough = true;
        assert_eq!(choose(&webcam(), want).unwrap().format, CameraFormat::H264);
        // Passthrough on a camera without H.264 falls back to encoding.
        let no_h264 = [mode(YUYV, 1280, 720, &[30.0])];
        assert_eq!(choose(&no_h264, want).unwrap().format, YUYV);
    }

    #[test]
    fn nothing_usable_is_an_error() {
        assert_eq!(
            choose(&[], wanted(640, 480, 30)),
            Err(NegotiateError::NoUsableFormat)
        );
        let h264_only = [mode(CameraFormat::H264, 640, 480, &[30.0])];
        assert_eq!(
            choose(&h264_only, wanted(640, 480, 30)),
            Err(NegotiateError::NoUsableFormat)
        );
        let odd = [mode(YUYV, 641, 480, &[30.0])];
        assert_eq!(
            choose(&odd, wanted(640, 480, 30)),
            Err(NegotiateError::NoUsableFormat)
        );
    }

    #[test]
    fn fourcc_codes_round_trip() {
        for format in [
            YUYV,
            MJPG,
            NV12,
            CameraFormat::Raw(PixelFormat::I420),
            CameraFormat::H264,
        ] {
            assert_eq!(CameraFormat::from_fourcc(format.fourcc()), Some(format));
        }
        assert_eq!(CameraFormat::from_fourcc(*b"RGB3"), None);
    }
}
