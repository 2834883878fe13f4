//! What campeer shows Prometheus: each device's figures as its task last saw them, and their
//! rendering in the Prometheus text format (0.0.4) or OpenMetrics, through `prometheus-client`.
//!
//! Each device task owns its [`DeviceFigures`] and replaces them in a watch channel (every
//! [`REFRESH_PERIOD`] and whenever a viewer comes or goes); a scrape reads the latest of each
//! through a [`MetricsBoard`] and never waits on a device. A viewer's series are made from the
//! viewers of that moment, so those of a viewer that left are gone from the next scrape: the
//! number of series stays bounded by the viewer limit.
//!
//! The figures are the stats topic's, as counters where they only grow (bytes, packets,
//! frames, time spent encoding), so that Prometheus computes rates over any window.

use crate::link::LinkSnapshot;
use crate::media::audio_hub::AudioStats;
use crate::media::hub::{HubStats, StreamStats};
use crate::protocol::VideoCodec;
use crate::publish::schedule::{PublicationState, PublicationStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::fmt;
use std::time::Duration;
use tokio::sync::watch;

/// How often a device task refreshes its figures when nothing else happens: Prometheus
/// scrapes every 15 s or more, and a scrape then shows figures at most this old.
pub const REFRESH_PERIOD: Duration = Duration::from_secs(1);

/// The content type of the Prometheus text format, what `promtool check metrics` reads.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// OpenMetrics' content type, for scrapers that ask for it (Prometheus does).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How many session ends each reason counts; the reasons are the device's, a fixed few.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionEnds {
    counts: Vec<(&'static str, u64)>,
}

impl SessionEnds {
    pub fn count(&mut self, reason: &'static str) {
        match self.counts.iter_mut().find(|(name, _)| *name == reason) {
            Some((_, count)) => *count += 1,
            None => self.counts.push((reason, 1)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.counts.iter().copied()
    }
}

/// One viewer as a scrape shows it.
#[derive(Debug, Clone)]
pub struct ViewerFigures {
    pub session: String,
    pub link: LinkSnapshot,
}

/// One device (camera) as its task last saw it.
#[derive(Debug, Clone, Default)]
pub struct DeviceFigures {
    pub device: String,
    /// The camera's state, as the status topic names it: idle, starting, live or failed.
    pub source: &'static str,
    pub video: HubStats,
    /// Each codec's stream this device offers viewers.
    pub streams: Vec<(VideoCodec, StreamStats)>,
    /// With a microphone: its state and figures.
    pub audio: Option<(&'static str, AudioStats)>,
    /// Sessions being served: the status topic's viewer count.
    pub viewer_count: usize,
    /// Each session's link, the unconnected ones' too.
    pub viewers: Vec<ViewerFigures>,
    pub sessions_ended: SessionEnds,
    /// With motion detection on: whether there is motion now, and how often it started.
    pub motion: Option<(bool, u64)>,
}

impl DeviceFigures {
    /// A device nothing has been measured of yet.
    pub fn new(device: String) -> Self {
        Self {
            device,
            source: "idle",
            ..Self::default()
        }
    }
}

/// The daemon's figures that belong to no one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DaemonFigures {
    pub broker_connected: bool,
    /// Connections the broker accepted, the first included.
    pub broker_connections: u64,
}

/// The RTSP server's figures, when it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtspFigures {
    /// Readers set up on each device (every device listed, 0 included).
    pub readers: Vec<(String, u64)>,
    /// Connections answered 503 because `rtsp.max_readers` were being served.
    pub refused: u64,
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub daemon: DaemonFigures,
    pub devices: Vec<DeviceFigures>,
    /// `None` while RTSP is off: no series then.
    pub rtsp: Option<RtspFigures>,
    /// Each `[[publish]]` entry's course.
    pub publications: Vec<PublicationStatus>,
}

/// Where a scrape reads every device's latest figures and the broker connection's.
#[derive(Debug, Clone)]
pub struct MetricsBoard {
    devices: Vec<watch::Receiver<DeviceFigures>>,
    broker: watch::Receiver<crate::mqtt::Connection>,
    rtsp: Option<watch::Receiver<RtspFigures>>,
    publications: Vec<watch::Receiver<PublicationStatus>>,
}

impl MetricsBoard {
    pub fn new(
        devices: Vec<watch::Receiver<DeviceFigures>>,
        broker: watch::Receiver<crate::mqtt::Connection>,
    ) -> Self {
        Self {
            devices,
            broker,
            rtsp: None,
            publications: Vec::new(),
        }
    }

    /// Shows the publications' courses too.
    pub fn with_publications(self, publications: Vec<watch::Receiver<PublicationStatus>>) -> Self {
        Self {
            publications,
            ..self
        }
    }

    /// Shows the RTSP server's figures too.
    pub fn with_rtsp(self, rtsp: watch::Receiver<RtspFigures>) -> Self {
        Self {
            rtsp: Some(rtsp),
            ..self
        }
    }

    /// A copy of the latest figures (each watch is held only while it is copied).
    pub fn exposition(&self) -> Exposition {
        let broker = *self.broker.borrow();
        Exposition {
            daemon: DaemonFigures {
                broker_connected: broker.connected,
                broker_connections: broker.connects,
            },
            devices: self.devices.iter().map(|d| d.borrow().clone()).collect(),
            rtsp: self.rtsp.as_ref().map(|r| r.borrow().clone()),
            publications: self
                .publications
                .iter()
                .map(|p| p.borrow().clone())
                .collect(),
        }
    }
}

/// The two text formats a scrape can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4: for curl, promtool and older scrapers.
    Prometheus,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => PROMETHEUS_CONTENT_TYPE,
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// The exposition as text in `format`.
pub fn render(exposition: Exposition, format: Format) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(exposition));
    let mut text = String::new();
    match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &registry)?,
    }
    Ok(text)
}

