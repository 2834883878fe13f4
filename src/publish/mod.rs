//! Publishing into an SFU with WHIP (RFC 9725): each `[[publish]]` entry is a publication that
//! offers a device's stream to a WHIP endpoint and keeps it there, trying again with backoff
//! whenever the server goes away, refuses or the session fails. A publication is one more
//! consumer of the one encode, like a viewer. `links` reads the ICE servers a server hands
//! out, `schedule` decides when to try again, `client` makes the HTTP requests, `task` carries
//! a publication out.

pub mod client;
pub mod links;
pub mod schedule;
pub mod task;
