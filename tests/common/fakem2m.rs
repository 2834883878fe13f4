//! A fake V4L2 memory-to-memory H.264 encoder with bcm2835-codec's interface (the Raspberry
//! Pi's /dev/video11), for the hardware-encoder tests: a FUSE file answering the multi-planar
//! ioctls, encoding each picture it is given with openh264 inside.
//!
//! What it mimics of the real driver: multi-planar OUTPUT (YU12) and CAPTURE (H264) queues
//! with MMAP buffers; picture rows padded to 32 bytes and the buffer height to 16 rows, with
//! the picture cropped through S_SELECTION; the parameter sets sent once, in a buffer of their
//! own, unless REPEAT_SEQ_HEADER asks for them with every IDR; the codec controls for
//! bitrate, keyframe period and forced keyframes.
//!
//! How it works through FUSE: the kernel copies in and out only the ioctl's own struct, so
//! the plane array a multi-planar `v4l2_buffer` points to is read and written in the caller's
//! memory with process_vm_readv/writev (the FUSE request names the caller), as the kernel
//! would; the picture campeer wrote into a mapped OUTPUT buffer is read the same way, at the
//! address /proc/PID/maps shows for that buffer. Encoded data reaches the caller's mapping of
//! a CAPTURE buffer through the page cache, invalidated when the buffer is filled.

use crate::fakecam::{attr, get_u32, put_str, put_u32};
use fuser::{
    Errno, FileHandle, FileType, Filesystem, INodeNo, IoctlFlags, LockOwner, MountOption,
    OpenFlags, PollEvents, PollFlags, PollHandle, PollNotifier, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyPoll, ReplyWrite, Request, WriteFlags,
};
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const fn ioc(dir: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | (size << 16) | ((b'V' as u32) << 8) | nr
}
const QUERYCAP: u32 = ioc(2, 0, 104);
const ENUM_FMT: u32 = ioc(3, 2, 64);
const G_FMT: u32 = ioc(3, 4, 208);
const S_FMT: u32 = ioc(3, 5, 208);
const REQBUFS: u32 = ioc(3, 8, 20);
const QUERYBUF: u32 = ioc(3, 9, 88);
const QBUF: u32 = ioc(3, 15, 88);
const DQBUF: u32 = ioc(3, 17, 88);
const STREAMON: u32 = ioc(1, 18, 4);
const STREAMOFF: u32 = ioc(1, 19, 4);
const S_PARM: u32 = ioc(3, 22, 204);
const S_CTRL: u32 = ioc(3, 28, 8);
const TRY_FMT: u32 = ioc(3, 64, 208);
const S_SELECTION: u32 = ioc(3, 95, 64);

const CAPTURE_MPLANE: u32 = 9;
const OUTPUT_MPLANE: u32 = 10;
const CODEC: u32 = 0x0099_0900;
const CID_BITRATE_MODE: u32 = CODEC + 206;
const CID_BITRATE: u32 = CODEC + 207;
const CID_REPEAT_SEQ_HEADER: u32 = CODEC + 226;
const CID_FORCE_KEY_FRAME: u32 = CODEC + 229;
const CID_H264_I_PERIOD: u32 = CODEC + 358;
const CID_H264_PROFILE: u32 = CODEC + 363;
const BUF_FLAG_KEYFRAME: u32 = 0x8;
const BUF_FLAG_QUEUED: u32 = 0x2;
const BUF_FLAG_DONE: u32 = 0x4;
const BUF_FLAG_MAPPED: u32 = 0x1;

const PAGE: usize = 4096;
const DEVICE: INodeNo = INodeNo(2);
const NAME: &str = "video11";
const TTL: Duration = Duration::from_secs(1);
/// Where the CAPTURE buffers start in the file's offsets (OUTPUT buffers start at 0).
const CAPTURE_BASE: usize = 64 << 20;
const CAPTURE_SIZE: usize = 512 << 10;
const FILE_SIZE: u64 = 128 << 20;
const MAX_BUFFERS: u32 = 8;

