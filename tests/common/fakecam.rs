//! A fake V4L2 camera for the tests: a FUSE filesystem with one regular file, `video0`, that
//! answers the V4L2 ioctls the v4l crate uses and serves frame data through mmap.
//!
//! How it works on a regular FUSE file: the kernel passes "restricted" ioctls through, copying
//! in and out as many bytes as the command's encoded size; mmap reads go through the page
//! cache, so after filling a buffer on DQBUF the file's cached pages for that buffer are
//! invalidated (otherwise the client would see a stale frame); poll is answered with poll
//! notifications. Needs /dev/fuse and root.

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, INodeNo, IoctlFlags, LockOwner, MountOption,
    OpenFlags, PollEvents, PollFlags, PollHandle, PollNotifier, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyPoll, Request,
};
use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

const fn ioc(dir: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | (size << 16) | ((b'V' as u32) << 8) | nr
}
const READ: u32 = 2;
const WRITE: u32 = 1;
const RW: u32 = 3;
const QUERYCAP: u32 = ioc(READ, 0, 104);
const ENUM_FMT: u32 = ioc(RW, 2, 64);
const G_FMT: u32 = ioc(RW, 4, 208);
const S_FMT: u32 = ioc(RW, 5, 208);
const REQBUFS: u32 = ioc(RW, 8, 20);
const QUERYBUF: u32 = ioc(RW, 9, 88);
const QBUF: u32 = ioc(RW, 15, 88);
const DQBUF: u32 = ioc(RW, 17, 88);
const STREAMON: u32 = ioc(WRITE, 18, 4);
const STREAMOFF: u32 = ioc(WRITE, 19, 4);
const G_PARM: u32 = ioc(RW, 21, 204);
const S_PARM: u32 = ioc(RW, 22, 204);
const S_CTRL: u32 = ioc(RW, 28, 8);
const ENUM_FRAMESIZES: u32 = ioc(RW, 74, 44);
/// V4L2 codec controls the fake camera's H.264 encoder answers.
const CID_BITRATE: u32 = 0x0099_0900 + 207;
const CID_FORCE_KEY_FRAME: u32 = 0x0099_0900 + 229;
const CID_H264_I_PERIOD: u32 = 0x0099_0900 + 358;
/// The fake H.264 camera's own keyframe spacing: long, like many webcams', so that a viewer
/// who sees a picture at once proves its keyframe request reached the camera.
const DEFAULT_H264_PERIOD: u32 = 300;
const ENUM_FRAMEINTERVALS: u32 = ioc(RW, 75, 52);

const PAGE: usize = 4096;
const VIDEO0: INodeNo = INodeNo(2);
const TTL: Duration = Duration::from_secs(1);

/// What the camera shows, in a given format, for frame `sequence` at `width`x`height`.
pub type FrameMaker = Box<dyn Fn(&[u8; 4], usize, usize, u64) -> Vec<u8> + Send + Sync>;

/// One format the fake camera offers, with its frame sizes.
pub type OfferedFormat = ([u8; 4], Vec<(u32, u32)>);

/// What the fake camera offers: formats with sizes, and one frame rate for all.
pub struct CameraSpec {
    pub formats: Vec<OfferedFormat>,
    pub fps: u32,
    pub make_frame: FrameMaker,
}

struct State {
    fourcc: [u8; 4],
    width: u32,
    height: u32,
    sizeimage: usize,
    buffers: Vec<Vec<u8>>,
    queued: VecDeque<u32>,
    streaming: bool,
    sequence: u64,
    next_due: Option<Instant>,
    poll_waiters: Vec<PollHandle>,
    /// Simulates an unplugged camera: every ioctl fails with ENODEV.
    unplugged: bool,
    /// Simulates a hung driver: DQBUF blocks until released.
    hung: bool,
    /// The camera's own H.264 encoder, while it streams H.264.
    h264: Option<CameraEncoder>,
    h264_period: u32,
    keyframe_requested: bool,
    keyframes_forced: u64,
    bitrate_set: Option<i32>,
}

/// What a camera that encodes H.264 itself does: encode each picture, with an IDR at the start,
/// every `period` frames, or when forced through the FORCE_KEY_FRAME control.
struct CameraEncoder {
    encoder: openh264::encoder::Encoder,
    since_keyframe: u32,
}

