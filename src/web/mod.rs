//! What a newcomer needs to watch with no setup: the built-in viewer page and its HTTP server,
//! and the embedded MQTT broker.

pub mod bearer;
pub mod body;
pub mod broker;
pub mod http;
pub mod ice;
pub mod metrics;
pub mod mqtt_version;
pub mod recordings;
pub mod response;
pub mod snapshot;
pub mod whep;
pub mod whep_ice;
pub mod whep_server;
pub mod ws_proxy;