/// One metric family: its samples are written by `samples`, each with its labels.
fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl FnOnce(&mut Samples<'_, '_>) -> fmt::Result,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    samples(&mut Samples {
        family: &mut family,
    })
}

/// Writes the samples of one family.
struct Samples<'f, 'e> {
    family: &'f mut MetricEncoder<'e>,
}

impl Samples<'_, '_> {
    fn counter(&mut self, labels: &[(&str, &str)], value: u64) -> fmt::Result {
        ConstCounter::new(value).encode(self.family.encode_family(&labels)?)
    }

    fn counter_f64(&mut self, labels: &[(&str, &str)], value: f64) -> fmt::Result {
        ConstCounter::new(value).encode(self.family.encode_family(&labels)?)
    }

    fn gauge(&mut self, labels: &[(&str, &str)], value: f64) -> fmt::Result {
        ConstGauge::new(value).encode(self.family.encode_family(&labels)?)
    }

    /// A gauge that is a whole number (a count, a state, bits per second).
    fn whole(&mut self, labels: &[(&str, &str)], value: u64) -> fmt::Result {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        ConstGauge::new(value).encode(self.family.encode_family(&labels)?)
    }
}

fn flag(on: bool) -> u64 {
    u64::from(on)
}

/// Calls `sample` with each stream of each device, labelled by device and codec.
fn each_stream(
    devices: &[DeviceFigures],
    mut sample: impl FnMut(&[(&str, &str)], &StreamStats) -> fmt::Result,
) -> fmt::Result {
    devices.iter().try_for_each(|d| {
        d.streams.iter().try_for_each(|(codec, stats)| {
            sample(&[("device", &d.device), ("codec", codec.sdp_name())], stats)
        })
    })
}

impl Samples<'_, '_> {
    /// A source's state as one sample per state a source can be in: 1 for `current`.
    fn states(&mut self, device: &str, current: &str) -> fmt::Result {
        SOURCE_STATES.iter().try_for_each(|state| {
            self.whole(
                &[("device", device), ("state", state)],
                flag(current == *state),
            )
        })
    }
}

