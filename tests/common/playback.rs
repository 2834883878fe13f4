//! What a viewer saw over a stretch of time: frame rate, the longest freeze, and the
//! glass-to-glass latency read from the test pattern's timestamp squares.

use super::DecodedFrame;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Playback {
    pub frames: usize,
    pub fps: f64,
    /// The longest stretch without a new picture, the window's edges included.
    pub longest_freeze: Duration,
    pub latency_p50_ms: i64,
    pub latency_p90_ms: i64,
}

impl std::fmt::Display for Playback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} fps, longest freeze {} ms, latency p50 {} ms p90 {} ms",
            self.fps,
            self.longest_freeze.as_millis(),
            self.latency_p50_ms,
            self.latency_p90_ms
        )
    }
}

/// The frames decoded between `from` and `to`.
pub fn playback(frames: &[DecodedFrame], from: Instant, to: Instant) -> Playback {
    let window: Vec<&DecodedFrame> = frames
        .iter()
        .filter(|f| f.decoded_at >= from && f.decoded_at <= to)
        .collect();
    let mut longest = Duration::ZERO;
    let mut previous = from;
    for frame in &window {
        longest = longest.max(frame.decoded_at.saturating_duration_since(previous));
        previous = frame.decoded_at;
    }
    longest = longest.max(to.saturating_duration_since(previous));
    let mut latencies: Vec<i64> = window
        .iter()
        .filter(|f| f.capture_ms > 0)
        .map(|f| f.decoded_unix_ms as i64 - f.capture_ms as i64)
        .collect();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * q) as usize)
            .copied()
            .unwrap_or(i64::MAX)
    };
    let seconds = to.saturating_duration_since(from).as_secs_f64().max(0.001);
    Playback {
        frames: window.len(),
        fps: window.len() as f64 / seconds,
        longest_freeze: longest,
        latency_p50_ms: at(0.5),
        latency_p90_ms: at(0.9),
    }
}