#[derive(Default)]
struct State {
    width: u32,
    height: u32,
    stride: u32,
    rows: u32,
    crop: (u32, u32),
    output_len: usize,
    outputs: u32,
    outputs_done: VecDeque<u32>,
    captures: Vec<Vec<u8>>,
    captures_queued: VecDeque<u32>,
    captures_ready: VecDeque<(u32, usize, bool)>,
    /// Encoded data waiting for a CAPTURE buffer, and whether it is a keyframe.
    pending: VecDeque<(Vec<u8>, bool)>,
    streaming: (bool, bool),
    encoder: Option<openh264::encoder::Encoder>,
    since_keyframe: u32,
    period: u32,
    repeat_headers: bool,
    headers_sent: bool,
    force_next: bool,
    poll_waiters: Vec<PollHandle>,
    failing: bool,
    // What campeer did, for the tests.
    frames_encoded: u64,
    keyframes_forced: u64,
    keyframes_made: u64,
    bitrates: Vec<i32>,
    picture_sizes: Vec<(u32, u32)>,
}

struct Shared {
    state: Mutex<State>,
    notifier: Mutex<Option<fuser::Notifier>>,
    path: PathBuf,
    /// The mount's device number (major, minor), set once mounted. Two fake encoders in one
    /// process share inode and name, so a caller's mapping of this one is told apart by it.
    device_number: std::sync::OnceLock<(u32, u32)>,
}

/// A mounted fake encoder; unmounted on drop.
pub struct FakeEncoder {
    shared: Arc<Shared>,
    _session: fuser::BackgroundSession,
    _dir: tempfile::TempDir,
}

impl FakeEncoder {
    /// Mounts the encoder, or says why it cannot (no /dev/fuse, not root).
    pub fn mount() -> Result<Self, String> {
        if !Path::new("/dev/fuse").exists() {
            return Err("there is no /dev/fuse".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                period: 60,
                ..State::default()
            }),
            notifier: Mutex::new(None),
            path: dir.path().join(NAME),
            device_number: std::sync::OnceLock::new(),
        });
        let mut config = fuser::Config::default();
        config
            .mount_options
            .extend([MountOption::FSName("campeer-fakem2m".into())]);
        config.n_threads = Some(4);
        let session = fuser::Session::new(FakeM2mFs(Arc::clone(&shared)), dir.path(), &config)
            .map_err(|e| format!("cannot mount FUSE: {e}"))?
            .spawn()
            .map_err(|e| format!("cannot start FUSE: {e}"))?;
        *shared.notifier.lock().unwrap() = Some(session.notifier());
        // From the mount table, not a stat of the mount: nothing here waits on the FUSE
        // session's threads.
        let number = mount_device_number(dir.path())
            .ok_or_else(|| format!("{} is not in /proc/self/mountinfo", dir.path().display()))?;
        let _ = shared.device_number.set(number);
        Ok(Self {
            shared,
            _session: session,
            _dir: dir,
        })
    }

    /// Mounts the encoder; under CI (CI=true) a missing FUSE is a failure, elsewhere `None`.
    pub fn mount_or_skip() -> Option<Self> {
        match Self::mount() {
            Ok(encoder) => Some(encoder),
            Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("the fake encoder needs FUSE and root, which CI has: {reason}")
            }
            Err(reason) => {
                eprintln!("skipping: the fake encoder cannot be mounted here ({reason})");
                None
            }
        }
    }

    pub fn path(&self) -> PathBuf {
        self.shared.path.clone()
    }

    /// Makes every ioctl fail with EIO (a firmware crash), or work again.
    pub fn set_failing(&self, failing: bool) {
        let mut state = self.shared.state.lock().unwrap();
        state.failing = failing;
        wake(&self.shared, &mut state);
    }

    pub fn frames_encoded(&self) -> u64 {
        self.shared.state.lock().unwrap().frames_encoded
    }

    /// Keyframes asked for through FORCE_KEY_FRAME.
    pub fn keyframes_forced(&self) -> u64 {
        self.shared.state.lock().unwrap().keyframes_forced
    }

    /// Every bitrate set through the BITRATE control, in order.
    pub fn bitrates(&self) -> Vec<i32> {
        self.shared.state.lock().unwrap().bitrates.clone()
    }

    /// The picture size (after the crop) of every frame encoded so far, deduplicated.
    pub fn picture_sizes(&self) -> Vec<(u32, u32)> {
        self.shared.state.lock().unwrap().picture_sizes.clone()
    }

    pub fn repeats_headers(&self) -> bool {
        self.shared.state.lock().unwrap().repeat_headers
    }
}

