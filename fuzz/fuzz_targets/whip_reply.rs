//! What a WHIP server answers campeer's offer with: any status, Location, Link headers and
//! body give an answer to apply or a typed refusal, never a panic; an answer's resource is
//! always an http(s) URL; and the ICE servers read from Link headers stay within their bound.
#![no_main]

use campeer::publish::client::{Reply, excerpt};
use campeer::publish::links::{MAX_ICE_SERVERS, ice_servers};
use campeer::publish::task::answered;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&status, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(3, '\n');
    let location = parts.next().unwrap_or("");
    let link = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");

    let servers = ice_servers([link, body]);
    assert!(servers.len() <= MAX_ICE_SERVERS);
    let _ = excerpt(body);

    let status = if status % 2 == 0 { 201 } else { 200 + u16::from(status) };
    let Ok(status) = hyper::StatusCode::from_u16(status) else {
        return;
    };
    let reply = Reply {
        status,
        headers: vec![
            ("location".to_owned(), location.to_owned()),
            ("link".to_owned(), link.to_owned()),
        ],
        body: body.to_owned(),
    };
    let endpoint = url::Url::parse("http://sfu.example:7080/whip/endpoint/cam").unwrap();
    if let Ok(answer) = answered(&endpoint, Ok(reply)) {
        assert!(matches!(answer.resource.scheme(), "http" | "https"));
        assert!(answer.sdp.trim_start().starts_with("v=0"));
    }
});
