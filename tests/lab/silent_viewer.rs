//! A viewer whose connection stays up but that stops sending any feedback (no receiver
//! reports, no transport-wide feedback, no NACKs, no PLIs: every RTCP packet it sends is
//! dropped on its way, while the ICE checks still pass) cannot tell campeer anything about its
//! link: campeer must treat the session as failed after the session timeout and hang up,
//! rather than stream blind forever.

use common::Watching;
use common::network::{Lab, LabCampeer, in_ns, in_viewer_namespace, join_over_lab, require_lab};
use std::time::{Duration, Instant};

/// iptables' u32 match for RTCP on a muxed 5-tuple: the UDP payload's second byte is the RTCP
/// packet type, 200 to 206 (0xC8–0xCE). An RTP packet's second byte is its payload type, plus
/// 128 with the marker bit: 96–127 gives 0x60–0x7F or 0xE0–0xFF, never that range. (SRTCP
/// leaves the header in the clear; STUN and DTLS start otherwise.)
const DROP_RTCP: &str = "0>>22&0x3C@8>>16&0xFF=0xC8:0xCE";

#[test]
fn a_viewer_that_stops_reporting_is_hung_up_on_after_the_session_timeout() {
    let _load = common::load::shared();
    if !require_lab() {
        return;
    }
    let lab = Lab::new();
    let campeer = LabCampeer::start(&lab, "silent", &["--session-timeout", "5"]);
    let target = campeer.target(lab.link());
    let viewer_ns = lab.link().viewer_ns.clone();
    let outcome = in_viewer_namespace(lab.link(), move || async move {
        let viewer = join_over_lab(target, "v-silent").await;
        assert!(
            viewer
                .wait_for_more_frames(30, Duration::from_secs(20))
                .await,
            "no picture before going silent"
        );
        in_ns(
            &viewer_ns,
            &[
                "iptables", "-A", "OUTPUT", "-p", "udp", "-m", "u32", "--u32", DROP_RTCP, "-j",
                "DROP",
            ],
        );
        let silent_since = Instant::now();
        let hung_up = common::wait_for(Duration::from_secs(20), || {
            viewer.snapshot(|s| s.hangups > 0)
        })
        .await;
        let after = silent_since.elapsed();
        let states = viewer.snapshot(|s| s.connection_states.clone());
        viewer.close().await;
        (hung_up, after, states)
    })
    .join()
    .expect("viewer thread");
    let (hung_up, after, states) = outcome;
    assert!(
        hung_up,
        "campeer kept streaming to a viewer that reports nothing; states {states:?}"
    );
    assert!(
        after >= Duration::from_secs(4),
        "hung up after {after:?}, before the 5 s session timeout"
    );
}