fn wake(shared: &Shared, state: &mut State) {
    if state.poll_waiters.is_empty() {
        return;
    }
    let ready = state.failing || !state.outputs_done.is_empty() || !state.captures_ready.is_empty();
    if ready {
        let waiters: Vec<PollHandle> = state.poll_waiters.drain(..).collect();
        if let Some(notifier) = shared.notifier.lock().unwrap().as_ref() {
            for handle in waiters {
                let _ = notifier.poll(handle);
            }
        }
    }
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    buf.get(at..at + 8)
        .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
        .unwrap_or(0)
}

fn align(value: u32, to: u32) -> u32 {
    value.div_ceil(to) * to
}

/// Reads `len` bytes at `address` in process `pid`, as the kernel reads a user pointer.
fn read_caller(pid: u32, address: u64, len: usize) -> Result<Vec<u8>, Errno> {
    let mut data = vec![0u8; len];
    let local = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: reads another process's memory into `data`, which has `len` bytes.
    let done = unsafe { libc::process_vm_readv(pid as i32, &local, 1, &remote, 1, 0) };
    if done != len as isize {
        return Err(Errno::EFAULT);
    }
    Ok(data)
}

/// Writes `data` at `address` in process `pid`, as the kernel writes through a user pointer.
fn write_caller(pid: u32, address: u64, data: &[u8]) -> Result<(), Errno> {
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: writes `data` into another process's memory, where its ioctl argument lives.
    let done = unsafe { libc::process_vm_writev(pid as i32, &local, 1, &remote, 1, 0) };
    if done != data.len() as isize {
        return Err(Errno::EFAULT);
    }
    Ok(())
}

/// Where process `pid` mapped this device at file offset `offset`. Matched by the file's
/// inode and name rather than its whole path: a process in a mount namespace of its own
/// (campeer under a private /dev) may see the mount at another path.
fn mapped_at(pid: u32, offset: usize, device: (u32, u32)) -> Option<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let _perms = fields.next()?;
        let file_offset = usize::from_str_radix(fields.next()?, 16).ok()?;
        let (major, minor) = fields.next()?.split_once(':')?;
        let on_this_mount = (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ) == device;
        let inode: u64 = fields.next()?.parse().ok()?;
        let path = fields.next()?;
        let ours =
            on_this_mount && inode == u64::from(DEVICE) && path.ends_with(&format!("/{NAME}"));
        (ours && file_offset == offset)
            .then(|| u64::from_str_radix(range.split('-').next()?, 16).ok())
            .flatten()
    })
}

/// The device number (major, minor) of the filesystem mounted at `mount_point`.
fn mount_device_number(mount_point: &Path) -> Option<(u32, u32)> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let wanted = mount_point.to_str()?;
    table.lines().rev().find_map(|line| {
        let mut fields = line.split_whitespace();
        let number = fields.nth(2)?;
        let point = fields.nth(1)?;
        if point != wanted {
            return None;
        }
        let (major, minor) = number.split_once(':')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    })
}

struct FakeM2mFs(Arc<Shared>);

impl FakeM2mFs {
    /// Writes a plane's length, offset and bytes used into the caller's plane array.
    fn put_plane(
        &self,
        pid: u32,
        input: &[u8],
        used: u32,
        length: u32,
        offset: u32,
    ) -> Result<(), Errno> {
        let planes = get_u64(input, 64);
        if planes == 0 || get_u32(input, 72) == 0 {
            return Err(Errno::EINVAL);
        }
        let mut plane = read_caller(pid, planes, 64)?;
        put_u32(&mut plane, 0, used);
        put_u32(&mut plane, 4, length);
        put_u32(&mut plane, 8, offset);
        put_u32(&mut plane, 16, 0); // data_offset
        write_caller(pid, planes, &plane)
    }

