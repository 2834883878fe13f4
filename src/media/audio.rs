//! Raw audio: 20 ms chunks of 48 kHz 16-bit samples, from a microphone or the test tone.
//!
//! WebRTC's Opus runs at 48 kHz, and 20 ms is the frame length every browser expects, so
//! sources deliver exactly that and the encoder never buffers or resamples.

use super::SourceError;
use std::time::{Duration, Instant};

/// The one sample rate campeer captures and encodes at.
pub const SAMPLE_RATE: u32 = 48_000;
/// One Opus frame: 20 ms.
pub const CHUNK_DURATION: Duration = Duration::from_millis(20);
/// Samples per channel in one chunk.
pub const CHUNK_FRAMES: usize = (SAMPLE_RATE as usize) / 50;

/// 20 ms of interleaved 16-bit samples.
#[derive(Debug, Clone)]
pub struct AudioChunk {
    pub samples: Vec<i16>,
    /// When the first sample was captured, on the monotonic clock.
    pub captured_at: Instant,
}

/// Something that produces 20 ms chunks at its own pace: `next_chunk` blocks until the next
/// chunk is there. Runs on the audio pipeline's own thread, never on the async runtime.
pub trait AudioSource: Send {
    fn next_chunk(&mut self) -> Result<AudioChunk, SourceError>;
    /// How many interleaved channels each chunk has (1 or 2).
    fn channels(&self) -> u8;
    /// A short description for the log.
    fn describe(&self) -> String;
}

/// Holds a source to real time. Microphones are paced by their sample clock, but some ALSA
/// devices are not (the `file` and `null` plugins hand out samples as fast as they are read);
/// without this such a source would flood every viewer with minutes of audio a second.
/// A real-time source never gets ahead by more than its buffer, so this never delays it.
#[derive(Debug, Clone)]
pub struct RealtimePacer {
    started: Option<Instant>,
    delivered: Duration,
    /// How far ahead of the clock a source may run before it is held back.
    slack: Duration,
}

impl RealtimePacer {
    pub fn new(slack: Duration) -> Self {
        Self {
            started: None,
            delivered: Duration::ZERO,
            slack,
        }
    }

    /// Records one more chunk of `length` delivered at `now`; returns how long to wait before
    /// handing it on. A source that fell far behind (a stall) restarts the reckoning instead
    /// of being allowed to burst.
    pub fn on_chunk(&mut self, length: Duration, now: Instant) -> Duration {
        let started = *self.started.get_or_insert(now);
        self.delivered += length;
        let elapsed = now.saturating_duration_since(started);
        if elapsed > self.delivered + Duration::from_secs(1) {
            self.started = Some(now);
            self.delivered = length;
            return Duration::ZERO;
        }
        self.delivered
            .saturating_sub(elapsed)
            .saturating_sub(self.slack)
    }
}

/// A steady sine tone, for runs without a microphone: 440 Hz at -20 dBFS, quiet enough not to
/// startle and plain enough to recognise.
pub struct TestTone {
    channels: u8,
    frequency: f64,
    amplitude: f64,
    /// Samples per channel produced so far; the phase derives from it, so it never drifts.
    position: u64,
    next_due: Option<Instant>,
}

impl TestTone {
    pub const FREQUENCY: f64 = 440.0;

    pub fn new(channels: u8) -> Self {
        Self {
            channels,
            frequency: Self::FREQUENCY,
            amplitude: f64::from(i16::MAX) * 0.1,
            position: 0,
            next_due: None,
        }
    }

    /// The next chunk's samples, without waiting.
    pub fn render(&mut self) -> Vec<i16> {
        let channels = usize::from(self.channels);
        let mut samples = Vec::with_capacity(CHUNK_FRAMES * channels);
        let step = std::f64::consts::TAU * self.frequency / f64::from(SAMPLE_RATE);
        for i in 0..CHUNK_FRAMES as u64 {
            let phase = step * ((self.position + i) % u64::from(SAMPLE_RATE)) as f64;
            let value = (phase.sin() * self.amplitude).round() as i16;
            samples.extend(std::iter::repeat_n(value, channels));
        }
        self.position += CHUNK_FRAMES as u64;
        samples
    }
}

