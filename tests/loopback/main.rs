//! Scenarios on the loopback interface: campeer (in-process or its binary) with a real mosquitto
//! or its own broker, fake cameras, microphones and encoders behind their real interfaces, and
//! webrtc-rs viewers that decode what they receive. Each module is one scenario.

mod acl;
mod answer_carries_host_candidates;
mod audio_microphone;
mod audio_microphone_missing;
mod audio_test_tone;
mod broker_list;
mod broker_outage_status_change;
mod camera_auto_choice;
mod camera_formats;
mod camera_h264_passthrough;
mod camera_module;
mod camera_negotiation;
mod camera_unplug;
mod client_id_takeover;
mod early_candidates;
mod embedded_broker;
mod hangup;
mod hardware_encoder;
mod hardware_encoder_auto;
mod hardware_encoder_in_place;
mod hardware_encoder_missing;
mod malformed_messages;
mod metrics_prometheus;
mod motion_snapshots;
mod mqtt_tls;
mod oversized_publish;
mod page_origin;
mod recording;
mod renegotiation;
mod rtsp_readers;
mod session_timeout;
mod status_lifecycle;
mod unconnected_offers;
mod unsupported_codec;
mod viewer_limit;
mod whep_ice_restart;
mod whip_bad_servers;

/// Scenarios that measure time or memory (frame rates, freezes, latency, how fast the rate
/// follows a link, the process's growth): each has the machine to itself
/// (`common::load::whole_machine`), and they sit together so that the others make way once,
/// not before each of them.
mod measured {
    mod big_offers;
    mod camera_corrupt_frames;
    mod candidate_flood;
    mod encoder_memory;
    mod keyframe_requests;
    mod late_joiner;
    mod offer_flood;
    mod two_viewers_one_encoder;
    mod vp8_viewers;
}
