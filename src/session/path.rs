//! Which candidate pair carries a viewer's media, read from the peer connection's stats: for
//! the stats topic and the log, so an operator sees whether a viewer is reached directly,
//! through a NAT's mapping or through a relay, and over which address.

use crate::link::stats::IcePath;
use rtc::statistics::report::{RTCStatsReport, RTCStatsReportEntry};
use rtc::statistics::stats::ice_candidate::RTCIceCandidateStats;

/// The selected pair: the one the transport names, else the nominated one.
pub fn selected_path(report: &RTCStatsReport) -> Option<IcePath> {
    let named = report
        .transport()
        .map(|transport| transport.selected_candidate_pair_id.as_str())
        .filter(|id| !id.is_empty());
    let pair = report.iter().find_map(|entry| match entry {
        RTCStatsReportEntry::IceCandidatePair(pair) => {
            let selected = match named {
                Some(id) => pair.stats.id == id,
                None => pair.nominated,
            };
            selected.then_some(pair)
        }
        _ => None,
    })?;
    let local = candidate(report, &pair.local_candidate_id, Side::Local);
    let remote = candidate(report, &pair.remote_candidate_id, Side::Remote);
    // rtc registers the candidates it gathered and those it was sent; one ICE learnt from a
    // connectivity check (peer-reflexive) has no entry, and no address to show.
    let kind = |c: Option<&RTCIceCandidateStats>| {
        c.map_or_else(|| "prflx".to_owned(), |c| c.candidate_type.to_string())
    };
    Some(IcePath {
        local: kind(local),
        remote: kind(remote),
        remote_address: match remote {
            Some(RTCIceCandidateStats {
                address: Some(address),
                port,
                ..
            }) => {
                let bracketed = address.contains(':');
                let (open, close) = if bracketed { ("[", "]") } else { ("", "") };
                format!("{open}{address}{close}:{port}")
            }
            _ => "unknown".to_owned(),
        },
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Local,
    Remote,
}

/// A candidate's entry. rtc 0.21 names a pair's candidates by their bare ids while the
/// candidates' own entries carry a prefix, so both forms are tried.
fn candidate<'a>(
    report: &'a RTCStatsReport,
    id: &str,
    side: Side,
) -> Option<&'a RTCIceCandidateStats> {
    let prefixed = match side {
        Side::Local => format!("RTCLocalIceCandidate_{id}"),
        Side::Remote => format!("RTCRemoteIceCandidate_{id}"),
    };
    [id, prefixed.as_str()]
        .into_iter()
        .find_map(|id| match (report.get(id)?, side) {
            (RTCStatsReportEntry::LocalCandidate(c), Side::Local)
            | (RTCStatsReportEntry::RemoteCandidate(c), Side::Remote) => Some(c),
            _ => None,
        })
}
