//! The link's decisions against simulated networks, in virtual time: what the lab's network
//! namespaces prove with real packets in minutes, checked here in milliseconds, and for
//! conditions the lab cannot make on two cores (many viewers, long runs, exact loss patterns).
//!
//! Each viewer is campeer's side of one peer connection, made of the same parts a session
//! runs: the [`LinkEstimator`] fed with per-packet reports as rtc's TWCC interceptor hands them
//! over, the pacer's token bucket ([`Budget`] at [`PACING_FACTOR`] times the estimate), the
//! session's [`LinkPolicy`] deciding each frame, and one [`RateAllocator`] over all viewers
//! setting the one encoder's rate and who gets the base layer only. The network is a set of
//! bottlenecks, each a drop-tail queue drained at its rate with a base delay and optional loss,
//! shared by the viewers behind it. The encoder is a model: frames at 30 a second sized to its
//! target, two temporal layers with the base layer's share of the bits, and a keyframe four
//! times a frame's size every two seconds or when a viewer restarts after a backed-up link.
//!
//! Not modelled: retransmissions (the retransmitter's own tests cover its budget and
//! history), sound, and the return path's own congestion (feedback arrives after the base
//! delay).

use super::Link;
use super::estimator::LinkEstimator;
use super::pacer::{Budget, PACING_FACTOR};
use crate::media::encoder::{BASE_LAYER_SHARE, MIN_BITRATE_BPS};
use crate::media::rate::{PAYLOAD_SHARE, RateAllocator, ViewerLink};
use crate::sdp::CongestionFeedback;
use crate::session::policy::{FrameAction, FrameContext, LinkPolicy};
use rtc::interceptor::{BandwidthEstimator, PacketReport};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The simulation's step: packets leave the pacer and the bottlenecks at this resolution.
const TICK: Duration = Duration::from_millis(1);
const FRAME_INTERVAL: Duration = Duration::from_micros(33_333);
/// How often a viewer sends transport-wide feedback (Chromium: about every 100 ms at low
/// rates).
const FEEDBACK_INTERVAL: Duration = Duration::from_millis(100);
/// How often the hub asks the allocator for the encoder's rate.
const ALLOCATION_INTERVAL: Duration = Duration::from_millis(200);
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);
const KEYFRAME_SIZE_FACTOR: f64 = 4.0;
const PACKET_BYTES: usize = 1200;
/// The encoder's configured rate: the default `video.bitrate_kbps`.
const ENCODER_MAX_BPS: u32 = 1_500_000;

/// A drop-tail queue drained at `rate_bps`, then `delay` of propagation.
#[derive(Debug, Clone)]
pub struct Bottleneck {
    pub rate_bps: f64,
    /// The most the queue holds, in time at the rate (tbf's `latency`).
    pub queue_limit: Duration,
    pub delay: Duration,
    /// Every n-th packet offered is lost on the wire (before the queue).
    pub lose_every: Option<u64>,
    offered: u64,
    busy_until: Option<Instant>,
    pub dropped: u64,
}

impl Bottleneck {
    pub fn new(rate_bps: f64, queue_limit: Duration, delay: Duration) -> Self {
        Self {
            rate_bps,
            queue_limit,
            delay,
            lose_every: None,
            offered: 0,
            busy_until: None,
            dropped: 0,
        }
    }

    /// When a packet of `bytes` offered now arrives, or `None` when it is lost.
    fn offer(&mut self, now: Instant, bytes: usize) -> Option<Instant> {
        self.offered += 1;
        if self
            .lose_every
            .is_some_and(|n| self.offered.is_multiple_of(n))
        {
            self.dropped += 1;
            return None;
        }
        let free_at = self.busy_until.map_or(now, |busy| busy.max(now));
        if free_at.saturating_duration_since(now) > self.queue_limit {
            self.dropped += 1;
            return None;
        }
        let done = free_at + Duration::from_secs_f64(bytes as f64 * 8.0 / self.rate_bps);
        self.busy_until = Some(done);
        Some(done + self.delay)
    }

    /// How long a packet offered now would wait in the queue.
    fn queued(&self, now: Instant) -> Duration {
        self.busy_until
            .map_or(Duration::ZERO, |busy| busy.saturating_duration_since(now))
    }
}

/// One packet in flight: what the viewer will report of it, and when it knows.
struct InFlight {
    report: PacketReport,
    /// When the viewer learns of it: its arrival, or (lost) the next arrival after it.
    known_at: Option<Instant>,
}

