//! Media: sources of raw frames, the H.264 and VP8 encoders, and the hub that encodes once per
//! codec and hands every encoded frame to every viewer of that codec.

pub mod audio;
pub mod audio_hub;
pub mod camera;
pub mod convert;
pub mod encoder;
pub mod encoding;
pub mod hub;
pub mod keyframe;
pub mod microphone;
pub mod motion;
pub mod motion_tap;
pub mod negotiate;
pub mod opus;
pub mod pattern;
pub mod rate;
pub mod rpicam;
pub mod rtp;
pub mod snapshot;
pub mod v4l2m2m;
pub mod vp8;
pub mod worker;

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One raw picture in I420 (planar Y, then U, then V at half resolution), the encoder's input.
pub struct I420Frame {
    width: usize,
    height: usize,
    memory: FrameMemory,
    /// When the picture was captured, in milliseconds since the Unix epoch.
    pub capture_unix_ms: u64,
    /// When the picture was captured, on the monotonic clock (RTP timestamps derive from it).
    pub captured_at: Instant,
}

/// Where a frame's pixels live.
enum FrameMemory {
    /// Memory of its own; `pool` takes the buffer back when the frame is done with.
    Owned {
        buffer: Vec<u8>,
        pool: Option<FramePool>,
    },
    /// One of an encoder's own input buffers, lent to the source: the source writes the
    /// picture where the encoder reads it, and nothing is copied in between.
    Lent {
        buffers: Arc<dyn PictureBuffers>,
        index: u32,
        len: usize,
    },
}

/// Input buffers an encoder lends out (a hardware encoder's mapped OUTPUT buffers), laid out
/// exactly as an [`I420Frame`] (no row or height padding).
///
/// A buffer is either free, held by a frame, or with the device; only its holder touches its
/// bytes, which is what makes handing out raw memory sound.
pub trait PictureBuffers: Send + Sync {
    /// The picture size the buffers are laid out for.
    fn picture_size(&self) -> (usize, usize);
    /// Takes a free buffer for a new frame; `None` when none is free.
    fn lend(&self) -> Option<u32>;
    /// The frame that held buffer `index` is gone.
    fn give_back(&self, index: u32);
    /// Buffer `index`'s memory: its start and length (null and 0 for an unknown index).
    fn memory(&self, index: u32) -> (*mut u8, usize);
}

impl FrameMemory {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Owned { buffer, .. } => buffer,
            Self::Lent {
                buffers,
                index,
                len,
            } => {
                let (ptr, available) = buffers.memory(*index);
                if ptr.is_null() {
                    return &[];
                }
                // SAFETY: the buffer is held by this frame (lent to it, not given back until
                // the frame drops), `available` bytes are mapped while `buffers` lives, which
                // this frame keeps alive.
                unsafe { std::slice::from_raw_parts(ptr, (*len).min(available)) }
            }
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Self::Owned { buffer, .. } => buffer,
            Self::Lent {
                buffers,
                index,
                len,
            } => {
                let (ptr, available) = buffers.memory(*index);
                if ptr.is_null() {
                    return &mut [];
                }
                // SAFETY: as in `bytes`; `&mut self` makes this the only access from campeer,
                // and the device reads the buffer only once the encoder queues it, after the
                // source is done writing.
                unsafe { std::slice::from_raw_parts_mut(ptr, (*len).min(available)) }
            }
        }
    }
}

/// Picture buffers a source reuses: a frame's buffer goes back to the pool when the frame is
/// dropped (once encoded), so a steady stream allocates and clears no 460 KB buffer per frame
/// (640x480). When the encoder lends its own input buffers ([`FramePool::lend_from`]), frames
/// of their size are made in them instead. Cheap to clone; clones share the buffers.
#[derive(Clone, Default)]
pub struct FramePool(Arc<Mutex<PoolState>>);

#[derive(Default)]
struct PoolState {
    buffers: Vec<Vec<u8>>,
    /// Weak: the encoder owns its buffers, and a pool must not keep a replaced encoder's.
    lender: Option<std::sync::Weak<dyn PictureBuffers>>,
}

