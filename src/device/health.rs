//! What the service manager learns of the daemon (systemd's notify protocol and watchdog):
//! whether its loops still go round, whether it is connected to its broker, and how many
//! viewers it serves over every camera.

use crate::media::audio_hub::AudioHub;
use crate::media::hub::VideoHub;
use crate::media::worker::Heartbeat;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What the service manager is told: whether campeer is connected to its broker, and how many
/// viewers it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub broker_connected: bool,
    pub viewers: usize,
}

/// Whether the daemon's loops are still going round: the device loop, and each media pipeline
/// while it runs. Cheap to clone; read by the systemd watchdog.
#[derive(Clone)]
pub struct DeviceHealth {
    /// One loop per camera served.
    pub(super) device_loops: Vec<Arc<Heartbeat>>,
    pub(super) video: Vec<VideoHub>,
    pub(super) audio: Option<AudioHub>,
    pub(super) summary: watch::Receiver<Summary>,
}

impl DeviceHealth {
    /// The loops that have not gone round for `max_age`; empty when all is well.
    pub fn stalled(&self, max_age: Duration) -> Vec<&'static str> {
        let mut stalled = Vec::new();
        if self.device_loops.iter().any(|l| l.age() > max_age) {
            stalled.push("the device loop");
        }
        if self.video.iter().any(|v| v.is_stalled(max_age)) {
            stalled.push("the video pipeline");
        }
        if self.audio.as_ref().is_some_and(|a| a.is_stalled(max_age)) {
            stalled.push("the audio pipeline");
        }
        stalled
    }

    /// Follows the broker connection and the viewer count.
    pub fn summary(&self) -> watch::Receiver<Summary> {
        self.summary.clone()
    }
}

/// The service-wide summary: one viewer count per camera, added up.
pub(super) struct SummaryBoard {
    viewers: Vec<std::sync::atomic::AtomicUsize>,
    summary: watch::Sender<Summary>,
}

impl SummaryBoard {
    pub(super) fn new(cameras: usize) -> Self {
        Self {
            viewers: (0..cameras).map(|_| Default::default()).collect(),
            summary: watch::channel(Summary::default()).0,
        }
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<Summary> {
        self.summary.subscribe()
    }

    pub(super) fn set_broker_connected(&self, connected: bool) {
        self.summary.send_if_modified(|s| {
            std::mem::replace(&mut s.broker_connected, connected) != connected
        });
    }

    pub(super) fn set_viewers(&self, camera: usize, viewers: usize) {
        use std::sync::atomic::Ordering;
        if let Some(slot) = self.viewers.get(camera) {
            slot.store(viewers, Ordering::Relaxed);
        }
        let total = self.viewers.iter().map(|v| v.load(Ordering::Relaxed)).sum();
        self.summary
            .send_if_modified(|s| std::mem::replace(&mut s.viewers, total) != total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_adds_up_every_camera_and_tells_only_changes() {
        let board = SummaryBoard::new(2);
        let mut summary = board.subscribe();
        board.set_viewers(0, 2);
        board.set_viewers(1, 3);
        assert!(summary.has_changed().unwrap());
        assert_eq!(summary.borrow_and_update().viewers, 5);
        // The same count again, or a camera that does not exist: nobody is woken.
        board.set_viewers(1, 3);
        board.set_viewers(7, 9);
        assert!(!summary.has_changed().unwrap());
        board.set_broker_connected(true);
        board.set_broker_connected(true);
        assert_eq!(
            *summary.borrow_and_update(),
            Summary {
                broker_connected: true,
                viewers: 5
            }
        );
        board.set_viewers(0, 0);
        assert_eq!(summary.borrow_and_update().viewers, 3);
    }
}