impl CameraEncoder {
    fn new(fps: u32) -> Self {
        use openh264::encoder::{EncoderConfig, FrameRate, IntraFramePeriod};
        let config = EncoderConfig::new()
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .intra_frame_period(IntraFramePeriod::from_num_frames(0));
        let encoder = openh264::encoder::Encoder::with_api_config(
            openh264::OpenH264API::from_source(),
            config,
        )
        .expect("the fake camera's encoder");
        Self {
            encoder,
            since_keyframe: 0,
        }
    }

    fn encode(
        &mut self,
        width: usize,
        height: usize,
        sequence: u64,
        force: bool,
        period: u32,
    ) -> Vec<u8> {
        let (y, u, v) = bars_i420(width, height, sequence);
        let planes = openh264::formats::YUVSlices::new(
            (&y, &u, &v),
            (width, height),
            (width, width / 2, width / 2),
        );
        if force || self.since_keyframe + 1 >= period {
            self.encoder.force_intra_frame();
            self.since_keyframe = 0;
        } else {
            self.since_keyframe += 1;
        }
        self.encoder
            .encode(&planes)
            .expect("the fake camera encodes")
            .to_vec()
    }
}

struct Shared {
    spec: CameraSpec,
    state: Mutex<State>,
    notifier: Mutex<Option<fuser::Notifier>>,
}

impl Shared {
    fn buffer_len(&self, state: &State) -> usize {
        state.sizeimage.div_ceil(PAGE) * PAGE
    }
}

struct FakeCamFs(Arc<Shared>);

/// A mounted fake camera; unmounted on drop.
pub struct FakeCamera {
    shared: Arc<Shared>,
    _session: fuser::BackgroundSession,
    dir: tempfile::TempDir,
}

