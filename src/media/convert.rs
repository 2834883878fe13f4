//! Camera pixel formats to I420, the encoder's input. Runs once per captured frame on the
//! pipeline thread, so the loops are plain row-wise passes the compiler vectorises; the
//! `convert` bench measures them.
//!
//! MJPEG is decoded with zune-jpeg: pure Rust (nothing to cross-compile), actively maintained,
//! SIMD where the CPU has it, and among the fastest JPEG decoders in Rust. It hands back
//! YCbCr directly, so no RGB round trip is needed.

use super::I420Frame;
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

/// Pixel formats campeer takes from cameras (besides H.264, which is passed through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 4:2:2, Y0 U Y1 V.
    Yuyv,
    /// Planar Y, then interleaved U/V at half resolution.
    Nv12,
    /// Planar Y, U, V (also called YU12).
    I420,
    /// Motion JPEG, one JPEG per frame.
    Mjpeg,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("frame has {got} bytes; {expected} are needed for {width}x{height}")]
    ShortFrame {
        expected: usize,
        got: usize,
        width: usize,
        height: usize,
    },
    #[error("line stride {stride} is shorter than a {width}-pixel line")]
    BadStride { stride: usize, width: usize },
    #[error("JPEG frame cannot be decoded: {0}")]
    Jpeg(String),
    #[error("JPEG frame is {got_width}x{got_height}, expected {width}x{height}")]
    JpegSize {
        got_width: usize,
        got_height: usize,
        width: usize,
        height: usize,
    },
}

/// Converts one captured frame into `out` (whose size is the frame size). `stride` is the
/// driver's bytes per line of the first plane (0: tightly packed); ignored for MJPEG.
pub fn to_i420(
    format: PixelFormat,
    data: &[u8],
    stride: usize,
    out: &mut I420Frame,
) -> Result<(), ConvertError> {
    let (width, height) = (out.width(), out.height());
    match format {
        PixelFormat::Yuyv => yuyv(data, line_stride(stride, width * 2, width)?, out),
        PixelFormat::Nv12 => nv12(data, line_stride(stride, width, width)?, out),
        PixelFormat::I420 => i420(data, line_stride(stride, width, width)?, out),
        PixelFormat::Mjpeg => mjpeg(data, width, height, out),
    }
}

fn line_stride(stride: usize, packed: usize, width: usize) -> Result<usize, ConvertError> {
    match stride {
        0 => Ok(packed),
        s if s < packed => Err(ConvertError::BadStride { stride: s, width }),
        s => Ok(s),
    }
}

fn need(data: &[u8], expected: usize, out: &I420Frame) -> Result<(), ConvertError> {
    if data.len() < expected {
        return Err(ConvertError::ShortFrame {
            expected,
            got: data.len(),
            width: out.width(),
            height: out.height(),
        });
    }
    Ok(())
}

fn yuyv(data: &[u8], stride: usize, out: &mut I420Frame) -> Result<(), ConvertError> {
    let (width, height) = (out.width(), out.height());
    need(data, stride * height.saturating_sub(1) + width * 2, out)?;
    let (y_plane, u_plane, v_plane) = out.planes_mut();
    let half = width / 2;
    for row in (0..height).step_by(2) {
        let top = &data[row * stride..row * stride + width * 2];
        let bottom = &data[(row + 1) * stride..(row + 1) * stride + width * 2];
        for (dst, src) in [(row, top), (row + 1, bottom)] {
            let y_row = &mut y_plane[dst * width..(dst + 1) * width];
            for (y, pair) in y_row.chunks_exact_mut(2).zip(src.chunks_exact(4)) {
                y[0] = pair[0];
                y[1] = pair[2];
            }
        }
        // 4:2:2 → 4:2:0: average the chroma of the two lines.
        let c = row / 2 * half;
        for (x, (t, b)) in top.chunks_exact(4).zip(bottom.chunks_exact(4)).enumerate() {
            u_plane[c + x] = (u16::from(t[1]) + u16::from(b[1])).div_ceil(2) as u8;
            v_plane[c + x] = (u16::from(t[3]) + u16::from(b[3])).div_ceil(2) as u8;
        }
    }
    Ok(())
}

fn copy_plane(src: &[u8], stride: usize, width: usize, rows: usize, dst: &mut [u8]) {
    for (row, line) in dst.chunks_exact_mut(width).take(rows).enumerate() {
        line.copy_from_slice(&src[row * stride..row * stride + width]);
    }
}

