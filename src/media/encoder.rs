//! H.264 encoding with openh264, producing what the RTP payloader needs: Annex-B access units,
//! Constrained Baseline, with SPS and PPS in front of every IDR.

use super::I420Frame;
use crate::config::VideoConfig;
use bytes::Bytes;
use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, SpsPpsStrategy, UsageType,
};

const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_IDR: u8 = 5;

/// The lowest rate campeer asks of the encoder: below it openh264's quantiser runs out and
/// frames grow beyond the target anyway.
pub const MIN_BITRATE_BPS: u32 = 50_000;

/// Temporal layers campeer encodes: a base layer of every other frame, each predicted from
/// the base frame before it, and an upper layer in between that no frame refers to.
const TEMPORAL_LAYERS: i32 = 2;

/// The share of the bits the base layer takes at most (measured: about 0.57 on the test
/// pattern; base frames predict from two frames back, so they cost more than half).
pub const BASE_LAYER_SHARE: f64 = 0.62;

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("openh264 could not be set up: {0}")]
    Setup(String),
    #[error("openh264 failed to encode a frame: {0}")]
    Encode(String),
    #[error("the hardware encoder failed: {0}")]
    Hardware(String),
    #[error("an IDR frame came out before any SPS/PPS")]
    MissingParameterSets,
}

/// One encoded picture.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    /// Annex-B NAL units (each with a 4-byte start code).
    pub data: Bytes,
    pub is_keyframe: bool,
    /// 0 for the base layer; 1 for the upper temporal layer, which nothing refers to, so a
    /// viewer on a slow link can be sent the base alone (half the frames) from the same stream.
    pub temporal_id: u8,
}

pub struct H264Encoder {
    encoder: Encoder,
    parameter_sets: ParameterSets,
    /// The rate the encoder was last told, and the one wanted: openh264 takes a new rate only
    /// once it has been initialised (at the first frame), so a change waits for the next frame.
    applied_bps: u32,
    wanted_bps: u32,
    /// The most the encoder may be asked for: its configured rate.
    max_bps: u32,
    /// The picture size the temporal layers were set up for: openh264 starts over with one
    /// layer when the size changes (at the first frame, and when a camera comes back in
    /// another mode).
    layered_size: Option<(usize, usize)>,
}

