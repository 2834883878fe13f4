//! campeer: live camera video from a single-board computer to any browser, over WebRTC with
//! MQTT signaling.
//!
//! The binary is a thin shell around [`device::start`]; everything else is here so that tests
//! and benchmarks drive the real daemon in-process.

pub mod clock;
pub mod config;
pub mod device;
pub mod link;
pub mod media;
pub mod metrics;
pub mod mqtt;
pub mod outbox;
pub mod protocol;
pub mod publish;
pub mod record;
pub mod rtsp;
pub mod sdp;
pub mod session;
pub mod signaling;
pub mod systemd;
pub mod tls;
pub mod turn_stream;
pub mod web;
