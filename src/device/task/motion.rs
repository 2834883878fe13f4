//! A camera's motion detection, as its device task carries it: the detector's tap on the
//! pipeline (which keeps the camera open), and what goes out when it decides: the retained
//! motion topic, with the snapshot of the picture motion started on published just before.

use crate::clock;
use crate::config::MotionConfig;
use crate::media::hub::{TapGuard, VideoHub};
use crate::media::motion::MotionSettings;
use crate::media::motion_tap::{MOTION_QUEUE, MotionNews, MotionTap};
use crate::media::snapshot;
use crate::mqtt::Publisher;
use crate::protocol::MotionReport;
use tokio::sync::mpsc;

/// The largest snapshot published on MQTT: brokers' and Home Assistant's limits allow it, and
/// campeer's own broker and connection take it whole.
pub const MQTT_SNAPSHOT_LIMIT: usize = 64 * 1024;

pub(super) struct MotionWatch {
    /// Removed, and the camera let go, when the watch is dropped.
    _tap: TapGuard,
    news: mpsc::Receiver<MotionNews>,
    moving: bool,
    /// When motion last started or stopped; when detection began, before either.
    at_unix_ms: u64,
    area: f64,
    events: u64,
}

impl MotionWatch {
    /// Starts detection on `hub`'s pictures; `None` (logged) if the hub takes no more taps.
    pub(super) fn start(hub: &VideoHub, config: &MotionConfig) -> Option<Self> {
        let (sender, news) = mpsc::channel(MOTION_QUEUE);
        let tap = MotionTap::new(MotionSettings::from(config), sender);
        let Some(tap) = hub.tap(Box::new(tap)) else {
            tracing::error!("motion detection could not start: the camera takes no more taps");
            return None;
        };
        Some(Self {
            _tap: tap,
            news,
            moving: false,
            at_unix_ms: clock::unix_ms_now(),
            area: 0.0,
            events: 0,
        })
    }

    /// The next news from the detector; never resolves while there is none.
    pub(super) async fn next(watch: &mut Option<Self>) -> MotionNews {
        let news = match watch {
            Some(watch) => watch.news.recv().await,
            None => None,
        };
        match news {
            Some(news) => news,
            None => std::future::pending().await,
        }
    }

    /// Takes the detector's decision and publishes it: on a start, the snapshot first (made
    /// off the async workers), then the motion state.
    pub(super) fn on_news(&mut self, news: MotionNews, publisher: &Publisher) {
        match news {
            MotionNews::Started {
                area,
                at_unix_ms,
                picture,
            } => {
                self.moving = true;
                self.at_unix_ms = at_unix_ms;
                self.area = f64::from(area);
                self.events += 1;
                tracing::info!("motion over {:.1}% of the picture", area * 100.0);
                let state = self.message();
                let publisher = publisher.clone();
                tokio::spawn(async move {
                    let jpeg = tokio::task::spawn_blocking(move || {
                        snapshot::jpeg_within(&picture, MQTT_SNAPSHOT_LIMIT)
                    })
                    .await;
                    match jpeg {
                        Ok(Ok(jpeg)) => {
                            if let Err(e) = publisher.snapshot(jpeg) {
                                tracing::warn!("the motion snapshot was not published: {e}");
                            }
                        }
                        Ok(Err(e)) => tracing::warn!("no motion snapshot: {e}"),
                        Err(e) => tracing::error!("the motion snapshot failed: {e}"),
                    }
                    publish(&publisher, state);
                });
            }
            MotionNews::Stopped { at_unix_ms } => {
                self.moving = false;
                self.at_unix_ms = at_unix_ms;
                self.area = 0.0;
                tracing::info!("motion stopped");
                publish(publisher, self.message());
            }
        }
    }

    /// Publishes the state as it is (at start, and after the broker comes back: a broker
    /// restarted without persistence has lost the retained one).
    pub(super) fn republish(&self, publisher: &Publisher) {
        publish(publisher, self.message());
    }

    /// The state as the status tells it.
    pub(super) fn report(&self) -> MotionReport {
        MotionReport {
            events: Some(self.events),
            ..self.state()
        }
    }

    pub(super) fn is_moving(&self) -> bool {
        self.moving
    }

    pub(super) fn events(&self) -> u64 {
        self.events
    }

    fn state(&self) -> MotionReport {
        MotionReport {
            state: if self.moving { "on" } else { "off" }.to_owned(),
            at: clock::rfc3339(self.at_unix_ms),
            // Three decimals: a tenth of a percent is as fine as the grid sees.
            area: (self.area * 1000.0).round() / 1000.0,
            events: None,
        }
    }

    fn message(&self) -> String {
        serde_json::to_string(&self.state()).unwrap_or_default()
    }
}

fn publish(publisher: &Publisher, message: String) {
    if let Err(e) = publisher.motion(message) {
        tracing::warn!("the motion state was not published: {e}");
    }
}
