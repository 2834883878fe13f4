//! A camera's recording, as its device task carries it: started from `[record]`, told of
//! motion, and shown in the status.

use crate::config::{RecordConfig, RecordMode};
use crate::media::audio_hub::AudioHub;
use crate::media::hub::VideoHub;
use crate::media::motion_tap::MotionNews;
use crate::protocol::{RecordReport, Segment};
use crate::record::disk::DiskSettings;
use crate::record::recorder::RecorderSettings;
use crate::record::task::{MotionMark, RecordingHandle};
use std::time::Duration;

/// Starts recording the camera as `[record]` says; `None` when it is off or cannot start
/// (logged).
pub(super) fn start(
    config: &RecordConfig,
    hub: &VideoHub,
    audio: Option<&AudioHub>,
    device: &Segment,
) -> Option<RecordingHandle> {
    if !config.enabled() {
        return None;
    }
    let settings = RecorderSettings {
        mode: config.mode,
        segment: Duration::from_secs(config.segment_secs),
        pre_roll: Duration::from_secs(config.pre_roll_secs),
        post_roll: Duration::from_secs(config.post_roll_secs),
        audio_channels: audio.map(|audio| audio.settings().channels),
    };
    let disk = DiskSettings {
        root: config.path.clone(),
        dir: config.path.join(device.as_str()),
        keep_free_bytes: config.keep_free_mb.saturating_mul(1_000_000),
        max_age: (config.max_age_days > 0)
            .then(|| Duration::from_secs(config.max_age_days.saturating_mul(86_400))),
    };
    match RecordingHandle::start(hub.clone(), audio.cloned(), settings, disk) {
        Ok(handle) => {
            tracing::info!(
                "recording ({:?}) into {}",
                config.mode,
                config.path.join(device.as_str()).display()
            );
            Some(handle)
        }
        Err(e) => {
            tracing::error!("recording could not start: {e}");
            None
        }
    }
}

/// The detector's news, as the recorder takes it.
pub(super) fn mark(news: &MotionNews) -> MotionMark {
    match news {
        MotionNews::Started { at_unix_ms, .. } => MotionMark::Started {
            at_unix_ms: *at_unix_ms,
        },
        MotionNews::Stopped { at_unix_ms } => MotionMark::Stopped {
            at_unix_ms: *at_unix_ms,
        },
    }
}

/// What the status says of the recording.
pub(super) fn report(recording: &RecordingHandle) -> RecordReport {
    let status = recording.status();
    let state = if status.file.is_some() {
        "recording"
    } else if status.error.is_some() {
        "failed"
    } else {
        "waiting"
    };
    RecordReport {
        mode: match recording.mode() {
            RecordMode::Off => "off",
            RecordMode::Continuous => "continuous",
            RecordMode::Motion => "motion",
        }
        .to_owned(),
        state: state.to_owned(),
        file: status.file,
        free_mb: status.free_bytes.map(|bytes| bytes / 1_000_000),
        error: status.error,
    }
}
