//! What each camera and the microphone stream from: the source the configuration names, or
//! what `auto` finds on the board, wrapped in the hub that opens it when someone watches.

use crate::config::{AudioConfig, AudioSourceKind, SessionConfig, SourceKind, VideoConfig};
use crate::media::VideoSource;
use crate::media::audio::{AudioSource, TestTone};
use crate::media::audio_hub::{AudioHub, AudioSettings};
use crate::media::camera::V4l2Camera;
use crate::media::hub::VideoHub;
use crate::media::microphone::{self, AlsaMicrophone};
use crate::media::negotiate::Wanted;
use crate::media::pattern::TestPattern;
use crate::media::rpicam::{self, RpicamCamera};
use std::time::Duration;

pub(super) fn make_hub(
    video: &VideoConfig,
    sessions: &SessionConfig,
    claimed: &[SourceKind],
) -> VideoHub {
    let video = video.clone();
    let rpicam_vid = video.rpicam_vid.clone();
    let source = match video.source.clone() {
        SourceKind::Auto => auto_source(rpicam_vid.as_deref(), claimed),
        other => other,
    };
    let factory: crate::media::hub::SourceFactory = match source {
        SourceKind::Auto | SourceKind::TestPattern => {
            tracing::info!(
                "video source: test pattern {}x{}@{}",
                video.width,
                video.height,
                video.fps
            );
            let (w, h, fps) = (video.width, video.height, video.fps);
            Box::new(move || Ok(Box::new(TestPattern::new(w, h, fps)) as Box<dyn VideoSource>))
        }
        SourceKind::Camera(path) => {
            tracing::info!("video source: camera {}", path.display());
            let wanted = Wanted {
                width: video.width,
                height: video.height,
                fps: video.fps,
                passthrough: video.h264_passthrough,
                bitrate_bps: video.bitrate_bps(),
                keyframe_interval: video.keyframe_interval(),
            };
            Box::new(move || {
                V4l2Camera::open(&path, wanted)
                    .map(|camera| Box::new(camera) as Box<dyn VideoSource>)
                    .map_err(|e| crate::media::SourceError::Fatal(e.to_string()))
            })
        }
        SourceKind::CameraModule(index) => {
            tracing::info!("video source: camera module {index}");
            let (w, h, fps) = (video.width, video.height, video.fps);
            Box::new(move || {
                // Looked for at each start, so that installing rpicam-apps while campeer
                // runs is enough.
                let program = rpicam::find_program(rpicam_vid.as_deref())
                    .ok_or(rpicam::RpicamError::NotInstalled)
                    .map_err(|e| crate::media::SourceError::Fatal(e.to_string()))?;
                RpicamCamera::open(&program, index, w, h, fps)
                    .map(|camera| Box::new(camera) as Box<dyn VideoSource>)
                    .map_err(|e| crate::media::SourceError::Fatal(e.to_string()))
            })
        }
    };
    VideoHub::new(
        video,
        sessions.idle_grace(),
        sessions.keyframe_min_interval(),
        factory,
    )
}

/// What `auto` streams: a camera module when the board has one (the camera a Raspberry Pi
/// is bought with), else the first V4L2 camera that gives a usable picture, else the test
/// pattern.
fn auto_source(rpicam_vid: Option<&std::path::Path>, claimed: &[SourceKind]) -> SourceKind {
    let modules = rpicam::available_camera_modules(rpicam_vid);
    let free_module = modules
        .iter()
        .find(|m| !claimed.contains(&SourceKind::CameraModule(m.index)));
    if let Some(module) = free_module {
        tracing::info!(
            "found camera module {} ({}, {})",
            module.index,
            module.model,
            module.sensor
        );
        return SourceKind::CameraModule(module.index);
    }
    match crate::media::camera::first_capture_device(|path| {
        claimed.contains(&SourceKind::Camera(path.to_owned()))
    }) {
        Some(path) => {
            tracing::info!("found camera {}", path.display());
            SourceKind::Camera(path)
        }
        None => {
            tracing::info!("no camera found: streaming the test pattern instead");
            SourceKind::TestPattern
        }
    }
}

/// The audio hub the configuration asks for: `None` for no audio.
pub(super) fn make_audio_hub(audio: &AudioConfig, idle_grace: Duration) -> Option<AudioHub> {
    let channels = audio.channels;
    let factory: crate::media::audio_hub::AudioSourceFactory = match &audio.source {
        AudioSourceKind::None => {
            tracing::info!("audio: none (configured)");
            return None;
        }
        AudioSourceKind::Auto if !microphone::has_capture_hardware() => {
            tracing::info!("audio: none (no sound card that can capture was found)");
            return None;
        }
        AudioSourceKind::TestTone => {
            tracing::info!("audio source: test tone");
            Box::new(move || Ok(Box::new(TestTone::new(channels)) as Box<dyn AudioSource>))
        }
        AudioSourceKind::Auto | AudioSourceKind::Alsa(_) => {
            let device = match &audio.source {
                AudioSourceKind::Alsa(name) => name.clone(),
                // Auto with capture hardware: ALSA's own default device.
                _ => "default".to_owned(),
            };
            tracing::info!("audio source: ALSA capture device {device:?}");
            Box::new(move || {
                AlsaMicrophone::open(&device, channels)
                    .map(|mic| Box::new(mic) as Box<dyn AudioSource>)
                    .map_err(|e| crate::media::SourceError::Fatal(e.to_string()))
            })
        }
    };
    let settings = AudioSettings {
        channels,
        bitrate_bps: audio.bitrate_bps(),
    };
    Some(AudioHub::new(settings, idle_grace, factory))
}