    /// Encodes the picture in OUTPUT buffer `index` and hands the result on.
    fn encode(&self, state: &mut State, pid: u32, index: u32) -> Result<(), Errno> {
        let offset = index as usize * state.output_len;
        let device = *self.0.device_number.get().ok_or(Errno::EAGAIN)?;
        let address = mapped_at(pid, offset, device).ok_or(Errno::EFAULT)?;
        let (stride, rows) = (state.stride as usize, state.rows as usize);
        let size = stride * rows * 3 / 2;
        let picture = read_caller(pid, address, size)?;
        let (width, height) = (state.crop.0 as usize, state.crop.1 as usize);
        let luma = stride * rows;
        let chroma = (stride / 2) * (rows / 2);
        let y = &picture[..stride * height];
        let u = &picture[luma..luma + (stride / 2) * (height / 2)];
        let v = &picture[luma + chroma..luma + chroma + (stride / 2) * (height / 2)];
        let planes = openh264::formats::YUVSlices::new(
            (y, u, v),
            (width, height),
            (stride, stride / 2, stride / 2),
        );
        let encoder = state.encoder.get_or_insert_with(|| {
            use openh264::encoder::{EncoderConfig, IntraFramePeriod};
            let config =
                EncoderConfig::new().intra_frame_period(IntraFramePeriod::from_num_frames(0));
            openh264::encoder::Encoder::with_api_config(
                openh264::OpenH264API::from_source(),
                config,
            )
            .expect("the fake encoder's openh264")
        });
        let keyframe = std::mem::take(&mut state.force_next)
            || state.since_keyframe + 1 >= state.period
            || state.frames_encoded == 0;
        if keyframe {
            encoder.force_intra_frame();
            state.since_keyframe = 0;
            state.keyframes_made += 1;
        } else {
            state.since_keyframe += 1;
        }
        let data = encoder.encode(&planes).map_err(|_| Errno::EIO)?.to_vec();
        state.frames_encoded += 1;
        if state.picture_sizes.last() != Some(&(width as u32, height as u32)) {
            state.picture_sizes.push((width as u32, height as u32));
        }
        // Like bcm2835-codec: the parameter sets come first in a buffer of their own, and with
        // later IDRs only when REPEAT_SEQ_HEADER asks for them.
        let (headers, picture): (Vec<&[u8]>, Vec<&[u8]>) = split_nals(&data)
            .into_iter()
            .partition(|nal| matches!(nal.get(4).map(|h| h & 0x1f), Some(7 | 8)));
        let picture: Vec<u8> = picture.concat();
        if !headers.is_empty() && !state.headers_sent {
            state.headers_sent = true;
            state.pending.push_back((headers.concat(), false));
            state.pending.push_back((picture, keyframe));
        } else if keyframe && state.repeat_headers {
            state.pending.push_back((data.clone(), true));
        } else {
            state.pending.push_back((picture, keyframe));
        }
        state.outputs_done.push_back(index);
        self.deliver(state);
        Ok(())
    }

    /// Puts pending encoded data into queued CAPTURE buffers.
    fn deliver(&self, state: &mut State) {
        while !state.pending.is_empty() && !state.captures_queued.is_empty() {
            let (data, keyframe) = state.pending.pop_front().unwrap();
            let index = state.captures_queued.pop_front().unwrap();
            let used = data.len().min(CAPTURE_SIZE);
            state.captures[index as usize][..used].copy_from_slice(&data[..used]);
            if let Some(notifier) = self.0.notifier.lock().unwrap().as_ref() {
                let at = CAPTURE_BASE + index as usize * CAPTURE_SIZE;
                let _ = notifier.inval_inode(DEVICE, at as i64, CAPTURE_SIZE as i64);
            }
            state.captures_ready.push_back((index, used, keyframe));
        }
        wake(&self.0, state);
    }