/// The states the status topic names for a camera or a microphone.
const SOURCE_STATES: [&str; 4] = ["idle", "starting", "live", "failed"];

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let e = &mut encoder;
        family(
            e,
            "campeer_build_info",
            "campeer's version; always 1.",
            MetricType::Gauge,
            |s| s.whole(&[("version", env!("CARGO_PKG_VERSION"))], 1),
        )?;
        family(
            e,
            "campeer_broker_connected",
            "1 while campeer is connected to its MQTT broker and subscribed.",
            MetricType::Gauge,
            |s| s.whole(&[], flag(self.daemon.broker_connected)),
        )?;
        family(
            e,
            "campeer_broker_connections",
            "Connections the MQTT broker accepted; more than one means reconnects.",
            MetricType::Counter,
            |s| s.counter(&[], self.daemon.broker_connections),
        )?;
        self.encode_devices(e)?;
        self.encode_streams(e)?;
        self.encode_audio(e)?;
        self.encode_rtsp(e)?;
        self.encode_publications(e)?;
        self.encode_viewers(e)
    }
}

impl Exposition {
    fn encode_publications(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        if self.publications.is_empty() {
            return Ok(());
        }
        let publications = &self.publications;
        family(
            e,
            "campeer_publication_state",
            "1 for the WHIP publication's current state (connecting, publishing, retrying), 0 \
             for the others.",
            MetricType::Gauge,
            |s| {
                publications.iter().try_for_each(|p| {
                    PublicationState::ALL.iter().try_for_each(|state| {
                        let labels = [
                            ("device", p.device.as_str()),
                            ("url", p.url.as_str()),
                            ("state", state.name()),
                        ];
                        s.whole(&labels, flag(p.state == *state))
                    })
                })
            },
        )?;
        family(
            e,
            "campeer_publication_attempts",
            "Attempts to publish to the WHIP endpoint, the first included; more mean retries.",
            MetricType::Counter,
            |s| {
                publications.iter().try_for_each(|p| {
                    s.counter(&[("device", &p.device), ("url", &p.url)], p.attempts)
                })
            },
        )
    }

    fn encode_rtsp(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let Some(rtsp) = &self.rtsp else {
            return Ok(());
        };
        family(
            e,
            "campeer_rtsp_readers",
            "RTSP readers set up on the device (NVRs, players).",
            MetricType::Gauge,
            |s| {
                rtsp.readers
                    .iter()
                    .try_for_each(|(device, readers)| s.whole(&[("device", device)], *readers))
            },
        )?;
        family(
            e,
            "campeer_rtsp_refused",
            "RTSP connections turned away (503) because rtsp.max_readers were being served.",
            MetricType::Counter,
            |s| s.counter(&[], rtsp.refused),
        )
    }

    fn encode_devices(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let devices = &self.devices;
        family(
            e,
            "campeer_viewers",
            "Viewers of the device (MQTT and WHEP sessions).",
            MetricType::Gauge,
            |s| {
                devices
                    .iter()
                    .try_for_each(|d| s.whole(&[("device", &d.device)], d.viewer_count as u64))
            },
        )?;
        family(
            e,
            "campeer_camera_state",
            "1 for the camera's current state (idle, starting, live, failed), 0 for the others.",
            MetricType::Gauge,
            |s| {
                devices
                    .iter()
                    .try_for_each(|d| s.states(&d.device, d.source))
            },
        )?;
        let watching = || {
            devices
                .iter()
                .filter_map(|d| d.motion.map(|motion| (&d.device, motion)))
        };
        family(
            e,
            "campeer_motion",
            "1 while motion detection sees motion, else 0 (cameras with detection on).",
            MetricType::Gauge,
            |s| {
                watching().try_for_each(|(device, (moving, _))| {
                    s.whole(&[("device", device)], u64::from(moving))
                })
            },
        )?;
        family(
            e,
            "campeer_motion_events",
            "Times motion started (cameras with detection on).",
            MetricType::Counter,
            |s| {
                watching()
                    .try_for_each(|(device, (_, events))| s.counter(&[("device", device)], events))
            },
        )?;
        type Pick = fn(&HubStats) -> u64;
        let counters: [(&str, &str, Pick); 5] = [
            (
                "campeer_camera_opens",
                "Times the camera was opened: once per pipeline start, more when it failed and \
                 was reopened.",
                |v| v.source_opens,
            ),
            (
                "campeer_pipeline_starts",
                "Times the capture pipeline started (it runs while anyone watches).",
                |v| v.pipeline_starts,
            ),
            (
                "campeer_frames_unusable",
                "Frames the camera delivered that could not be used (dropped; the camera kept \
                 open).",
                |v| v.frames_unusable,
            ),
            (
                "campeer_frames_passed_through",
                "Frames of the camera's own H.264 sent on without re-encoding.",
                |v| v.frames_passed_through,
            ),
            (
                "campeer_encoder_fallbacks",
                "Times the hardware H.264 encoder was missing or failed and openh264 took over.",
                |v| v.encoder_fallbacks,
            ),
        ];
        for (name, help, pick) in counters {
            family(e, name, help, MetricType::Counter, |s| {
                devices
                    .iter()
                    .try_for_each(|d| s.counter(&[("device", &d.device)], pick(&d.video)))
            })?;
        }
        family(
            e,
            "campeer_sessions_ended",
            "Viewer sessions that ended, by reason.",
            MetricType::Counter,
            |s| {
                devices.iter().try_for_each(|d| {
                    d.sessions_ended.iter().try_for_each(|(reason, count)| {
                        s.counter(&[("device", &d.device), ("reason", reason)], count)
                    })
                })
            },
        )
    }

