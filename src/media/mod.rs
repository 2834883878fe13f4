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
