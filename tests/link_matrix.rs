//! One viewer over a real link between two network namespaces (ICE on a veth, not loopback),
//! shaped with tbf (a bottleneck with a 200 ms queue) and made lossy with iptables: campeer
//! must learn each link's rate from the viewer's transport-wide feedback, encode and pace to
//! it, and repair loss within bounds, so the picture keeps moving with low latency and the
//! link is never offered much more than it carries.
//!
//! The viewer is the test viewer (webrtc crate, openh264 decoding, a browser-like receive
//! buffer). Loss starts once the viewer shows a first picture. After a 5 s ramp, over 10 s: frames decoded per second, the longest freeze,
//! glass-to-glass latency from the timestamp squares, and what campeer offered to the link
//! (counted before the shaper and the loss rule).

mod common;

use common::network::{Lab, LabCampeer, LinkReport, require_lab, watch_over_lab};
use std::time::Duration;

struct Case {
    name: &'static str,
    kbit: Option<u32>,
    loss: f64,
    min_fps: f64,
}

fn run(case: Case) {
    if !require_lab() {
        return;
    }
    let lab = Lab::new();
    lab.link().shape(case.kbit, Duration::from_millis(200));
    let campeer = LabCampeer::start(&lab, case.name, &[]);
    let report: LinkReport = watch_over_lab(
        &lab,
        &campeer,
        &format!("v-{}", case.name),
        case.loss,
        Duration::from_secs(5),
        Duration::from_secs(10),
    );
    eprintln!(
        "link {}: {} · offered {:.0} kbit/s, delivered {:.0} kbit/s, {} decode errors",
        case.name,
        report.playback,
        report.offered_kbps,
        report.delivered_kbps,
        report.decode_errors
    );
    let p = report.playback;
    assert!(p.fps >= case.min_fps, "{}: {p}", case.name);
    assert!(
        p.longest_freeze <= Duration::from_secs(1),
        "{}: {p}",
        case.name
    );
    assert!(p.latency_p90_ms <= 400, "{}: {p}", case.name);
    if let Some(kbit) = case.kbit {
        assert!(
            report.offered_kbps <= 1.3 * f64::from(kbit),
            "{}: campeer offered {:.0} kbit/s to a {kbit} kbit/s link",
            case.name,
            report.offered_kbps
        );
    }
}

#[test]
fn unconstrained() {
    run(Case {
        name: "open",
        kbit: None,
        loss: 0.0,
        min_fps: 25.0,
    });
}

#[test]
fn two_megabits() {
    run(Case {
        name: "2m",
        kbit: Some(2_000),
        loss: 0.0,
        min_fps: 25.0,
    });
}

#[test]
fn six_hundred_kilobits() {
    run(Case {
        name: "600k",
        kbit: Some(600),
        loss: 0.0,
        min_fps: 25.0,
    });
}

#[test]
fn three_percent_loss() {
    run(Case {
        name: "loss",
        kbit: None,
        loss: 0.03,
        min_fps: 25.0,
    });
}