impl H264Encoder {
    pub fn new(video: &VideoConfig) -> Result<Self, EncoderError> {
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(video.bitrate_bps()))
            .max_frame_rate(FrameRate::from_hz(video.fps as f32))
            .rate_control_mode(RateControlMode::Bitrate)
            // A skipped frame is a frozen picture for every viewer; keep the frame rate and
            // let the quantiser absorb bitrate pressure.
            .skip_frames(false)
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .complexity(Complexity::Low)
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            // IDRs are decided by the keyframe policy, which forces them explicitly.
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .num_threads(1);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| EncoderError::Setup(e.to_string()))?;
        Ok(Self {
            encoder,
            parameter_sets: ParameterSets::default(),
            applied_bps: video.bitrate_bps(),
            wanted_bps: video.bitrate_bps(),
            max_bps: video.bitrate_bps(),
            layered_size: None,
        })
    }

    /// Turns on the temporal layers (openh264's crate sets up one). Needs an initialised
    /// encoder, so it happens after the first frame of each size; openh264 then starts over,
    /// and the next frame is an IDR again (one extra keyframe when a stream starts).
    fn set_up_layers(&mut self) {
        let mut params = openh264_sys2::SEncParamExt::default();
        // SAFETY: the encoder is initialised (a frame was encoded); `params` is a valid
        // SEncParamExt that outlives both calls, filled by the first and read by the second.
        let status = unsafe {
            let raw = self.encoder.raw_api();
            let got = raw.get_option(
                openh264_sys2::ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                (&raw mut params).cast(),
            );
            if got == 0 {
                params.iTemporalLayerNum = TEMPORAL_LAYERS;
                params.iTargetBitrate = i32::try_from(self.applied_bps).unwrap_or(i32::MAX);
                params.sSpatialLayers[0].iSpatialBitrate = params.iTargetBitrate;
                // openh264 starts over with the new layout: its next frame is an IDR.
                raw.set_option(
                    openh264_sys2::ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                    (&raw mut params).cast(),
                )
            } else {
                got
            }
        };
        if status != 0 {
            tracing::warn!(
                "openh264 refused temporal layers (status {status}): every viewer gets every frame"
            );
        }
    }

    /// Sets the target for the frames to come, at most the configured rate (the encoder's
    /// buffers were sized for it).
    pub fn set_bitrate(&mut self, bps: u32) {
        self.wanted_bps = bps.clamp(MIN_BITRATE_BPS, self.max_bps.max(MIN_BITRATE_BPS));
    }

    /// The target the encoder works to now.
    pub fn bitrate(&self) -> u32 {
        self.applied_bps
    }

    fn apply_bitrate(&mut self) {
        if self.wanted_bps == self.applied_bps {
            return;
        }
        let mut info = openh264_sys2::SBitrateInfo {
            iLayer: openh264_sys2::SPATIAL_LAYER_ALL,
            iBitrate: i32::try_from(self.wanted_bps).unwrap_or(i32::MAX),
        };
        // SAFETY: the encoder is initialised (a frame was encoded) and `info` is a valid
        // SBitrateInfo that outlives the call; openh264 copies what it needs.
        let status = unsafe {
            self.encoder.raw_api().set_option(
                openh264_sys2::ENCODER_OPTION_BITRATE,
                (&raw mut info).cast(),
            )
        };
        if status == 0 {
            self.applied_bps = self.wanted_bps;
        } else {
            tracing::warn!(
                "openh264 refused a bitrate of {} bit/s (status {status})",
                self.wanted_bps
            );
            self.wanted_bps = self.applied_bps;
        }
    }

    /// Encodes one frame; `force_keyframe` makes it an IDR. `None` when the encoder emitted
    /// nothing for this frame.
    pub fn encode(
        &mut self,
        frame: &I420Frame,
        force_keyframe: bool,
    ) -> Result<Option<AccessUnit>, EncoderError> {
        if force_keyframe {
            self.encoder.force_intra_frame();
        }
        let (data, temporal_id) = {
            let bitstream = self
                .encoder
                .encode(frame)
                .map_err(|e| EncoderError::Encode(e.to_string()))?;
            if matches!(bitstream.frame_type(), FrameType::Skip | FrameType::Invalid) {
                return Ok(None);
            }
            let temporal_id = (0..bitstream.num_layers())
                .filter_map(|i| bitstream.layer(i))
                .filter(|layer| {
                    layer.raw_info().uiLayerType == openh264_sys2::VIDEO_CODING_LAYER as u8
                })
                .map(|layer| layer.raw_info().uiTemporalId)
                .max()
                .unwrap_or(0);
            (bitstream.to_vec(), temporal_id)
        };
        // After the frame: the first one is what initialises openh264.
        self.apply_bitrate();
        let size = (frame.width(), frame.height());
        if self.layered_size != Some(size) {
            self.layered_size = Some(size);
            self.set_up_layers();
        }
        if data.is_empty() {
            return Ok(None);
        }
        let mut unit = self.parameter_sets.complete(Bytes::from(data))?;
        unit.temporal_id = if unit.is_keyframe { 0 } else { temporal_id };
        Ok(Some(unit))
    }
}

/// Makes every IDR self-contained, as the RTP payloader and a joining decoder need: remembers
/// the latest SPS and PPS and puts them in front of an IDR that comes without them. Serves
/// campeer's encoder and cameras that encode H.264 themselves (many send the parameter sets
/// only once, at stream start).
#[derive(Debug, Default)]
pub struct ParameterSets {
    /// The latest SPS and PPS, with start codes.
    latest: Option<Vec<u8>>,
}