/// Buffers a pool keeps at most: one being filled, one being encoded, and slack.
const POOLED_BUFFERS: usize = 4;

impl FramePool {
    /// A frame of this size whose pixels are left as they were: the caller overwrites every
    /// byte (a source drawing, converting or reading a whole picture).
    pub fn frame(&self, width: usize, height: usize) -> I420Frame {
        let len = width * height * 3 / 2;
        let (lender, reused) = {
            let mut state = self.state();
            let lender = state
                .lender
                .as_ref()
                .and_then(std::sync::Weak::upgrade)
                .filter(|lender| lender.picture_size() == (width, height));
            let reused = match lender {
                Some(_) => None,
                None => state.buffers.pop().filter(|buffer| buffer.len() == len),
            };
            (lender, reused)
        };
        let lent = lender.and_then(|buffers| {
            let index = buffers.lend()?;
            Some(FrameMemory::Lent {
                buffers,
                index,
                len,
            })
        });
        let memory = lent.unwrap_or_else(|| FrameMemory::Owned {
            buffer: reused.unwrap_or_else(|| vec![0; len]),
            pool: Some(self.clone()),
        });
        I420Frame {
            width,
            height,
            memory,
            capture_unix_ms: 0,
            captured_at: Instant::now(),
        }
    }

    /// From now on, frames of the lender's size are made in its buffers (while it lives and
    /// has one free); `None`: in the pool's own again.
    pub fn lend_from(&self, lender: Option<&Arc<dyn PictureBuffers>>) {
        let mut state = self.state();
        let current = state.lender.as_ref().and_then(std::sync::Weak::upgrade);
        let same = match (&current, lender) {
            (Some(a), Some(b)) => std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)),
            (None, None) => true,
            _ => false,
        };
        if !same {
            state.lender = lender.map(Arc::downgrade);
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn give_back(&self, buffer: Vec<u8>) {
        let mut state = self.state();
        if state.buffers.len() < POOLED_BUFFERS {
            state.buffers.push(buffer);
        }
    }
}

impl Drop for I420Frame {
    fn drop(&mut self) {
        match &mut self.memory {
            FrameMemory::Owned { buffer, pool } => {
                if let Some(pool) = pool.take() {
                    pool.give_back(std::mem::take(buffer));
                }
            }
            FrameMemory::Lent { buffers, index, .. } => buffers.give_back(*index),
        }
    }
}

impl Clone for I420Frame {
    /// A copy in memory of its own: a lent buffer has one holder.
    fn clone(&self) -> Self {
        Self {
            width: self.width,
            height: self.height,
            memory: FrameMemory::Owned {
                buffer: self.memory.bytes().to_vec(),
                pool: None,
            },
            capture_unix_ms: self.capture_unix_ms,
            captured_at: self.captured_at,
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
            memory: FrameMemory::Owned {
                buffer: data,
                pool: None,
            },
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

    /// The encoder buffer this frame was made in, if it was lent one.
    pub fn lent_buffer(&self) -> Option<(&Arc<dyn PictureBuffers>, u32)> {
        match &self.memory {
            FrameMemory::Lent { buffers, index, .. } => Some((buffers, *index)),
            FrameMemory::Owned { .. } => None,
        }
    }

    /// The three planes, mutable: (Y, U, V).
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let luma = self.width * self.height;
        let chroma = luma / 4;
        let data = self.memory.bytes_mut();
        let (y, rest) = data.split_at_mut(luma.min(data.len()));
        let (u, v) = rest.split_at_mut(chroma.min(rest.len()));
        (y, u, v)
    }

    /// The whole picture, planes one after another, for a source that reads it in one go.
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.memory.bytes_mut()
    }

    pub fn y_plane(&self) -> &[u8] {
        let luma = self.width * self.height;
        self.memory.bytes().get(..luma).unwrap_or_default()
    }

    pub fn u_plane(&self) -> &[u8] {
        let luma = self.width * self.height;
        self.memory
            .bytes()
            .get(luma..luma + luma / 4)
            .unwrap_or_default()
    }

