//! `cargo bench --bench motion`: the motion detector's cost per frame at 640x480 and
//! 1280x720, on the moving test pattern (so the detector sees motion, as it would at its
//! busiest), and what a snapshot (JPEG from the raw picture) takes at those sizes. Issue 25
//! asks for at most 2 % of a Pi 4 core at 30 fps for motion: 0.67 ms of a Pi 4's core per
//! frame; a Pi 4 core is roughly 3 to 4 times slower than this machine's. Reports figures;
//! asserts nothing.

use campeer::media::I420Frame;
use campeer::media::motion::{MotionDetector, MotionSettings};
use campeer::media::pattern;
use campeer::media::snapshot;
use openh264::formats::YUVSource;
use std::time::{Duration, Instant};

const FRAMES: usize = 300;
const ROUNDS: usize = 5;

fn main() {
    println!(
        "campeer motion bench: mean per frame over {FRAMES} frames, best of {ROUNDS}, release build"
    );
    for (width, height) in [(640usize, 480usize), (1280, 720)] {
        let frames: Vec<I420Frame> = (0..FRAMES)
            .map(|i| {
                let mut frame = I420Frame::new(width, height);
                pattern::draw(&mut frame, i as u64, 1_700_000_000_000 + i as u64 * 33);
                frame
            })
            .collect();
        let mut best = Duration::MAX;
        let mut events = 0;
        for _ in 0..ROUNDS {
            let mut detector = MotionDetector::new(MotionSettings::default(), width, height);
            let start = Instant::now();
            let began = Instant::now();
            for (i, frame) in frames.iter().enumerate() {
                let at = start + Duration::from_millis(33 * i as u64);
                events += usize::from(detector.observe(at, frame.y(), width).is_some());
            }
            best = best.min(began.elapsed());
        }
        let per_frame_us = best.as_secs_f64() * 1e6 / FRAMES as f64;
        println!(
            "{width}x{height}: {per_frame_us:.1} µs per frame, {:.2} % of this core at 30 fps \
             ({events} motion events over the rounds)",
            per_frame_us * 30.0 / 1e4
        );
        let mut fastest = Duration::MAX;
        let mut bytes = 0;
        for frame in frames.iter().take(30) {
            let began = Instant::now();
            bytes = snapshot::jpeg(frame, None).map_or(0, |jpeg| jpeg.len());
            fastest = fastest.min(began.elapsed());
        }
        println!(
            "{width}x{height} snapshot: {:.2} ms for a JPEG of {bytes} bytes (fastest of 30)",
            fastest.as_secs_f64() * 1000.0
        );
    }
}