fn nv12(data: &[u8], stride: usize, out: &mut I420Frame) -> Result<(), ConvertError> {
    let (width, height) = (out.width(), out.height());
    let luma = stride * height;
    need(
        data,
        luma + stride * (height / 2).saturating_sub(1) + width,
        out,
    )?;
    let (y_plane, u_plane, v_plane) = out.planes_mut();
    copy_plane(data, stride, width, height, y_plane);
    let half = width / 2;
    for row in 0..height / 2 {
        let line = &data[luma + row * stride..luma + row * stride + width];
        let (u_row, v_row) = (
            &mut u_plane[row * half..(row + 1) * half],
            &mut v_plane[row * half..(row + 1) * half],
        );
        for ((u, v), uv) in u_row
            .iter_mut()
            .zip(v_row.iter_mut())
            .zip(line.chunks_exact(2))
        {
            *u = uv[0];
            *v = uv[1];
        }
    }
    Ok(())
}

fn i420(data: &[u8], stride: usize, out: &mut I420Frame) -> Result<(), ConvertError> {
    let (width, height) = (out.width(), out.height());
    let chroma_stride = stride / 2;
    let luma = stride * height;
    let chroma = chroma_stride * (height / 2);
    need(data, luma + 2 * chroma, out)?;
    let (y_plane, u_plane, v_plane) = out.planes_mut();
    copy_plane(data, stride, width, height, y_plane);
    copy_plane(&data[luma..], chroma_stride, width / 2, height / 2, u_plane);
    copy_plane(
        &data[luma + chroma..],
        chroma_stride,
        width / 2,
        height / 2,
        v_plane,
    );
    Ok(())
}

