//! A LAN where mDNS works (both sides have a route to 224.0.0.0/4): the viewer hides its host
//! address behind a `.local` name and answers mDNS queries for it, as browsers do. campeer
//! must resolve the name. So that nothing else can connect them, the viewer also drops
//! campeer's candidates: it can only answer campeer's checks, and campeer can only send them
//! to the viewer's resolved name. (Left to race, the viewer's own checks often arrive before
//! the mDNS answer and campeer would connect through a peer-reflexive candidate anyway.)

use common::Watching;
use common::network::{
    Lab, LabCampeer, StatsCollector, in_namespace, in_viewer_namespace, join_over_lab, must,
    reported_paths, require_lab,
};
use std::time::Duration;

#[test]
fn campeer_resolves_a_viewers_mdns_candidate() {
    let _load = common::load::shared();
    if !require_lab() {
        return;
    }
    let lab = Lab::new();
    let link = lab.link();
    for (ns, iface) in [
        (&link.campeer_ns, &link.campeer_if),
        (&link.viewer_ns, &link.viewer_if),
    ] {
        must(&["ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", iface]);
    }
    let mdns = in_namespace(&link.campeer_ns, || {
        rtc::mdns::MulticastSocket::new().into_std().map(|_| ())
    })
    .join()
    .expect("probe thread");
    assert!(mdns.is_ok(), "mDNS cannot start in the lab: {mdns:?}");

    let campeer = LabCampeer::start(&lab, "mdns", &[]);
    let stats = StatsCollector::start(&link.campeer_ns, campeer.broker.port, "mdns");
    let mut target = campeer.target(link);
    target.mdns = true;
    target.ignore_device_candidates = true;
    let (played, errors, own_candidates) = in_viewer_namespace(link, move || async move {
        let viewer = join_over_lab(target, "v-mdns").await;
        // Long enough for campeer to read its candidate pair and publish it (every 2 s and
        // every second).
        let played = viewer
            .wait_for_more_frames(150, Duration::from_secs(20))
            .await;
        let seen = viewer.snapshot(|s| (s.errors.clone(), s.local_candidate_lines.clone()));
        viewer.close().await;
        (played, seen.0, seen.1)
    })
    .join()
    .expect("viewer thread");
    let stats = stats.finish();
    assert!(
        errors.is_empty(),
        "campeer answered with errors: {errors:?}"
    );
    assert!(
        !own_candidates.is_empty()
            && own_candidates
                .iter()
                .all(|c| c.contains(".local") && !c.contains(&link.viewer_ip)),
        "the viewer did not hide its address behind mDNS: {own_candidates:?}"
    );
    assert!(played, "no picture with the viewer's candidate behind mDNS");
    let name = own_candidates
        .iter()
        .find_map(|c| c.split_whitespace().nth(4))
        .unwrap_or_default();
    let paths = reported_paths(&stats, "v-mdns");
    // The selected pair names the viewer's host candidate (by its name): campeer's checks went
    // to the address it resolved.
    let last = paths.last();
    assert!(
        last.is_some_and(|path| path["remote"] == "host"
            && path["remote_address"]
                .as_str()
                .is_some_and(|a| a.starts_with(&format!("{name}:")))),
        "campeer did not use the viewer's host candidate {name}; its paths: {paths:?}"
    );
}
