//! Snapshots, pure: a JPEG of a captured picture, made from the raw frame before encoding,
//! scaled down to a requested width (keeping the aspect), or until it fits a size limit (a
//! broker's, for the retained snapshot Home Assistant shows). Issue 25's groundwork: nothing
//! serves it yet.

use super::I420Frame;
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

/// The JPEG quality snapshots are made at: sharp enough to read a plate, a third the size of 95.
pub const QUALITY: u8 = 80;
/// The narrowest snapshot made when shrinking one to fit a size limit.
pub const MIN_WIDTH: usize = 80;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("a picture of {width}x{height} cannot be a snapshot")]
    BadSize { width: usize, height: usize },
    #[error("even at {MIN_WIDTH} pixels wide the snapshot takes {bytes} bytes, over {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("the JPEG encoder failed: {0}")]
    Encoder(String),
}

/// `frame` as a JPEG, `width` pixels wide (at most the frame's own; its height in proportion,
/// even), or at its own size.
pub fn jpeg(frame: &I420Frame, width: Option<usize>) -> Result<Vec<u8>, SnapshotError> {
    let (source_width, source_height) = (frame.width(), frame.height());
    let bad = SnapshotError::BadSize {
        width: source_width,
        height: source_height,
    };
    if source_width < 2 || source_height < 2 {
        return Err(bad);
    }
    let out_width = width.unwrap_or(source_width).clamp(2, source_width) & !1;
    let out_height = ((source_height * out_width / source_width).max(2)) & !1;
    let (Ok(jpeg_width), Ok(jpeg_height)) = (u16::try_from(out_width), u16::try_from(out_height))
    else {
        return Err(bad);
    };
    let pixels = ycbcr_scaled(frame, out_width, out_height).ok_or(bad)?;
    let mut out = Vec::with_capacity(out_width * out_height / 4);
    let mut encoder = Encoder::new(&mut out, QUALITY);
    encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
    encoder
        .encode(&pixels, jpeg_width, jpeg_height, ColorType::Ycbcr)
        .map_err(|e| SnapshotError::Encoder(e.to_string()))?;
    Ok(out)
}

/// `frame` as a JPEG of at most `limit` bytes: full size if it fits, else halved in width
/// until it does (down to [`MIN_WIDTH`]).
pub fn jpeg_within(frame: &I420Frame, limit: usize) -> Result<Vec<u8>, SnapshotError> {
    let mut width = frame.width();
    loop {
        let picture = jpeg(frame, Some(width))?;
        if picture.len() <= limit {
            return Ok(picture);
        }
        if width / 2 < MIN_WIDTH {
            return Err(SnapshotError::TooLarge {
                bytes: picture.len(),
                limit,
            });
        }
        width /= 2;
    }
}

/// The frame's pixels as interleaved Y, Cb, Cr at `width`×`height`, each output pixel the
/// nearest source pixel (the JPEG encoder then averages chroma 2x2); `None` when a plane is
/// shorter than the frame's size says.
fn ycbcr_scaled(frame: &I420Frame, width: usize, height: usize) -> Option<Vec<u8>> {
    let (source_width, source_height) = (frame.width(), frame.height());
    let chroma_width = source_width.div_ceil(2);
    let (y_plane, u_plane, v_plane) = (frame.y_plane(), frame.u_plane(), frame.v_plane());
    let mut pixels = Vec::with_capacity(width * height * 3);
    for out_y in 0..height {
        let source_y = out_y * source_height / height;
        let luma_row = y_plane.get(source_y * source_width..)?;
        let chroma_row = (source_y / 2) * chroma_width;
        for out_x in 0..width {
            let source_x = out_x * source_width / width;
            let chroma = chroma_row + source_x / 2;
            pixels.push(*luma_row.get(source_x)?);
            pixels.push(*u_plane.get(chroma)?);
            pixels.push(*v_plane.get(chroma)?);
        }
    }
    Some(pixels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::convert::{PixelFormat, to_i420};
    use crate::media::pattern;

    fn pattern_frame(width: usize, height: usize, unix_ms: u64) -> I420Frame {
        let mut frame = I420Frame::new(width, height);
        pattern::draw(&mut frame, 7, unix_ms);
        frame
    }

    /// Decodes a snapshot back (with campeer's own MJPEG path) at `width`×`height`.
    fn decode(jpeg: &[u8], width: usize, height: usize) -> I420Frame {
        let mut frame = I420Frame::new(width, height);
        to_i420(PixelFormat::Mjpeg, jpeg, width, &mut frame).expect("the snapshot decodes");
        frame
    }

    #[test]
    fn a_snapshot_decodes_at_its_size_with_the_timestamp_readable() {
        let ms = 1_765_000_000_123;
        let frame = pattern_frame(640, 480, ms);
        let full = jpeg(&frame, None).unwrap();
        assert_eq!(&full[..2], [0xff, 0xd8], "not a JPEG");
        let decoded = decode(&full, 640, 480);
        assert_eq!(pattern::read_timestamp(&decoded), Some(ms));

        // ?width=320: half in each direction, the aspect kept.
        let half = jpeg(&frame, Some(320)).unwrap();
        let decoded = decode(&half, 320, 240);
        assert_eq!(decoded.width(), 320);
        assert!(half.len() < full.len());
        // Wider than the picture: its own size.
        let capped = jpeg(&frame, Some(4000)).unwrap();
        assert_eq!(capped.len(), full.len());
    }

    #[test]
    fn a_snapshot_is_shrunk_until_it_fits_a_limit() {
        let frame = pattern_frame(1280, 720, 1_765_000_000_000);
        let full = jpeg(&frame, None).unwrap();
        let limit = full.len() / 3;
        let fitted = jpeg_within(&frame, limit).unwrap();
        assert!(fitted.len() <= limit, "{} > {limit}", fitted.len());
        assert!(
            matches!(
                jpeg_within(&frame, 100),
                Err(SnapshotError::TooLarge { limit: 100, .. })
            ),
            "a limit no picture fits is an error"
        );
    }

    #[test]
    fn pictures_too_small_are_refused() {
        let frame = I420Frame::new(1, 1);
        assert!(matches!(
            jpeg(&frame, None),
            Err(SnapshotError::BadSize { .. })
        ));
    }
}
