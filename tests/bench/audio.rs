//! `cargo bench --bench audio`: what sound costs. The Opus encode per 20 ms chunk (mono at
//! 32 kbit/s, stereo at 64 kbit/s, of a tone with noise so the encoder has work), and the
//! whole audio pipeline fed by a real ALSA capture device (alsa-lib's file plugin, no sound
//! card needed) for ten seconds with one listener: the time from a chunk's capture to its
//! hand-over to the viewers, and the CPU the audio thread used. Reports figures; asserts
//! nothing.

use campeer::media::audio::{AudioSource, CHUNK_FRAMES};
use campeer::media::audio_hub::{AudioHub, AudioSettings};
use campeer::media::microphone::AlsaMicrophone;
use campeer::media::opus::OpusEncoder;
use common::alsamic;
use std::time::{Duration, Instant};

const CHUNKS: usize = 2_000; // 40 s of sound

fn noisy_tone(channels: usize) -> Vec<Vec<i16>> {
    let mut seed = 0x2545_f491u32;
    (0..CHUNKS)
        .map(|chunk| {
            (0..CHUNK_FRAMES * channels)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let n = (chunk * CHUNK_FRAMES + i / channels) as f64;
                    let tone = (std::f64::consts::TAU * 440.0 * n / 48_000.0).sin() * 6000.0;
                    (tone + f64::from((seed % 2000) as i16 - 1000)) as i16
                })
                .collect()
        })
        .collect()
}

/// CPU time (user + system) of this process's thread with the given name, from /proc.
fn thread_cpu(name: &str) -> Option<Duration> {
    let tick = 100.0; // USER_HZ on Linux
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let user: f64 = fields.get(11)?.parse().ok()?;
        let system: f64 = fields.get(12)?.parse().ok()?;
        return Some(Duration::from_secs_f64((user + system) / tick));
    }
    None
}

#[tokio::main]
async fn main() {
    println!("campeer audio bench, release build");
    for (channels, kbps) in [(1u8, 32u32), (2, 64)] {
        let chunks = noisy_tone(usize::from(channels));
        let mut encoder = OpusEncoder::new(channels, kbps * 1000).expect("encoder");
        let start = Instant::now();
        let mut bytes = 0;
        for chunk in &chunks {
            bytes += encoder.encode(chunk).expect("encode").len();
        }
        let per_chunk = start.elapsed().as_secs_f64() * 1e6 / CHUNKS as f64;
        println!(
            "Opus encode, {channels} channel(s) at {kbps} kbit/s: {per_chunk:.0} µs per 20 ms \
             chunk ({:.2} % of one core), {:.1} kbit/s out",
            per_chunk / 20_000.0 * 100.0,
            bytes as f64 * 8.0 / (CHUNKS as f64 * 0.02) / 1000.0
        );
    }

    let mics = alsamic::FileMicrophones::new(&[alsamic::FileMic {
        name: "benchmic",
        file: "bench.raw",
    }]);
    mics.write_tone("bench.raw", 1000.0, 30);
    mics.install_for_this_process();
    let hub = AudioHub::new(
        AudioSettings {
            channels: 1,
            bitrate_bps: 32_000,
        },
        Duration::ZERO,
        Box::new(|| {
            AlsaMicrophone::open("benchmic", 1)
                .map(|mic| Box::new(mic) as Box<dyn AudioSource>)
                .map_err(|e| campeer::media::SourceError::Fatal(e.to_string()))
        }),
    );
    let mut listener = hub.subscribe();
    // Warm up, then measure over ten seconds.
    for _ in 0..50 {
        listener.next_packet().await.expect("a packet");
    }
    let cpu_before = thread_cpu("campeer-audio").unwrap_or_default();
    let stats_before = hub.stats();
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(10) {
        let packet = listener.next_packet().await.expect("a packet");
        worst = worst.max(packet.capture_to_send);
    }
    let wall = start.elapsed();
    let cpu = thread_cpu("campeer-audio").unwrap_or_default() - cpu_before;
    let stats = hub.stats();
    let packets = stats.packets - stats_before.packets;
    println!(
        "ALSA capture → Opus → viewers (mono, 32 kbit/s): {packets} packets in {:.1} s, \
         capture-to-send mean {} µs, worst {} µs; audio thread CPU {:.2} % of one core",
        wall.as_secs_f64(),
        stats.mean_capture_to_send_us,
        worst.as_micros(),
        cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
    );
    drop(listener);
    hub.shutdown();
}
