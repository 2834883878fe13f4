//! Scenarios in the network-namespace lab: shaped, lossy and NATed links between namespaces
//! this binary creates (veth pairs, private addresses used only inside them), with other
//! WebRTC stacks (aiortc, GStreamer), coturn and RabbitMQ. Without root each says so and skips.

mod aiortc_audio_declined;
mod aiortc_strict_answers;
mod broker_cluster;
mod broker_restart;
mod campeer_relay_over_tcp;
mod gstreamer_strict_answers;
mod hostile_fmtp;
mod ice_without_default_route;
mod mdns_candidates;
mod nat_traversal;
mod silent_viewer;
mod whep_aiortc;
mod whip_janus;

/// Scenarios that measure time or memory (frame rates, freezes, latency, how fast the rate
/// follows a link, the process's growth): each has the machine to itself
/// (`common::load::whole_machine`), and they sit together so that the others make way once,
/// not before each of them.
mod measured {
    mod bottleneck_change;
    mod link_matrix;
    mod remb_viewer;
    mod two_viewer_links;
}
