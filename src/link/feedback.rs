//! Reads what the viewer reports about its link: round-trip time and loss from RTCP receiver
//! reports, its own estimate from REMB, and the arrival of any feedback at all. For a viewer
//! that sends neither transport-wide feedback nor REMB, the loss in its receiver reports is
//! the only estimate there is.

use super::{EstimateWriter, Publisher, ReceiverFeedback, compact_ntp};
use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp;
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Sender reports remembered to match receiver reports against: a few seconds' worth.
const SENDER_REPORTS_KEPT: usize = 16;
/// Round trips above this are taken as a broken report, not a measurement.
const MAX_RTT: Duration = Duration::from_secs(10);

/// The loss-only estimate for viewers that report nothing but receiver reports: the classic
/// loss-based rule (RFC 8698's spirit, GCC's loss half).
#[derive(Debug, Clone, Copy)]
pub struct LossBackstop;

impl LossBackstop {
    /// The next estimate after a report of `fraction_lost` (0.0 to 1.0).
    pub fn next(current_bps: f64, fraction_lost: f64) -> f64 {
        if fraction_lost > 0.10 {
            current_bps * (1.0 - 0.5 * fraction_lost)
        } else if fraction_lost < 0.02 {
            current_bps * 1.08
        } else {
            current_bps
        }
    }
}

/// What the reader makes of the viewer's feedback besides publishing its figures.
pub enum Estimating {
    /// Nothing: the viewer sends transport-wide feedback, and the estimator estimates.
    Nothing,
    /// The estimate from the viewer's REMBs, capped by the losses it reports.
    FromRemb(EstimateWriter),
    /// The estimate from the losses in the viewer's receiver reports alone.
    FromLoss(EstimateWriter),
}

pub struct FeedbackReader {
    report: Publisher<ReceiverFeedback>,
    estimating: Estimating,
    /// The media SSRCs campeer sends on this connection.
    local_ssrcs: Vec<u32>,
    /// Compact NTP time of each sender report sent, and when it left.
    sender_reports: VecDeque<(u32, Instant)>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
    /// For REMB viewers: the loss backstop's cap from their receiver reports. The estimate is
    /// the lower of it and the latest REMB (in the link), so a viewer whose REMB never comes
    /// (or says more than its losses allow) is still held to what its link loses.
    loss_cap_bps: Option<f64>,
    /// For REMB viewers: their latest REMB.
    remb_bps: Option<f64>,
}

impl FeedbackReader {
    pub fn new(report: Publisher<ReceiverFeedback>, estimating: Estimating) -> Self {
        Self {
            report,
            estimating,
            local_ssrcs: Vec::new(),
            sender_reports: VecDeque::new(),
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
            loss_cap_bps: None,
            remb_bps: None,
        }
    }

    fn on_reception_reports(
        &mut self,
        now: Instant,
        reports: &[rtcp::reception_report::ReceptionReport],
    ) {
        for report in reports
            .iter()
            .filter(|r| self.local_ssrcs.contains(&r.ssrc))
        {
            let fraction_lost = f64::from(report.fraction_lost) / 256.0;
            match &self.estimating {
                Estimating::FromLoss(estimate) => {
                    estimate.set(LossBackstop::next(estimate.get(), fraction_lost));
                }
                Estimating::FromRemb(estimate) => {
                    let cap = LossBackstop::next(
                        self.loss_cap_bps.unwrap_or_else(|| estimate.get()),
                        fraction_lost,
                    )
                    .min(estimate.max_bps());
                    self.loss_cap_bps = Some(cap);
                    estimate.set(self.remb_bps.map_or(cap, |remb| remb.min(cap)));
                }
                Estimating::Nothing => {}
            }
            let mut rtt = None;
            if report.last_sender_report != 0
                && let Some(&(_, sent_at)) = self
                    .sender_reports
                    .iter()
                    .find(|(ntp, _)| *ntp == report.last_sender_report)
            {
                // RFC 3550 6.4.1: the delay since the last SR is in 1/65536 seconds.
                let held = Duration::from_secs_f64(f64::from(report.delay) / 65_536.0);
                let measured = now.saturating_duration_since(sent_at).saturating_sub(held);
                if measured < MAX_RTT {
                    rtt = Some(measured);
                }
            }
            self.report.update(|published| {
                published.last_at = Some(now);
                published.loss = Some(fraction_lost);
                published.rtt = rtt.or(published.rtt);
            });
        }
    }