/// Campeer's side of one viewer's peer connection.
pub struct Viewer {
    pub link: Link,
    estimator: LinkEstimator,
    budget: Budget,
    policy: LinkPolicy,
    /// Which bottleneck its packets cross.
    bottleneck: usize,
    /// Packets waiting in the pacer, in bytes.
    paced: VecDeque<usize>,
    paced_bits: f64,
    in_flight: Vec<InFlight>,
    /// Feedback on its way back: (when it reaches campeer, the reports).
    returning: VecDeque<(Instant, Vec<PacketReport>)>,
    next_feedback: Instant,
    next_packet_id: u64,
    base_layer_only: bool,
    /// Wants the next frame to be a keyframe (it resumed after a backed-up link).
    wants_keyframe: bool,
    /// What the viewer received, in bytes, per second of the run.
    pub received_per_second: Vec<u64>,
    /// What left campeer's pacer for it, in bytes, per second of the run.
    pub offered_per_second: Vec<u64>,
    /// Frames the policy let through, and those it held back.
    pub frames_sent: u64,
    pub frames_held: u64,
    /// The largest wait in its bottleneck's queue a packet of this viewer met, after warm-up.
    pub worst_queue: Duration,
}

impl Viewer {
    fn new(bottleneck: usize, now: Instant) -> Self {
        let most = crate::session::estimate_ceiling_bps(ENCODER_MAX_BPS, 0.0);
        let (link, writers) = Link::new(
            CongestionFeedback::TransportCc,
            super::INITIAL_ESTIMATE_BPS,
            most,
        );
        Self {
            estimator: LinkEstimator::new(writers.estimate, writers.congestion),
            budget: Budget::new(super::INITIAL_ESTIMATE_BPS * PACING_FACTOR),
            policy: LinkPolicy::new(Duration::from_secs(30)),
            link,
            bottleneck,
            paced: VecDeque::new(),
            paced_bits: 0.0,
            in_flight: Vec::new(),
            returning: VecDeque::new(),
            next_feedback: now + FEEDBACK_INTERVAL,
            next_packet_id: 0,
            base_layer_only: false,
            wants_keyframe: false,
            received_per_second: Vec::new(),
            offered_per_second: Vec::new(),
            frames_sent: 0,
            frames_held: 0,
            worst_queue: Duration::ZERO,
        }
    }

    pub fn estimate_bps(&self) -> f64 {
        self.link.estimate_bps()
    }

    fn pacer_delay(&self) -> Duration {
        Duration::from_secs_f64(self.paced_bits.max(0.0) / self.budget.rate_bps())
    }

    /// What it received per second over whole seconds `from..to` of the run, in bits.
    pub fn received_bps(&self, from: usize, to: usize) -> f64 {
        average_bps(&self.received_per_second, from, to)
    }

    /// What campeer sent it per second over whole seconds `from..to` of the run, in bits.
    pub fn offered_bps(&self, from: usize, to: usize) -> f64 {
        average_bps(&self.offered_per_second, from, to)
    }
}

fn average_bps(bytes_per_second: &[u64], from: usize, to: usize) -> f64 {
    let seconds = bytes_per_second.get(from..to).unwrap_or(&[]);
    if seconds.is_empty() {
        return 0.0;
    }
    seconds.iter().sum::<u64>() as f64 * 8.0 / seconds.len() as f64
}

/// Adds `bytes` to second `second` of a per-second count.
fn count(per_second: &mut Vec<u64>, second: usize, bytes: u64) {
    if per_second.len() <= second {
        per_second.resize(second + 1, 0);
    }
    if let Some(total) = per_second.get_mut(second) {
        *total += bytes;
    }
}

/// The network, the viewers, the allocator and the encoder's model, in virtual time.
pub struct Sim {
    start: Instant,
    now: Instant,
    pub bottlenecks: Vec<Bottleneck>,
    pub viewers: Vec<Viewer>,
    allocator: RateAllocator,
    encoder_bps: u32,
    next_frame: Instant,
    frame_number: u64,
    next_keyframe: Instant,
    next_allocation: Instant,
    /// Measurements before this are the estimators' warm-up.
    settled_after: Duration,
}

