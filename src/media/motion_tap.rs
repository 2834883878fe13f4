//! Motion detection on a camera's pictures as they are captured: a [`PictureTap`] that runs
//! the detector on each picture's luma on the pipeline thread (under a tenth of a millisecond
//! at 640x480) and hands what it decides, with the picture motion started on, to the device
//! task, which publishes it.

use super::I420Frame;
use super::hub::PictureTap;
use super::motion::{MotionDetector, MotionEvent, MotionSettings};
use tokio::sync::mpsc;

/// News not yet taken by the device task: motion starts and stops come seconds apart, so a
/// full queue means the task is stuck, and news is dropped (and logged) rather than held.
pub const MOTION_QUEUE: usize = 8;

/// What the detector decided, on which picture.
pub enum MotionNews {
    Started {
        /// The share of the picture that changed.
        area: f32,
        /// When the picture was captured, in milliseconds since the Unix epoch.
        at_unix_ms: u64,
        /// The picture motion was seen on, for the snapshot that goes with the news.
        picture: Box<I420Frame>,
    },
    Stopped {
        at_unix_ms: u64,
    },
}

/// The detector, fed from the pipeline.
pub struct MotionTap {
    settings: MotionSettings,
    /// Made at the first picture, and again when the camera comes back at another size.
    detector: Option<MotionDetector>,
    news: mpsc::Sender<MotionNews>,
    dropped: u64,
}

impl MotionTap {
    pub fn new(settings: MotionSettings, news: mpsc::Sender<MotionNews>) -> Self {
        Self {
            settings,
            detector: None,
            news,
            dropped: 0,
        }
    }
}

impl PictureTap for MotionTap {
    fn look(&mut self, picture: &I420Frame) -> bool {
        let (width, height) = (picture.width(), picture.height());
        let detector = match &mut self.detector {
            Some(detector) if detector.size() == (width, height) => detector,
            _ => self
                .detector
                .insert(MotionDetector::new(self.settings.clone(), width, height)),
        };
        let news = match detector.observe(picture.captured_at, picture.y_plane(), width) {
            Some(MotionEvent::Started { area }) => MotionNews::Started {
                area,
                at_unix_ms: picture.capture_unix_ms,
                picture: Box::new(picture.clone()),
            },
            Some(MotionEvent::Stopped) => MotionNews::Stopped {
                at_unix_ms: picture.capture_unix_ms,
            },
            None => return !self.news.is_closed(),
        };
        match self.news.try_send(news) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    tracing::warn!(
                        "motion news dropped ({} so far): the device task is not taking it",
                        self.dropped
                    );
                }
                true
            }
            // The device is gone: nobody wants motion any more.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}
