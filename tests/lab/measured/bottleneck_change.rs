//! The bottleneck changes mid-stream, as on Wi-Fi when someone starts a download: 2 Mbit/s,
//! then 400 kbit/s, then 2 Mbit/s again. Campeer must follow down within 3 s (what it offers
//! to the link, over any one second, back within 1.3× the new rate) and back up within 15 s
//! (back to 80 % of what it sent before the drop), and the viewer keeps playing.

use common::Watching;
use common::network::{Lab, LabCampeer, LabLink, in_viewer_namespace, join_over_lab, require_lab};
use std::time::{Duration, Instant};

const WIDE_KBIT: u32 = 2_000;
const NARROW_KBIT: u32 = 400;
const QUEUE: Duration = Duration::from_millis(200);
const SAMPLE: Duration = Duration::from_millis(250);
const WINDOW_SAMPLES: usize = 4;

/// What campeer offers to the link over the last second, sampled every 250 ms.
struct OfferedRate<'a> {
    link: &'a LabLink,
    samples: std::collections::VecDeque<(Instant, u64)>,
}

impl<'a> OfferedRate<'a> {
    fn new(link: &'a LabLink) -> Self {
        Self {
            link,
            samples: std::collections::VecDeque::new(),
        }
    }

    /// Samples once (after a sample period) and returns the rate over the last second in
    /// kbit/s, once a second of samples is there.
    fn next(&mut self) -> Option<f64> {
        std::thread::sleep(SAMPLE);
        self.samples
            .push_back((Instant::now(), self.link.offered_bytes()));
        if self.samples.len() > WINDOW_SAMPLES + 1 {
            self.samples.pop_front();
        }
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        if self.samples.len() <= WINDOW_SAMPLES {
            return None;
        }
        let seconds = last.0.duration_since(first.0).as_secs_f64();
        Some((last.1 - first.1) as f64 * 8.0 / seconds / 1000.0)
    }

    /// How long until the rate over a second satisfies `reached`, sampling for at most
    /// `limit`; the rates seen, for the message.
    fn until(
        &mut self,
        limit: Duration,
        reached: impl Fn(f64) -> bool,
    ) -> (Option<Duration>, Vec<f64>) {
        self.samples.clear();
        let start = Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < limit {
            if let Some(kbps) = self.next() {
                seen.push(kbps.round());
                if reached(kbps) {
                    return (Some(start.elapsed()), seen);
                }
            }
        }
        (None, seen)
    }

    fn over(&mut self, span: Duration) -> f64 {
        let before = self.link.offered_bytes();
        let start = Instant::now();
        std::thread::sleep(span);
        (self.link.offered_bytes() - before) as f64 * 8.0 / start.elapsed().as_secs_f64() / 1000.0
    }
}

#[test]
fn campeer_follows_the_bottleneck_down_and_back_up() {
    let _load = common::load::whole_machine();
    if !require_lab() {
        return;
    }
    let lab = Lab::new();
    let link = lab.link();
    link.shape(Some(WIDE_KBIT), QUEUE);
    let campeer = LabCampeer::start(&lab, "step", &[]);
    let target = campeer.target(link);
    let (pictured_tx, pictured_rx) = std::sync::mpsc::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let viewer = in_viewer_namespace(link, move || async move {
        let viewer = join_over_lab(target, "v-step").await;
        assert!(
            viewer
                .wait_for_more_frames(1, Duration::from_secs(20))
                .await,
            "no first picture over the lab link"
        );
        let _ = pictured_tx.send(());
        // Awaited, never blocked on: the viewer's peer connection runs on this thread.
        let _ = tokio::time::timeout(Duration::from_secs(90), stop_rx).await;
        let frames = viewer.snapshot(|s| s.frames.clone());
        viewer.close().await;
        frames
    });
    pictured_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a first picture");
    std::thread::sleep(Duration::from_secs(6));
    let mut rate = OfferedRate::new(link);
    let wide = rate.over(Duration::from_secs(2));

    link.shape(Some(NARROW_KBIT), QUEUE);
    let narrowed = Instant::now();
    let limit = 1.3 * f64::from(NARROW_KBIT);
    let (down, down_rates) = rate.until(Duration::from_secs(6), |kbps| kbps <= limit);
    std::thread::sleep(Duration::from_secs(6).saturating_sub(narrowed.elapsed()));
    let narrow = rate.over(Duration::from_secs(2));
    let narrow_span = (narrowed + Duration::from_secs(3), Instant::now());

    link.shape(Some(WIDE_KBIT), QUEUE);
    let (up, up_rates) = rate.until(Duration::from_secs(20), |kbps| kbps >= 0.8 * wide);
    let _ = stop_tx.send(());
    let frames = viewer.join().expect("viewer thread");
    let during_narrow = common::playback::playback(&frames, narrow_span.0, narrow_span.1);

    eprintln!(
        "step: {wide:.0} kbit/s at {WIDE_KBIT}; down to ≤ {limit:.0} after {down:?} \
         ({down_rates:?}); {narrow:.0} kbit/s at {NARROW_KBIT} ({during_narrow}); \
         back to ≥ {:.0} after {up:?} ({up_rates:?})",
        0.8 * wide
    );
    let down = down.expect("campeer never came down to the narrow link's rate");
    assert!(down <= Duration::from_secs(3), "down after {down:?}");
    let up = up.expect("campeer never came back up after the link widened");
    assert!(up <= Duration::from_secs(15), "up after {up:?}");
    assert!(
        during_narrow.fps >= 10.0 && during_narrow.longest_freeze <= Duration::from_secs(1),
        "the picture stalled on the narrow link: {during_narrow}"
    );
}