impl Sim {
    /// Bottlenecks, and for each viewer the index of the bottleneck it is behind.
    pub fn new(bottlenecks: Vec<Bottleneck>, viewers_behind: &[usize]) -> Self {
        let start = Instant::now();
        Self {
            start,
            now: start,
            viewers: viewers_behind
                .iter()
                .map(|&bottleneck| Viewer::new(bottleneck, start))
                .collect(),
            bottlenecks,
            allocator: RateAllocator::new(MIN_BITRATE_BPS, ENCODER_MAX_BPS),
            encoder_bps: ENCODER_MAX_BPS,
            next_frame: start,
            frame_number: 0,
            next_keyframe: start,
            next_allocation: start + ALLOCATION_INTERVAL,
            settled_after: Duration::from_secs(5),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub fn encoder_bps(&self) -> u32 {
        self.encoder_bps
    }

    /// Runs the simulation on for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.step();
            self.now += TICK;
        }
    }

    fn step(&mut self) {
        let now = self.now;
        if now >= self.next_frame {
            self.next_frame += FRAME_INTERVAL;
            self.encode_frame();
        }
        if now >= self.next_allocation {
            self.next_allocation += ALLOCATION_INTERVAL;
            self.allocate();
        }
        let second = self.elapsed().as_secs() as usize;
        let settled = self.elapsed() >= self.settled_after;
        for viewer in &mut self.viewers {
            // The pacer follows the estimate, and releases what its budget allows.
            let rate = viewer.estimate_bps() * PACING_FACTOR;
            if (rate - viewer.budget.rate_bps()).abs() > 1.0 {
                viewer.budget.set_rate(rate);
            }
            viewer.budget.refill(now);
            let Some(bottleneck) = self.bottlenecks.get_mut(viewer.bottleneck) else {
                continue;
            };
            while viewer.budget.can_send() {
                let Some(bytes) = viewer.paced.pop_front() else {
                    break;
                };
                let bits = bytes as f64 * 8.0;
                viewer.budget.spend(bits);
                viewer.paced_bits -= bits;
                count(&mut viewer.offered_per_second, second, bytes as u64);
                if settled {
                    viewer.worst_queue = viewer.worst_queue.max(bottleneck.queued(now));
                }
                let arrival = bottleneck.offer(now, bytes);
                let id = viewer.next_packet_id;
                viewer.next_packet_id += 1;
                viewer.in_flight.push(InFlight {
                    report: PacketReport {
                        ssrc: 1,
                        id,
                        rtp_sequence_number: id as u16,
                        is_twcc: true,
                        twcc_sequence_number: id as u16,
                        size: bytes,
                        arrived: arrival.is_some(),
                        departure: now,
                        arrival: arrival.map(|at| at - self.start),
                        ecn: Default::default(),
                    },
                    known_at: arrival,
                });
            }
            if viewer.paced.is_empty() {
                viewer.paced_bits = 0.0;
            }
            // What arrived this tick counts toward this second's delivery.
            let arrived: u64 = viewer
                .in_flight
                .iter()
                .filter(|p| p.known_at.is_some_and(|at| at <= now && at + TICK > now))
                .filter(|p| p.report.arrived)
                .map(|p| p.report.size as u64)
                .sum();
            count(&mut viewer.received_per_second, second, arrived);
            if now >= viewer.next_feedback {
                viewer.next_feedback += FEEDBACK_INTERVAL;
                Self::send_feedback(viewer, now, bottleneck.delay);
            }
            while viewer.returning.front().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, reports)) = viewer.returning.pop_front() {
                    viewer.estimator.on_reports(now, &reports);
                }
            }
        }
    }

    /// The viewer reports every packet it has learnt about: those that arrived, and those
    /// lost before the latest arrival. The report reaches campeer after the path's delay.
    fn send_feedback(viewer: &mut Viewer, now: Instant, delay: Duration) {
        let latest_arrival_id = viewer
            .in_flight
            .iter()
            .filter(|p| p.known_at.is_some_and(|at| at <= now))
            .map(|p| p.report.id)
            .max();
        let Some(latest) = latest_arrival_id else {
            return;
        };
        let (due, later): (Vec<InFlight>, Vec<InFlight>) =
            viewer.in_flight.drain(..).partition(|p| {
                p.known_at.is_some_and(|at| at <= now)
                    || (!p.report.arrived && p.report.id < latest)
            });
        viewer.in_flight = later;
        let reports: Vec<PacketReport> = due.into_iter().map(|p| p.report).collect();
        if !reports.is_empty() {
            viewer.returning.push_back((now + delay, reports));
        }
    }

    /// The encoder makes a frame; each viewer's policy decides whether it goes into that
    /// viewer's pacer.
    fn encode_frame(&mut self) {
        let now = self.now;
        let keyframe = now >= self.next_keyframe || self.viewers.iter().any(|v| v.wants_keyframe);
        if keyframe {
            self.next_keyframe = now + KEYFRAME_INTERVAL;
            self.frame_number = 0;
        }
        let temporal_id: u8 = if keyframe || self.frame_number.is_multiple_of(2) {
            0
        } else {
            1
        };
        self.frame_number += 1;
        let average = f64::from(self.encoder_bps) * FRAME_INTERVAL.as_secs_f64() / 8.0;
        let share = if temporal_id == 0 {
            BASE_LAYER_SHARE
        } else {
            1.0 - BASE_LAYER_SHARE
        };
        let bytes = if keyframe {
            average * KEYFRAME_SIZE_FACTOR
        } else {
            average * 2.0 * share
        } as usize;
        for viewer in &mut self.viewers {
            let action = viewer.policy.on_frame(FrameContext {
                pacer_delay: viewer.pacer_delay(),
                base_layer_only: viewer.base_layer_only,
                temporal_id,
            });
            let send = match action {
                FrameAction::Send => true,
                FrameAction::Skip | FrameAction::Pause => false,
                FrameAction::Resume => {
                    viewer.wants_keyframe = true;
                    false
                }
            };
            if keyframe && send {
                viewer.wants_keyframe = false;
            }
            if !send {
                viewer.frames_held += 1;
                continue;
            }
            viewer.frames_sent += 1;
            let mut left = bytes.max(1);
            while left > 0 {
                let packet = left.min(PACKET_BYTES);
                left -= packet;
                viewer.paced.push_back(packet + 40);
                viewer.paced_bits += (packet + 40) as f64 * 8.0;
            }
        }
    }

    /// The hub's periodic decision: the encoder's rate and each viewer's layers.
    fn allocate(&mut self) {
        let now = self.now;
        let links: Vec<(u64, ViewerLink)> = self
            .viewers
            .iter()
            .enumerate()
            .map(|(index, viewer)| {
                (
                    index as u64,
                    ViewerLink {
                        estimate_bps: viewer.link.estimate_bps(),
                        audio_bps: 0.0,
                        loss: viewer.link.loss().unwrap_or(0.0),
                        queued: viewer.pacer_delay(),
                    },
                )
            })
            .collect();
        let allocation = self.allocator.decide(now, &links);
        if let Some(bps) = allocation.encoder_bps {
            self.encoder_bps = bps;
        }
        for (index, base_only) in allocation.base_layer_only {
            if let Some(viewer) = self.viewers.get_mut(index as usize) {
                viewer.base_layer_only = base_only;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn tbf(rate_bps: f64) -> Bottleneck {
        // As the lab shapes its links: tbf with a 200 ms queue, 20 ms each way.
        Bottleneck::new(
            rate_bps,
            Duration::from_millis(200),
            Duration::from_millis(20),
        )
    }

    #[test]
    fn one_viewer_settles_under_its_link_without_filling_its_queue() {
        for link_bps in [400_000.0, 1_000_000.0, 3_000_000.0] {
            let mut sim = Sim::new(vec![tbf(link_bps)], &[0]);
            sim.run_for(20 * SECOND);
            let viewer = &sim.viewers[0];
            let received = viewer.received_bps(10, 20);
            // The link is used (up to what the encoder makes), and never overrun for long.
            let usable = link_bps.min(f64::from(ENCODER_MAX_BPS) / PAYLOAD_SHARE);
            assert!(
                received >= 0.6 * usable && received <= 1.02 * link_bps,
                "link {link_bps}: received {received:.0} bit/s, estimate {:.0}",
                viewer.estimate_bps()
            );
            assert!(
                sim.bottlenecks[0].dropped < 20,
                "link {link_bps}: {} packets overflowed its queue",
                sim.bottlenecks[0].dropped
            );
            assert!(
                viewer.worst_queue <= Duration::from_millis(150),
                "link {link_bps}: packets waited {:?} in its queue",
                viewer.worst_queue
            );
            assert!(
                viewer.frames_sent > viewer.frames_held * 4,
                "link {link_bps}: {} frames sent, {} held",
                viewer.frames_sent,
                viewer.frames_held
            );
        }
    }

    #[test]
    fn the_estimate_follows_a_bottleneck_down_and_back_up() {
        let mut sim = Sim::new(vec![tbf(2_000_000.0)], &[0]);
        sim.run_for(15 * SECOND);
        let wide = sim.viewers[0].estimate_bps();
        assert!(wide > 1_200_000.0, "on 2 Mbit/s: {wide:.0}");
        sim.bottlenecks[0].rate_bps = 500_000.0;
        sim.run_for(3 * SECOND);
        let narrow = sim.viewers[0].estimate_bps();
        assert!(
            narrow < 600_000.0,
            "3 s after the drop to 500 kbit/s: {narrow:.0}"
        );
        sim.run_for(7 * SECOND);
        let received = sim.viewers[0].received_bps(20, 25);
        assert!(
            (250_000.0..=520_000.0).contains(&received),
            "on 500 kbit/s: received {received:.0}"
        );
        sim.bottlenecks[0].rate_bps = 2_000_000.0;
        sim.run_for(10 * SECOND);
        let again = sim.viewers[0].estimate_bps();
        assert!(
            again > 1_200_000.0,
            "10 s after the link widened: {again:.0}"
        );
    }

    /// The lab's two_viewer_links, in virtual time: one encoder, a viewer behind 300 kbit/s
    /// and one on an open link. The slow one gets the base layer at a rate its link carries;
    /// the fast one every frame, at clearly more.
    #[test]
    fn a_slow_viewer_neither_drags_down_nor_freezes_a_fast_one() {
        let mut sim = Sim::new(vec![tbf(20_000_000.0), tbf(300_000.0)], &[0, 1]);
        sim.run_for(10 * SECOND);
        let (fast_frames, slow_frames) = (sim.viewers[0].frames_sent, sim.viewers[1].frames_sent);
        sim.run_for(10 * SECOND);
        let (fast, slow) = (&sim.viewers[0], &sim.viewers[1]);
        let fast_fps = (fast.frames_sent - fast_frames) as f64 / 10.0;
        let slow_fps = (slow.frames_sent - slow_frames) as f64 / 10.0;
        assert!(
            fast_fps >= 28.0,
            "the fast viewer was dragged down: {fast_fps} fps, encoder at {} bit/s",
            sim.encoder_bps()
        );
        assert!(
            slow_fps >= 10.0,
            "the slow viewer does not play: {slow_fps} fps"
        );
        assert!(
            slow.base_layer_only,
            "the slow viewer is sent the base layer"
        );
        let (fast_bps, slow_bps) = (fast.received_bps(10, 20), slow.received_bps(10, 20));
        assert!(
            fast_bps >= 1.3 * slow_bps,
            "the fast viewer's {fast_bps:.0} bit/s is not clearly above the slow one's {slow_bps:.0}"
        );
        let offered = slow.offered_bps(10, 20);
        assert!(
            offered <= 1.3 * 300_000.0,
            "campeer offered {offered:.0} bit/s to a 300 kbit/s link"
        );
    }

    #[test]
    fn viewers_behind_one_bottleneck_share_it_fairly() {
        let mut sim = Sim::new(vec![tbf(1_600_000.0)], &[0, 0, 0, 0]);
        sim.run_for(30 * SECOND);
        let received: Vec<f64> = sim.viewers.iter().map(|v| v.received_bps(20, 30)).collect();
        let total: f64 = received.iter().sum();
        let least = received.iter().copied().fold(f64::MAX, f64::min);
        let most = received.iter().copied().fold(0.0, f64::max);
        assert!(
            total > 0.6 * 1_600_000.0 && total <= 1.02 * 1_600_000.0,
            "together {total:.0} of 1.6 Mbit/s: {received:?}"
        );
        assert!(least > 0.5 * most, "unfair: {received:?}");
        assert!(
            sim.bottlenecks[0].dropped < 100,
            "{} packets overflowed the shared queue",
            sim.bottlenecks[0].dropped
        );
    }

    #[test]
    fn light_loss_costs_no_rate_and_heavy_loss_brings_it_down() {
        let mut light = Sim::new(vec![tbf(3_000_000.0)], &[0]);
        light.bottlenecks[0].lose_every = Some(50); // 2 %
        light.run_for(15 * SECOND);
        let kept = light.viewers[0].estimate_bps();
        assert!(kept > 1_200_000.0, "2 % loss: estimate {kept:.0}");

        let mut heavy = Sim::new(vec![tbf(3_000_000.0)], &[0]);
        heavy.bottlenecks[0].lose_every = Some(4); // 25 %
        heavy.run_for(15 * SECOND);
        let cut = heavy.viewers[0].estimate_bps();
        assert!(
            cut < 0.8 * kept,
            "25 % loss: estimate {cut:.0}, 2 %: {kept:.0}"
        );
    }

    #[test]
    fn the_run_is_the_same_every_time() {
        let run = || {
            let mut sim = Sim::new(vec![tbf(800_000.0), tbf(2_000_000.0)], &[0, 1]);
            sim.run_for(10 * SECOND);
            sim.viewers
                .iter()
                .map(|v| v.received_per_second.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
