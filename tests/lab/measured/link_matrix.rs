//! One viewer over a real link between two network namespaces (ICE on a veth, not loopback),
//! shaped with tbf (a bottleneck with a 200 ms queue) and made lossy with iptables: campeer
//! must learn each link's rate from the viewer's transport-wide feedback, encode and pace to
//! it, and repair loss within bounds, so the picture keeps moving with low latency and the
//! link is never offered much more than it carries.
//!
//! The viewer is the test viewer (webrtc crate, openh264 decoding, a browser-like receive
//! buffer); `link_matrix_browser` runs the same links with headless Chromium. Loss starts once
//! the viewer shows a first picture. After a 5 s ramp, over 10 s: frames decoded per second,
//! the longest freeze, glass-to-glass latency from the timestamp squares, and what campeer
//! offered to the link (counted before the shaper and the loss rule).
//!
//! The links run one after another: five campeers encoding and five viewers decoding at once
//! on a two-core machine would measure the processor, not the link. Every shortfall is
//! reported before the test fails.

use common::network::{
    LINK_MEASURE, LINK_RAMP, LabCampeer, require_lab, selected_link_cases, watch_over_lab,
};

#[test]
fn the_test_viewer_over_every_link() {
    let _load = common::load::whole_machine();
    if !require_lab() {
        return;
    }
    let mut failures = Vec::new();
    for case in selected_link_cases() {
        let lab = case.lab();
        let campeer = LabCampeer::start(&lab, case.name, &[]);
        let session = format!("v-{}", case.name);
        let report = watch_over_lab(&lab, &campeer, &session, case.loss, LINK_RAMP, LINK_MEASURE);
        eprintln!("link {}: {report}", case.name);
        let wrong = case.shortfalls(&report);
        if !wrong.is_empty() {
            failures.push(format!("{}: {report}: {wrong:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
