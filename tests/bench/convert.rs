//! `cargo bench --bench convert`: per-frame cost of turning camera frames into I420 and of
//! conversion plus H.264 encoding, for YUYV and MJPEG at 640x480 and 1280x720. Frames are the
//! test pattern (moving), made into YUYV and JPEG (quality 85, 4:2:0) up front, so only the
//! work campeer does per captured frame is timed. Reports figures; asserts nothing.

use campeer::config::{SourceKind, VideoConfig};
use campeer::media::I420Frame;
use campeer::media::convert::{PixelFormat, to_i420};
use campeer::media::encoder::H264Encoder;
use campeer::media::pattern;
use openh264::formats::YUVSource;
use std::time::{Duration, Instant};

const FRAMES: usize = 150;

fn yuyv_of(frame: &I420Frame) -> Vec<u8> {
    let (w, h) = (frame.width(), frame.height());
    let mut data = Vec::with_capacity(w * h * 2);
    for row in 0..h {
        for x in (0..w).step_by(2) {
            let c = row / 2 * (w / 2) + x / 2;
            data.extend([
                frame.y()[row * w + x],
                frame.u()[c],
                frame.y()[row * w + x + 1],
                frame.v()[c],
            ]);
        }
    }
    data
}

fn jpeg_of(frame: &I420Frame) -> Vec<u8> {
    let (w, h) = (frame.width(), frame.height());
    let mut ycbcr = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        for x in 0..w {
            let c = row / 2 * (w / 2) + x / 2;
            ycbcr.extend([frame.y()[row * w + x], frame.u()[c], frame.v()[c]]);
        }
    }
    let mut jpeg = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 85);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    encoder
        .encode(&ycbcr, w as u16, h as u16, jpeg_encoder::ColorType::Ycbcr)
        .expect("encode a JPEG");
    jpeg
}

fn per_frame(total: Duration) -> f64 {
    total.as_secs_f64() * 1000.0 / FRAMES as f64
}

fn main() {
    println!("campeer convert bench: mean per frame over {FRAMES} frames, release build");
    for (width, height, kbps) in [(640usize, 480usize, 1500u32), (1280, 720, 2500)] {
        let frames: Vec<I420Frame> = (0..FRAMES)
            .map(|i| {
                let mut frame = I420Frame::new(width, height);
                pattern::draw(&mut frame, i as u64, 1_700_000_000_000 + i as u64 * 33);
                frame
            })
            .collect();
        for (name, format, captured) in [
            (
                "YUYV",
                PixelFormat::Yuyv,
                frames.iter().map(yuyv_of).collect::<Vec<_>>(),
            ),
            (
                "MJPEG",
                PixelFormat::Mjpeg,
                frames.iter().map(jpeg_of).collect::<Vec<_>>(),
            ),
        ] {
            let video = VideoConfig {
                source: SourceKind::TestPattern,
                width: width as u32,
                height: height as u32,
                fps: 30,
                bitrate_kbps: kbps,
                keyframe_interval_secs: 2.0,
                h264_passthrough: false,
                rpicam_vid: None,
                encoder: campeer::config::EncoderChoice::OpenH264,
            };
            let mut out = I420Frame::new(width, height);
            let start = Instant::now();
            for data in &captured {
                to_i420(format, data, 0, &mut out).expect("convert");
            }
            let convert = start.elapsed();
            let mut encoder = H264Encoder::new(&video).expect("encoder");
            let start = Instant::now();
            for (i, data) in captured.iter().enumerate() {
                to_i420(format, data, 0, &mut out).expect("convert");
                encoder.encode(&out, i % 60 == 0).expect("encode");
            }
            let both = start.elapsed();
            let avg_input = captured.iter().map(Vec::len).sum::<usize>() / captured.len();
            println!(
                "{width}x{height} {name:5}: convert {:6.2} ms, convert + encode {:6.2} ms \
                 ({:.0} fps max on one core; input {} KiB/frame)",
                per_frame(convert),
                per_frame(both),
                1000.0 / per_frame(both),
                avg_input / 1024
            );
        }
    }
}
