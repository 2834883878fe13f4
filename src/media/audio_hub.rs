//! The audio fan-out: one capture and one Opus encoder serve every viewer, like video.
//!
//! The pipeline (source → Opus) runs while someone listens and stops a grace period after the
//! last one leaves. A microphone that cannot be opened or fails is retried with backoff and
//! reported on the status topic; video never waits for audio. A listener that falls behind
//! simply loses the oldest packets: Opus has no reference frames to wait for.

use super::SourceError;
use super::audio::{AudioSource, CHUNK_FRAMES, SAMPLE_RATE};
use super::opus::OpusEncoder;
use super::worker::{OnDemand, RunFlag, SourceState, StateReporter, supervise};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Packets a listener may fall behind before it loses the oldest: 320 ms.
const PACKET_BACKLOG: usize = 16;

/// Creates a source each time the pipeline starts.
pub type AudioSourceFactory =
    Box<dyn Fn() -> Result<Box<dyn AudioSource>, SourceError> + Send + Sync>;

/// One Opus packet (20 ms), ready to send.
#[derive(Debug)]
pub struct EncodedAudio {
    /// On the 48 kHz RTP clock, counted in samples since the hub was created: continuous
    /// within a run of the pipeline, jumping ahead with the wall clock across restarts.
    pub rtp_ticks: u64,
    pub payload: Bytes,
    /// How long encoding and handing over took after the chunk was captured.
    pub capture_to_send: Duration,
}

/// What the audio pipeline is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSettings {
    pub channels: u8,
    pub bitrate_bps: u32,
}

#[derive(Debug, Default)]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    /// Sum of capture-to-send times, in microseconds, for the average.
    capture_to_send_us: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AudioStats {
    pub packets: u64,
    pub bytes: u64,
    pub mean_capture_to_send_us: u64,
    pub pipeline_starts: u64,
    pub subscribers: usize,
    pub pipeline_running: bool,
}

struct Inner {
    settings: AudioSettings,
    packets: broadcast::Sender<Arc<EncodedAudio>>,
    counters: Counters,
    epoch: Instant,
    make_source: AudioSourceFactory,
    state: StateReporter<()>,
}

/// Cheap to clone; all clones are the same hub.
#[derive(Clone)]
pub struct AudioHub {
    inner: Arc<Inner>,
    pipeline: OnDemand,
}

impl AudioHub {
    pub fn new(
        settings: AudioSettings,
        idle_grace: Duration,
        make_source: AudioSourceFactory,
    ) -> Self {
        let (packets, _) = broadcast::channel(PACKET_BACKLOG);
        let inner = Arc::new(Inner {
            settings,
            packets,
            counters: Counters::default(),
            epoch: Instant::now(),
            make_source,
            state: StateReporter::new(),
        });
        let body = Arc::clone(&inner);
        let pipeline = OnDemand::new("audio", idle_grace, move |run| run_pipeline(&body, run));
        Self { inner, pipeline }
    }

    pub fn settings(&self) -> AudioSettings {
        self.inner.settings
    }

    pub fn source_state(&self) -> tokio::sync::watch::Receiver<SourceState> {
        self.inner.state.subscribe()
    }

    /// Starts listening: the pipeline runs while at least one subscription lives.
    pub fn subscribe(&self) -> AudioSubscription {
        let receiver = self.inner.packets.subscribe();
        self.pipeline.acquire();
        AudioSubscription {
            hub: self.clone(),
            receiver,
        }
    }

    /// Whether the pipeline thread is stuck (see [`OnDemand::is_stalled`]).
    pub fn is_stalled(&self, max_age: Duration) -> bool {
        self.pipeline.is_stalled(max_age)
    }

    pub fn stats(&self) -> AudioStats {
        let c = &self.inner.counters;
        let packets = c.packets.load(Ordering::Relaxed);
        AudioStats {
            packets,
            bytes: c.bytes.load(Ordering::Relaxed),
            mean_capture_to_send_us: c.capture_to_send_us.load(Ordering::Relaxed) / packets.max(1),
            pipeline_starts: self.pipeline.starts(),
            subscribers: self.pipeline.subscribers(),
            pipeline_running: self.pipeline.is_running(),
        }
    }

    /// Stops the pipeline now (daemon shutdown).
    pub fn shutdown(&self) {
        self.pipeline.shutdown();
    }
}

fn run_pipeline(inner: &Inner, run: &RunFlag) {
    supervise(
        run,
        "audio source",
        &inner.state,
        || {
            let source = (inner.make_source)()?;
            let encoder = OpusEncoder::new(source.channels(), inner.settings.bitrate_bps)
                .map_err(|e| SourceError::Fatal(e.to_string()))?;
            Ok::<_, SourceError>((source, encoder))
        },
        |(source, encoder)| {
            tracing::info!(
                "audio pipeline started: {} → Opus {} kbit/s",
                source.describe(),
                inner.settings.bitrate_bps / 1000
            );
            encode_chunks(inner, run, source.as_mut(), encoder)
        },
    );
    tracing::info!("audio pipeline stopped");
}

