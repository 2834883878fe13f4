//! VP8 with libvpx, for viewers that cannot take H.264 (Firefox as most distributions ship it
//! offers no H.264 without its OpenH264 plugin). Real-time settings fit for a small board; see
//! vp8-sys/csrc/vp8.c, the C layer that keeps libvpx's configuration struct out of Rust (its
//! layout differs between libvpx versions and between 32- and 64-bit targets).
//!
//! The decoder is here for campeer's tests and benchmarks, which check what a viewer would
//! see with the same library a browser uses.

use super::I420Frame;
use super::encoder::AccessUnit;
use bytes::Bytes;
use campeer_vp8_sys::*;
use std::ffi::{CStr, c_int, c_uint, c_ulong};
use std::ptr;
use std::time::Duration;

/// libvpx's own words for an error code.
fn error_text(code: c_int) -> String {
    // SAFETY: libvpx returns a static, NUL-terminated string for any code (an unknown one
    // included).
    let text = unsafe { campeer_vpx_error_text(code) };
    if text.is_null() {
        return format!("libvpx error {code}");
    }
    // SAFETY: checked non-null above; the string is static.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum Vp8Error {
    #[error("libvpx could not set up a VP8 encoder for {width}x{height}: {reason}")]
    Setup {
        width: usize,
        height: usize,
        reason: String,
    },
    #[error("libvpx failed to encode a frame: {0}")]
    Encode(String),
    #[error("the picture is {got} bytes short of a {width}x{height} I420 frame")]
    ShortPicture {
        width: usize,
        height: usize,
        got: usize,
    },
    #[error("libvpx could not set up a VP8 decoder: {0}")]
    DecoderSetup(String),
    #[error("libvpx could not decode a frame: {0}")]
    Decode(String),
}

/// The speed libvpx's real-time mode works at: -16 is the fastest and worst-looking, 16 the
/// slowest. WebRTC's own choice for small ARM boards is around -12; -8 looks better on the
/// pattern's sharp edges (`cargo bench --bench codecs` gives its cost per frame).
const CPU_USED: c_int = -8;
/// The lowest rate asked of libvpx: below it, it drops quality so far the picture is mush.
pub const MIN_BITRATE_BPS: u32 = 50_000;

/// The one VP8 encoder of a camera, for every VP8 viewer.
pub struct Vp8Encoder {
    raw: ptr::NonNull<RawEncoder>,
    width: usize,
    height: usize,
    fps: u32,
    bitrate_kbps: u32,
}

// SAFETY: the encoder is only used through `&mut self`, from one thread at a time; libvpx keeps
// no thread-local state for it.
unsafe impl Send for Vp8Encoder {}