    fn encode_streams(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let devices = &self.devices;
        type Pick = fn(&StreamStats) -> u64;
        let counters: [(&str, &str, Pick); 6] = [
            (
                "campeer_frames_encoded",
                "Frames sent to viewers (encoded, or the camera's own H.264 passed on).",
                |s| s.frames_encoded,
            ),
            (
                "campeer_keyframes_encoded",
                "Keyframes among the frames sent.",
                |s| s.keyframes_encoded,
            ),
            (
                "campeer_encoded_bytes",
                "Bytes of encoded video sent to viewers (before RTP).",
                |s| s.bytes_encoded,
            ),
            (
                "campeer_encode_failures",
                "Frames the encoder failed on (dropped).",
                |s| s.encode_failures,
            ),
            (
                "campeer_keyframe_requests",
                "Keyframes asked for (new viewers, loss beyond repair, viewers' PLI and FIR).",
                |s| s.keyframe_requests,
            ),
            (
                "campeer_encoder_bitrate_changes",
                "Times the encoder's target bitrate changed.",
                |s| s.bitrate_changes,
            ),
        ];
        for (name, help, pick) in counters {
            family(e, name, help, MetricType::Counter, |s| {
                each_stream(devices, |labels, stats| s.counter(labels, pick(stats)))
            })?;
        }
        family(
            e,
            "campeer_encode_seconds",
            "Time spent encoding the frames sent; divided by campeer_frames_encoded, the time per frame.",
            MetricType::Counter,
            |s| {
                each_stream(devices, |labels, stats| {
                    s.counter_f64(labels, stats.encode_micros as f64 / 1e6)
                })
            },
        )?;
        family(
            e,
            "campeer_encoder_target_bytes_per_second",
            "What the encoder works to now, set from the viewers' links (bytes per second: \
             Prometheus' base unit; times 8 for bits).",
            MetricType::Gauge,
            |s| {
                each_stream(devices, |labels, stats| {
                    s.whole(labels, stats.target_bitrate_bps / 8)
                })
            },
        )?;
        family(
            e,
            "campeer_encoder_running",
            "1 while the codec's encoder runs (someone watches it, or did within the grace).",
            MetricType::Gauge,
            |s| {
                each_stream(devices, |labels, stats| {
                    s.whole(labels, flag(stats.running))
                })
            },
        )
    }

