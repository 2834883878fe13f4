//! Media: sources of raw frames, the H.264 encoder, and the hub that encodes once and hands
//! every encoded frame to every viewer.

pub mod audio;
pub mod audio_hub;
pub mod camera;
pub mod convert;
pub mod encoder;
pub mod encoding;
pub mod hub;
pub mod keyframe;
pub mod microphone;
pub mod negotiate;
pub mod opus;
pub mod pattern;
pub mod rate;
pub mod rpicam;
pub mod v4l2m2m;
pub mod worker;

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One raw picture in I420 (planar Y, then U, then V at half resolution), the encoder's input.
#[derive(Clone)]
pub struct I420Frame {
    width: usize,
    height: usize,
    data: Vec<u8>,
    /// When the picture was captured, in milliseconds since the Unix epoch.
    pub capture_unix_ms: u64,
    /// When the picture was captured, on the monotonic clock (RTP timestamps derive from it).
    pub captured_at: Instant,
    /// Where the buffer goes back when the frame is done with.
    pool: Option<FramePool>,
}

/// Picture buffers a source reuses: a frame's buffer goes back to the pool when the frame is
/// dropped (once encoded), so a steady stream allocates and clears no 460 KB buffer per frame
/// (640x480). Cheap to clone; clones share the buffers.
#[derive(Clone, Default)]
pub struct FramePool(Arc<Mutex<Vec<Vec<u8>>>>);

/// Buffers a pool keeps at most: one being filled, one being encoded, and slack.
const POOLED_BUFFERS: usize = 4;

impl FramePool {
    /// A frame of this size whose pixels are left as they were: the caller overwrites every
    /// byte (a source drawing, converting or reading a whole picture).
    pub fn frame(&self, width: usize, height: usize) -> I420Frame {
        let len = width * height * 3 / 2;
        let reused = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .filter(|buffer| buffer.len() == len);
        I420Frame {
            width,
            height,
            data: reused.unwrap_or_else(|| vec![0; len]),
            capture_unix_ms: 0,
            captured_at: Instant::now(),
            pool: Some(self.clone()),
        }
    }

    fn give_back(&self, buffer: Vec<u8>) {
        let mut buffers = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buffers.len() < POOLED_BUFFERS {
            buffers.push(buffer);
        }
    }
}

impl Drop for I420Frame {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(std::mem::take(&mut self.data));
        }
    }
}

impl I420Frame {
    /// A black frame. Both dimensions must be even (checked by the configuration).
    pub fn new(width: usize, height: usize) -> Self {
        let luma = width * height;
        let mut data = vec![16u8; luma + luma / 2];
        data[luma..].fill(128);
        Self {
            width,
            height,
            data,
            capture_unix_ms: 0,
            captured_at: Instant::now(),
            pool: None,
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// The three planes, mutable: (Y, U, V).
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let luma = self.width * self.height;
        let chroma = luma / 4;
        let (y, rest) = self.data.split_at_mut(luma);
        let (u, v) = rest.split_at_mut(chroma);
        (y, u, v)
    }

    /// The whole picture, planes one after another, for a source that reads it in one go.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    pub fn y_plane(&self) -> &[u8] {
        &self.data[..self.width * self.height]
    }

    pub fn u_plane(&self) -> &[u8] {
        let luma = self.width * self.height;
        &self.data[luma..luma + luma / 4]
    }

    pub fn v_plane(&self) -> &[u8] {
        let luma = self.width * self.height;
        &self.data[luma + luma / 4..]
    }
}

impl openh264::formats::YUVSource for I420Frame {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        self.y_plane()
    }

    fn u(&self) -> &[u8] {
        self.u_plane()
    }

    fn v(&self) -> &[u8] {
        self.v_plane()
    }
}

/// Why a source could not deliver a frame. The kind decides what the pipeline does, so that a
/// flaky USB link costs one frame rather than a reopened camera and a frozen picture for
/// everyone.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The device is gone or stopped working (unplugged, an I/O error, no frame for
    /// seconds): the pipeline closes it, reports it failed and opens it again after a
    /// backoff.
    #[error("device error: {0}")]
    Fatal(String),
    /// This one frame is unusable (a corrupt MJPEG frame, a short buffer): it is skipped and
    /// the device keeps streaming. A run of them is a failed device (see
    /// [`hub::MAX_UNUSABLE_IN_A_ROW`]).
    #[error("unusable frame: {0}")]
    Transient(String),
}

/// One access unit of H.264 that a camera encoded itself, passed through without re-encoding.
#[derive(Debug, Clone)]
pub struct H264Frame {
    /// Annex-B NAL units, as the camera produced them.
    pub data: bytes::Bytes,
    pub width: u32,
    pub height: u32,
    pub capture_unix_ms: u64,
    pub captured_at: Instant,
}

/// What a source delivers: a picture for campeer's encoder, or H.264 ready to send.
#[derive(Clone)]
pub enum CapturedFrame {
    Raw(I420Frame),
    H264(H264Frame),
}

/// Something that produces frames at its own pace: `next_frame` blocks until the next frame is
/// due (a camera until the driver hands one over, the test pattern until its clock ticks).
/// Runs on the pipeline's own thread, never on the async runtime.
pub trait VideoSource: Send {
    fn next_frame(&mut self) -> Result<CapturedFrame, SourceError>;
    /// A short description for the log ("test pattern 640x480@30").
    fn describe(&self) -> String;
    /// Asks a source that encodes by itself (an H.264 camera) for a keyframe soon. `false`
    /// when it cannot: viewers then wait for its next periodic keyframe.
    fn request_keyframe(&mut self) -> bool {
        false
    }
    /// Asks a source that encodes by itself for a new bitrate. `false` when it cannot: its
    /// stream then keeps the rate it was set up with.
    fn set_bitrate(&mut self, _bps: u32) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_hands_the_same_buffer_back_out() {
        let pool = FramePool::default();
        let first = pool.frame(64, 48);
        let address = first.data.as_ptr();
        drop(first);
        let second = pool.frame(64, 48);
        assert_eq!(second.data.as_ptr(), address, "reused, not allocated");
        assert_eq!(second.data.len(), 64 * 48 * 3 / 2);
        // Another size gets a buffer of its own.
        drop(second);
        let other = pool.frame(32, 16);
        assert_eq!(other.data.len(), 32 * 16 * 3 / 2);
        // The pool keeps a few buffers at most.
        let frames: Vec<_> = (0..10).map(|_| pool.frame(32, 16)).collect();
        drop(frames);
        assert!(pool.0.lock().unwrap().len() <= POOLED_BUFFERS);
    }
}