impl ParameterSets {
    /// Turns one Annex-B access unit into one that can be sent; copies only when it must
    /// put the parameter sets in front.
    pub fn complete(&mut self, data: Bytes) -> Result<AccessUnit, EncoderError> {
        let mut has_sps = false;
        let mut has_pps = false;
        let mut has_idr = false;
        let mut sets = Vec::new();
        for nal in split_annex_b(&data) {
            let Some(&header) = nal.first() else { continue };
            match header & 0x1f {
                NAL_SPS => {
                    has_sps = true;
                    sets.extend_from_slice(&[0, 0, 0, 1]);
                    sets.extend_from_slice(nal);
                }
                NAL_PPS => {
                    has_pps = true;
                    sets.extend_from_slice(&[0, 0, 0, 1]);
                    sets.extend_from_slice(nal);
                }
                NAL_IDR => has_idr = true,
                _ => {}
            }
        }
        if has_sps && has_pps {
            self.latest = Some(sets);
        }
        let data = if has_idr && !(has_sps && has_pps) {
            let sets = self
                .latest
                .as_ref()
                .ok_or(EncoderError::MissingParameterSets)?;
            let mut with_sets = Vec::with_capacity(sets.len() + data.len());
            with_sets.extend_from_slice(sets);
            with_sets.extend_from_slice(&data);
            Bytes::from(with_sets)
        } else {
            data
        };
        Ok(AccessUnit {
            data,
            is_keyframe: has_idr,
            // A camera's stream is one layer; campeer's encoder sets its own.
            temporal_id: 0,
        })
    }
}