    fn encode_audio(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let with_audio = || {
            self.devices.iter().filter_map(|d| {
                d.audio
                    .as_ref()
                    .map(|(state, stats)| (d.device.as_str(), *state, stats))
            })
        };
        family(
            e,
            "campeer_microphone_state",
            "1 for the microphone's current state (idle, starting, live, failed), 0 for the others.",
            MetricType::Gauge,
            |s| with_audio().try_for_each(|(device, current, _)| s.states(device, current)),
        )?;
        type Pick = fn(&AudioStats) -> u64;
        let counters: [(&str, &str, Pick); 2] = [
            (
                "campeer_audio_packets",
                "Opus packets sent to listeners.",
                |a| a.packets,
            ),
            (
                "campeer_audio_bytes",
                "Bytes of Opus sent to listeners (before RTP).",
                |a| a.bytes,
            ),
        ];
        for (name, help, pick) in counters {
            family(e, name, help, MetricType::Counter, |s| {
                with_audio().try_for_each(|(device, _, stats)| {
                    s.counter(&[("device", device)], pick(stats))
                })
            })?;
        }
        family(
            e,
            "campeer_audio_capture_to_send_seconds",
            "Mean time from capturing sound to sending it.",
            MetricType::Gauge,
            |s| {
                with_audio().try_for_each(|(device, _, stats)| {
                    s.gauge(
                        &[("device", device)],
                        stats.mean_capture_to_send_us as f64 / 1e6,
                    )
                })
            },
        )
    }