impl FakeCamera {
    /// Mounts the camera, or says why it cannot (no /dev/fuse, not root).
    pub fn mount(spec: CameraSpec) -> Result<Self, String> {
        if !Path::new("/dev/fuse").exists() {
            return Err("there is no /dev/fuse".into());
        }
        let (fourcc, (width, height)) = spec
            .formats
            .first()
            .and_then(|(f, sizes)| sizes.first().map(|s| (*f, *s)))
            .ok_or("the spec offers nothing")?;
        let shared = Arc::new(Shared {
            spec,
            state: Mutex::new(State {
                fourcc,
                width,
                height,
                sizeimage: 0,
                buffers: Vec::new(),
                queued: VecDeque::new(),
                streaming: false,
                sequence: 0,
                next_due: None,
                poll_waiters: Vec::new(),
                unplugged: false,
                hung: false,
                h264: None,
                h264_period: DEFAULT_H264_PERIOD,
                keyframe_requested: false,
                keyframes_forced: 0,
                bitrate_set: None,
            }),
            notifier: Mutex::new(None),
        });
        {
            let mut state = shared.state.lock().unwrap();
            state.sizeimage = frame_size(&fourcc, width, height);
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut config = fuser::Config::default();
        config
            .mount_options
            .extend([MountOption::FSName("campeer-fakecam".into())]);
        config.n_threads = Some(4);
        let session = fuser::Session::new(FakeCamFs(Arc::clone(&shared)), dir.path(), &config)
            .map_err(|e| format!("cannot mount FUSE: {e}"))?
            .spawn()
            .map_err(|e| format!("cannot start FUSE: {e}"))?;
        *shared.notifier.lock().unwrap() = Some(session.notifier());
        // A real driver wakes pollers when it fills a buffer; here a frame becomes ready
        // with the clock, so a ticker wakes them when it is due. It ends with the camera.
        let ticker = Arc::downgrade(&shared);
        std::thread::spawn(move || {
            while let Some(shared) = ticker.upgrade() {
                wake(&shared, &mut shared.state.lock().unwrap());
                drop(shared);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Ok(Self {
            shared,
            _session: session,
            dir,
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("video0")
    }

    /// Unplugs (every ioctl fails with ENODEV) or replugs the camera. A replugged camera is a
    /// fresh device, as after a real USB reconnect: no buffers, not streaming.
    pub fn set_unplugged(&self, unplugged: bool) {
        let mut state = self.shared.state.lock().unwrap();
        state.unplugged = unplugged;
        state.streaming = false;
        state.queued.clear();
        if !unplugged {
            state.buffers.clear();
            state.next_due = None;
        }
        wake(&self.shared, &mut state);
    }

    /// Makes DQBUF block (as a wedged driver does) or releases it.
    pub fn set_hung(&self, hung: bool) {
        self.shared.state.lock().unwrap().hung = hung;
    }

    pub fn frames_served(&self) -> u64 {
        self.shared.state.lock().unwrap().sequence
    }

    /// How many keyframes campeer forced through the FORCE_KEY_FRAME control.
    pub fn keyframes_forced(&self) -> u64 {
        self.shared.state.lock().unwrap().keyframes_forced
    }

    /// The H.264 bitrate campeer asked the camera for, if any.
    pub fn bitrate_set(&self) -> Option<i32> {
        self.shared.state.lock().unwrap().bitrate_set
    }
}

/// Bytes of one frame in `fourcc` (MJPEG: room for the largest JPEG).
fn frame_size(fourcc: &[u8; 4], width: u32, height: u32) -> usize {
    let (w, h) = (width as usize, height as usize);
    match fourcc {
        b"YUYV" => w * h * 2,
        b"NV12" | b"YU12" => w * h * 3 / 2,
        _ => w * h * 2,
    }
}

/// Whether a filled buffer waits to be dequeued, as a real driver reports it to poll(): one
/// is queued and its frame is due. (Frames are made at DQBUF, which blocks until then.)
fn frame_ready(state: &State) -> bool {
    state.streaming
        && !state.queued.is_empty()
        && state.next_due.is_none_or(|due| due <= Instant::now())
}

/// Tells pollers that a buffer can be dequeued (or that the device went away): the same rule
/// as poll() answers with, so a woken poller finds what it was woken for.
fn wake(shared: &Shared, state: &mut State) {
    if !state.poll_waiters.is_empty() && (frame_ready(state) || state.unplugged) {
        let waiters: Vec<PollHandle> = state.poll_waiters.drain(..).collect();
        if let Some(notifier) = shared.notifier.lock().unwrap().as_ref() {
            for handle in waiters {
                let _ = notifier.poll(handle);
            }
        }
    }
}

pub(crate) fn attr(ino: INodeNo, kind: FileType, size: u64) -> FileAttr {
    FileAttr {
        ino,
        size,
        blocks: size.div_ceil(512),
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm: if kind == FileType::Directory {
            0o755
        } else {
            0o666
        },
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

pub(crate) fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_ne_bytes());
}

pub(crate) fn get_u32(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

pub(crate) fn put_str(buf: &mut [u8], at: usize, len: usize, text: &str) {
    let bytes = text.as_bytes();
    let n = bytes.len().min(len - 1);
    buf[at..at + n].copy_from_slice(&bytes[..n]);
}

impl FakeCamFs {
    /// Fixed and large enough for 8 buffers of any mode: the kernel caches the size from
    /// lookup, and mapping past it would read nothing.
    fn video_size(&self) -> u64 {
        8 * 16 * 1024 * 1024
    }

    fn sizes_of(&self, fourcc: u32) -> Option<&Vec<(u32, u32)>> {
        self.0
            .spec
            .formats
            .iter()
            .find(|(f, _)| u32::from_le_bytes(*f) == fourcc)
            .map(|(_, sizes)| sizes)
    }

    fn fill_buffer_info(&self, state: &State, out: &mut [u8], index: u32, flags: u32) {
        let len = self.0.buffer_len(state);
        put_u32(out, 0, index);
        put_u32(out, 4, 1); // VIDEO_CAPTURE
        put_u32(out, 12, flags);
        put_u32(out, 16, 1); // FIELD_NONE
        put_u32(out, 60, 1); // MEMORY_MMAP
        put_u32(out, 64, index * len as u32); // m.offset
        put_u32(out, 72, len as u32); // length
    }

    fn handle(&self, cmd: u32, input: &[u8], out: &mut [u8]) -> Result<(), Errno> {
        let shared = &self.0;
        let mut state = shared.state.lock().unwrap();
        if state.unplugged {
            return Err(Errno::from_i32(libc::ENODEV));
        }
        match cmd {
            QUERYCAP => {
                put_str(out, 0, 16, "fakecam");
                put_str(out, 16, 32, "campeer fake camera");
                put_str(out, 48, 32, "fuse:video0");
                put_u32(out, 80, (6 << 16) | (1 << 8));
                let caps = 0x1 | 0x0400_0000; // VIDEO_CAPTURE | STREAMING
                put_u32(out, 84, caps | 0x8000_0000);
                put_u32(out, 88, caps);
            }
            ENUM_FMT => {
                let index = get_u32(input, 0) as usize;
                if get_u32(input, 4) != 1 {
                    return Err(Errno::EINVAL);
                }
                let (fourcc, _) = shared.spec.formats.get(index).ok_or(Errno::EINVAL)?;
                put_u32(out, 0, index as u32);
                put_u32(out, 4, 1);
                let compressed = fourcc == b"MJPG" || fourcc == b"H264";
                put_u32(out, 8, u32::from(compressed)); // COMPRESSED
                put_str(out, 12, 32, &String::from_utf8_lossy(fourcc));
                put_u32(out, 44, u32::from_le_bytes(*fourcc));
            }
            ENUM_FRAMESIZES => {
                let index = get_u32(input, 0) as usize;
                let sizes = self.sizes_of(get_u32(input, 4)).ok_or(Errno::EINVAL)?;
                let (w, h) = *sizes.get(index).ok_or(Errno::EINVAL)?;
                put_u32(out, 8, 1); // DISCRETE
                put_u32(out, 12, w);
                put_u32(out, 16, h);
            }
            ENUM_FRAMEINTERVALS => {
                let sizes = self.sizes_of(get_u32(input, 4)).ok_or(Errno::EINVAL)?;
                let size = (get_u32(input, 8), get_u32(input, 12));
                if get_u32(input, 0) != 0 || !sizes.contains(&size) {
                    return Err(Errno::EINVAL);
                }
                put_u32(out, 16, 1); // DISCRETE
                put_u32(out, 20, 1);
                put_u32(out, 24, shared.spec.fps);
            }
            G_FMT | S_FMT => {
                if get_u32(input, 0) != 1 {
                    return Err(Errno::EINVAL);
                }
                if cmd == S_FMT {
                    if state.streaming || !state.buffers.is_empty() {
                        return Err(Errno::EBUSY);
                    }
                    let fourcc_code = get_u32(input, 16);
                    let (fourcc, sizes) = shared
                        .spec
                        .formats
                        .iter()
                        .find(|(f, _)| u32::from_le_bytes(*f) == fourcc_code)
                        .or(shared.spec.formats.first())
                        .ok_or(Errno::EINVAL)?;
                    let (w, h) = (get_u32(input, 8), get_u32(input, 12));
                    let nearest = sizes
                        .iter()
                        .min_by_key(|(sw, sh)| {
                            (i64::from(*sw) - i64::from(w)).abs()
                                + (i64::from(*sh) - i64::from(h)).abs()
                        })
                        .copied()
                        .ok_or(Errno::EINVAL)?;
                    state.fourcc = *fourcc;
                    (state.width, state.height) = nearest;
                    state.sizeimage = frame_size(fourcc, nearest.0, nearest.1);
                }
                let bytesperline = match &state.fourcc {
                    b"YUYV" => state.width * 2,
                    b"MJPG" | b"H264" => 0,
                    _ => state.width,
                };
                put_u32(out, 0, 1);
                put_u32(out, 8, state.width);
                put_u32(out, 12, state.height);
                put_u32(out, 16, u32::from_le_bytes(state.fourcc));
                put_u32(out, 20, 1); // FIELD_NONE
                put_u32(out, 24, bytesperline);
                put_u32(out, 28, state.sizeimage as u32);
                put_u32(out, 32, 8); // SRGB
            }
            G_PARM | S_PARM => {
                put_u32(out, 0, 1);
                put_u32(out, 4, 0x1000); // TIMEPERFRAME
                put_u32(out, 12, 1);
                put_u32(out, 16, shared.spec.fps);
            }
            REQBUFS => {
                if get_u32(input, 4) != 1 || get_u32(input, 8) != 1 {
                    return Err(Errno::EINVAL);
                }
                let count = get_u32(input, 0).min(8);
                let len = shared.buffer_len(&state);
                state.buffers = (0..count).map(|_| vec![0u8; len]).collect();
                state.queued.clear();
                put_u32(out, 0, count);
                put_u32(out, 4, 1);
                put_u32(out, 8, 1);
                put_u32(out, 12, 0x1); // SUPPORTS_MMAP
            }
            QUERYBUF => {
                let index = get_u32(input, 0);
                if index as usize >= state.buffers.len() {
                    return Err(Errno::EINVAL);
                }
                self.fill_buffer_info(&state, out, index, 0x1);
            }
            QBUF => {
                let index = get_u32(input, 0);
                if index as usize >= state.buffers.len() {
                    return Err(Errno::EINVAL);
                }
                state.queued.push_back(index);
                self.fill_buffer_info(&state, out, index, 0x1 | 0x2);
                wake(shared, &mut state);
            }
            DQBUF => {
                // The v4l crate opens the device non-blocking and polls first, as a real
                // driver expects: with nothing to dequeue, say so at once.
                if !state.streaming {
                    return Err(Errno::EINVAL);
                }
                if state.hung {
                    // Block the caller inside the ioctl, bounded so a forgotten release cannot
                    // hang the test suite.
                    drop(state);
                    let deadline = Instant::now() + Duration::from_secs(120);
                    while shared.state.lock().unwrap().hung && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    state = shared.state.lock().unwrap();
                }
                let index = state.queued.pop_front().ok_or(Errno::EAGAIN)?;
                // Pace like a real camera.
                let period = Duration::from_secs(1) / shared.spec.fps;
                let due = state.next_due.unwrap_or_else(Instant::now);
                drop(state);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let mut state = shared.state.lock().unwrap();
                state.next_due = Some(due.max(now) + period);
                state.sequence += 1;
                let sequence = state.sequence;
                let (width, height) = (state.width as usize, state.height as usize);
                let frame = if &state.fourcc == b"H264" {
                    let force = std::mem::take(&mut state.keyframe_requested);
                    let period = state.h264_period;
                    let fps = shared.spec.fps;
                    state
                        .h264
                        .get_or_insert_with(|| CameraEncoder::new(fps))
                        .encode(width, height, sequence, force, period)
                } else {
                    (shared.spec.make_frame)(&state.fourcc, width, height, sequence)
                };
                let len = shared.buffer_len(&state);
                let used = frame.len().min(len);
                state.buffers[index as usize][..used].copy_from_slice(&frame[..used]);
                // Drop the stale pages the client mapped, so the next read shows this frame.
                if let Some(notifier) = shared.notifier.lock().unwrap().as_ref() {
                    let _ = notifier.inval_inode(VIDEO0, (index as usize * len) as i64, len as i64);
                }
                self.fill_buffer_info(&state, out, index, 0x1 | 0x2000);
                put_u32(out, 8, used as u32);
                let mut clock = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: clock_gettime only writes the timespec it is given.
                unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut clock) };
                // struct timeval on a 64-bit host: two 8-byte fields.
                out[24..32].copy_from_slice(&clock.tv_sec.to_ne_bytes());
                out[32..40].copy_from_slice(&(clock.tv_nsec / 1000).to_ne_bytes());
                put_u32(out, 56, sequence as u32);
            }
            S_CTRL => {
                let (id, value) = (get_u32(input, 0), get_u32(input, 4) as i32);
                if !shared.spec.formats.iter().any(|(f, _)| f == b"H264") {
                    return Err(Errno::EINVAL);
                }
                match id {
                    CID_FORCE_KEY_FRAME => {
                        state.keyframe_requested = true;
                        state.keyframes_forced += 1;
                    }
                    CID_BITRATE => state.bitrate_set = Some(value),
                    CID_H264_I_PERIOD => state.h264_period = value.max(1) as u32,
                    _ => return Err(Errno::EINVAL),
                }
                put_u32(out, 0, id);
                put_u32(out, 4, value as u32);
            }
            STREAMON => {
                state.streaming = true;
                state.h264 = None;
                wake(shared, &mut state);
            }
            STREAMOFF => {
                state.streaming = false;
                state.queued.clear();
            }
            _ => return Err(Errno::ENOTTY),
        }
        Ok(())
    }
}

impl Filesystem for FakeCamFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name == "video0" {
            reply.entry(
                &TTL,
                &attr(VIDEO0, FileType::RegularFile, self.video_size()),
                fuser::Generation(0),
            );
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino {
            INodeNo::ROOT => reply.attr(&TTL, &attr(ino, FileType::Directory, 0)),
            VIDEO0 => reply.attr(&TTL, &attr(ino, FileType::RegularFile, self.video_size())),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), fuser::FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if ino != VIDEO0 {
            reply.error(Errno::ENOENT);
            return;
        }
        let state = self.0.state.lock().unwrap();
        let len = self.0.buffer_len(&state);
        let mut out = Vec::with_capacity(size as usize);
        let mut offset = offset as usize;
        let end = offset + size as usize;
        while offset < end {
            let (index, within) = (offset / len, offset % len);
            let take = (len - within).min(end - offset);
            match state.buffers.get(index) {
                Some(buffer) => out.extend_from_slice(&buffer[within..within + take]),
                None => out.resize(out.len() + take, 0),
            }
            offset += take;
        }
        reply.data(&out);
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (VIDEO0, FileType::RegularFile, "video0"),
        ];
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        let mut out = in_data.to_vec();
        out.resize(out_size as usize, 0);
        match self.handle(cmd, in_data, &mut out) {
            Ok(()) => reply.ioctl(0, &out),
            Err(errno) => reply.error(errno),
        }
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        ph: PollNotifier,
        _events: PollEvents,
        flags: PollFlags,
        reply: ReplyPoll,
    ) {
        let mut state = self.0.state.lock().unwrap();
        let ready = frame_ready(&state) || state.unplugged;
        if !ready && flags.contains(PollFlags::FUSE_POLL_SCHEDULE_NOTIFY) {
            state.poll_waiters.push(ph.handle());
        }
        let events = if state.unplugged {
            PollEvents::POLLERR
        } else if ready {
            PollEvents::POLLIN
        } else {
            PollEvents::empty()
        };
        reply.poll(events);
    }
}

/// The 75 % colour bars (Y, U, V), left to right.
pub const BARS: [(u8, u8, u8); 8] = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
    (16, 128, 128),
];

/// The known content: colour bars, with a white 32x32 marker moving along the top.
/// Returns the I420 planes.
pub fn bars_i420(width: usize, height: usize, sequence: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let bar = |x: usize| BARS[(x * 8 / width).min(7)];
    let mut y = vec![0u8; width * height];
    let (cw, ch) = (width / 2, height / 2);
    let mut u = vec![0u8; cw * ch];
    let mut v = vec![0u8; cw * ch];
    for row in 0..height {
        for col in 0..width {
            y[row * width + col] = bar(col).0;
        }
    }
    for row in 0..ch {
        for col in 0..cw {
            (u[row * cw + col], v[row * cw + col]) = (bar(col * 2).1, bar(col * 2).2);
        }
    }
    let marker_x = marker_x(width, sequence);
    for row in 16..48.min(height) {
        y[row * width + marker_x..row * width + marker_x + 32].fill(235);
    }
    for row in 8..24.min(ch) {
        u[row * cw + marker_x / 2..row * cw + marker_x / 2 + 16].fill(128);
        v[row * cw + marker_x / 2..row * cw + marker_x / 2 + 16].fill(128);
    }
    (y, u, v)
}

/// Where the moving marker stands in frame `sequence`.
fn marker_x(width: usize, sequence: u64) -> usize {
    (sequence as usize * 8) % (width - 32)
}

/// Frames already made, by format, size and marker position. Making one in the tests' debug
/// build takes longer than a frame period, and a camera that cannot keep its own frame rate
/// would make campeer skip frames to catch up instead of streaming them all. The marker has a
/// few dozen positions per width, so this stays small.
type FrameKey = ([u8; 4], usize, usize, usize);
static MADE_FRAMES: Mutex<BTreeMap<FrameKey, Vec<u8>>> = Mutex::new(BTreeMap::new());

/// The known content in a camera format: YUYV, NV12 or MJPEG.
pub fn bars_frame(fourcc: &[u8; 4], width: usize, height: usize, sequence: u64) -> Vec<u8> {
    let key = (*fourcc, width, height, marker_x(width, sequence));
    if let Some(frame) = MADE_FRAMES.lock().unwrap().get(&key) {
        return frame.clone();
    }
    let frame = make_bars_frame(fourcc, width, height, sequence);
    MADE_FRAMES.lock().unwrap().insert(key, frame.clone());
    frame
}

fn make_bars_frame(fourcc: &[u8; 4], width: usize, height: usize, sequence: u64) -> Vec<u8> {
    let (y, u, v) = bars_i420(width, height, sequence);
    let cw = width / 2;
    match fourcc {
        b"YUYV" => {
            let mut out = Vec::with_capacity(width * height * 2);
            for row in 0..height {
                for col in (0..width).step_by(2) {
                    let c = row / 2 * cw + col / 2;
                    out.extend([y[row * width + col], u[c], y[row * width + col + 1], v[c]]);
                }
            }
            out
        }
        b"NV12" => {
            let mut out = y;
            for (a, b) in u.iter().zip(&v) {
                out.extend([*a, *b]);
            }
            out
        }
        b"MJPG" => {
            let mut ycbcr = Vec::with_capacity(width * height * 3);
            for row in 0..height {
                for col in 0..width {
                    let c = row / 2 * cw + col / 2;
                    ycbcr.extend([y[row * width + col], u[c], v[c]]);
                }
            }
            let mut jpeg = Vec::new();
            let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 90);
            encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
            encoder
                .encode(
                    &ycbcr,
                    width as u16,
                    height as u16,
                    jpeg_encoder::ColorType::Ycbcr,
                )
                .expect("encode a JPEG");
            jpeg
        }
        other => panic!(
            "the fake camera cannot make {}",
            String::from_utf8_lossy(other)
        ),
    }
}

/// A camera offering `formats` at 640x480 and 320x240, 30 fps, showing the colour bars.
pub fn bars_camera(formats: &[&[u8; 4]]) -> CameraSpec {
    CameraSpec {
        formats: formats
            .iter()
            .map(|f| (**f, vec![(640, 480), (320, 240)]))
            .collect(),
        fps: 30,
        make_frame: Box::new(bars_frame),
    }
}

/// Mounts a fake camera, or explains why not. Under CI (CI=true) a missing FUSE is a failure;
/// elsewhere the caller may skip with the reason.
pub fn mount_or_skip(spec: CameraSpec) -> Option<FakeCamera> {
    match FakeCamera::mount(spec) {
        Ok(camera) => Some(camera),
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("the fake camera needs FUSE and root, which CI has: {reason}")
        }
        Err(reason) => {
            eprintln!("skipping: the fake camera cannot be mounted here ({reason})");
            None
        }
    }
}

