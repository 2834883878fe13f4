//! Per-viewer link figures for the stats topic: the estimate, round trip and loss as the link
//! knows them, and the rates sent over the last interval, from the link's byte counters.

use super::LinkSnapshot;
use crate::sdp::CongestionFeedback;
use serde::Serialize;
use std::time::Instant;

/// One viewer's line in a stats message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewerStats {
    pub session: String,
    /// `transport-cc`, `remb` or `receiver-reports`: what the estimate is built from.
    pub feedback: &'static str,
    pub estimate_kbps: u64,
    /// RTP sent over the last interval, retransmissions included, with packet headers.
    pub sent_kbps: u64,
    pub retransmitted_kbps: u64,
    pub rtt_ms: Option<u64>,
    /// Packets lost, in per cent, as the viewer last reported.
    pub loss_percent: Option<f64>,
    /// NACKed packets not resent (too soon, over budget, or too old), in total.
    pub retransmissions_refused: u64,
    /// The viewer's own estimate, from its latest REMB; `None` until one arrives.
    pub remb_kbps: Option<u64>,
    /// The candidate pair the media takes; `None` until ICE has selected one.
    pub path: Option<IcePath>,
}

/// The candidate pair a viewer's media takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IcePath {
    /// campeer's candidate type: `host`, `srflx`, `prflx` or `relay` (campeer's own TURN).
    pub local: String,
    /// The viewer's: `host` (a `.local` name counts once resolved), `srflx`, `prflx` (learnt
    /// from its checks) or `relay`.
    pub remote: String,
    /// The viewer's candidate address and port: its own (a `.local` name stays a name), its
    /// NAT's, or its TURN server's relay port when `remote` is `relay`; `unknown` for a
    /// peer-reflexive candidate (webrtc's stats do not list those).
    pub remote_address: String,
}

/// Turns successive [`LinkSnapshot`]s into rates.
#[derive(Debug, Default)]
pub struct RateSampler {
    last: Option<(Instant, u64, u64)>,
}

impl RateSampler {
    pub fn sample(&mut self, now: Instant, session: &str, state: &LinkSnapshot) -> ViewerStats {
        let (sent_kbps, retransmitted_kbps) = match self.last {
            Some((at, sent, resent)) => {
                let seconds = now.saturating_duration_since(at).as_secs_f64();
                let rate = |bytes: u64| {
                    if seconds > 0.0 {
                        (bytes as f64 * 8.0 / seconds / 1000.0).round() as u64
                    } else {
                        0
                    }
                };
                (
                    rate(state.sent_bytes.saturating_sub(sent)),
                    rate(state.retransmitted_bytes.saturating_sub(resent)),
                )
            }
            None => (0, 0),
        };
        self.last = Some((now, state.sent_bytes, state.retransmitted_bytes));
        ViewerStats {
            session: session.to_owned(),
            feedback: match state.feedback {
                CongestionFeedback::TransportCc => "transport-cc",
                CongestionFeedback::Remb => "remb",
                CongestionFeedback::ReceiverReports => "receiver-reports",
            },
            estimate_kbps: (state.estimate_bps / 1000.0).round() as u64,
            sent_kbps,
            retransmitted_kbps,
            rtt_ms: state.rtt.map(|rtt| rtt.as_millis() as u64),
            loss_percent: state.loss.map(|loss| (loss * 1000.0).round() / 10.0),
            retransmissions_refused: state.retransmissions_refused,
            remb_kbps: state.remb_bps.map(|bps| (bps / 1000.0).round() as u64),
            path: state.ice_path.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Link;
    use std::time::Duration;

    #[test]
    fn rates_come_from_the_counters_between_samples() {
        let (link, writers) = Link::new(CongestionFeedback::TransportCc, 800_000.0, 2_000_000.0);
        let mut sampler = RateSampler::default();
        let start = Instant::now();
        let first = sampler.sample(start, "v1", &link.snapshot());
        assert_eq!((first.sent_kbps, first.estimate_kbps), (0, 800));
        writers.wire.update(|count| {
            count.sent_bytes = 250_000;
            count.retransmitted_bytes = 25_000;
        });
        writers.receiver.update(|report| {
            report.rtt = Some(Duration::from_millis(42));
            report.loss = Some(0.0234);
        });
        let second = sampler.sample(start + Duration::from_secs(2), "v1", &link.snapshot());
        assert_eq!(second.sent_kbps, 1_000);
        assert_eq!(second.retransmitted_kbps, 100);
        assert_eq!(second.rtt_ms, Some(42));
        assert_eq!(second.loss_percent, Some(2.3));
        assert_eq!(second.feedback, "transport-cc");
    }
}
