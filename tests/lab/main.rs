//! Scenarios in the network-namespace lab: shaped, lossy and NATed links between namespaces
//! this binary creates (veth pairs, private addresses used only inside them), with other
//! WebRTC stacks (aiortc, GStreamer), coturn and RabbitMQ. Without root each says so and skips.

mod aiortc_audio_declined;
mod aiortc_strict_answers;
mod bottleneck_change;
mod broker_restart;
mod campeer_relay_over_tcp;
mod gstreamer_strict_answers;
mod hostile_fmtp;
mod ice_without_default_route;
mod link_matrix;
mod mdns_candidates;
mod nat_traversal;
mod remb_viewer;
mod silent_viewer;
mod two_viewer_links;
mod whep_aiortc;
