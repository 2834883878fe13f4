//! RTSP for NVRs, Home Assistant's Generic Camera and players, from the one encode. The pure
//! parts are unit-tested and fuzzed: `framing` turns a connection's bytes into bounded
//! messages; `digest` checks a reader's credentials without keeping anything per client;
//! `exchange` is one reader's conversation (requests in, responses and what to send out);
//! `describe` writes a device's session description; `sender` stamps and frames what one
//! reader is sent. `server` is the listener and the reader tasks that carry all that out.

pub mod describe;
pub mod digest;
pub mod exchange;
pub mod framing;
pub mod sender;
pub mod server;
