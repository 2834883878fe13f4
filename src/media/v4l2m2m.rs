//! Hardware H.264 through a V4L2 memory-to-memory encoder: the Raspberry Pi 3, 4 and Zero 2 W
//! have one (bcm2835-codec, usually /dev/video11); the Pi 5 has none and stays on openh264.
//!
//! The multi-planar M2M interface: raw pictures go in on the OUTPUT queue, H.264 comes out on
//! the CAPTURE queue, both with MMAP buffers. Bitrate and keyframe requests go through the
//! codec controls; SPS and PPS are asked for with every IDR (REPEAT_SEQ_HEADER) and, where a
//! driver does not repeat them, put there by [`ParameterSets`] as for any camera stream.
//! Encoding is synchronous for the caller: one picture in, its access unit out.

use super::encoder::{AccessUnit, EncoderError, ParameterSets, split_annex_b};
use super::{I420Frame, PictureBuffers};
use bytes::Bytes;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use v4l::v4l_sys::{
    v4l2_buffer, v4l2_capability, v4l2_control, v4l2_fmtdesc, v4l2_format, v4l2_pix_format_mplane,
    v4l2_plane, v4l2_requestbuffers, v4l2_selection, v4l2_streamparm,
};

const BUF_TYPE_CAPTURE_MPLANE: u32 = 9;
const BUF_TYPE_OUTPUT_MPLANE: u32 = 10;
const MEMORY_MMAP: u32 = 1;
const FIELD_NONE: u32 = 1;
const CAP_VIDEO_M2M_MPLANE: u32 = 0x0000_4000;
const CAP_STREAMING: u32 = 0x0400_0000;
const CAP_DEVICE_CAPS: u32 = 0x8000_0000;
const SEL_TGT_CROP: u32 = 0;
const FOURCC_H264: u32 = u32::from_le_bytes(*b"H264");
const FOURCC_YU12: u32 = u32::from_le_bytes(*b"YU12");

/// The codec controls (linux/v4l2-controls.h): the codec class base plus each control's offset.
const CODEC_CONTROLS: u32 = 0x0099_0900;
const CID_BITRATE_MODE: u32 = CODEC_CONTROLS + 206;
const CID_BITRATE: u32 = CODEC_CONTROLS + 207;
const CID_REPEAT_SEQ_HEADER: u32 = CODEC_CONTROLS + 226;
const CID_FORCE_KEY_FRAME: u32 = CODEC_CONTROLS + 229;
const CID_H264_I_PERIOD: u32 = CODEC_CONTROLS + 358;
const CID_H264_PROFILE: u32 = CODEC_CONTROLS + 363;
const BITRATE_MODE_CBR: i32 = 1;
const H264_PROFILE_CONSTRAINED_BASELINE: i32 = 1;

/// Picture buffers: one being filled (lent to the source), one being encoded, and one the
/// driver may not have handed back yet when the next picture is made.
const OUTPUT_BUFFERS: u32 = 3;
/// Encoded frames the encoder can hold.
const CAPTURE_BUFFERS: u32 = 4;
/// The longest one picture may take to come back encoded: a hardware encoder takes a few
/// milliseconds; one that takes this long has failed.
const ENCODE_TIMEOUT: Duration = Duration::from_secs(1);
/// Encoded buffers read for one picture at most (a driver may hand the parameter sets over
/// in a buffer of their own before the picture's).
const MAX_BUFFERS_PER_PICTURE: usize = 4;

