//! A camera network with no default route and no route to 224.0.0.0/4 (an isolated LAN, a
//! direct cable): mDNS cannot start there, and campeer must connect viewers without it.
//! Campeer runs in one network namespace, the viewer in another, joined by a veth pair; ICE
//! runs on the veth, not on loopback.

use common::Watching;
use common::network::{
    Lab, LabCampeer, in_namespace, in_viewer_namespace, join_over_lab, require_lab,
};
use std::time::Duration;

#[test]
fn a_viewer_connects_where_mdns_cannot_start() {
    let _load = common::load::shared();
    if !require_lab() {
        return;
    }
    let lab = Lab::new();
    // The condition that used to fail every offer: joining the mDNS group is impossible here.
    let mdns = in_namespace(&lab.campeer_ns, || {
        rtc::mdns::MulticastSocket::new().into_std().map(|_| ())
    })
    .join()
    .expect("probe thread");
    assert!(
        mdns.is_err(),
        "mDNS unexpectedly works in the lab namespace"
    );

    let campeer = LabCampeer::start(&lab, "isolated", &[]);
    let target = campeer.target(lab.link());
    let outcome = in_viewer_namespace(lab.link(), move || async move {
        let viewer = join_over_lab(target, "v-isolated").await;
        let played = viewer
            .wait_for_more_frames(30, Duration::from_secs(20))
            .await;
        let (errors, candidates) =
            viewer.snapshot(|s| (s.errors.clone(), s.remote_candidate_lines.clone()));
        viewer.close().await;
        (played, errors, candidates)
    })
    .join()
    .expect("viewer thread");
    let (played, errors, candidates) = outcome;
    assert!(
        errors.is_empty(),
        "campeer answered with errors: {errors:?}"
    );
    assert!(played, "no picture over a network without mDNS");
    assert!(
        candidates
            .iter()
            .any(|c| c.contains(&lab.link().campeer_ip)),
        "campeer offered no host candidate on the lab's interface: {candidates:?}"
    );
}