impl Drop for FakeCamera {
    /// Detaches the mount before the session's own unmount, which fails (EBUSY) while campeer
    /// still holds the device open, as an in-process campeer may for a moment after its test
    /// ends. Left mounted, the filesystem outlived its test process as a dead mount
    /// ("Transport endpoint is not connected"); detached, it is gone from the tree at once and
    /// the kernel ends it when the last descriptor closes.
    fn drop(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        // A campeer still reading the camera (a scenario that ends without shutting it down,
        // one that panicked, or motion detection that keeps it open) would wait in the kernel
        // for answers this filesystem's threads, gone with the session, never give: the test
        // process could then never exit. Unplugged first, the camera fails its next request
        // with ENODEV, as a real one does (campeer then closes it; the v4l crate takes that
        // in its stream's drop, where another error would panic); once campeer had time to let
        // go, the connection is aborted for whatever still waits.
        self.set_unplugged(true);
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(metadata) = std::fs::metadata(self.dir.path()) {
            let minor = libc::minor(metadata.dev());
            let connections = Path::new("/sys/fs/fuse/connections");
            if !connections.join(minor.to_string()).exists() {
                let _ = std::process::Command::new("mount")
                    .args(["-t", "fusectl", "none"])
                    .arg(connections)
                    .status();
            }
            let _ = std::fs::write(connections.join(minor.to_string()).join("abort"), "1");
        }
        let Ok(mountpoint) = std::ffi::CString::new(self.dir.path().as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: a NUL-terminated path that lives across the call; no other memory is passed.
        unsafe {
            libc::umount2(mountpoint.as_ptr(), libc::MNT_DETACH);
        }
    }
}
