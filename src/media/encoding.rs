//! Which encoder makes the stream: the board's V4L2 hardware encoder when the configuration
//! allows it and it works, else openh264. A hardware encoder that is missing, refuses the
//! picture size or fails while streaming is replaced by openh264 at once, with the reason in
//! the log and a keyframe so that viewers pick the new stream up without a glitch; it is tried
//! again only when the pipeline starts again.

use super::encoder::{AccessUnit, EncoderError, H264Encoder};
use super::v4l2m2m::{self, M2mEncoder, M2mError};
use super::{I420Frame, PictureBuffers};
use crate::config::{EncoderChoice, VideoConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// The encoder at work, for the stats and the status topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    /// Nothing encoded yet (or a camera's own H.264 passed through).
    #[default]
    None,
    OpenH264,
    V4l2M2m,
}

impl EncoderKind {
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::OpenH264 => Some("openh264"),
            Self::V4l2M2m => Some("v4l2m2m"),
        }
    }
}

enum Active {
    /// Boxed: openh264's state is large next to a device handle.
    Software(Box<H264Encoder>),
    Hardware(M2mEncoder),
}

/// The encoder of one pipeline run, created at its first raw frame.
pub struct Encoding {
    video: VideoConfig,
    active: Option<Active>,
    /// Why the hardware encoder is not used, once it has failed or was not found: openh264
    /// from then on, for this run of the pipeline.
    hardware_unusable: Option<String>,
    fallbacks: u64,
    /// Pictures the hardware encoder took where the source made them, and pictures copied
    /// into its buffers.
    pictures_in_place: u64,
    pictures_copied: u64,
}

impl Encoding {
    pub fn new(video: &VideoConfig) -> Self {
        Self {
            video: video.clone(),
            active: None,
            hardware_unusable: None,
            fallbacks: 0,
            pictures_in_place: 0,
            pictures_copied: 0,
        }
    }

    pub fn kind(&self) -> EncoderKind {
        match &self.active {
            None => EncoderKind::None,
            Some(Active::Software(_)) => EncoderKind::OpenH264,
            Some(Active::Hardware(_)) => EncoderKind::V4l2M2m,
        }
    }

    /// How often a hardware encoder failed and openh264 took over.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks
    }

    /// (pictures the hardware encoder took where the source made them, pictures copied in).
    pub fn pictures_in_place_and_copied(&self) -> (u64, u64) {
        (self.pictures_in_place, self.pictures_copied)
    }

    /// The encoder's input buffers, for the source to make its frames in; `None` when the
    /// encoder has none to lend (openh264 reads the frame where it is).
    pub fn picture_buffers(&self) -> Option<Arc<dyn PictureBuffers>> {
        match &self.active {
            Some(Active::Hardware(encoder)) => encoder.picture_buffers(),
            _ => None,
        }
    }

    /// The hardware encoder to try, if the configuration allows one and one is there.
    fn hardware_device(&mut self) -> Option<PathBuf> {
        if self.hardware_unusable.is_some() {
            return None;
        }
        let device = match &self.video.encoder {
            EncoderChoice::OpenH264 => return None,
            EncoderChoice::V4l2M2m(Some(path)) => Some(path.clone()),
            EncoderChoice::V4l2M2m(None) | EncoderChoice::Auto => v4l2m2m::find_encoder(),
        };
        if device.is_none() {
            let reason = M2mError::NotFound.to_string();
            if self.video.encoder == EncoderChoice::Auto {
                tracing::info!("encoding with openh264: {reason}");
            } else {
                tracing::warn!(
                    "video.encoder asks for v4l2m2m, but {reason}: encoding with openh264"
                );
            }
            self.hardware_unusable = Some(reason);
        }
        device
    }

    /// Lets the encoder go (nobody needs the stream); the next picture sets one up again.
    pub fn stop(&mut self) {
        self.active = None;
    }

    /// Sets up the encoder for a picture of this size: the hardware one if it may and can,
    /// else openh264.
    fn start(&mut self, width: usize, height: usize) -> Result<&mut Active, EncoderError> {
        if let Some(path) = self.hardware_device() {
            match M2mEncoder::open(
                &path,
                width as u32,
                height as u32,
                self.video.fps,
                self.video.bitrate_bps(),
            ) {
                Ok(encoder) => return Ok(self.active.insert(Active::Hardware(encoder))),
                Err(e) => {
                    tracing::warn!(
                        "the hardware encoder cannot be used ({e}): encoding with openh264"
                    );
                    self.hardware_unusable = Some(e.to_string());
                    self.fallbacks += 1;
                }
            }
        }
        let encoder = Box::new(H264Encoder::new(&self.video)?);
        tracing::info!("encoding with openh264");
        Ok(self.active.insert(Active::Software(encoder)))
    }

    /// Encodes one picture at `target_bps`; `force_keyframe` makes it an IDR.
    pub fn encode(
        &mut self,
        frame: &I420Frame,
        force_keyframe: bool,
        target_bps: u32,
    ) -> Result<Option<AccessUnit>, EncoderError> {
        let size = (frame.width(), frame.height());
        // A hardware encoder is set up for one size: a camera back in another mode needs a
        // new one (openh264 adapts by itself).
        if let Some(Active::Hardware(encoder)) = &self.active
            && encoder.size() != size
        {
            self.active = None;
        }
        let active = match self.active.as_mut() {
            Some(active) => active,
            None => self.start(size.0, size.1)?,
        };
        match active {
            Active::Software(encoder) => {
                encoder.set_bitrate(target_bps);
                encoder.encode(frame, force_keyframe)
            }
            Active::Hardware(encoder) => {
                encoder.set_bitrate(target_bps);
                let before = encoder.pictures_in_place_and_copied();
                let result = encoder.encode(frame, force_keyframe);
                let after = encoder.pictures_in_place_and_copied();
                self.pictures_in_place += after.0.saturating_sub(before.0);
                self.pictures_copied += after.1.saturating_sub(before.1);
                match result {
                    Ok(unit) => Ok(unit),
                    Err(e) => {
                        tracing::warn!("{e}: encoding with openh264 from now on");
                        self.hardware_unusable = Some(e.to_string());
                        self.fallbacks += 1;
                        self.active = None;
                        // A new stream: it starts with a keyframe whatever was asked.
                        let Active::Software(encoder) = self.start(size.0, size.1)? else {
                            return Err(e);
                        };
                        encoder.set_bitrate(target_bps);
                        encoder.encode(frame, true)
                    }
                }
            }
        }
    }
}