impl AudioSource for TestTone {
    fn next_chunk(&mut self) -> Result<AudioChunk, SourceError> {
        let now = Instant::now();
        let due = self.next_due.unwrap_or(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        // Behind by more than a chunk (a stalled thread): skip ahead rather than burst.
        let next = due + CHUNK_DURATION;
        self.next_due = Some(if next + CHUNK_DURATION < Instant::now() {
            Instant::now() + CHUNK_DURATION
        } else {
            next
        });
        Ok(AudioChunk {
            samples: self.render(),
            captured_at: Instant::now(),
        })
    }

    fn channels(&self) -> u8 {
        self.channels
    }

    fn describe(&self) -> String {
        format!(
            "test tone {} Hz, {} channel(s)",
            self.frequency, self.channels
        )
    }
}

/// The strength of one frequency in a block of mono samples (the Goertzel algorithm): a
/// tone detector for tests and diagnostics, cheaper than a whole spectrum.
pub fn tone_power(samples: &[f32], frequency: f64, sample_rate: u32) -> f64 {
    let coefficient = 2.0 * (std::f64::consts::TAU * frequency / f64::from(sample_rate)).cos();
    let (mut previous, mut before_previous) = (0.0f64, 0.0f64);
    for &sample in samples {
        let current = f64::from(sample) + coefficient * previous - before_previous;
        before_previous = previous;
        previous = current;
    }
    let power = previous * previous + before_previous * before_previous
        - coefficient * previous * before_previous;
    power / (samples.len().max(1) as f64).powi(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tone_is_440_hz_and_continuous_across_chunks() {
        let mut tone = TestTone::new(1);
        let mut samples: Vec<f32> = Vec::new();
        for _ in 0..10 {
            let chunk = tone.render();
            assert_eq!(chunk.len(), CHUNK_FRAMES);
            samples.extend(chunk.iter().map(|&s| f32::from(s)));
        }
        let at_440 = tone_power(&samples, 440.0, SAMPLE_RATE);
        for other in [220.0, 880.0, 1000.0, 3000.0] {
            assert!(
                at_440 > 100.0 * tone_power(&samples, other, SAMPLE_RATE),
                "440 Hz dominates {other} Hz"
            );
        }
        // No click between chunks: neighbouring samples never jump more than the slope allows.
        let max_step = samples
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0f32, f32::max);
        assert!(max_step < 200.0, "largest step {max_step}");
    }

    #[test]
    fn stereo_tone_duplicates_the_channel() {
        let chunk = TestTone::new(2).render();
        assert_eq!(chunk.len(), 2 * CHUNK_FRAMES);
        assert!(chunk.chunks(2).all(|pair| pair[0] == pair[1]));
    }

    #[test]
    fn pacer_never_holds_back_a_real_time_source() {
        let mut pacer = RealtimePacer::new(Duration::from_millis(60));
        let start = Instant::now();
        for i in 0..100 {
            let now = start + CHUNK_DURATION * i;
            assert_eq!(pacer.on_chunk(CHUNK_DURATION, now), Duration::ZERO);
        }
    }

    #[test]
    fn pacer_holds_a_source_that_runs_ahead_to_the_clock() {
        let mut pacer = RealtimePacer::new(Duration::from_millis(60));
        let start = Instant::now();
        // A thousand chunks (20 s) delivered in the same instant.
        let waits: Vec<_> = (0..1000)
            .map(|_| pacer.on_chunk(CHUNK_DURATION, start))
            .collect();
        assert_eq!(waits[0], Duration::ZERO, "within the slack");
        assert_eq!(waits[2], Duration::ZERO);
        assert_eq!(waits[3], Duration::from_millis(20));
        assert_eq!(waits[999], Duration::from_millis(20_000 - 60));
    }

    #[test]
    fn pacer_restarts_after_a_stall_instead_of_bursting() {
        let mut pacer = RealtimePacer::new(Duration::from_millis(60));
        let start = Instant::now();
        pacer.on_chunk(CHUNK_DURATION, start);
        // Five seconds of nothing, then chunks arrive in real time again.
        let resumed = start + Duration::from_secs(5);
        assert_eq!(pacer.on_chunk(CHUNK_DURATION, resumed), Duration::ZERO);
        // A burst after the stall is held back as from the restart.
        let waits: Vec<_> = (0..10)
            .map(|_| pacer.on_chunk(CHUNK_DURATION, resumed))
            .collect();
        assert_eq!(waits[9], Duration::from_millis(11 * 20 - 60));
    }
}
