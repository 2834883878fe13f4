//! A picture the test controls, for the fake camera: a textured still with sensor noise, whose
//! brightness the test can step and across which it can move an object; and what a test needs
//! to read the JPEGs campeer makes of it.

use crate::fakecam::CameraSpec;
use std::sync::{Arc, Mutex};

/// Noise patterns cycled through, one per frame: enough that no two frames in a row share one.
const NOISE_PATTERNS: usize = 8;
/// How far a pixel's noise reaches either way, in luma levels: a cheap sensor in dim light.
const NOISE_AMPLITUDE: i32 = 5;
/// The moving object's side, in pixels.
const OBJECT_SIDE: usize = 48;

/// A rectangle of the picture, in fractions of its width and height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

#[derive(Debug, Default)]
struct SceneState {
    brightness: i32,
    /// The object moves back and forth within this region, when there is one.
    object: Option<Region>,
}

/// The scene; clones share it.
#[derive(Clone, Default)]
pub struct Scene {
    state: Arc<Mutex<SceneState>>,
}

impl Scene {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake camera showing the scene in NV12 at `width`×`height`, 30 fps.
    pub fn camera(&self, width: u32, height: u32) -> CameraSpec {
        let state = Arc::clone(&self.state);
        let noise = noise_patterns(width as usize * height as usize);
        CameraSpec {
            formats: vec![(*b"NV12", vec![(width, height)])],
            fps: 30,
            make_frame: Box::new(move |fourcc, width, height, sequence| {
                assert_eq!(fourcc, b"NV12", "the scene is shown in NV12");
                let (brightness, object) = {
                    let state = state.lock().unwrap();
                    (state.brightness, state.object)
                };
                let noise = &noise[sequence as usize % NOISE_PATTERNS];
                draw(width, height, sequence, brightness, object, noise)
            }),
        }
    }

    /// Adds `levels` to every pixel's luma from the next frame on (an exposure step, a lamp).
    pub fn set_brightness(&self, levels: i32) {
        self.state.lock().unwrap().brightness = levels;
    }

    /// Moves an object within `region` from the next frame on; `None` takes it away.
    pub fn set_object(&self, region: Option<Region>) {
        self.state.lock().unwrap().object = region;
    }
}

/// Per-pixel noise, in luma levels, one pattern per frame of a cycle (a small LCG: the same
/// every run).
fn noise_patterns(pixels: usize) -> Vec<Vec<i8>> {
    let mut seed = 0x2545_f491_u32;
    (0..NOISE_PATTERNS)
        .map(|_| {
            (0..pixels)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let spread = (2 * NOISE_AMPLITUDE + 1) as u32;
                    ((seed >> 16) % spread) as i32 - NOISE_AMPLITUDE
                })
                .map(|n| n as i8)
                .collect()
        })
        .collect()
}

/// One NV12 frame: a 16-pixel checkerboard of two greys, the noise, the brightness step, and
/// a dark square stepping 6 pixels a frame back and forth across `object`'s region.
fn draw(
    width: usize,
    height: usize,
    sequence: u64,
    brightness: i32,
    object: Option<Region>,
    noise: &[i8],
) -> Vec<u8> {
    let mut frame = vec![128u8; width * height * 3 / 2];
    for (i, (pixel, n)) in frame.iter_mut().take(width * height).zip(noise).enumerate() {
        let (x, y) = (i % width, i / width);
        let base = if (x / 16 + y / 16) % 2 == 0 { 90 } else { 150 };
        *pixel = (base + brightness + i32::from(*n)).clamp(16, 235) as u8;
    }
    if let Some(region) = object {
        let left = (region.x * width as f64) as usize;
        let top = (region.y * height as f64) as usize;
        let across = ((region.width * width as f64) as usize).saturating_sub(OBJECT_SIDE);
        let down = ((region.height * height as f64) as usize).saturating_sub(OBJECT_SIDE);
        // Back and forth along the region's diagonal.
        let steps = across.max(1) * 2;
        let step = (sequence as usize * 6) % steps;
        let along = if step < across.max(1) {
            step
        } else {
            steps - step
        };
        let x0 = left + along;
        let y0 = top + along * down / across.max(1);
        for y in y0..(y0 + OBJECT_SIDE).min(height) {
            for x in x0..(x0 + OBJECT_SIDE).min(width) {
                frame[y * width + x] = 20;
            }
        }
    }
    frame
}

/// A JPEG's width and height, from its frame header (SOF0 to SOF3).
pub fn jpeg_size(jpeg: &[u8]) -> Option<(usize, usize)> {
    let mut at = 2;
    while at + 9 < jpeg.len() {
        if jpeg[at] != 0xff {
            return None;
        }
        let marker = jpeg[at + 1];
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if (0xc0..=0xc3).contains(&marker) {
            let height = u16::from_be_bytes([jpeg[at + 5], jpeg[at + 6]]);
            let width = u16::from_be_bytes([jpeg[at + 7], jpeg[at + 8]]);
            return Some((usize::from(width), usize::from(height)));
        }
        at += 2 + length;
    }
    None
}

/// Decodes a JPEG campeer made, with campeer's own MJPEG path, at the size it says it is.
pub fn decode_jpeg(jpeg: &[u8]) -> Option<campeer::media::I420Frame> {
    use campeer::media::convert::{PixelFormat, to_i420};
    let (width, height) = jpeg_size(jpeg)?;
    let mut frame = campeer::media::I420Frame::new(width, height);
    to_i420(PixelFormat::Mjpeg, jpeg, width, &mut frame).ok()?;
    Some(frame)
}