fn mjpeg(
    data: &[u8],
    width: usize,
    height: usize,
    out: &mut I420Frame,
) -> Result<(), ConvertError> {
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::YCbCr);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(data), options);
    // The header first: a frame of any other size than the negotiated one is refused before
    // the decoder allocates for it (zune-jpeg accepts up to 16384x16384, 800 MB of pixels).
    let size = decoder
        .decode_headers()
        .ok()
        .and_then(|()| decoder.dimensions());
    if let Some((got_width, got_height)) = size
        && (got_width, got_height) != (width, height)
    {
        return Err(ConvertError::JpegSize {
            got_width,
            got_height,
            width,
            height,
        });
    }
    let pixels = decoder
        .decode()
        .map_err(|e| ConvertError::Jpeg(e.to_string()))?;
    let (got_width, got_height) = decoder
        .dimensions()
        .ok_or_else(|| ConvertError::Jpeg("no dimensions".into()))?;
    if (got_width, got_height) != (width, height) || pixels.len() < width * height * 3 {
        return Err(ConvertError::JpegSize {
            got_width,
            got_height,
            width,
            height,
        });
    }
    let (y_plane, u_plane, v_plane) = out.planes_mut();
    for (y, px) in y_plane.iter_mut().zip(pixels.chunks_exact(3)) {
        *y = px[0];
    }
    let half = width / 2;
    let line = width * 3;
    for row in 0..height / 2 {
        let top = &pixels[2 * row * line..(2 * row + 1) * line];
        let bottom = &pixels[(2 * row + 1) * line..(2 * row + 2) * line];
        for x in 0..half {
            let i = x * 6;
            let sum = |c: usize| {
                u16::from(top[i + c])
                    + u16::from(top[i + 3 + c])
                    + u16::from(bottom[i + c])
                    + u16::from(bottom[i + 3 + c])
            };
            u_plane[row * half + x] = ((sum(1) + 2) / 4) as u8;
            v_plane[row * half + x] = ((sum(2) + 2) / 4) as u8;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openh264::formats::YUVSource;

    /// A frame with a distinct value at every luma position and a chroma gradient.
    fn reference(width: usize, height: usize) -> I420Frame {
        let mut frame = I420Frame::new(width, height);
        let (y, u, v) = frame.planes_mut();
        for (i, px) in y.iter_mut().enumerate() {
            *px = (i * 7 % 220 + 16) as u8;
        }
        for (i, (u, v)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
            *u = (i * 3 % 200 + 20) as u8;
            *v = (i * 5 % 200 + 30) as u8;
        }
        frame
    }

    fn planes(frame: &I420Frame) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        (frame.y().to_vec(), frame.u().to_vec(), frame.v().to_vec())
    }

    fn to_yuyv(frame: &I420Frame, stride: usize) -> Vec<u8> {
        let (w, h) = (frame.width(), frame.height());
        let mut data = vec![0u8; stride * h];
        for row in 0..h {
            for x in (0..w).step_by(2) {
                let c = row / 2 * (w / 2) + x / 2;
                let o = row * stride + x * 2;
                data[o] = frame.y()[row * w + x];
                data[o + 1] = frame.u()[c];
                data[o + 2] = frame.y()[row * w + x + 1];
                data[o + 3] = frame.v()[c];
            }
        }
        data
    }

    #[test]
    fn yuyv_with_padding_round_trips() {
        let source = reference(64, 48);
        let data = to_yuyv(&source, 64 * 2 + 32);
        let mut out = I420Frame::new(64, 48);
        to_i420(PixelFormat::Yuyv, &data, 64 * 2 + 32, &mut out).unwrap();
        assert_eq!(planes(&out), planes(&source));
    }

    #[test]
    fn nv12_and_i420_round_trip() {
        let source = reference(32, 16);
        let (y, u, v) = planes(&source);
        let mut nv12 = y.clone();
        for (a, b) in u.iter().zip(&v) {
            nv12.extend([*a, *b]);
        }
        let mut out = I420Frame::new(32, 16);
        to_i420(PixelFormat::Nv12, &nv12, 0, &mut out).unwrap();
        assert_eq!(planes(&out), planes(&source));

        let packed: Vec<u8> = [y, u, v].concat();
        let mut out = I420Frame::new(32, 16);
        to_i420(PixelFormat::I420, &packed, 32, &mut out).unwrap();
        assert_eq!(planes(&out), planes(&source));
    }

    #[test]
    fn short_frames_and_bad_strides_are_errors_not_panics() {
        let mut out = I420Frame::new(64, 48);
        for format in [PixelFormat::Yuyv, PixelFormat::Nv12, PixelFormat::I420] {
            assert!(matches!(
                to_i420(format, &[0u8; 100], 0, &mut out),
                Err(ConvertError::ShortFrame { .. })
            ));
        }
        assert!(matches!(
            to_i420(PixelFormat::Yuyv, &[0u8; 64 * 48 * 2], 10, &mut out),
            Err(ConvertError::BadStride { .. })
        ));
        assert!(matches!(
            to_i420(PixelFormat::Mjpeg, b"not a jpeg at all", 0, &mut out),
            Err(ConvertError::Jpeg(_))
        ));
    }

    #[test]
    fn mjpeg_decodes_within_codec_tolerance() {
        // A flat grey left half and a brighter right half, encoded as JPEG 4:2:0.
        let (w, h) = (64u16, 32u16);
        let mut rgb = Vec::new();
        for _ in 0..h {
            for x in 0..w {
                let v = if x < w / 2 { 60 } else { 200 };
                rgb.extend([v, v, v]);
            }
        }
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 95)
            .encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let mut out = I420Frame::new(64, 32);
        to_i420(PixelFormat::Mjpeg, &jpeg, 0, &mut out).unwrap();
        let luma_at = |x: usize, y: usize| i32::from(out.y()[y * 64 + x]);
        assert!((luma_at(8, 16) - 60).abs() <= 4, "{}", luma_at(8, 16));
        assert!((luma_at(56, 16) - 200).abs() <= 4, "{}", luma_at(56, 16));
        assert!(out.u().iter().all(|c| (i32::from(*c) - 128).abs() <= 3));

        let mut wrong = I420Frame::new(32, 32);
        assert!(matches!(
            to_i420(PixelFormat::Mjpeg, &jpeg, 0, &mut wrong),
            Err(ConvertError::JpegSize { .. })
        ));
    }

    /// The process's peak resident memory so far.
    fn peak_resident_kib() -> i64 {
        // SAFETY: getrusage only writes into the zeroed struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        usage.ru_maxrss
    }

    #[test]
    fn a_jpeg_claiming_a_huge_size_is_refused_from_its_header() {
        let (w, h) = (16u16, 16u16);
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 90)
            .encode(&vec![128; 16 * 16 * 3], w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        // Rewrite the frame header (SOF0: FF C0, length, precision, height, width) to claim
        // 16384x16384, as a broken or hostile camera might.
        let sof = jpeg
            .windows(2)
            .position(|m| m == [0xff, 0xc0])
            .expect("a baseline frame header");
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0x40, 0x00, 0x40, 0x00]);
        let mut out = I420Frame::new(16, 16);
        let peak_before = peak_resident_kib();
        let result = to_i420(PixelFormat::Mjpeg, &jpeg, 0, &mut out);
        let grown = peak_resident_kib().saturating_sub(peak_before);
        // Decoding first would take 800 MB for the claimed picture.
        assert!(grown < 100 * 1024, "the peak grew by {grown} KiB");
        assert_eq!(
            result,
            Err(ConvertError::JpegSize {
                got_width: 16384,
                got_height: 16384,
                width: 16,
                height: 16
            })
        );
    }
}