    fn handle(&self, pid: u32, cmd: u32, input: &[u8], out: &mut [u8]) -> Result<(), Errno> {
        let mut state = self.0.state.lock().unwrap();
        if state.failing {
            return Err(Errno::EIO);
        }
        let kind = get_u32(input, 0);
        match cmd {
            QUERYCAP => {
                put_str(out, 0, 16, "bcm2835-codec");
                put_str(out, 16, 32, "bcm2835-codec-encode");
                put_str(out, 48, 32, "platform:bcm2835-codec");
                put_u32(out, 80, (6 << 16) | (1 << 8));
                let caps = 0x4000 | 0x0400_0000; // VIDEO_M2M_MPLANE | STREAMING
                put_u32(out, 84, caps | 0x8000_0000);
                put_u32(out, 88, caps);
            }
            ENUM_FMT => {
                let index = get_u32(input, 0);
                let kind = get_u32(input, 4);
                let fourcc = match (kind, index) {
                    (OUTPUT_MPLANE, 0) => b"YU12",
                    (CAPTURE_MPLANE, 0) => b"H264",
                    _ => return Err(Errno::EINVAL),
                };
                put_u32(out, 8, u32::from(kind == CAPTURE_MPLANE));
                put_str(out, 12, 32, &String::from_utf8_lossy(fourcc));
                put_u32(out, 44, u32::from_le_bytes(*fourcc));
            }
            S_FMT | TRY_FMT | G_FMT => {
                if cmd != G_FMT {
                    let (width, height) = (
                        get_u32(input, 8).clamp(32, 1920),
                        get_u32(input, 12).clamp(32, 1088),
                    );
                    let (width, height) = (width & !1, height & !1);
                    if kind == OUTPUT_MPLANE && cmd == S_FMT {
                        state.width = width;
                        state.height = height;
                        state.stride = align(width, 32);
                        state.rows = align(height, 16);
                        state.crop = (width, height);
                        state.output_len = (state.stride as usize * state.rows as usize * 3 / 2)
                            .div_ceil(PAGE)
                            * PAGE;
                    } else if kind == CAPTURE_MPLANE && cmd == S_FMT && state.width == 0 {
                        state.width = width;
                        state.height = height;
                    }
                }
                out.fill(0);
                put_u32(out, 0, kind);
                put_u32(out, 8, state.width);
                put_u32(out, 20, 1); // FIELD_NONE
                out[188] = 1; // num_planes
                match kind {
                    OUTPUT_MPLANE => {
                        put_u32(out, 12, state.rows);
                        put_u32(out, 16, u32::from_le_bytes(*b"YU12"));
                        put_u32(out, 28, state.stride * state.rows * 3 / 2);
                        put_u32(out, 32, state.stride);
                    }
                    CAPTURE_MPLANE => {
                        put_u32(out, 12, state.height);
                        put_u32(out, 16, u32::from_le_bytes(*b"H264"));
                        put_u32(out, 28, CAPTURE_SIZE as u32);
                    }
                    _ => return Err(Errno::EINVAL),
                }
            }
            S_SELECTION => {
                if kind != OUTPUT_MPLANE || get_u32(input, 4) != 0 {
                    return Err(Errno::EINVAL);
                }
                let (width, height) = (get_u32(input, 20), get_u32(input, 24));
                if width > state.stride || height > state.rows || width == 0 || height == 0 {
                    return Err(Errno::EINVAL);
                }
                state.crop = (width, height);
            }
            S_PARM => {}
            S_CTRL => {
                let (id, value) = (get_u32(input, 0), get_u32(input, 4) as i32);
                match id {
                    CID_BITRATE => state.bitrates.push(value),
                    CID_FORCE_KEY_FRAME => {
                        state.force_next = true;
                        state.keyframes_forced += 1;
                    }
                    CID_H264_I_PERIOD => state.period = value.max(1) as u32,
                    CID_REPEAT_SEQ_HEADER => state.repeat_headers = value != 0,
                    CID_H264_PROFILE | CID_BITRATE_MODE => {}
                    _ => return Err(Errno::EINVAL),
                }
            }
            REQBUFS => {
                let count = get_u32(input, 0).min(MAX_BUFFERS);
                if get_u32(input, 8) != 1 {
                    return Err(Errno::EINVAL);
                }
                match get_u32(input, 4) {
                    OUTPUT_MPLANE => {
                        state.outputs = count;
                        state.outputs_done.clear();
                    }
                    CAPTURE_MPLANE => {
                        state.captures = (0..count).map(|_| vec![0; CAPTURE_SIZE]).collect();
                        state.captures_queued.clear();
                        state.captures_ready.clear();
                    }
                    _ => return Err(Errno::EINVAL),
                }
                put_u32(out, 0, count);
                put_u32(out, 12, 0x1); // SUPPORTS_MMAP
            }
            QUERYBUF => {
                let index = get_u32(input, 0);
                let kind = get_u32(input, 4);
                let (length, offset) = match kind {
                    OUTPUT_MPLANE if index < state.outputs => {
                        (state.output_len, index as usize * state.output_len)
                    }
                    CAPTURE_MPLANE if (index as usize) < state.captures.len() => {
                        (CAPTURE_SIZE, CAPTURE_BASE + index as usize * CAPTURE_SIZE)
                    }
                    _ => return Err(Errno::EINVAL),
                };
                self.put_plane(pid, input, 0, length as u32, offset as u32)?;
                put_u32(out, 12, BUF_FLAG_MAPPED);
            }
            QBUF => {
                let index = get_u32(input, 0);
                match get_u32(input, 4) {
                    OUTPUT_MPLANE if index < state.outputs => {
                        if !state.streaming.0 {
                            // Real drivers accept queueing before streaming; campeer streams first.
                            return Err(Errno::EINVAL);
                        }
                        self.encode(&mut state, pid, index)?;
                    }
                    CAPTURE_MPLANE if (index as usize) < state.captures.len() => {
                        state.captures_queued.push_back(index);
                        self.deliver(&mut state);
                    }
                    _ => return Err(Errno::EINVAL),
                }
                put_u32(out, 12, BUF_FLAG_MAPPED | BUF_FLAG_QUEUED);
            }
            DQBUF => match get_u32(input, 4) {
                OUTPUT_MPLANE => {
                    let index = state.outputs_done.pop_front().ok_or(Errno::EAGAIN)?;
                    put_u32(out, 0, index);
                    put_u32(out, 12, BUF_FLAG_MAPPED | BUF_FLAG_DONE);
                }
                CAPTURE_MPLANE => {
                    let (index, used, keyframe) =
                        state.captures_ready.pop_front().ok_or(Errno::EAGAIN)?;
                    let offset = CAPTURE_BASE + index as usize * CAPTURE_SIZE;
                    self.put_plane(pid, input, used as u32, CAPTURE_SIZE as u32, offset as u32)?;
                    put_u32(out, 0, index);
                    let key = if keyframe { BUF_FLAG_KEYFRAME } else { 0 };
                    put_u32(out, 12, BUF_FLAG_MAPPED | BUF_FLAG_DONE | key);
                }
                _ => return Err(Errno::EINVAL),
            },
            STREAMON | STREAMOFF => {
                let on = cmd == STREAMON;
                match kind {
                    OUTPUT_MPLANE => state.streaming.0 = on,
                    CAPTURE_MPLANE => state.streaming.1 = on,
                    _ => return Err(Errno::EINVAL),
                }
                if !on {
                    state.pending.clear();
                    state.captures_ready.clear();
                    state.captures_queued.clear();
                    state.outputs_done.clear();
                    state.encoder = None;
                    state.headers_sent = false;
                }
            }
            _ => return Err(Errno::ENOTTY),
        }
        Ok(())
    }
}