    fn on_rtcp(&mut self, now: Instant, packet: &dyn rtcp::Packet) {
        let any = packet.as_any();
        if let Some(rr) = any.downcast_ref::<rtcp::receiver_report::ReceiverReport>() {
            self.on_reception_reports(now, &rr.reports);
        } else if let Some(sr) = any.downcast_ref::<rtcp::sender_report::SenderReport>() {
            self.on_reception_reports(now, &sr.reports);
        } else if let Some(remb) = any.downcast_ref::<
            rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate,
        >() {
            if let Estimating::FromRemb(estimate) = &self.estimating {
                let bitrate = f64::from(remb.bitrate);
                self.remb_bps = Some(bitrate);
                estimate.set(self.loss_cap_bps.map_or(bitrate, |cap| bitrate.min(cap)));
                self.report.update(|published| {
                    published.remb_bps = Some(bitrate);
                    published.last_at = Some(now);
                });
            }
        } else if any
            .is::<rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc>()
        {
            self.report.update(|published| published.last_at = Some(now));
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackReader {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for packet in packets {
                self.on_rtcp(msg.now, packet.as_ref());
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for packet in packets {
                if let Some(sr) = packet
                    .as_any()
                    .downcast_ref::<rtcp::sender_report::SenderReport>()
                {
                    if self.sender_reports.len() >= SENDER_REPORTS_KEPT {
                        self.sender_reports.pop_front();
                    }
                    self.sender_reports
                        .push_back((compact_ntp(sr.ntp_time), msg.now));
                }
            }
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for FeedbackReader {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if !self.local_ssrcs.contains(&info.ssrc) {
            self.local_ssrcs.push(info.ssrc);
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.local_ssrcs.retain(|ssrc| *ssrc != info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Link;
    use crate::sdp::CongestionFeedback;
    use rtc::interceptor::AttributedPacket;
    use rtc::shared::TransportContext;

    fn rtcp_packet(now: Instant, packet: Box<dyn rtcp::Packet>) -> TaggedPacket {
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(vec![packet])),
        }
    }

    fn reader(feedback: CongestionFeedback) -> (Link, FeedbackReader) {
        let (link, writers) = Link::new(feedback, 1_000_000.0, 4_000_000.0);
        let estimating = match feedback {
            CongestionFeedback::TransportCc => Estimating::Nothing,
            CongestionFeedback::Remb => Estimating::FromRemb(writers.estimate),
            CongestionFeedback::ReceiverReports => Estimating::FromLoss(writers.estimate),
        };
        let mut reader = FeedbackReader::new(writers.receiver, estimating);
        reader.bind_local_stream(&StreamInfo {
            ssrc: 42,
            ..Default::default()
        });
        (link, reader)
    }

    fn receiver_report(fraction_lost: u8, lsr: u32, delay: u32) -> Box<dyn rtcp::Packet> {
        Box::new(rtcp::receiver_report::ReceiverReport {
            ssrc: 7,
            reports: vec![rtcp::reception_report::ReceptionReport {
                ssrc: 42,
                fraction_lost,
                last_sender_report: lsr,
                delay,
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    #[test]
    fn round_trip_time_comes_from_the_sender_report_a_receiver_report_answers() {
        let (link, mut reader) = reader(CongestionFeedback::TransportCc);
        let start = Instant::now();
        let ntp = 0x0000_1234_5678_0000u64;
        reader
            .handle_write(rtcp_packet(
                start,
                Box::new(rtcp::sender_report::SenderReport {
                    ssrc: 42,
                    ntp_time: ntp,
                    ..Default::default()
                }),
            ))
            .unwrap();
        assert!(reader.poll_write().is_some(), "the report goes on its way");
        // Answered 130 ms later, after the viewer held it for 50 ms.
        let held = 65_536 * 50 / 1000;
        reader
            .handle_read(rtcp_packet(
                start + Duration::from_millis(130),
                receiver_report(64, compact_ntp(ntp), held),
            ))
            .unwrap();
        assert!(reader.poll_read().is_some());
        let state = link.snapshot();
        let rtt = state.rtt.expect("a round trip").as_millis();
        assert!((79..=81).contains(&rtt), "{rtt} ms");
        assert_eq!(state.loss, Some(0.25));
        assert_eq!(
            state.estimate_bps, 1_000_000.0,
            "TWCC viewers are not estimated from loss"
        );
        assert!(state.last_feedback_at.is_some());
    }

    #[test]
    fn reports_about_other_streams_and_unknown_sender_reports_are_ignored() {
        let (link, mut reader) = reader(CongestionFeedback::ReceiverReports);
        let mut report = rtcp::receiver_report::ReceiverReport::default();
        report
            .reports
            .push(rtcp::reception_report::ReceptionReport {
                ssrc: 99,
                fraction_lost: 255,
                ..Default::default()
            });
        reader
            .handle_read(rtcp_packet(Instant::now(), Box::new(report)))
            .unwrap();
        reader
            .handle_read(rtcp_packet(Instant::now(), receiver_report(0, 0xdead, 0)))
            .unwrap();
        let state = link.snapshot();
        assert_eq!(state.rtt, None);
        assert_eq!(state.loss, Some(0.0));
    }

    #[test]
    fn a_viewer_with_only_receiver_reports_is_estimated_from_its_loss() {
        let (link, mut reader) = reader(CongestionFeedback::ReceiverReports);
        reader
            .handle_read(rtcp_packet(Instant::now(), receiver_report(128, 0, 0)))
            .unwrap();
        assert_eq!(link.snapshot().estimate_bps, 750_000.0);
        reader
            .handle_read(rtcp_packet(Instant::now(), receiver_report(0, 0, 0)))
            .unwrap();
        assert_eq!(link.snapshot().estimate_bps, 810_000.0);
    }

    #[test]
    fn a_remb_viewers_losses_cap_its_estimate_and_stand_in_until_its_remb_comes() {
        use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
        let remb = |bitrate: f32| -> Box<dyn rtcp::Packet> {
            Box::new(ReceiverEstimatedMaximumBitrate {
                sender_ssrc: 7,
                bitrate,
                ssrcs: vec![42],
            })
        };
        let (link, mut reader) = reader(CongestionFeedback::Remb);
        let now = Instant::now();
        // No REMB yet: half the packets lost lowers the estimate all the same.
        reader
            .handle_read(rtcp_packet(now, receiver_report(128, 0, 0)))
            .unwrap();
        assert_eq!(link.snapshot().estimate_bps, 750_000.0);
        reader
            .handle_read(rtcp_packet(now, remb(350_000.0)))
            .unwrap();
        assert_eq!(
            link.snapshot().estimate_bps,
            350_000.0,
            "below the cap: REMB"
        );
        reader
            .handle_read(rtcp_packet(now, receiver_report(128, 0, 0)))
            .unwrap();
        assert_eq!(link.snapshot().estimate_bps, 350_000.0);
        reader
            .handle_read(rtcp_packet(now, remb(900_000.0)))
            .unwrap();
        assert_eq!(
            link.snapshot().estimate_bps,
            562_500.0,
            "a REMB above what the losses allow is capped"
        );
    }

    #[test]
    fn remb_sets_the_estimate_for_viewers_that_negotiated_it() {
        use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
        let remb = || -> Box<dyn rtcp::Packet> {
            Box::new(ReceiverEstimatedMaximumBitrate {
                sender_ssrc: 7,
                bitrate: 350_000.0,
                ssrcs: vec![42],
            })
        };
        let (link, mut reader) = reader(CongestionFeedback::Remb);
        reader
            .handle_read(rtcp_packet(Instant::now(), remb()))
            .unwrap();
        assert_eq!(link.snapshot().estimate_bps, 350_000.0);
        let (link, mut reader) = self::reader(CongestionFeedback::TransportCc);
        reader
            .handle_read(rtcp_packet(Instant::now(), remb()))
            .unwrap();
        assert_eq!(link.snapshot().estimate_bps, 1_000_000.0);
    }
}
