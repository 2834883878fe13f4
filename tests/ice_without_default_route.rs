//! A camera network with no default route and no route to 224.0.0.0/4 (an isolated LAN, a
//! direct cable): mDNS cannot start there, and campeer must connect viewers without it.
//! Campeer runs in one network namespace, the viewer in another, joined by a veth pair; ICE
//! runs on the veth, not on loopback.

mod common;

use common::network::{Lab, NamespacedBroker, in_namespace, require_lab};
use common::*;
use std::time::Duration;

#[test]
fn a_viewer_connects_where_mdns_cannot_start() {
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

    let broker = NamespacedBroker::start(&lab.campeer_ns);
    let http = free_port().to_string();
    let _campeer = DaemonProcess::spawn_in_namespace(
        &lab.campeer_ns,
        &[
            "--broker",
            &format!("mqtt://127.0.0.1:{}", broker.port),
            "--device-id",
            "isolated",
            "--source",
            "test",
            "--audio-source",
            "none",
            "--http-listen",
            &format!("127.0.0.1:{http}"),
        ],
    );
    let (port, campeer_ip, viewer_ip) =
        (broker.port, lab.campeer_ip.clone(), lab.viewer_ip.clone());
    let outcome = in_namespace(&lab.viewer_ns, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            // campeer needs a moment to connect to the broker and subscribe.
            let status =
                TopicWatcher::start_on_host(&campeer_ip, port, &status_topic("isolated")).await;
            assert!(
                status
                    .wait_for_last(Duration::from_secs(20), |s| s["state"] == "online")
                    .await,
                "campeer never came online"
            );
            let viewer = TestViewer::join_port(
                port,
                "isolated",
                "v-isolated",
                ViewerOptions {
                    bind_ip: Some(viewer_ip),
                    broker_host: Some(campeer_ip),
                    ..Default::default()
                },
            )
            .await;
            let played = viewer
                .wait_for_more_frames(30, Duration::from_secs(20))
                .await;
            let (errors, candidates) =
                viewer.snapshot(|s| (s.errors.clone(), s.remote_candidate_lines.clone()));
            viewer.close().await;
            (played, errors, candidates)
        })
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
        candidates.iter().any(|c| c.contains(&lab.campeer_ip)),
        "campeer offered no host candidate on the lab's interface: {candidates:?}"
    );
}
