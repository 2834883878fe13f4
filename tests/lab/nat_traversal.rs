//! Campeer and a viewer each behind a NAT of their own (iptables MASQUERADE routers), with a
//! STUN/TURN server (Debian's coturn) and the broker on the "public" network between them:
//! neither can reach the other's host candidates, so ICE must use what the servers give it.
//! Server-reflexive candidates connect them where the NATs allow it (Linux's NAT keeps one
//! mapping per socket, so hole punching works); a viewer that insists on relaying
//! (`iceTransportPolicy: "relay"`) gets its media through the TURN server.

use common::nat::NatLab;
use common::network::{LabCampeer, NamespacedBroker, require_nat_lab};
use std::time::Duration;

/// Campeer behind its NAT, with the lab's STUN server and the broker on the public side.
fn start_campeer(lab: &NatLab, device: &str) -> LabCampeer {
    let broker = NamespacedBroker::start(&lab.public_ns);
    let stun = lab.stun_url();
    LabCampeer::start_with_broker(
        &lab.campeer_ns,
        broker,
        &lab.server_ip,
        device,
        &["--ice-server", &stun],
    )
}

#[test]
fn viewer_and_campeer_meet_through_their_nats_with_stun() {
    let _load = common::load::shared();
    if !require_nat_lab() {
        return;
    }
    let mut lab = NatLab::new();
    lab.start_turn();
    let campeer = start_campeer(&lab, "nat-stun");
    let outcome = lab.watch(&campeer, "v-stun", vec![lab.stun_server()], false);
    assert!(outcome.errors.is_empty(), "errors: {:?}", outcome.errors);
    assert!(
        outcome.played,
        "no picture through two NATs with STUN; campeer's candidates: {:?}\n{}",
        outcome.remote_candidates,
        lab.nat_tables()
    );
    assert!(
        outcome.has_candidate("srflx", &lab.campeer_public_ip),
        "campeer sent no server-reflexive candidate at its NAT's address: {:?}",
        outcome.remote_candidates
    );
    assert_eq!(
        lab.relayed_packets(),
        0,
        "media went through the TURN server though no one asked for a relay"
    );
}

#[test]
fn a_viewer_that_forces_relay_gets_its_picture_through_turn_over_udp() {
    let _load = common::load::shared();
    if !require_nat_lab() {
        return;
    }
    let mut lab = NatLab::new();
    lab.start_turn();
    let campeer = start_campeer(&lab, "nat-turn");
    let outcome = lab.watch(&campeer, "v-turn", vec![lab.turn_server("udp")], true);
    outcome.assert_played_through_relay(&lab, "a TURN relay");
}

/// Behind a symmetric NAT the viewer's server-reflexive port is of no use to campeer, and the
/// viewer has no TURN server of its own: only campeer's relay (a TURN server over UDP in
/// campeer's `ice.servers`) connects them.
#[test]
fn campeer_relays_through_its_own_turn_server_to_a_viewer_behind_a_symmetric_nat() {
    let _load = common::load::shared();
    if !require_nat_lab() {
        return;
    }
    let mut lab = NatLab::new();
    lab.start_turn();
    lab.make_viewer_nat_symmetric();
    let turn = format!(
        "turn:{}:{}?transport=udp",
        lab.server_ip,
        common::nat::TURN_PORT
    );
    let (campeer, _config) = lab.start_campeer_with_config(
        "nat-relay",
        &format!(
            "[ice]\nservers = [{{ urls = [\"{}\"] }}, {}]\n",
            lab.stun_url(),
            lab.turn_server_toml(&turn)
        ),
        &[],
    );
    let outcome = lab.watch(&campeer, "v-symmetric", vec![lab.stun_server()], false);
    assert!(
        outcome.has_candidate("relay", &lab.server_ip),
        "campeer gathered no relay candidate from its TURN server: {:?}\ncoturn:\n{}",
        outcome.remote_candidates,
        lab.turn_log()
    );
    outcome.assert_played_through_relay(&lab, "campeer's relay");
}

/// Headless Chromium behind its NAT opens the page (published through a port forward on
/// campeer's router), which tells it the TURN server over TCP (`web.ice_servers`), and with
/// `?relay=1` relays everything: the TCP connection to coturn carries the picture.
#[tokio::test]
async fn a_browser_that_forces_relay_plays_through_turn_over_tcp() {
    let _load = common::load::shared();
    if !require_nat_lab() {
        return;
    }
    let mut lab = NatLab::new();
    lab.start_turn();
    let (broker, ws_port) = NamespacedBroker::start_with_websockets(&lab.public_ns);
    let config = tempfile::NamedTempFile::new().expect("a config file");
    std::fs::write(
        config.path(),
        format!(
            "[web]\nice_servers = [{}]\n",
            lab.turn_server_toml(&format!(
                "turn:{}:{}?transport=tcp",
                lab.server_ip,
                common::nat::TURN_PORT
            ))
        ),
    )
    .expect("write the config");
    let http_port = common::free_port();
    lab.forward_to_campeer(http_port);
    let stun = lab.stun_url();
    let config_path = config.path().display().to_string();
    let ws_url = format!("ws://{}:{ws_port}", lab.server_ip);
    let listen = format!("{}:{http_port}", lab.campeer_ip);
    let _campeer = LabCampeer::start_with_broker(
        &lab.campeer_ns,
        broker,
        &lab.server_ip,
        "nat-browser",
        &[
            "--config",
            &config_path,
            "--ice-server",
            &stun,
            "--broker-ws-url",
            &ws_url,
            "--http-listen",
            &listen,
        ],
    );
    let url = format!("http://{}:{http_port}/?relay=1", lab.campeer_public_ip);
    let browser = common::BrowserRun::start_in_namespace(
        &lab.viewer_ns,
        &url,
        1,
        20,
        &common::screenshot_prefix("nat-turn-tcp"),
    );
    let played = browser
        .wait_for(Duration::from_secs(30), 0, |v| common::is_playing(v, 60))
        .await;
    let (relayed, over_tcp) = (lab.relayed_packets(), lab.turn_tcp_packets());
    assert!(
        played,
        "the page never played through TURN over TCP: {:?}\n{}\ncoturn:\n{}",
        browser.latest(0),
        lab.nat_tables(),
        lab.turn_log()
    );
    assert!(
        relayed >= 60,
        "only {relayed} packets reached the TURN server's relay ports"
    );
    assert!(
        over_tcp >= 60,
        "only {over_tcp} TCP packets reached the TURN server: the page did not relay over TCP"
    );
    eprintln!("relayed {relayed} UDP packets, {over_tcp} TCP packets to coturn");
    // The screenshot (target/browser-screenshots/nat-turn-tcp-0.png), taken at the end.
    browser.finish(Duration::from_secs(30)).await;
}
