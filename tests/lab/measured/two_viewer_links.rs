//! Two viewers of one camera at once, each on a link of its own: one behind a 300 kbit/s
//! bottleneck, one unconstrained. One encoder serves both, so the slow viewer must get the
//! base temporal layer (fewer frames, same encode) at a rate its link carries, and must not
//! drag the fast viewer down to its rate or freeze it.

use common::network::{Lab, LabCampeer, LabViewer, require_lab, watch_over_lab_links};
use std::time::Duration;

#[test]
fn a_slow_viewer_neither_drags_down_nor_freezes_a_fast_one() {
    let _load = common::load::whole_machine();
    if !require_lab() {
        return;
    }
    let lab = Lab::with_viewers(2);
    let (fast, slow) = (&lab.links[0], &lab.links[1]);
    let slow_kbit = 300;
    slow.shape(Some(slow_kbit), Duration::from_millis(200));
    let campeer = LabCampeer::start(&lab, "two-links", &[]);
    let viewers = [
        LabViewer {
            link: fast,
            session: "v-fast".into(),
            loss: 0.0,
        },
        LabViewer {
            link: slow,
            session: "v-slow".into(),
            loss: 0.0,
        },
    ];
    let reports = watch_over_lab_links(
        &campeer,
        &viewers,
        Duration::from_secs(6),
        Duration::from_secs(10),
    );
    let [fast_report, slow_report] = &reports[..] else {
        panic!("two reports: {reports:?}");
    };
    for (name, report) in [("fast", fast_report), ("slow", slow_report)] {
        eprintln!("{name} viewer: {report}");
    }
    let (f, s) = (&fast_report.playback, &slow_report.playback);
    assert!(f.fps >= 25.0, "the fast viewer was dragged down: {f}");
    assert!(f.longest_freeze <= Duration::from_secs(1), "fast: {f}");
    assert!(s.fps >= 10.0, "the slow viewer does not play: {s}");
    assert!(s.longest_freeze <= Duration::from_secs(1), "slow: {s}");
    assert!(
        fast_report.delivered_kbps >= 1.3 * slow_report.delivered_kbps,
        "the fast viewer's bitrate ({:.0} kbit/s) is not clearly above the slow one's ({:.0})",
        fast_report.delivered_kbps,
        slow_report.delivered_kbps
    );
    assert!(
        slow_report.offered_kbps <= 1.3 * f64::from(slow_kbit),
        "campeer offered {:.0} kbit/s to a {slow_kbit} kbit/s link",
        slow_report.offered_kbps
    );
}