/// `_IOWR('V', nr, T)`: the request number of a V4L2 ioctl that reads and writes a `T`.
const fn iowr<T>(nr: u32) -> libc::c_ulong {
    ((3u32 << 30) | ((std::mem::size_of::<T>() as u32) << 16) | ((b'V' as u32) << 8) | nr)
        as libc::c_ulong
}
const fn ior<T>(nr: u32) -> libc::c_ulong {
    ((2u32 << 30) | ((std::mem::size_of::<T>() as u32) << 16) | ((b'V' as u32) << 8) | nr)
        as libc::c_ulong
}
const fn iow<T>(nr: u32) -> libc::c_ulong {
    ((1u32 << 30) | ((std::mem::size_of::<T>() as u32) << 16) | ((b'V' as u32) << 8) | nr)
        as libc::c_ulong
}
const VIDIOC_QUERYCAP: libc::c_ulong = ior::<v4l2_capability>(0);
const VIDIOC_ENUM_FMT: libc::c_ulong = iowr::<v4l2_fmtdesc>(2);
const VIDIOC_S_FMT: libc::c_ulong = iowr::<v4l2_format>(5);
const VIDIOC_REQBUFS: libc::c_ulong = iowr::<v4l2_requestbuffers>(8);
const VIDIOC_QUERYBUF: libc::c_ulong = iowr::<v4l2_buffer>(9);
const VIDIOC_QBUF: libc::c_ulong = iowr::<v4l2_buffer>(15);
const VIDIOC_DQBUF: libc::c_ulong = iowr::<v4l2_buffer>(17);
const VIDIOC_STREAMON: libc::c_ulong = iow::<libc::c_int>(18);
const VIDIOC_STREAMOFF: libc::c_ulong = iow::<libc::c_int>(19);
const VIDIOC_S_PARM: libc::c_ulong = iowr::<v4l2_streamparm>(22);
const VIDIOC_S_CTRL: libc::c_ulong = iowr::<v4l2_control>(28);
const VIDIOC_S_SELECTION: libc::c_ulong = iowr::<v4l2_selection>(95);

#[derive(Debug, thiserror::Error)]
pub enum M2mError {
    #[error("no V4L2 H.264 encoder on this machine (a Raspberry Pi 5 has none)")]
    NotFound,
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a V4L2 memory-to-memory H.264 encoder")]
    NotEncoder { path: String },
    #[error("{path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
}

