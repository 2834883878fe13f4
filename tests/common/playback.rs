//! What a viewer saw over a stretch of time: frame rate, the longest freeze, and the
//! glass-to-glass latency read from the test pattern's timestamp squares.

use crate::DecodedFrame;
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

/// One picture shown: when, in milliseconds from the start of the window, and its
/// glass-to-glass latency when the timestamp squares could be read.
#[derive(Debug, Clone, Copy)]
pub struct Shown {
    pub at_ms: i64,
    pub latency_ms: Option<i64>,
}

/// The pictures shown within a window of `window_ms` (those outside it are ignored).
pub fn summarize(shown: impl IntoIterator<Item = Shown>, window_ms: i64) -> Playback {
    let mut window: Vec<Shown> = shown
        .into_iter()
        .filter(|s| (0..=window_ms).contains(&s.at_ms))
        .collect();
    window.sort_by_key(|s| s.at_ms);
    let mut longest = 0;
    let mut previous = 0;
    for picture in &window {
        longest = longest.max(picture.at_ms - previous);
        previous = picture.at_ms;
    }
    longest = longest.max(window_ms - previous);
    let mut latencies: Vec<i64> = window.iter().filter_map(|s| s.latency_ms).collect();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * q) as usize)
            .copied()
            .unwrap_or(i64::MAX)
    };
    let seconds = (window_ms as f64 / 1000.0).max(0.001);
    Playback {
        frames: window.len(),
        fps: window.len() as f64 / seconds,
        longest_freeze: Duration::from_millis(longest.max(0) as u64),
        latency_p50_ms: at(0.5),
        latency_p90_ms: at(0.9),
    }
}

/// The frames the test viewer decoded between `from` and `to`.
pub fn playback(frames: &[DecodedFrame], from: Instant, to: Instant) -> Playback {
    let shown = frames
        .iter()
        .filter(|f| f.decoded_at >= from)
        .map(|f| Shown {
            at_ms: f.decoded_at.duration_since(from).as_millis() as i64,
            latency_ms: (f.capture_ms > 0).then(|| f.decoded_unix_ms as i64 - f.capture_ms as i64),
        });
    summarize(shown, to.saturating_duration_since(from).as_millis() as i64)
}

/// What the page showed between `from_unix_ms` and `to_unix_ms`, from its frame log
/// (`campeerStats.frameLog`: `[unix ms, latency ms or null]` per picture shown).
pub fn page_playback(
    frame_log: &serde_json::Value,
    from_unix_ms: u64,
    to_unix_ms: u64,
) -> Playback {
    let entries = frame_log.as_array().map(Vec::as_slice).unwrap_or_default();
    let shown = entries.iter().filter_map(|entry| {
        let at = entry.get(0)?.as_i64()?;
        Some(Shown {
            at_ms: at - from_unix_ms as i64,
            latency_ms: entry.get(1).and_then(serde_json::Value::as_i64),
        })
    });
    summarize(shown, to_unix_ms as i64 - from_unix_ms as i64)
}
