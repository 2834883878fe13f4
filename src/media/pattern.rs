//! The test-pattern source: what campeer streams when there is no camera.
//!
//! It shows visible motion (a drifting colour gradient and a bouncing box), the frame counter
//! drawn large, and the frame's capture time in machine-readable form so that a viewer can
//! measure glass-to-glass latency: milliseconds since the Unix epoch as 48 bits, most
//! significant bit first, drawn as 16x16-pixel squares in row-major order from the top-left
//! corner, wrapping at the frame width (whole squares only), luma 235 for a 1 and 16 for a 0,
//! chroma neutral. The squares sit on macroblock boundaries at full contrast, so they survive
//! H.264 compression at any sane bitrate.

use super::{CapturedFrame, I420Frame, SourceError, VideoSource};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Side of one timestamp square, in pixels.
pub const SQUARE: usize = 16;
/// Bits of the timestamp.
pub const TIMESTAMP_BITS: usize = 48;
pub const LUMA_ONE: u8 = 235;
pub const LUMA_ZERO: u8 = 16;

/// Seven-segment masks for 0-9; bit 0 is the top bar, then clockwise, bit 6 the middle bar.
const DIGIT_SEGMENTS: [u8; 10] = [63, 6, 91, 79, 102, 109, 125, 7, 127, 111];

pub struct TestPattern {
    width: usize,
    height: usize,
    period: Duration,
    frame_number: u64,
    next_due: Option<Instant>,
    pool: super::FramePool,
}

impl TestPattern {
    pub fn new(width: u32, height: u32, fps: u32) -> Self {
        Self {
            width: width as usize,
            height: height as usize,
            period: Duration::from_secs(1) / fps.max(1),
            frame_number: 0,
            next_due: None,
            pool: super::FramePool::default(),
        }
    }

    /// Waits for the next frame time. A source that falls behind (a stalled thread, a suspended
    /// machine) skips ahead instead of bursting frames to catch up.
    fn wait_for_tick(&mut self) {
        let now = Instant::now();
        let due = self.next_due.unwrap_or(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        let next = due + self.period;
        self.next_due = Some(if next < Instant::now() {
            Instant::now() + self.period
        } else {
            next
        });
    }
}

impl VideoSource for TestPattern {
    fn next_frame(&mut self) -> Result<CapturedFrame, SourceError> {
        self.wait_for_tick();
        // Every pixel is drawn: a reused buffer needs no clearing.
        let mut frame = self.pool.frame(self.width, self.height);
        frame.captured_at = Instant::now();
        frame.capture_unix_ms = unix_millis(SystemTime::now());
        let capture_unix_ms = frame.capture_unix_ms;
        draw(&mut frame, self.frame_number, capture_unix_ms);
        self.frame_number += 1;
        Ok(CapturedFrame::Raw(frame))
    }

    fn frame_pool(&self) -> Option<&super::FramePool> {
        Some(&self.pool)
    }

