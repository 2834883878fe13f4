//! RTSP for NVRs, Home Assistant's Generic Camera and players: the pure parts, each unit-tested
//! and fuzzed. `framing` turns a connection's bytes into bounded messages; `digest` checks a
//! reader's credentials without keeping anything per client; `exchange` is one reader's
//! conversation (requests in, responses and what to send out). The listener that serves
//! readers from the one encode is not built yet: until it is, campeer serves no RTSP.

pub mod digest;
pub mod exchange;
pub mod framing;
