//! What a stranger puts in an HTTP request to campeer's page server: the path (WHEP's
//! targets), the `Accept` header a metrics scrape sends, a bearer token, and a WHEP PATCH's
//! trickle-ice-sdpfrag body. Each reader answers or refuses; none panics, and what it answers
//! keeps its promises.
#![no_main]

use campeer::web::bearer::authorized;
use campeer::web::metrics::format_for;
use campeer::web::whep::{Target, parse_sdpfrag, restart_credentials};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The fields of one request, separated as the fuzzer likes.
    let mut fields = text.split('\u{0}');
    let path = fields.next().unwrap_or("");
    let accept = fields.next();
    let authorization = fields.next();
    let body = fields.next().unwrap_or("");

    if let Some(target) = Target::parse(path) {
        // A target names a device that is a non-empty piece of the path.
        assert!(!target.device().is_empty());
        assert!(path.contains(target.device()));
    }
    let format = format_for(accept);
    assert!(!format.content_type().is_empty());
    // Nobody is let in without the token, and the token itself always is.
    assert!(!authorized(None, Some("s3cret")));
    if authorization.is_some_and(|given| !given.contains("s3cret")) {
        assert!(!authorized(authorization, Some("s3cret")));
    }
    assert!(authorized(authorization, None));
    if let Ok(fragment) = parse_sdpfrag(body)
        && let Ok((ufrag, pwd)) = restart_credentials(&fragment)
    {
        // Credentials taken for a restart cannot smuggle SDP into the offer made from them.
        assert!(!ufrag.contains(['\r', '\n']) && !pwd.contains(['\r', '\n']));
    }
});
