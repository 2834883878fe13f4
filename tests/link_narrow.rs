//! One viewer behind a 600 kbit/s bottleneck with a 200 ms queue (tbf), ICE on a veth
//! between two network namespaces: campeer must learn the link's rate from the viewer's
//! transport-wide feedback, encode to it and pace to it, so the picture keeps moving with low
//! latency and campeer never offers the link much more than it carries.

mod common;

use common::network::{Lab, LabCampeer, require_lab, watch_over_lab};
use std::time::Duration;

#[test]
fn a_narrow_link_plays_smoothly_without_being_flooded() {
    if !require_lab() {
        return;
    }
    let lab = Lab::new();
    lab.shape(Some(600), Duration::from_millis(200));
    let campeer = LabCampeer::start(&lab, "narrow", &[]);
    let report = watch_over_lab(
        &lab,
        &campeer,
        "v-narrow",
        Duration::from_secs(5),
        Duration::from_secs(10),
    );
    eprintln!("600 kbit/s link: {} · {report:?}", report.playback);
    let p = report.playback;
    assert!(p.fps >= 25.0, "{p}");
    assert!(p.longest_freeze <= Duration::from_secs(1), "{p}");
    assert!(p.latency_p90_ms <= 400, "{p}");
    assert!(
        report.offered_kbps <= 1.3 * 600.0,
        "campeer offered {:.0} kbit/s to a 600 kbit/s link",
        report.offered_kbps
    );
}
