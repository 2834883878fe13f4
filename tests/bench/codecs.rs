//! `cargo bench --bench codecs`: what one picture costs to encode in each codec campeer sends,
//! H.264 with openh264 next to VP8 with libvpx, at 640x480 and 1280x720 on the moving test
//! pattern, each at the rate campeer would use. Reports the mean per frame, the most frames a
//! second one encoder keeps up with, the CPU time per frame (all threads: VP8 runs with the
//! threads campeer gives it, up to two, openh264 with one, as in the daemon) and the bits it
//! made; asserts nothing.

use campeer::config::{SourceKind, VideoConfig};
use campeer::media::I420Frame;
use campeer::media::encoder::H264Encoder;
use campeer::media::pattern;
use campeer::media::vp8::Vp8Encoder;
use std::time::{Duration, Instant};

const FRAMES: u64 = 300;

fn main() {
    println!(
        "campeer codecs bench: mean per frame over {FRAMES} frames of the test pattern, release build"
    );
    for (width, height, kbps) in [(640usize, 480usize, 1500u32), (1280, 720, 2500)] {
        let frames: Vec<I420Frame> = (0..FRAMES)
            .map(|i| {
                let mut frame = I420Frame::new(width, height);
                pattern::draw(&mut frame, i, 1_700_000_000_000 + i * 33);
                frame
            })
            .collect();
        let video = VideoConfig {
            source: SourceKind::TestPattern,
            width: width as u32,
            height: height as u32,
            fps: 30,
            bitrate_kbps: kbps,
            keyframe_interval_secs: 0.0,
            h264_passthrough: false,
            rpicam_vid: None,
            encoder: campeer::config::EncoderChoice::OpenH264,
        };
        let mut h264 = H264Encoder::new(&video).expect("an openh264 encoder");
        let mut bytes = 0usize;
        let (start, cpu) = (Instant::now(), cpu_time());
        for (i, frame) in frames.iter().enumerate() {
            if let Some(unit) = h264.encode(frame, i % 60 == 0).expect("encode H.264") {
                bytes += unit.data.len();
            }
        }
        report(
            width,
            height,
            "H.264 (openh264)",
            start.elapsed(),
            cpu_time() - cpu,
            bytes,
        );

        let mut vp8 = Vp8Encoder::new(width, height, 30, kbps * 1000, None).expect("a VP8 encoder");
        let mut bytes = 0usize;
        let (start, cpu) = (Instant::now(), cpu_time());
        for (i, frame) in frames.iter().enumerate() {
            let pts = i as u64 * 3000;
            if let Some(unit) = vp8.encode(frame, pts, i % 60 == 0).expect("encode VP8") {
                bytes += unit.data.len();
            }
        }
        report(
            width,
            height,
            "VP8 (libvpx)",
            start.elapsed(),
            cpu_time() - cpu,
            bytes,
        );
    }
}

/// The process's CPU time so far, user and system, every thread.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn report(width: usize, height: usize, codec: &str, wall: Duration, cpu: Duration, bytes: usize) {
    let per_frame_ms = wall.as_secs_f64() * 1000.0 / FRAMES as f64;
    let cpu_ms = cpu.as_secs_f64() * 1000.0 / FRAMES as f64;
    let kbps = bytes as f64 * 8.0 / (FRAMES as f64 / 30.0) / 1000.0;
    println!(
        "{width}x{height} {codec:17}: {per_frame_ms:6.2} ms per frame ({:.0} fps max), \
         CPU {cpu_ms:6.2} ms per frame, {kbps:.0} kbit/s at 30 fps",
        1000.0 / per_frame_ms
    );
}
