//! Campeer on a network that lets no UDP out (its router drops it, as many office and hotel
//! networks do), a viewer behind a symmetric NAT with no TURN server of its own: no STUN
//! answer reaches campeer, the viewer's server-reflexive port is of no use, and the one way
//! left is a relay campeer allocates over TCP — `turn:…?transport=tcp`, or TLS with `turns:`
//! — from the lab's coturn. webrtc allocates over UDP only; campeer's TURN bridge
//! (`turn_stream`) carries its allocation over the stream.

use common::nat::{NatLab, TURN_PORT, TURN_TLS_PORT};
use common::network::{StatsCollector, reported_paths, require_nat_lab};
use common::tls::TestCa;

/// Blocks campeer's UDP, starts it with `ice_toml` as its configuration, lets the viewer
/// (behind a symmetric NAT) watch with STUN only, and checks the picture came through
/// campeer's relay.
fn plays_only_through_campeers_relay(lab: &NatLab, device: &str, ice_toml: &str) {
    lab.make_viewer_nat_symmetric();
    lab.block_udp_from_campeer();
    let (campeer, _config) = lab.start_campeer_with_config(device, ice_toml, &[]);
    let stats = StatsCollector::start(&lab.public_ns, campeer.broker.port, device);
    let outcome = lab.watch(&campeer, "v-stream-relay", vec![lab.stun_server()], false);
    let paths = reported_paths(&stats.finish(), "v-stream-relay");
    assert!(
        outcome.has_candidate("relay", &lab.server_ip),
        "campeer gathered no relay candidate over the stream: {:?}\ncoturn:\n{}",
        outcome.remote_candidates,
        lab.turn_log()
    );
    assert!(
        !outcome.has_candidate("srflx", &lab.campeer_public_ip),
        "campeer reached STUN over UDP, so the router did not block UDP: {:?}",
        outcome.remote_candidates
    );
    outcome.assert_played_through_relay(lab, "campeer's relay over a stream");
    assert!(
        paths.last().is_some_and(|path| path["local"] == "relay"),
        "campeer's stats do not show its relay carrying the media: {paths:?}"
    );
    assert!(
        lab.campeer_udp_dropped() > 0,
        "campeer sent no UDP at all, so the block proved nothing"
    );
}

#[test]
fn campeer_relays_over_turn_on_tcp_when_no_udp_gets_out() {
    let _load = common::load::shared();
    if !require_nat_lab() {
        return;
    }
    let mut lab = NatLab::new();
    lab.start_turn();
    let turn = format!("turn:{}:{TURN_PORT}?transport=tcp", lab.server_ip);
    let ice = format!(
        "[ice]\nservers = [{{ urls = [\"{}\"] }}, {}]\n",
        lab.stun_url(),
        lab.turn_server_toml(&turn)
    );
    plays_only_through_campeers_relay(&lab, "relay-tcp", &ice);
    let over_tcp = lab.turn_tcp_packets();
    assert!(
        over_tcp >= 60,
        "only {over_tcp} TCP packets reached the TURN server: the media did not go over TCP"
    );
    eprintln!(
        "{} relayed packets, {over_tcp} over TCP",
        lab.relayed_packets()
    );
}

#[test]
fn campeer_relays_over_turn_on_tls_checked_against_its_ca_file() {
    let _load = common::load::shared();
    if !require_nat_lab() {
        return;
    }
    let mut lab = NatLab::new();
    let ca = lab.start_turn_with_tls();
    let turns = format!("turns:{}:{TURN_TLS_PORT}?transport=tcp", lab.server_ip);
    let ice = format!(
        "[ice]\ntls_ca_file = \"{}\"\nservers = [{}]\n",
        ca.display(),
        lab.turn_server_toml(&turns)
    );
    plays_only_through_campeers_relay(&lab, "relay-tls", &ice);
    let over_tls = lab.turn_tls_packets();
    assert!(
        over_tls >= 60,
        "only {over_tls} packets reached the TURN server's TLS port"
    );
    // The lab's probe for coturn being up is one short TCP connection; media is hundreds.
    let plain = lab.turn_tcp_packets();
    assert!(
        plain < 20,
        "{plain} packets reached coturn over plain TCP: the media did not go over TLS"
    );
    eprintln!(
        "{} relayed packets, {over_tls} over TLS",
        lab.relayed_packets()
    );
}

/// The same TLS server, but campeer trusts another CA (one that signed a certificate for the
/// very same address): the handshake must fail and no relay come of it, or campeer would hand
/// its media to whoever sits in the middle.
#[test]
fn campeer_refuses_a_turns_server_its_ca_file_does_not_vouch_for() {
    let _load = common::load::shared();
    if !require_nat_lab() {
        return;
    }
    let mut lab = NatLab::new();
    lab.start_turn_with_tls();
    let stranger_dir = tempfile::tempdir().expect("temp dir");
    let stranger = TestCa::create(stranger_dir.path(), &lab.server_ip);
    lab.make_viewer_nat_symmetric();
    lab.block_udp_from_campeer();
    let turns = format!("turns:{}:{TURN_TLS_PORT}?transport=tcp", lab.server_ip);
    let ice = format!(
        "[ice]\ntls_ca_file = \"{}\"\nservers = [{}]\n",
        stranger.ca_cert.display(),
        lab.turn_server_toml(&turns)
    );
    let (campeer, _config) = lab.start_campeer_with_config("relay-untrusted", &ice, &[]);
    let outcome = lab.watch(&campeer, "v-untrusted", vec![lab.stun_server()], false);
    assert!(
        !outcome.has_candidate("relay", &lab.server_ip),
        "campeer allocated a relay from a server whose certificate it should not trust: {:?}",
        outcome.remote_candidates
    );
    assert!(!outcome.played, "a picture arrived with no way through");
    assert!(
        lab.turn_tls_packets() > 0,
        "campeer never tried the TLS server, so the refusal proved nothing"
    );
    let log = lab.turn_log();
    assert!(
        !log.contains("ALLOCATE processed, success"),
        "coturn granted an allocation:\n{log}"
    );
}