    fn encode_viewers(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let viewers = || {
            self.devices
                .iter()
                .flat_map(|d| d.viewers.iter().map(move |v| (d.device.as_str(), v)))
        };
        type Pick = fn(&LinkSnapshot) -> u64;
        let counters: [(&str, &str, Pick); 6] = [
            (
                "campeer_viewer_sent_bytes",
                "RTP bytes sent to the viewer, retransmissions and headers included.",
                |l| l.sent_bytes,
            ),
            (
                "campeer_viewer_sent_packets",
                "RTP packets sent to the viewer.",
                |l| l.sent_packets,
            ),
            (
                "campeer_viewer_retransmitted_bytes",
                "RTP bytes resent after the viewer's NACKs.",
                |l| l.retransmitted_bytes,
            ),
            (
                "campeer_viewer_retransmitted_packets",
                "RTP packets resent after the viewer's NACKs.",
                |l| l.retransmitted_packets,
            ),
            (
                "campeer_viewer_retransmissions_refused",
                "NACKed packets not resent (too soon, over budget or too old).",
                |l| l.retransmissions_refused,
            ),
            (
                "campeer_viewer_pacer_dropped",
                "Packets the pacer dropped for this viewer (its queue was too long).",
                |l| l.pacer_dropped,
            ),
        ];
        for (name, help, pick) in counters {
            family(e, name, help, MetricType::Counter, |s| {
                viewers().try_for_each(|(device, v)| {
                    s.counter(
                        &[("device", device), ("session", &v.session)],
                        pick(&v.link),
                    )
                })
            })?;
        }
        type PickGauge = fn(&LinkSnapshot) -> Option<f64>;
        let gauges: [(&str, &str, PickGauge); 4] = [
            (
                "campeer_viewer_estimate_bytes_per_second",
                "What campeer estimates the viewer's link carries (bytes per second).",
                |l| Some(l.estimate_bps / 8.0),
            ),
            (
                "campeer_viewer_rtt_seconds",
                "Round-trip time to the viewer, once measured.",
                |l| l.rtt.map(|rtt| rtt.as_secs_f64()),
            ),
            (
                "campeer_viewer_loss_ratio",
                "Fraction of packets lost, as the viewer last reported (0 to 1).",
                |l| l.loss,
            ),
            (
                "campeer_viewer_remb_bytes_per_second",
                "The viewer's own estimate, from its latest REMB (bytes per second).",
                |l| l.remb_bps.map(|bps| bps / 8.0),
            ),
        ];
        for (name, help, pick) in gauges {
            family(e, name, help, MetricType::Gauge, |s| {
                viewers().try_for_each(|(device, v)| match pick(&v.link) {
                    Some(value) => s.gauge(&[("device", device), ("session", &v.session)], value),
                    None => Ok(()),
                })
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Link;
    use crate::sdp::CongestionFeedback;

    fn viewer(session: &str, sent_bytes: u64) -> ViewerFigures {
        let (link, writers) = Link::new(CongestionFeedback::TransportCc, 800_000.0, 2_000_000.0);
        writers.wire.update(|count| count.sent_bytes = sent_bytes);
        writers
            .receiver
            .update(|report| report.rtt = Some(Duration::from_millis(40)));
        ViewerFigures {
            session: session.into(),
            link: link.snapshot(),
        }
    }

    fn camera() -> DeviceFigures {
        let mut device = DeviceFigures::new("cam".into());
        device.source = "live";
        device.streams = vec![(
            VideoCodec::H264,
            StreamStats {
                frames_encoded: 300,
                encode_micros: 1_500_000,
                target_bitrate_bps: 1_200_000,
                running: true,
                ..StreamStats::default()
            },
        )];
        device.viewers = vec![viewer("alice", 5_000), viewer("bob", 7_000)];
        device.viewer_count = 2;
        device.sessions_ended.count("timeout");
        device.sessions_ended.count("timeout");
        device
    }

    fn scrape(exposition: &Exposition, format: Format) -> String {
        render(exposition.clone(), format).expect("renders")
    }

    fn sample<'t>(text: &'t str, series: &str) -> Option<&'t str> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn a_scrape_shows_each_device_stream_and_viewer() {
        let exposition = Exposition {
            daemon: DaemonFigures {
                broker_connected: true,
                broker_connections: 3,
            },
            devices: vec![camera()],
            rtsp: Some(RtspFigures {
                readers: vec![("cam".into(), 3)],
                refused: 4,
            }),
            publications: Vec::new(),
        };
        let text = scrape(&exposition, Format::Prometheus);
        assert_eq!(sample(&text, "campeer_viewers{device=\"cam\"}"), Some("2"));
        assert_eq!(
            sample(&text, "campeer_rtsp_readers{device=\"cam\"}"),
            Some("3")
        );
        assert_eq!(sample(&text, "campeer_rtsp_refused_total"), Some("4"));
        assert_eq!(sample(&text, "campeer_broker_connections_total"), Some("3"));
        assert_eq!(sample(&text, "campeer_broker_connected"), Some("1"));
        assert_eq!(
            sample(&text, "campeer_camera_state{device=\"cam\",state=\"live\"}"),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                "campeer_camera_state{device=\"cam\",state=\"failed\"}"
            ),
            Some("0")
        );
        assert_eq!(
            sample(
                &text,
                "campeer_frames_encoded_total{device=\"cam\",codec=\"H264\"}"
            ),
            Some("300")
        );
        assert_eq!(
            sample(
                &text,
                "campeer_encode_seconds_total{device=\"cam\",codec=\"H264\"}"
            ),
            Some("1.5")
        );
        assert_eq!(
            sample(
                &text,
                "campeer_sessions_ended_total{device=\"cam\",reason=\"timeout\"}"
            ),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                "campeer_viewer_sent_bytes_total{device=\"cam\",session=\"bob\"}"
            ),
            Some("7000")
        );
        assert_eq!(
            sample(
                &text,
                "campeer_viewer_rtt_seconds{device=\"cam\",session=\"alice\"}"
            ),
            Some("0.04")
        );
        // Nothing measured, nothing shown: no loss reported yet.
        assert!(!text.contains("campeer_viewer_loss_ratio{"));
        // Every family is described once, before its samples.
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
    }

    #[test]
    fn a_viewer_that_left_has_no_series() {
        let mut exposition = Exposition {
            devices: vec![camera()],
            ..Exposition::default()
        };
        let before = scrape(&exposition, Format::Prometheus);
        assert!(before.contains("session=\"alice\""));
        exposition.devices[0]
            .viewers
            .retain(|v| v.session != "alice");
        exposition.devices[0].viewer_count = 1;
        let after = scrape(&exposition, Format::Prometheus);
        assert!(!after.contains("session=\"alice\""), "{after}");
        assert!(after.contains("session=\"bob\""));
        assert_eq!(sample(&after, "campeer_viewers{device=\"cam\"}"), Some("1"));
    }

    #[test]
    fn openmetrics_ends_with_its_eof() {
        let exposition = Exposition {
            devices: vec![camera()],
            ..Exposition::default()
        };
        let open = scrape(&exposition, Format::OpenMetrics);
        assert!(open.ends_with("# EOF\n"));
        assert!(!scrape(&exposition, Format::Prometheus).contains("# EOF"));
    }
}