fn encode_chunks(
    inner: &Inner,
    run: &RunFlag,
    source: &mut dyn AudioSource,
    encoder: &mut OpusEncoder,
) -> Result<(), SourceError> {
    // The RTP clock restarts from the wall clock, then counts samples, so packets are evenly
    // spaced whatever the capture jitter.
    let mut rtp_ticks =
        inner.epoch.elapsed().as_micros() as u64 * u64::from(SAMPLE_RATE) / 1_000_000;
    let mut encode_failures = 0u64;
    while run.keep_going() {
        let chunk = source.next_chunk()?;
        let payload = match encoder.encode(&chunk.samples) {
            Ok(payload) => payload,
            Err(e) => {
                encode_failures += 1;
                if encode_failures.is_power_of_two() {
                    tracing::error!("Opus encoding failed ({encode_failures} so far): {e}");
                }
                continue;
            }
        };
        let capture_to_send = chunk.captured_at.elapsed();
        let counters = &inner.counters;
        counters.packets.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        counters
            .capture_to_send_us
            .fetch_add(capture_to_send.as_micros() as u64, Ordering::Relaxed);
        let packet = EncodedAudio {
            rtp_ticks,
            payload,
            capture_to_send,
        };
        rtp_ticks += CHUNK_FRAMES as u64;
        // No receivers is fine: everyone may have left during the grace period.
        let _ = inner.packets.send(Arc::new(packet));
        inner.state.set(SourceState::Live(()));
    }
    Ok(())
}

/// A listener's claim on the audio. Dropping it releases the pipeline.
pub struct AudioSubscription {
    hub: AudioHub,
    receiver: broadcast::Receiver<Arc<EncodedAudio>>,
}

impl AudioSubscription {
    /// The next packet to send; after falling behind, the newest ones.
    pub async fn next_packet(&mut self) -> Option<Arc<EncodedAudio>> {
        loop {
            match self.receiver.recv().await {
                Ok(packet) => return Some(packet),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!("listener fell {skipped} audio packets behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Drop for AudioSubscription {
    fn drop(&mut self) {
        self.hub.pipeline.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::TestTone;

    fn tone_hub(grace: Duration) -> AudioHub {
        AudioHub::new(
            AudioSettings {
                channels: 1,
                bitrate_bps: 32_000,
            },
            grace,
            Box::new(|| Ok(Box::new(TestTone::new(1)) as Box<dyn AudioSource>)),
        )
    }

    #[tokio::test]
    async fn every_listener_gets_the_same_evenly_spaced_packets() {
        let hub = tone_hub(Duration::from_millis(100));
        let mut a = hub.subscribe();
        let mut b = hub.subscribe();
        let mut ticks_a = vec![];
        let mut ticks_b = vec![];
        for _ in 0..10 {
            ticks_a.push(a.next_packet().await.unwrap().rtp_ticks);
            ticks_b.push(b.next_packet().await.unwrap().rtp_ticks);
        }
        // The pipeline may emit a packet between the two subscriptions; after that, both get
        // the very same packets.
        let skip = ticks_a
            .iter()
            .position(|t| *t == ticks_b[0])
            .expect("shared packets");
        assert!(skip <= 3, "b started {skip} packets late");
        assert_eq!(ticks_a[skip..], ticks_b[..10 - skip]);
        assert!(
            ticks_a
                .windows(2)
                .all(|w| w[1] - w[0] == CHUNK_FRAMES as u64)
        );
        let stats = hub.stats();
        assert_eq!(stats.pipeline_starts, 1);
        assert!(stats.packets >= 10 && stats.bytes > 0);
        drop(a);
        drop(b);
        for _ in 0..100 {
            if !hub.stats().pipeline_running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!hub.stats().pipeline_running, "stops after the grace");
    }

    #[tokio::test]
    async fn a_missing_microphone_is_reported_and_retried() {
        let hub = AudioHub::new(
            AudioSettings {
                channels: 1,
                bitrate_bps: 32_000,
            },
            Duration::ZERO,
            Box::new(|| Err(SourceError::Fatal("no such microphone".into()))),
        );
        let mut state = hub.source_state();
        let _listener = hub.subscribe();
        let failed = tokio::time::timeout(
            Duration::from_secs(5),
            state.wait_for(|s| matches!(s, SourceState::Failed(_))),
        )
        .await;
        assert!(failed.is_ok(), "the failure is reported");
        assert!(
            hub.stats().pipeline_running,
            "and the pipeline keeps retrying"
        );
    }
}