    fn describe(&self) -> String {
        format!(
            "test pattern {}x{}@{:.0}",
            self.width,
            self.height,
            1.0 / self.period.as_secs_f64()
        )
    }
}

pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Reads the capture time back from a picture of the pattern (a decoded one too) the way the
/// README tells a viewer to: the centre pixel of each square, thresholded half-way between the
/// two luma levels. `None` when the picture is too small to hold the squares.
pub fn read_timestamp(frame: &I420Frame) -> Option<u64> {
    let per_row = frame.width() / SQUARE;
    if per_row == 0 {
        return None;
    }
    let mut value = 0u64;
    for bit in 0..TIMESTAMP_BITS {
        let (row, col) = (bit / per_row, bit % per_row);
        let y = row * SQUARE + SQUARE / 2;
        let x = col * SQUARE + SQUARE / 2;
        let luma = *frame.y_plane().get(y * frame.width() + x)?;
        value = (value << 1) | u64::from(luma > 126);
    }
    Some(value)
}

/// Paints the whole picture for frame `frame_number` captured at `unix_ms`.
pub fn draw(frame: &mut I420Frame, frame_number: u64, unix_ms: u64) {
    let (width, height) = (frame.width(), frame.height());
    draw_background(frame, frame_number);
    draw_bouncing_box(frame, frame_number);
    draw_counter(frame, frame_number);
    draw_timestamp(frame, unix_ms);
    debug_assert_eq!((width, height), (frame.width(), frame.height()));
}

fn draw_background(frame: &mut I420Frame, frame_number: u64) {
    let (width, height) = (frame.width(), frame.height());
    let shift = (frame_number as usize * 4) % 128;
    let (y_plane, u_plane, v_plane) = frame.planes_mut();
    for (row, line) in y_plane.chunks_exact_mut(width).enumerate() {
        for (col, px) in line.iter_mut().enumerate() {
            *px = 60 + ((col + row + shift) % 128) as u8;
        }
    }
    let (cw, ch) = (width / 2, height / 2);
    for row in 0..ch {
        for col in 0..cw {
            u_plane[row * cw + col] = (96 + col * 64 / cw.max(1)) as u8;
            v_plane[row * cw + col] = (96 + row * 64 / ch.max(1)) as u8;
        }
    }
}

fn draw_bouncing_box(frame: &mut I420Frame, frame_number: u64) {
    let (width, height) = (frame.width(), frame.height());
    let size = (height / 8).max(2) & !1;
    if size >= width || size >= height {
        return;
    }
    let travel = width - size;
    let step = (frame_number as usize * 6) % (2 * travel);
    let x = if step < travel {
        step
    } else {
        2 * travel - step
    } & !1;
    let y = (height * 3 / 4).saturating_sub(size / 2).min(height - size) & !1;
    fill_rect(frame, x, y, size, size, 210, Some((90, 200)));
}

fn draw_counter(frame: &mut I420Frame, frame_number: u64) {
    let (width, height) = (frame.width(), frame.height());
    let digit_h = (height / 5).max(10);
    let digit_w = digit_h / 2;
    let thickness = (digit_h / 8).max(2);
    let gap = (digit_w / 3).max(1);
    let digits: Vec<u8> = frame_number.to_string().bytes().map(|b| b - b'0').collect();
    let total_w = digits.len() * digit_w + (digits.len().saturating_sub(1)) * gap;
    let margin = thickness * 2;
    if total_w + 2 * margin > width || digit_h + 2 * margin > height {
        return;
    }
    let x0 = (width - total_w) / 2;
    let y0 = (height - digit_h) / 2;
    fill_rect(
        frame,
        x0 - margin,
        y0 - margin,
        total_w + 2 * margin,
        digit_h + 2 * margin,
        LUMA_ZERO,
        Some((128, 128)),
    );
    for (i, digit) in digits.iter().enumerate() {
        let x = x0 + i * (digit_w + gap);
        let segments = DIGIT_SEGMENTS[*digit as usize];
        let half = digit_h / 2;
        let bars = [
            (0, 0, digit_w, thickness),
            (digit_w - thickness, 0, thickness, half),
            (digit_w - thickness, half, thickness, digit_h - half),
            (0, digit_h - thickness, digit_w, thickness),
            (0, half, thickness, digit_h - half),
            (0, 0, thickness, half),
            (0, half - thickness / 2, digit_w, thickness),
        ];
        for (bit, (bx, by, bw, bh)) in bars.into_iter().enumerate() {
            if segments & (1 << bit) != 0 {
                fill_rect(frame, x + bx, y0 + by, bw, bh, LUMA_ONE, None);
            }
        }
    }
}

/// Draws the 48-bit capture time as squares. Bits that do not fit the frame are left out.
fn draw_timestamp(frame: &mut I420Frame, unix_ms: u64) {
    let per_row = frame.width() / SQUARE;
    if per_row == 0 {
        return;
    }
    for bit in 0..TIMESTAMP_BITS {
        let (row, col) = (bit / per_row, bit % per_row);
        if (row + 1) * SQUARE > frame.height() {
            break;
        }
        let one = (unix_ms >> (TIMESTAMP_BITS - 1 - bit)) & 1 == 1;
        let luma = if one { LUMA_ONE } else { LUMA_ZERO };
        fill_rect(
            frame,
            col * SQUARE,
            row * SQUARE,
            SQUARE,
            SQUARE,
            luma,
            Some((128, 128)),
        );
    }
}

/// Fills a rectangle (clipped to the frame); `chroma` also paints U and V when given.
fn fill_rect(
    frame: &mut I420Frame,
    x: usize,
    y: usize,
    w: usize,
    h: usize,
    luma: u8,
    chroma: Option<(u8, u8)>,
) {
    let (width, height) = (frame.width(), frame.height());
    let (x_end, y_end) = ((x + w).min(width), (y + h).min(height));
    let (y_plane, u_plane, v_plane) = frame.planes_mut();
    for row in y..y_end {
        y_plane[row * width + x..row * width + x_end].fill(luma);
    }
    if let Some((u, v)) = chroma {
        let cw = width / 2;
        for row in y / 2..y_end.div_ceil(2).min(height / 2) {
            let (start, end) = (row * cw + x / 2, row * cw + x_end.div_ceil(2).min(cw));
            u_plane[start..end].fill(u);
            v_plane[start..end].fill(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_squares(frame: &I420Frame) -> u64 {
        read_timestamp(frame).unwrap_or(0)
    }

    #[test]
    fn timestamp_squares_encode_the_capture_time_msb_first() {
        let mut frame = I420Frame::new(640, 480);
        let ms = 1_763_840_000_123u64;
        draw(&mut frame, 42, ms);
        assert_eq!(read_squares(&frame), ms);
        // MSB first: bit 47 of this time is 0, so the top-left square is dark; the low bit
        // (1) is the 48th square: row 1, column 7 at 40 squares per row.
        assert_eq!(frame.y_plane()[8 * 640 + 8], LUMA_ZERO);
        assert_eq!(frame.y_plane()[(16 + 8) * 640 + 7 * 16 + 8], LUMA_ONE);
    }

    #[test]
    fn squares_wrap_at_the_frame_width() {
        let mut frame = I420Frame::new(160, 120);
        let ms = (1u64 << 47) | 1;
        draw(&mut frame, 0, ms);
        // 10 squares per row: 48 bits take 5 rows, the last bit at row 4, column 7.
        assert_eq!(read_squares(&frame), ms);
        assert_eq!(frame.y_plane()[(4 * 16 + 8) * 160 + 7 * 16 + 8], LUMA_ONE);
    }

    #[test]
    fn the_picture_moves_between_frames() {
        let mut a = I420Frame::new(320, 240);
        let mut b = I420Frame::new(320, 240);
        draw(&mut a, 10, 0);
        draw(&mut b, 11, 0);
        let differing = a
            .y_plane()
            .iter()
            .zip(b.y_plane())
            .filter(|(x, y)| x != y)
            .count();
        assert!(differing > 320 * 240 / 4, "only {differing} pixels changed");
    }

    #[test]
    fn tiny_frames_do_not_panic() {
        for (w, h) in [(16, 16), (18, 2), (2, 2), (640, 16)] {
            let mut frame = I420Frame::new(w, h);
            draw(&mut frame, 123_456_789, u64::MAX);
        }
    }

    #[test]
    fn the_source_paces_itself() {
        let mut source = TestPattern::new(64, 48, 50);
        let start = Instant::now();
        for _ in 0..6 {
            source.next_frame().unwrap();
        }
        // Six frames at 50 fps span at least five periods (100 ms).
        assert!(start.elapsed() >= Duration::from_millis(95));
    }
}