/// NAL units of an Annex-B stream, each with its start code.
fn split_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 < data.len() {
        if data[i..i + 4] == [0, 0, 0, 1] {
            starts.push(i);
            i += 4;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| &data[start..starts.get(n + 1).copied().unwrap_or(data.len())])
        .collect()
}

impl Filesystem for FakeM2mFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name == NAME {
            reply.entry(
                &TTL,
                &attr(DEVICE, FileType::RegularFile, FILE_SIZE),
                fuser::Generation(0),
            );
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino {
            INodeNo::ROOT => reply.attr(&TTL, &attr(ino, FileType::Directory, 0)),
            DEVICE => reply.attr(&TTL, &attr(ino, FileType::RegularFile, FILE_SIZE)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), fuser::FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let state = self.0.state.lock().unwrap();
        let mut out = vec![0u8; size as usize];
        // Reads cross buffer boundaries (readahead): serve each CAPTURE byte from its buffer;
        // OUTPUT buffers read as zeros (their content lives in campeer's pages).
        let mut at = 0;
        while at < out.len() {
            let position = offset as usize + at;
            let Some(within_captures) = position.checked_sub(CAPTURE_BASE) else {
                at += (CAPTURE_BASE - position).min(out.len() - at);
                continue;
            };
            let (index, within) = (
                within_captures / CAPTURE_SIZE,
                within_captures % CAPTURE_SIZE,
            );
            let take = (CAPTURE_SIZE - within).min(out.len() - at);
            if let Some(buffer) = state.captures.get(index) {
                out[at..at + take].copy_from_slice(&buffer[within..within + take]);
            }
            at += take;
        }
        reply.data(&out);
    }

    /// Pages campeer wrote into a mapped picture buffer come back here when the kernel writes
    /// them out; the picture was already read from campeer's memory at QBUF.
    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.written(data.len() as u32);
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
            (DEVICE, FileType::RegularFile, NAME),
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
        req: &Request,
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
        match self.handle(req.pid(), cmd, in_data, &mut out) {
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
        let mut events = PollEvents::empty();
        if state.failing {
            events |= PollEvents::POLLERR;
        }
        if !state.captures_ready.is_empty() {
            events |= PollEvents::POLLIN;
        }
        if !state.outputs_done.is_empty() {
            events |= PollEvents::POLLOUT;
        }
        if events.is_empty() && flags.contains(PollFlags::FUSE_POLL_SCHEDULE_NOTIFY) {
            state.poll_waiters.push(ph.handle());
        }
        reply.poll(events);
    }
}
