//! ALSA capture: a microphone as an [`AudioSource`], and the capture devices for
//! `campeer devices`.
//!
//! campeer asks ALSA for 48 kHz 16-bit interleaved samples; through `default` or a `plughw:`
//! device ALSA converts whatever the hardware does. An overrun (the pipeline thread was late
//! to read) is recovered on the spot and counted: a short gap in the sound beats tearing the
//! stream down.

use super::SourceError;
use super::audio::{
    AudioChunk, AudioSource, CHUNK_DURATION, CHUNK_FRAMES, RealtimePacer, SAMPLE_RATE,
};
use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};
use serde::Serialize;
use std::time::{Duration, Instant};

/// How far a capture device may run ahead of the clock before it is held back (only devices
/// that are not paced by a sample clock ever do).
const PACING_SLACK: Duration = Duration::from_millis(100);
/// ALSA's ring buffer: deep enough to ride out a busy moment on a small board, short enough
/// that a late read never adds noticeable delay.
const BUFFER_TIME: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum MicrophoneError {
    #[error("cannot open ALSA capture device {device:?}: {source}")]
    Open { device: String, source: alsa::Error },
    #[error("ALSA capture device {device:?} does not take {what}: {source}")]
    Setup {
        device: String,
        what: &'static str,
        source: alsa::Error,
    },
    #[error(
        "ALSA capture device {device:?} runs at {rate} Hz, not 48000 Hz; use a device that \
         converts (such as \"default\" or \"plughw:CARD=...\")"
    )]
    Rate { device: String, rate: u32 },
}

/// A capture PCM delivering 20 ms chunks.
pub struct AlsaMicrophone {
    device: String,
    pcm: PCM,
    channels: u8,
    pacer: RealtimePacer,
    overruns: u64,
}

impl AlsaMicrophone {
    pub fn open(device: &str, channels: u8) -> Result<Self, MicrophoneError> {
        let pcm = PCM::new(device, Direction::Capture, false).map_err(|source| {
            MicrophoneError::Open {
                device: device.to_owned(),
                source,
            }
        })?;
        let setup = |what: &'static str| {
            let device = device.to_owned();
            move |source| MicrophoneError::Setup {
                device,
                what,
                source,
            }
        };
        {
            let params = HwParams::any(&pcm).map_err(setup("any parameters"))?;
            params
                .set_access(Access::RWInterleaved)
                .map_err(setup("interleaved access"))?;
            params
                .set_format(Format::s16())
                .map_err(setup("16-bit samples"))?;
            params
                .set_channels(u32::from(channels))
                .map_err(setup("the configured channel count"))?;
            params
                .set_rate(SAMPLE_RATE, ValueOr::Nearest)
                .map_err(setup("a 48 kHz rate"))?;
            params
                .set_period_size_near(CHUNK_FRAMES as alsa::pcm::Frames / 2, ValueOr::Nearest)
                .map_err(setup("a 10 ms period"))?;
            let buffer_frames =
                (BUFFER_TIME.as_millis() as usize * SAMPLE_RATE as usize / 1000) as i64;
            params
                .set_buffer_size_near(buffer_frames as alsa::pcm::Frames)
                .map_err(setup("a 200 ms buffer"))?;
            pcm.hw_params(&params).map_err(setup("these parameters"))?;
        }
        let rate = pcm
            .hw_params_current()
            .and_then(|params| params.get_rate())
            .map_err(setup("a rate query"))?;
        if rate != SAMPLE_RATE {
            return Err(MicrophoneError::Rate {
                device: device.to_owned(),
                rate,
            });
        }
        pcm.start().map_err(setup("starting"))?;
        Ok(Self {
            device: device.to_owned(),
            pcm,
            channels,
            pacer: RealtimePacer::new(PACING_SLACK),
            overruns: 0,
        })
    }

    /// Reads exactly one chunk, recovering from overruns.
    fn read_chunk(&mut self, samples: &mut [i16]) -> Result<(), SourceError> {
        let channels = usize::from(self.channels);
        let io = self
            .pcm
            .io_i16()
            .map_err(|e| SourceError::Fatal(format!("ALSA {}: {e}", self.device)))?;
        let mut filled = 0;
        // Bounded: a device that keeps returning nothing is a failed device.
        let mut empty_reads = 0;
        while filled < CHUNK_FRAMES {
            match io.readi(&mut samples[filled * channels..]) {
                Ok(0) => {
                    empty_reads += 1;
                    if empty_reads > 100 {
                        return Err(SourceError::Fatal(format!(
                            "ALSA {}: the device delivers no samples",
                            self.device
                        )));
                    }
                }
                Ok(frames) => filled += frames,
                Err(e) => {
                    // Overrun (EPIPE), suspend (ESTRPIPE) or an interrupted call: recover and
                    // carry on; anything else (the device unplugged) ends this source.
                    if self.pcm.try_recover(e, true).is_err() {
                        return Err(SourceError::Fatal(format!("ALSA {}: {e}", self.device)));
                    }
                    self.overruns += 1;
                    if self.overruns.is_power_of_two() {
                        tracing::warn!(
                            "ALSA {}: capture overrun ({} so far); recovered",
                            self.device,
                            self.overruns
                        );
                    }
                    let _ = self.pcm.start();
                }
            }
        }
        Ok(())
    }
}

