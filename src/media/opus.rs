//! The Opus encoder (libopus, built from source by the opus2 crate so that cross-compiling
//! needs no libopus on the build machine or the board).

use super::audio::{CHUNK_FRAMES, SAMPLE_RATE};
use bytes::Bytes;

/// The largest packet libopus is asked to produce; 20 ms at 510 kbit/s is 1275 bytes.
const MAX_PACKET: usize = 1500;

#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    #[error("Opus supports 1 or 2 channels, not {0}")]
    Channels(u8),
    #[error("a chunk of {got} samples is not 20 ms of {channels} channel(s)")]
    ChunkSize { got: usize, channels: u8 },
    #[error("Opus: {0}")]
    Codec(#[from] opus2::Error),
}

pub struct OpusEncoder {
    encoder: opus2::Encoder,
    channels: u8,
    buffer: Vec<u8>,
}

impl OpusEncoder {
    /// A 48 kHz encoder tuned for live sound from a microphone: the full-band "audio" mode
    /// (it passes music and room sound, not only speech), variable bitrate around the target,
    /// and in-band FEC so a lost packet costs little.
    pub fn new(channels: u8, bitrate_bps: u32) -> Result<Self, OpusError> {
        let layout = match channels {
            1 => opus2::Channels::Mono,
            2 => opus2::Channels::Stereo,
            other => return Err(OpusError::Channels(other)),
        };
        let mut encoder = opus2::Encoder::new(SAMPLE_RATE, layout, opus2::Application::Audio)?;
        encoder.set_bitrate(opus2::Bitrate::Bits(bitrate_bps as i32))?;
        encoder.set_inband_fec(true)?;
        encoder.set_packet_loss_perc(5)?;
        Ok(Self {
            encoder,
            channels,
            buffer: vec![0; MAX_PACKET],
        })
    }

    /// Encodes one 20 ms chunk of interleaved samples into one packet.
    pub fn encode(&mut self, samples: &[i16]) -> Result<Bytes, OpusError> {
        if samples.len() != CHUNK_FRAMES * usize::from(self.channels) {
            return Err(OpusError::ChunkSize {
                got: samples.len(),
                channels: self.channels,
            });
        }
        let length = self.encoder.encode(samples, &mut self.buffer)?;
        Ok(Bytes::copy_from_slice(&self.buffer[..length]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::{TestTone, tone_power};

    #[test]
    fn encoded_tone_decodes_to_the_same_tone() {
        let mut tone = TestTone::new(1);
        let mut encoder = OpusEncoder::new(1, 32_000).unwrap();
        let mut decoder = opus2::Decoder::new(SAMPLE_RATE, opus2::Channels::Mono).unwrap();
        let mut decoded = Vec::new();
        for _ in 0..50 {
            let packet = encoder.encode(&tone.render()).unwrap();
            assert!(
                packet.len() < 400,
                "about 32 kbit/s: {} bytes",
                packet.len()
            );
            let mut out = vec![0i16; CHUNK_FRAMES];
            let n = decoder.decode(&packet, &mut out, false).unwrap();
            assert_eq!(n, CHUNK_FRAMES);
            decoded.extend(out.iter().map(|&s| f32::from(s)));
        }
        // Past the codec's start-up delay.
        let steady = &decoded[CHUNK_FRAMES * 10..];
        let at_tone = tone_power(steady, TestTone::FREQUENCY, SAMPLE_RATE);
        assert!(at_tone > 50.0 * tone_power(steady, 1000.0, SAMPLE_RATE));
    }

    #[test]
    fn wrong_chunk_sizes_and_channel_counts_are_errors() {
        assert!(matches!(
            OpusEncoder::new(3, 32_000),
            Err(OpusError::Channels(3))
        ));
        let mut stereo = OpusEncoder::new(2, 64_000).unwrap();
        assert!(matches!(
            stereo.encode(&[0; CHUNK_FRAMES]),
            Err(OpusError::ChunkSize { .. })
        ));
        assert!(stereo.encode(&[0; 2 * CHUNK_FRAMES]).is_ok());
    }
}