/// The NAL units of an Annex-B byte stream, without their start codes.
pub fn split_annex_b(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (n, &(_, payload_start)) in starts.iter().enumerate() {
        let end = match starts.get(n + 1) {
            // A 4-byte start code's leading zero belongs to the code, not the NAL.
            Some(&(next, _)) if next > payload_start && data[next - 1] == 0 => next - 1,
            Some(&(next, _)) => next,
            None => data.len(),
        };
        if end > payload_start {
            nals.push(&data[payload_start..end]);
        }
    }
    nals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceKind;
    use crate::media::pattern;

    fn video() -> VideoConfig {
        VideoConfig {
            source: SourceKind::TestPattern,
            width: 320,
            height: 240,
            fps: 30,
            bitrate_kbps: 500,
            keyframe_interval_secs: 2.0,
            h264_passthrough: false,
            rpicam_vid: None,
            encoder: crate::config::EncoderChoice::OpenH264,
        }
    }

    fn nal_types(data: &[u8]) -> Vec<u8> {
        split_annex_b(data).iter().map(|n| n[0] & 0x1f).collect()
    }

    #[test]
    fn splits_annex_b_with_both_start_code_lengths() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let nals = split_annex_b(&data);
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]
        );
        assert!(split_annex_b(&[]).is_empty());
        assert!(split_annex_b(&[0, 0, 1]).is_empty());
    }

    #[test]
    fn every_idr_carries_sps_and_pps_and_forcing_works() {
        let mut encoder = H264Encoder::new(&video()).unwrap();
        let mut frame = I420Frame::new(320, 240);
        let mut keyframes = 0;
        for i in 0..20u64 {
            pattern::draw(&mut frame, i, 1_700_000_000_000 + i);
            let force = i == 0 || i == 10;
            let unit = encoder.encode(&frame, force).unwrap().expect("a frame");
            // Frame 1 starts the temporal layers, which openh264 begins with an IDR.
            let force = force || i == 1;
            let types = nal_types(&unit.data);
            if unit.is_keyframe {
                keyframes += 1;
                assert_eq!(&types[..2], &[NAL_SPS, NAL_PPS], "{types:?}");
                assert!(types.contains(&NAL_IDR));
            } else {
                assert!(!types.contains(&NAL_IDR), "{types:?}");
            }
            assert_eq!(unit.is_keyframe, force, "frame {i}");
        }
        assert_eq!(keyframes, 3);
    }

    #[test]
    fn the_bitrate_follows_while_encoding() {
        let mut encoder = H264Encoder::new(&video()).unwrap();
        let mut frame = I420Frame::new(320, 240);
        let mut bytes_at = |encoder: &mut H264Encoder, from: u64| {
            let mut total = 0;
            for i in from..from + 60 {
                pattern::draw(&mut frame, i * 7, 1_700_000_000_000 + i);
                total += encoder
                    .encode(&frame, i == from)
                    .unwrap()
                    .map_or(0, |u| u.data.len());
            }
            total
        };
        let full = bytes_at(&mut encoder, 0);
        encoder.set_bitrate(100_000);
        let _settle = bytes_at(&mut encoder, 60);
        assert_eq!(encoder.bitrate(), 100_000);
        let low = bytes_at(&mut encoder, 120);
        assert!(
            low * 2 < full,
            "{low} bytes at 100 kbit/s vs {full} at 500 kbit/s"
        );
        encoder.set_bitrate(10_000_000);
        bytes_at(&mut encoder, 180);
        assert_eq!(
            encoder.bitrate(),
            500_000,
            "never above the configured rate"
        );
    }

    #[test]
    fn two_temporal_layers_and_the_base_alone_decodes() {
        let mut encoder = H264Encoder::new(&video()).unwrap();
        let mut decoder = openh264::decoder::Decoder::new().unwrap();
        let mut frame = I420Frame::new(320, 240);
        let (mut base_bytes, mut all_bytes) = (0usize, 0usize);
        let mut layers = Vec::new();
        for i in 0..90u64 {
            pattern::draw(&mut frame, i * 5, 1_700_000_000_000 + i);
            let unit = encoder.encode(&frame, i == 0).unwrap().expect("a frame");
            layers.push(unit.temporal_id);
            if unit.temporal_id > 0 {
                // The upper layer is never referenced (nal_ref_idc 0): dropping it is safe.
                for nal in split_annex_b(&unit.data) {
                    assert_eq!(nal[0] & 0x60, 0, "frame {i} is a reference");
                }
            } else {
                base_bytes += unit.data.len();
                let decoded = decoder.decode(&unit.data);
                assert!(
                    decoded.is_ok(),
                    "the base layer alone fails to decode at {i}"
                );
            }
            all_bytes += unit.data.len();
        }
        // From the IDR that starts the layers on: upper, base, upper, base…
        assert_eq!(&layers[..3], &[0, 0, 1], "{layers:?}");
        assert!(layers[2..].windows(2).all(|w| w[0] != w[1]), "{layers:?}");
        let share = base_bytes as f64 / all_bytes as f64;
        assert!(
            (0.45..=BASE_LAYER_SHARE).contains(&share),
            "the base layer carries {share:.2} of the bits"
        );
    }

    #[test]
    fn output_is_constrained_baseline() {
        let mut encoder = H264Encoder::new(&video()).unwrap();
        let mut frame = I420Frame::new(320, 240);
        pattern::draw(&mut frame, 0, 0);
        let unit = encoder.encode(&frame, true).unwrap().unwrap();
        let sps = split_annex_b(&unit.data)[0];
        assert_eq!(sps[1], 66, "profile_idc must be Baseline");
        assert_ne!(
            sps[2] & 0x40,
            0,
            "constraint_set1 must be set (Constrained Baseline)"
        );
    }

    #[test]
    fn an_idr_without_parameter_sets_gets_the_remembered_ones() {
        let mut sets = ParameterSets::default();
        let first = sets
            .complete(Bytes::from(vec![
                0, 0, 0, 1, 0x67, 9, 0, 0, 0, 1, 0x68, 8, 0, 0, 0, 1, 0x65, 1,
            ]))
            .unwrap();
        assert!(first.is_keyframe);
        let predicted = sets
            .complete(Bytes::from(vec![0, 0, 0, 1, 0x41, 3]))
            .unwrap();
        assert!(!predicted.is_keyframe);
        assert_eq!(
            nal_types(&predicted.data),
            vec![1],
            "nothing added to P frames"
        );
        let unit = sets
            .complete(Bytes::from(vec![0, 0, 0, 1, 0x65, 2]))
            .unwrap();
        assert!(unit.is_keyframe);
        assert_eq!(nal_types(&unit.data), vec![NAL_SPS, NAL_PPS, NAL_IDR]);
        let mut fresh = ParameterSets::default();
        assert!(matches!(
            fresh.complete(Bytes::from(vec![0, 0, 0, 1, 0x65, 2])),
            Err(EncoderError::MissingParameterSets)
        ));
    }
}