/// Runs one ioctl on `file` with the argument `arg`, retrying when a signal interrupts it.
fn ioctl<T>(file: &File, request: libc::c_ulong, arg: &mut T) -> std::io::Result<()> {
    loop {
        // SAFETY: every request number here is encoded with the size of `T`, the struct the
        // kernel reads and writes for it, and `arg` is a valid, exclusive `T` for the call.
        let result = unsafe { libc::ioctl(file.as_raw_fd(), request as _, arg as *mut T) };
        if result >= 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// A zeroed V4L2 struct, as the API expects its arguments before the fields are set.
fn zeroed<T>() -> T {
    // SAFETY: only used for the plain-data V4L2 structs above (integers, arrays, unions of
    // those and raw pointers), for which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

fn set_control(file: &File, id: u32, value: i32) -> std::io::Result<()> {
    let mut control = v4l2_control { id, value };
    ioctl(file, VIDIOC_S_CTRL, &mut control)
}

/// One buffer mapped from the device.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is memory like any other, owned by one encoder, used from one thread at
// a time (the encoder is moved, never shared).
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(file: &File, offset: u32, len: usize) -> std::io::Result<Self> {
        // off_t is 32 bits on armv7, where a large offset would not fit.
        #[allow(clippy::unnecessary_fallible_conversions)]
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| std::io::Error::other(format!("buffer offset {offset} out of range")))?;
        // SAFETY: mapping a buffer the driver reported at `offset` with `len` bytes, shared
        // with the device, as the V4L2 MMAP method prescribes.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Where the planes of a raw picture sit in an OUTPUT buffer, as the driver laid them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneLayout {
    /// Bytes per luma row (chroma rows take half).
    pub stride: usize,
    /// Luma rows in the buffer: at least the picture's, often rounded up to 16.
    pub rows: usize,
    pub size: usize,
}

impl PlaneLayout {
    /// The layout a driver answered for a `width`x`height` I420 picture, or why it is unusable.
    pub fn new(
        width: usize,
        height: usize,
        stride: usize,
        rows: usize,
        size: usize,
    ) -> Option<Self> {
        let luma = stride.checked_mul(rows)?;
        let needed = luma.checked_add(luma / 2)?;
        (stride >= width
            && rows >= height
            && stride.is_multiple_of(2)
            && rows.is_multiple_of(2)
            && size >= needed)
            .then_some(Self { stride, rows, size })
    }

    /// Copies a picture into `buffer` laid out this way; rows below the picture repeat its
    /// last row, so the encoder's padding does not show as a stripe should a decoder ignore
    /// the crop.
    pub fn fill(&self, frame: &I420Frame, buffer: &mut [u8]) {
        let (width, height) = (frame.width(), frame.height());
        let (y, u, v) = (frame.y_plane(), frame.u_plane(), frame.v_plane());
        let luma = self.stride * self.rows;
        let chroma = (self.stride / 2) * (self.rows / 2);
        let (luma_out, rest) = buffer.split_at_mut(luma.min(buffer.len()));
        let (u_out, v_out) = rest.split_at_mut(chroma.min(rest.len()));
        copy_plane(y, width, height, luma_out, self.stride, self.rows);
        copy_plane(
            u,
            width / 2,
            height / 2,
            u_out,
            self.stride / 2,
            self.rows / 2,
        );
        copy_plane(
            v,
            width / 2,
            height / 2,
            v_out,
            self.stride / 2,
            self.rows / 2,
        );
    }
}

fn copy_plane(src: &[u8], width: usize, height: usize, dst: &mut [u8], stride: usize, rows: usize) {
    if width == 0 || height == 0 {
        return;
    }
    for (row, out) in dst.chunks_mut(stride).take(rows).enumerate() {
        let from = row.min(height - 1) * width;
        if let (Some(line), Some(out)) = (src.get(from..from + width), out.get_mut(..width)) {
            out.copy_from_slice(line);
        }
    }
}

/// The encoder's OUTPUT buffers: mapped device memory that campeer fills with pictures. When
/// the driver lays a picture out exactly as campeer does (no row or height padding), they
/// are lent to the source ([`PictureBuffers`]), which then captures straight into them.
struct OutputBuffers {
    mappings: Vec<Mapping>,
    /// Per buffer: who has it. Only the holder touches its bytes.
    states: Mutex<Vec<OutputState>>,
    /// The picture size, when the layout is campeer's own; `None`: never lent.
    lendable_size: Option<(usize, usize)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct OutputState {
    /// A frame made in this buffer still exists.
    held_by_frame: bool,
    /// Queued to the device and not yet taken back.
    queued: bool,
}

// SAFETY: the mappings are plain shared memory, and `states` decides who may touch which.
unsafe impl Sync for OutputBuffers {}

impl OutputBuffers {
    fn states(&self) -> std::sync::MutexGuard<'_, Vec<OutputState>> {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A buffer neither a frame nor the device has, taken for a copy (marked queued).
    fn take_free(&self) -> Option<u32> {
        let mut states = self.states();
        let index = states
            .iter()
            .position(|state| !state.held_by_frame && !state.queued)?;
        states.get_mut(index)?.queued = true;
        u32::try_from(index).ok()
    }

    fn set_queued(&self, index: u32, queued: bool) {
        if let Some(state) = self.states().get_mut(index as usize) {
            state.queued = queued;
        }
    }
}

impl PictureBuffers for OutputBuffers {
    fn picture_size(&self) -> (usize, usize) {
        self.lendable_size.unwrap_or_default()
    }

    fn lend(&self) -> Option<u32> {
        self.lendable_size?;
        let mut states = self.states();
        let index = states
            .iter()
            .position(|state| !state.held_by_frame && !state.queued)?;
        states.get_mut(index)?.held_by_frame = true;
        u32::try_from(index).ok()
    }

    fn give_back(&self, index: u32) {
        if let Some(state) = self.states().get_mut(index as usize) {
            state.held_by_frame = false;
        }
    }

    fn memory(&self, index: u32) -> (*mut u8, usize) {
        match self.mappings.get(index as usize) {
            Some(mapping) => (mapping.ptr, mapping.len),
            None => (std::ptr::null_mut(), 0),
        }
    }
}

/// A V4L2 memory-to-memory H.264 encoder, set up for one picture size.
pub struct M2mEncoder {
    file: File,
    path: String,
    layout: PlaneLayout,
    width: usize,
    height: usize,
    outputs: Arc<OutputBuffers>,
    /// Pictures queued where the source made them, and pictures copied in.
    in_place: u64,
    copied: u64,
    captures: Vec<Mapping>,
    parameter_sets: ParameterSets,
    applied_bps: u32,
    wanted_bps: u32,
    max_bps: u32,
    /// Parameter sets the driver sent in a buffer of their own, for the next picture.
    pending_headers: Vec<u8>,
}

impl M2mEncoder {
    /// Sets up the encoder at `path` for `width`x`height`@`fps` at `bitrate_bps`.
    pub fn open(
        path: &Path,
        width: u32,
        height: u32,
        fps: u32,
        bitrate_bps: u32,
    ) -> Result<Self, M2mError> {
        let name = path.display().to_string();
        let io = |what: &'static str| {
            let path = name.clone();
            move |source| M2mError::Io { path, what, source }
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| M2mError::Open {
                path: name.clone(),
                source,
            })?;
        if !is_h264_encoder(&file) {
            return Err(M2mError::NotEncoder { path: name });
        }
        let capture = set_mplane_format(&file, BUF_TYPE_CAPTURE_MPLANE, width, height, FOURCC_H264)
            .map_err(io("set the H.264 format"))?;
        if { capture.pixelformat } != FOURCC_H264 {
            return Err(M2mError::NotEncoder { path: name });
        }
        let answered = set_mplane_format(&file, BUF_TYPE_OUTPUT_MPLANE, width, height, FOURCC_YU12)
            .map_err(io("set the picture format"))?;
        // Copied out of the packed struct before use.
        let (answered_width, answered_height, answered_format) =
            (answered.width, answered.height, answered.pixelformat);
        let plane = answered.plane_fmt[0];
        let (stride, size) = (plane.bytesperline, plane.sizeimage);
        let layout = PlaneLayout::new(
            width as usize,
            height as usize,
            stride as usize,
            answered_height as usize,
            size as usize,
        )
        .filter(|_| answered_format == FOURCC_YU12 && answered_width >= width)
        .ok_or_else(|| M2mError::Format {
            path: name.clone(),
            reason: format!(
                "the driver answered {answered_width}x{answered_height} (stride {stride}, {size} \
                 bytes) for a {width}x{height} I420 picture"
            ),
        })?;
        if layout.rows != height as usize || answered_width != width {
            // The buffer is taller than the picture (rounded to 16 rows): encode the picture
            // only, so that viewers see no padding.
            let mut crop = zeroed::<v4l2_selection>();
            crop.type_ = BUF_TYPE_OUTPUT_MPLANE;
            crop.target = SEL_TGT_CROP;
            crop.r.width = width;
            crop.r.height = height;
            if let Err(e) = ioctl(&file, VIDIOC_S_SELECTION, &mut crop) {
                tracing::info!("{name}: cannot crop to {width}x{height} ({e})");
            }
        }
        let mut parm = zeroed::<v4l2_streamparm>();
        parm.type_ = BUF_TYPE_OUTPUT_MPLANE;
        // The output member of the parameter union, which the type selects.
        parm.parm.output.timeperframe.numerator = 1;
        parm.parm.output.timeperframe.denominator = fps.max(1);
        if let Err(e) = ioctl(&file, VIDIOC_S_PARM, &mut parm) {
            tracing::debug!("{name}: cannot set {fps} fps ({e})");
        }
        // Best effort: drivers differ in which of these they have; the bitrate matters most.
        let controls = [
            (
                CID_H264_PROFILE,
                H264_PROFILE_CONSTRAINED_BASELINE,
                "profile",
            ),
            (CID_BITRATE_MODE, BITRATE_MODE_CBR, "constant bitrate"),
            (CID_REPEAT_SEQ_HEADER, 1, "SPS/PPS with every IDR"),
            // IDRs come when campeer's keyframe policy forces them; the encoder's own period
            // is a minute, a backstop only.
            (
                CID_H264_I_PERIOD,
                i32::try_from(fps.saturating_mul(60)).unwrap_or(i32::MAX),
                "keyframe period",
            ),
        ];
        for (id, value, what) in controls {
            if let Err(e) = set_control(&file, id, value) {
                tracing::debug!("{name}: cannot set the {what} ({e})");
            }
        }
        let bitrate = i32::try_from(bitrate_bps).unwrap_or(i32::MAX);
        set_control(&file, CID_BITRATE, bitrate).map_err(io("set the bitrate"))?;
        let outputs = map_buffers(&file, BUF_TYPE_OUTPUT_MPLANE, OUTPUT_BUFFERS)
            .map_err(io("map the picture buffers"))?;
        let captures = map_buffers(&file, BUF_TYPE_CAPTURE_MPLANE, CAPTURE_BUFFERS)
            .map_err(io("map the H.264 buffers"))?;
        if outputs.iter().any(|m| m.len < layout.size) {
            return Err(M2mError::Format {
                path: name.clone(),
                reason: "picture buffers smaller than a picture".to_owned(),
            });
        }
        // Lent only when a picture's bytes sit where campeer's frames have them: rows of the
        // picture's width, the picture's height of them.
        let lendable_size = (layout.stride == width as usize && layout.rows == height as usize)
            .then_some((width as usize, height as usize));
        let states = Mutex::new(vec![OutputState::default(); outputs.len()]);
        let outputs = Arc::new(OutputBuffers {
            mappings: outputs,
            states,
            lendable_size,
        });
        let encoder = Self {
            in_place: 0,
            copied: 0,
            file,
            path: name.clone(),
            layout,
            width: width as usize,
            height: height as usize,
            outputs,
            captures,
            parameter_sets: ParameterSets::default(),
            applied_bps: bitrate_bps,
            wanted_bps: bitrate_bps,
            max_bps: bitrate_bps,
            pending_headers: Vec::new(),
        };
        for index in 0..encoder.captures.len() as u32 {
            encoder
                .queue_capture(index)
                .map_err(io("queue the H.264 buffers"))?;
        }
        for kind in [BUF_TYPE_OUTPUT_MPLANE, BUF_TYPE_CAPTURE_MPLANE] {
            let mut kind = kind as libc::c_int;
            ioctl(&encoder.file, VIDIOC_STREAMON, &mut kind).map_err(io("start streaming"))?;
        }
        tracing::info!(
            "hardware H.264 encoder {}: {width}x{height}@{fps}, {} kbit/s",
            encoder.path,
            bitrate_bps / 1000
        );
        Ok(encoder)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The size the encoder was set up for.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The picture buffers to lend to the source, when the driver lays pictures out as
    /// campeer's frames are (then no picture is copied on its way in).
    pub fn picture_buffers(&self) -> Option<Arc<dyn PictureBuffers>> {
        self.outputs
            .lendable_size
            .map(|_| Arc::clone(&self.outputs) as Arc<dyn PictureBuffers>)
    }

    /// Pictures queued where the source made them, and pictures copied in.
    pub fn pictures_in_place_and_copied(&self) -> (u64, u64) {
        (self.in_place, self.copied)
    }

    pub fn set_bitrate(&mut self, bps: u32) {
        self.wanted_bps = bps.clamp(super::encoder::MIN_BITRATE_BPS, self.max_bps);
    }

    pub fn bitrate(&self) -> u32 {
        self.applied_bps
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> EncoderError {
        EncoderError::Hardware(format!("{}: {what}: {e}", self.path))
    }

    fn queue_capture(&self, index: u32) -> std::io::Result<()> {
        let mut planes = [zeroed::<v4l2_plane>()];
        planes[0].length = self
            .captures
            .get(index as usize)
            .map_or(0, |m| m.len as u32);
        let mut buffer = zeroed::<v4l2_buffer>();
        buffer.index = index;
        buffer.type_ = BUF_TYPE_CAPTURE_MPLANE;
        buffer.memory = MEMORY_MMAP;
        buffer.length = 1;
        buffer.m.planes = planes.as_mut_ptr();
        ioctl(&self.file, VIDIOC_QBUF, &mut buffer)
    }

    /// Takes back a picture buffer the encoder is done with; `Ok(None)` when none is.
    fn reclaim_output(&mut self) -> std::io::Result<Option<u32>> {
        let mut planes = [zeroed::<v4l2_plane>()];
        let mut buffer = zeroed::<v4l2_buffer>();
        buffer.type_ = BUF_TYPE_OUTPUT_MPLANE;
        buffer.memory = MEMORY_MMAP;
        buffer.length = 1;
        buffer.m.planes = planes.as_mut_ptr();
        match ioctl(&self.file, VIDIOC_DQBUF, &mut buffer) {
            Ok(()) => Ok(Some(buffer.index)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One encoded buffer's bytes and whether the driver flagged it a keyframe; `Ok(None)` when
    /// none is ready.
    fn dequeue_capture(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut planes = [zeroed::<v4l2_plane>()];
        let mut buffer = zeroed::<v4l2_buffer>();
        buffer.type_ = BUF_TYPE_CAPTURE_MPLANE;
        buffer.memory = MEMORY_MMAP;
        buffer.length = 1;
        buffer.m.planes = planes.as_mut_ptr();
        match ioctl(&self.file, VIDIOC_DQBUF, &mut buffer) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
        let index = buffer.index;
        let used = planes[0].bytesused as usize;
        let start = planes[0].data_offset as usize;
        let data = self
            .captures
            .get(index as usize)
            .and_then(|m| m.bytes().get(start.min(used)..used))
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        self.queue_capture(index)?;
        Ok(Some(data))
    }

    fn wait(&self, events: libc::c_short, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut poll = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events,
            revents: 0,
        };
        let millis = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: poll reads and writes the one pollfd it is given.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        ready > 0 && poll.revents & libc::POLLERR == 0
    }

    /// Encodes one picture of the size the encoder was set up for; `force_keyframe` makes it
    /// an IDR. `None` when the encoder gave nothing for it.
    pub fn encode(
        &mut self,
        frame: &I420Frame,
        force_keyframe: bool,
    ) -> Result<Option<AccessUnit>, EncoderError> {
        if (frame.width(), frame.height()) != (self.width, self.height) {
            return Err(EncoderError::Hardware(format!(
                "{}: set up for {}x{}, given {}x{}",
                self.path,
                self.width,
                self.height,
                frame.width(),
                frame.height()
            )));
        }
        if self.wanted_bps != self.applied_bps {
            let bps = i32::try_from(self.wanted_bps).unwrap_or(i32::MAX);
            match set_control(&self.file, CID_BITRATE, bps) {
                Ok(()) => self.applied_bps = self.wanted_bps,
                Err(e) => return Err(self.error("set the bitrate", e)),
            }
        }
        if force_keyframe {
            set_control(&self.file, CID_FORCE_KEY_FRAME, 1)
                .map_err(|e| self.error("force a keyframe", e))?;
        }
        let deadline = Instant::now() + ENCODE_TIMEOUT;
        while let Some(index) = self
            .reclaim_output()
            .map_err(|e| self.error("take back a picture buffer", e))?
        {
            self.outputs.set_queued(index, false);
        }
        let own = frame.lent_buffer().and_then(|(buffers, index)| {
            std::ptr::addr_eq(Arc::as_ptr(buffers), Arc::as_ptr(&self.outputs)).then_some(index)
        });
        let index = match own {
            Some(index) => {
                // Made in this buffer: queued as it is.
                self.outputs.set_queued(index, true);
                self.in_place += 1;
                index
            }
            None => {
                let index = loop {
                    if let Some(index) = self.outputs.take_free() {
                        break index;
                    }
                    if !self.wait(libc::POLLOUT, deadline) {
                        return Err(self.error("no picture buffer came back", "timed out"));
                    }
                    if let Some(index) = self
                        .reclaim_output()
                        .map_err(|e| self.error("take back a picture buffer", e))?
                    {
                        self.outputs.set_queued(index, false);
                    }
                };
                let (ptr, len) = self.outputs.memory(index);
                if ptr.is_null() {
                    return Err(self.error("picture buffer", format!("unknown index {index}")));
                }
                // SAFETY: `take_free` gave this buffer to the encoder alone (no frame holds it,
                // the device does not have it until the QBUF below); `len` bytes are mapped.
                let bytes = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
                self.layout.fill(frame, bytes);
                self.copied += 1;
                index
            }
        };
        let (_, mapped_len) = self.outputs.memory(index);
        let mut planes = [zeroed::<v4l2_plane>()];
        planes[0].bytesused = self.layout.size as u32;
        planes[0].length = mapped_len as u32;
        let mut buffer = zeroed::<v4l2_buffer>();
        buffer.index = index;
        buffer.type_ = BUF_TYPE_OUTPUT_MPLANE;
        buffer.memory = MEMORY_MMAP;
        buffer.field = FIELD_NONE;
        buffer.length = 1;
        buffer.m.planes = planes.as_mut_ptr();
        if let Err(e) = ioctl(&self.file, VIDIOC_QBUF, &mut buffer) {
            self.outputs.set_queued(index, false);
            return Err(self.error("queue a picture", e));
        }
        // The picture's access unit; a driver may send the parameter sets ahead of it in a
        // buffer of their own.
        for _ in 0..MAX_BUFFERS_PER_PICTURE {
            let data = loop {
                match self.dequeue_capture() {
                    Ok(Some(data)) => break data,
                    Ok(None) if self.wait(libc::POLLIN, deadline) => {}
                    Ok(None) => return Err(self.error("no H.264 came back", "timed out")),
                    Err(e) => return Err(self.error("take the H.264", e)),
                }
            };
            let has_picture = split_annex_b(&data)
                .iter()
                .any(|nal| nal.first().is_some_and(|h| (1..=5).contains(&(h & 0x1f))));
            if !has_picture {
                self.pending_headers.extend_from_slice(&data);
                if self.pending_headers.len() > 64 * 1024 {
                    self.pending_headers.clear();
                }
                continue;
            }
            let data = if self.pending_headers.is_empty() {
                Bytes::from(data)
            } else {
                let mut whole = std::mem::take(&mut self.pending_headers);
                whole.extend_from_slice(&data);
                Bytes::from(whole)
            };
            return self.parameter_sets.complete(data).map(Some);
        }
        Ok(None)
    }
}

impl Drop for M2mEncoder {
    fn drop(&mut self) {
        for kind in [BUF_TYPE_OUTPUT_MPLANE, BUF_TYPE_CAPTURE_MPLANE] {
            let mut kind = kind as libc::c_int;
            let _ = ioctl(&self.file, VIDIOC_STREAMOFF, &mut kind);
        }
        // Unmapped before the buffers are freed and the device closed (the picture buffers
        // once no frame made in them is left).
        self.outputs = Arc::new(OutputBuffers {
            mappings: Vec::new(),
            states: Mutex::new(Vec::new()),
            lendable_size: None,
        });
        self.captures.clear();
        for kind in [BUF_TYPE_OUTPUT_MPLANE, BUF_TYPE_CAPTURE_MPLANE] {
            let mut request = zeroed::<v4l2_requestbuffers>();
            request.type_ = kind;
            request.memory = MEMORY_MMAP;
            let _ = ioctl(&self.file, VIDIOC_REQBUFS, &mut request);
        }
    }
}

/// Sets one queue's single-plane format and returns what the driver made of it.
fn set_mplane_format(
    file: &File,
    kind: u32,
    width: u32,
    height: u32,
    fourcc: u32,
) -> std::io::Result<v4l2_pix_format_mplane> {
    let mut format = zeroed::<v4l2_format>();
    format.type_ = kind;
    // The multi-planar member of the format union, which the type selects.
    format.fmt.pix_mp.width = width;
    format.fmt.pix_mp.height = height;
    format.fmt.pix_mp.pixelformat = fourcc;
    format.fmt.pix_mp.field = FIELD_NONE;
    format.fmt.pix_mp.num_planes = 1;
    ioctl(file, VIDIOC_S_FMT, &mut format)?;
    // SAFETY: the driver answered in the multi-planar member.
    Ok(unsafe { format.fmt.pix_mp })
}

/// Asks for `count` MMAP buffers on one queue and maps each.
fn map_buffers(file: &File, kind: u32, count: u32) -> std::io::Result<Vec<Mapping>> {
    let mut request = zeroed::<v4l2_requestbuffers>();
    request.count = count;
    request.type_ = kind;
    request.memory = MEMORY_MMAP;
    ioctl(file, VIDIOC_REQBUFS, &mut request)?;
    if request.count == 0 {
        return Err(std::io::Error::other("the driver gave no buffers"));
    }
    (0..request.count.min(32))
        .map(|index| {
            let mut planes = [zeroed::<v4l2_plane>()];
            let mut buffer = zeroed::<v4l2_buffer>();
            buffer.index = index;
            buffer.type_ = kind;
            buffer.memory = MEMORY_MMAP;
            buffer.length = 1;
            buffer.m.planes = planes.as_mut_ptr();
            ioctl(file, VIDIOC_QUERYBUF, &mut buffer)?;
            // SAFETY: for MMAP buffers the driver filled in the offset member.
            let offset = unsafe { planes[0].m.mem_offset };
            Mapping::new(file, offset, planes[0].length as usize)
        })
        .collect()
}

/// Whether an open device is a multi-planar M2M encoder that takes I420 and gives H.264.
fn is_h264_encoder(file: &File) -> bool {
    let mut caps = zeroed::<v4l2_capability>();
    if ioctl(file, VIDIOC_QUERYCAP, &mut caps).is_err() {
        return false;
    }
    let caps = if caps.capabilities & CAP_DEVICE_CAPS != 0 {
        caps.device_caps
    } else {
        caps.capabilities
    };
    let wanted = CAP_VIDEO_M2M_MPLANE | CAP_STREAMING;
    caps & wanted == wanted
        && offers_format(file, BUF_TYPE_CAPTURE_MPLANE, FOURCC_H264)
        && offers_format(file, BUF_TYPE_OUTPUT_MPLANE, FOURCC_YU12)
}

fn offers_format(file: &File, kind: u32, fourcc: u32) -> bool {
    (0..64).any(|index| {
        let mut description = zeroed::<v4l2_fmtdesc>();
        description.index = index;
        description.type_ = kind;
        ioctl(file, VIDIOC_ENUM_FMT, &mut description).is_ok() && description.pixelformat == fourcc
    })
}

/// The first V4L2 H.264 encoder under /dev (a decoder or an ISP is passed over).
pub fn find_encoder() -> Option<PathBuf> {
    super::camera::device_paths().into_iter().find(|path| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .is_ok_and(|file| is_h264_encoder(&file))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_kernel_headers() {
        // The values videodev2.h gives on 64-bit Linux.
        if std::mem::size_of::<libc::c_long>() == 8 {
            assert_eq!(VIDIOC_QBUF, 0xc058_560f);
            assert_eq!(VIDIOC_DQBUF, 0xc058_5611);
            assert_eq!(VIDIOC_S_FMT, 0xc0d0_5605);
            assert_eq!(VIDIOC_S_SELECTION, 0xc040_565f);
            assert_eq!(VIDIOC_STREAMON, 0x4004_5612);
            assert_eq!(VIDIOC_QUERYCAP, 0x8068_5600);
        }
    }

    #[test]
    fn a_picture_fills_a_padded_buffer_with_its_last_rows_repeated() {
        let mut frame = I420Frame::new(4, 2);
        {
            let (y, u, v) = frame.planes_mut();
            y.copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
            u.copy_from_slice(&[20, 21]);
            v.copy_from_slice(&[30, 31]);
        }
        // Stride 8, four rows: the driver rounded the height up.
        let layout = PlaneLayout::new(4, 2, 8, 4, 8 * 4 * 3 / 2).unwrap();
        let mut buffer = vec![0u8; layout.size];
        layout.fill(&frame, &mut buffer);
        assert_eq!(&buffer[0..4], &[1, 2, 3, 4]);
        assert_eq!(&buffer[8..12], &[5, 6, 7, 8]);
        assert_eq!(
            &buffer[16..20],
            &[5, 6, 7, 8],
            "padding rows repeat the last"
        );
        assert_eq!(&buffer[24..28], &[5, 6, 7, 8]);
        assert_eq!(&buffer[32..34], &[20, 21]);
        assert_eq!(&buffer[36..38], &[20, 21]);
        assert_eq!(&buffer[40..42], &[30, 31]);
        assert_eq!(&buffer[44..46], &[30, 31]);
    }

    #[test]
    fn layouts_a_picture_does_not_fit_are_refused() {
        assert!(PlaneLayout::new(640, 480, 640, 480, 640 * 480 * 3 / 2).is_some());
        assert!(
            PlaneLayout::new(640, 480, 320, 480, 1 << 20).is_none(),
            "stride"
        );
        assert!(
            PlaneLayout::new(640, 480, 640, 240, 1 << 20).is_none(),
            "rows"
        );
        assert!(PlaneLayout::new(640, 480, 640, 480, 1000).is_none(), "size");
        assert!(
            PlaneLayout::new(640, 480, usize::MAX, 480, 1000).is_none(),
            "overflow"
        );
    }
}