impl AudioSource for AlsaMicrophone {
    fn next_chunk(&mut self) -> Result<AudioChunk, SourceError> {
        let mut samples = vec![0i16; CHUNK_FRAMES * usize::from(self.channels)];
        self.read_chunk(&mut samples)?;
        let wait = self.pacer.on_chunk(CHUNK_DURATION, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        Ok(AudioChunk {
            samples,
            captured_at: Instant::now(),
        })
    }

    fn channels(&self) -> u8 {
        self.channels
    }

    fn describe(&self) -> String {
        format!(
            "ALSA {:?}, {} Hz, {} channel(s)",
            self.device, SAMPLE_RATE, self.channels
        )
    }
}

/// Whether this machine has any sound card that can capture, from the kernel's list of PCM
/// devices (`/proc/asound/pcm`, lines such as `00-00: USB Audio : USB Audio : capture 1`).
pub fn has_capture_hardware() -> bool {
    std::fs::read_to_string("/proc/asound/pcm")
        .map(|list| list.lines().any(|line| line.contains("capture")))
        .unwrap_or(false)
}

/// A PCM that can capture, as ALSA's configuration names it (what `arecord -L` lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureDevice {
    /// What to put in `audio.source`.
    pub name: String,
    pub description: String,
}

/// Every PCM ALSA's configuration hints at that can capture.
pub fn capture_devices() -> Vec<CaptureDevice> {
    let Ok(hints) = alsa::device_name::HintIter::new_str(None, "pcm") else {
        return Vec::new();
    };
    hints
        .filter(|hint| hint.direction != Some(Direction::Playback))
        .filter_map(|hint| {
            Some(CaptureDevice {
                name: hint.name?,
                description: hint
                    .desc
                    .unwrap_or_default()
                    .split('\n')
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        })
        .collect()
}

/// The capture devices as a readable table, like `arecord -L`: each name, then its
/// description indented.
pub fn format_capture_devices(devices: &[CaptureDevice]) -> String {
    use std::fmt::Write;
    if devices.is_empty() {
        return "No ALSA capture devices found (campeer streams without audio, or the test \
                tone with audio.source = \"test\").\n"
            .to_owned();
    }
    let mut out = String::from("ALSA capture devices (for audio.source):\n");
    for device in devices {
        let _ = writeln!(out, "{}", device.name);
        if !device.description.is_empty() {
            let _ = writeln!(out, "    {}", device.description);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_listed_like_arecord() {
        let devices = [
            CaptureDevice {
                name: "default".into(),
                description: "Default ALSA Output".into(),
            },
            CaptureDevice {
                name: "plughw:CARD=Device,DEV=0".into(),
                description: String::new(),
            },
        ];
        assert_eq!(
            format_capture_devices(&devices),
            "ALSA capture devices (for audio.source):\ndefault\n    Default ALSA Output\n\
             plughw:CARD=Device,DEV=0\n"
        );
        assert!(format_capture_devices(&[]).starts_with("No ALSA capture devices"));
    }

    #[test]
    fn a_missing_device_is_a_typed_error_naming_it() {
        let err = AlsaMicrophone::open("campeer-no-such-pcm", 1)
            .err()
            .expect("no such PCM");
        assert!(matches!(err, MicrophoneError::Open { .. }));
        assert!(err.to_string().contains("campeer-no-such-pcm"));
    }
}