impl Vp8Encoder {
    /// A real-time encoder for pictures of this size at `bitrate_bps`, with a keyframe at least
    /// every `keyframe_interval` (`None`: only when asked for, as campeer's keyframe policy
    /// does).
    pub fn new(
        width: usize,
        height: usize,
        fps: u32,
        bitrate_bps: u32,
        keyframe_interval: Option<Duration>,
    ) -> Result<Self, Vp8Error> {
        let setup_error = |reason: String| Vp8Error::Setup {
            width,
            height,
            reason,
        };
        let (Ok(w), Ok(h)) = (c_uint::try_from(width), c_uint::try_from(height)) else {
            return Err(setup_error("the size is out of range".to_owned()));
        };
        if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(setup_error("both sides must be even and not 0".to_owned()));
        }
        let keyframe_max_frames = keyframe_interval.map_or(0, |interval| {
            let frames = interval.as_secs_f64() * f64::from(fps.max(1));
            (frames.round() as c_uint).max(1)
        });
        // Two threads on boards with the cores for it: a VP8 viewer's frames then take about
        // half as long to come out.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2)) as c_uint;
        let bitrate_kbps = (bitrate_bps.max(MIN_BITRATE_BPS) / 1000).max(1);
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` is a valid place for the handle; the C side checks nothing else.
        let code = unsafe {
            campeer_vp8_encoder_new(
                w,
                h,
                fps,
                bitrate_kbps,
                threads,
                CPU_USED,
                keyframe_max_frames,
                &mut raw,
            )
        };
        if code != 0 {
            return Err(setup_error(error_text(code)));
        }
        let raw = ptr::NonNull::new(raw)
            .ok_or_else(|| setup_error("libvpx gave no encoder".to_owned()))?;
        Ok(Self {
            raw,
            width,
            height,
            fps: fps.max(1),
            bitrate_kbps,
        })
    }

    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Works to a new rate from the next frame on (a change under 1 kbit/s is not one).
    pub fn set_bitrate(&mut self, bitrate_bps: u32) {
        let kbps = (bitrate_bps.max(MIN_BITRATE_BPS) / 1000).max(1);
        if kbps == self.bitrate_kbps {
            return;
        }
        // SAFETY: `raw` is a live encoder owned by `self`.
        let code = unsafe { campeer_vp8_encoder_set_bitrate(self.raw.as_ptr(), kbps) };
        if code == 0 {
            self.bitrate_kbps = kbps;
        } else {
            tracing::warn!(
                "libvpx refused a VP8 rate of {kbps} kbit/s: {}",
                error_text(code)
            );
        }
    }

    /// Encodes one picture of the encoder's size; `pts` is its capture time on the 90 kHz RTP
    /// clock. `Ok(None)` when libvpx made nothing of it.
    pub fn encode(
        &mut self,
        frame: &I420Frame,
        pts: u64,
        force_keyframe: bool,
    ) -> Result<Option<AccessUnit>, Vp8Error> {
        let (width, height) = (self.width, self.height);
        let luma = width * height;
        let (y, u, v) = (frame.y_plane(), frame.u_plane(), frame.v_plane());
        let got = y.len() + u.len() + v.len();
        if frame.width() != width
            || frame.height() != height
            || y.len() < luma
            || u.len() < luma / 4
            || v.len() < luma / 4
        {
            return Err(Vp8Error::ShortPicture { width, height, got });
        }
        let duration = (90_000 / self.fps) as c_ulong;
        let pts = i64::try_from(pts).unwrap_or(i64::MAX);
        // SAFETY: the planes are at least as long as a picture of the encoder's size needs
        // (checked above) and outlive the call; libvpx reads them only during it.
        let code = unsafe {
            campeer_vp8_encode(
                self.raw.as_ptr(),
                y.as_ptr(),
                width as c_int,
                u.as_ptr(),
                (width / 2) as c_int,
                v.as_ptr(),
                (width / 2) as c_int,
                pts,
                duration,
                c_int::from(force_keyframe),
            )
        };
        if code != 0 {
            return Err(Vp8Error::Encode(error_text(code)));
        }
        let mut data = Vec::new();
        let mut is_keyframe = false;
        loop {
            let mut bytes = ptr::null();
            let mut len = 0usize;
            let mut key: c_int = 0;
            // SAFETY: valid out-pointers; the packet stays valid until the next encode call.
            let got = unsafe {
                campeer_vp8_encoder_next_packet(self.raw.as_ptr(), &mut bytes, &mut len, &mut key)
            };
            if got == 0 || bytes.is_null() {
                break;
            }
            // SAFETY: libvpx gave `len` readable bytes at `bytes`, valid until the next encode.
            data.extend_from_slice(unsafe { std::slice::from_raw_parts(bytes, len) });
            is_keyframe |= key != 0;
        }
        if data.is_empty() {
            return Ok(None);
        }
        Ok(Some(AccessUnit {
            data: Bytes::from(data),
            is_keyframe,
            temporal_id: 0,
        }))
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        // SAFETY: `raw` came from campeer_vp8_encoder_new and is freed once, here.
        unsafe { campeer_vp8_encoder_free(self.raw.as_ptr()) }
    }
}

/// A decoded VP8 picture, copied out of libvpx (planes without padding).
#[derive(Debug, Clone)]
pub struct DecodedPicture {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

/// A VP8 decoder, for tests and benchmarks: what a browser would show.
pub struct Vp8Decoder {
    raw: ptr::NonNull<RawDecoder>,
}

// SAFETY: used through `&mut self` only, one thread at a time.
unsafe impl Send for Vp8Decoder {}

impl Vp8Decoder {
    pub fn new() -> Result<Self, Vp8Error> {
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` is a valid place for the handle.
        let code = unsafe { campeer_vp8_decoder_new(1, &mut raw) };
        if code != 0 {
            return Err(Vp8Error::DecoderSetup(error_text(code)));
        }
        let raw = ptr::NonNull::new(raw)
            .ok_or_else(|| Vp8Error::DecoderSetup("libvpx gave no decoder".to_owned()))?;
        Ok(Self { raw })
    }

    /// Decodes one frame (as depacketised from RTP); `Ok(None)` when it shows nothing.
    pub fn decode(&mut self, frame: &[u8]) -> Result<Option<DecodedPicture>, Vp8Error> {
        // SAFETY: `frame` is readable for its length during the call.
        let code = unsafe { campeer_vp8_decode(self.raw.as_ptr(), frame.as_ptr(), frame.len()) };
        if code != 0 {
            return Err(Vp8Error::Decode(error_text(code)));
        }
        let (mut y, mut u, mut v) = (ptr::null(), ptr::null(), ptr::null());
        let (mut ys, mut us, mut vs): (c_int, c_int, c_int) = (0, 0, 0);
        let (mut width, mut height): (c_uint, c_uint) = (0, 0);
        // SAFETY: valid out-pointers; the planes stay valid until the next decode.
        let got = unsafe {
            campeer_vp8_decoder_next_picture(
                self.raw.as_ptr(),
                &mut y,
                &mut u,
                &mut v,
                &mut ys,
                &mut us,
                &mut vs,
                &mut width,
                &mut height,
            )
        };
        if got == 0 || y.is_null() || u.is_null() || v.is_null() {
            return Ok(None);
        }
        let (width, height) = (width as usize, height as usize);
        let (chroma_width, chroma_height) = (width.div_ceil(2), height.div_ceil(2));
        let copy = |plane: *const u8, stride: c_int, w: usize, h: usize| {
            let stride = usize::try_from(stride).unwrap_or(0);
            let mut out = Vec::with_capacity(w * h);
            if stride < w {
                return out;
            }
            for row in 0..h {
                // SAFETY: libvpx's plane has `h` rows of `stride` bytes, `w` of them picture.
                let line = unsafe { std::slice::from_raw_parts(plane.add(row * stride), w) };
                out.extend_from_slice(line);
            }
            out
        };
        let picture = DecodedPicture {
            width,
            height,
            y: copy(y, ys, width, height),
            u: copy(u, us, chroma_width, chroma_height),
            v: copy(v, vs, chroma_width, chroma_height),
        };
        if picture.y.len() != width * height {
            return Err(Vp8Error::Decode(
                "libvpx gave a picture with odd strides".to_owned(),
            ));
        }
        Ok(Some(picture))
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: `raw` came from campeer_vp8_decoder_new and is freed once, here.
        unsafe { campeer_vp8_decoder_free(self.raw.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern;

    /// The test pattern's picture number `n`, drawn without waiting for its time.
    fn pattern_frame(n: u64) -> I420Frame {
        let mut frame = I420Frame::new(320, 240);
        pattern::draw(&mut frame, n, 1_700_000_000_000 + n * 33);
        frame
    }

    fn pattern_frames(count: u64) -> Vec<I420Frame> {
        (0..count).map(pattern_frame).collect()
    }

    #[test]
    fn pictures_come_back_from_the_decoder_as_they_went_in() {
        let frames = pattern_frames(10);
        let mut encoder = Vp8Encoder::new(320, 240, 30, 800_000, None).unwrap();
        let mut decoder = Vp8Decoder::new().unwrap();
        let mut keyframes = 0;
        for (i, frame) in frames.iter().enumerate() {
            let unit = encoder
                .encode(frame, i as u64 * 3000, false)
                .unwrap()
                .expect("a frame out for every frame in");
            keyframes += usize::from(unit.is_keyframe);
            assert_eq!(
                unit.is_keyframe,
                i == 0,
                "only the first frame is a keyframe"
            );
            let picture = decoder.decode(&unit.data).unwrap().expect("a picture");
            assert_eq!((picture.width, picture.height), (320, 240));
            let error: u64 = picture
                .y
                .iter()
                .zip(frame.y_plane())
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum();
            let mean_error = error as f64 / (320.0 * 240.0);
            assert!(mean_error < 6.0, "frame {i}: mean luma error {mean_error}");
        }
        assert_eq!(keyframes, 1);
    }

    #[test]
    fn a_keyframe_comes_when_asked() {
        let frames = pattern_frames(6);
        let mut encoder = Vp8Encoder::new(320, 240, 30, 500_000, None).unwrap();
        let kinds: Vec<bool> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                encoder
                    .encode(f, i as u64 * 3000, i == 4)
                    .unwrap()
                    .unwrap()
                    .is_keyframe
            })
            .collect();
        assert_eq!(kinds, [true, false, false, false, true, false]);
    }

    #[test]
    fn the_rate_follows_what_it_is_told() {
        let mut encoder = Vp8Encoder::new(320, 240, 30, 1_000_000, None).unwrap();
        let bytes_at = |encoder: &mut Vp8Encoder, start: u64| {
            let mut total = 0;
            for n in start..start + 60 {
                let frame = pattern_frame(n);
                if let Some(unit) = encoder.encode(&frame, n * 3000, false).unwrap() {
                    total += unit.data.len();
                }
            }
            total
        };
        let _warm_up = bytes_at(&mut encoder, 0);
        let high = bytes_at(&mut encoder, 60);
        encoder.set_bitrate(150_000);
        let _settle = bytes_at(&mut encoder, 120);
        let low = bytes_at(&mut encoder, 180);
        assert!(
            (low as f64) < high as f64 * 0.5,
            "at 150 kbit/s {low} bytes, at 1 Mbit/s {high}"
        );
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_crash() {
        let mut decoder = Vp8Decoder::new().unwrap();
        assert!(decoder.decode(&[0xff; 64]).is_err());
        assert!(decoder.decode(&[]).is_err() || decoder.decode(&[]).unwrap().is_none());
    }

    #[test]
    fn sizes_libvpx_cannot_take_are_refused() {
        assert!(Vp8Encoder::new(321, 240, 30, 500_000, None).is_err());
        assert!(Vp8Encoder::new(0, 0, 30, 500_000, None).is_err());
    }
}