    pub fn v_plane(&self) -> &[u8] {
        let luma = self.width * self.height;
        self.memory
            .bytes()
            .get(luma + luma / 4..)
            .unwrap_or_default()
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
    /// The pool this source makes its raw frames from, for the encoder to lend its input
    /// buffers to; `None` for a source that makes none (an H.264 camera).
    fn frame_pool(&self) -> Option<&FramePool> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_hands_the_same_buffer_back_out() {
        let pool = FramePool::default();
        let first = pool.frame(64, 48);
        let address = first.y_plane().as_ptr();
        drop(first);
        let second = pool.frame(64, 48);
        assert_eq!(second.y_plane().as_ptr(), address, "reused, not allocated");
        assert_eq!(second.memory.bytes().len(), 64 * 48 * 3 / 2);
        // Another size gets a buffer of its own.
        drop(second);
        let other = pool.frame(32, 16);
        assert_eq!(other.memory.bytes().len(), 32 * 16 * 3 / 2);
        // The pool keeps a few buffers at most.
        let frames: Vec<_> = (0..10).map(|_| pool.frame(32, 16)).collect();
        drop(frames);
        assert!(pool.0.lock().unwrap().buffers.len() <= POOLED_BUFFERS);
    }

    /// Buffers in plain memory with the lending rules of an encoder's.
    struct TestBuffers {
        size: (usize, usize),
        memory: Vec<std::cell::UnsafeCell<Vec<u8>>>,
        held: Mutex<Vec<bool>>,
    }

    // SAFETY: each buffer's bytes are touched only by the frame holding it.
    unsafe impl Sync for TestBuffers {}

    impl PictureBuffers for TestBuffers {
        fn picture_size(&self) -> (usize, usize) {
            self.size
        }
        fn lend(&self) -> Option<u32> {
            let mut held = self.held.lock().unwrap();
            let index = held.iter().position(|h| !*h)?;
            held[index] = true;
            Some(index as u32)
        }
        fn give_back(&self, index: u32) {
            self.held.lock().unwrap()[index as usize] = false;
        }
        fn memory(&self, index: u32) -> (*mut u8, usize) {
            match self.memory.get(index as usize) {
                // SAFETY: see the Sync impl.
                Some(cell) => unsafe {
                    let buffer = &mut *cell.get();
                    (buffer.as_mut_ptr(), buffer.len())
                },
                None => (std::ptr::null_mut(), 0),
            }
        }
    }

    #[test]
    fn frames_of_the_lenders_size_are_made_in_its_buffers() {
        let buffers: Arc<dyn PictureBuffers> = Arc::new(TestBuffers {
            size: (64, 48),
            memory: (0..2)
                .map(|_| std::cell::UnsafeCell::new(vec![0; 64 * 48 * 3 / 2]))
                .collect(),
            held: Mutex::new(vec![false; 2]),
        });
        let pool = FramePool::default();
        pool.lend_from(Some(&buffers));
        let mut first = pool.frame(64, 48);
        first.planes_mut().0.fill(7);
        let (lender, index) = first.lent_buffer().expect("made in a lent buffer");
        assert!(std::ptr::addr_eq(
            Arc::as_ptr(lender),
            Arc::as_ptr(&buffers)
        ));
        assert_eq!(
            buffers.memory(index).0 as *const u8,
            first.y_plane().as_ptr()
        );
        let second = pool.frame(64, 48);
        assert!(second.lent_buffer().is_some());
        // Both held: the next one has memory of its own, and so has another size.
        assert!(pool.frame(64, 48).lent_buffer().is_none());
        assert!(pool.frame(32, 16).lent_buffer().is_none());
        // A copy is a frame of its own; dropping a frame frees its buffer.
        let copy = first.clone();
        assert!(copy.lent_buffer().is_none());
        assert_eq!(copy.y_plane()[0], 7);
        drop(first);
        assert!(pool.frame(64, 48).lent_buffer().is_some());
        // Without the lender (the encoder is gone), frames are the pool's own again.
        drop(second);
        drop(buffers);
        assert!(pool.frame(64, 48).lent_buffer().is_none());
    }
}
