//! What a stranger puts in an HTTP request to campeer's page server: the path (WHEP's
//! targets, a recording's name), the `Accept` header a metrics scrape sends, a bearer token, a
//! WHEP PATCH's trickle-ice-sdpfrag body, a `Range` header and the queries of snapshots and
//! recording listings. Each reader answers or refuses; none panics, and what it answers
//! keeps its promises.
#![no_main]

use campeer::record::library::parse_name;
use campeer::web::bearer::authorized;
use campeer::web::recordings::{RangeAnswer, listing_window, parse_range};
use campeer::web::snapshot::requested_width;
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
    let range = fields.next();
    let query = fields.next();

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
    // A recording's name never reaches outside its folder.
    if parse_name(path).is_some() {
        assert!(!path.contains('/') && !path.contains("..") && !path.contains('%'));
    }
    // A range always lies inside the file.
    for len in [0u64, 1, 1000, u64::MAX] {
        if let RangeAnswer::Part { start, end } = parse_range(range, len) {
            assert!(start <= end && end < len);
        }
    }
    if let Ok(Some(width)) = requested_width(query) {
        assert!(width >= 16);
    }
    if let Ok((Some(from), Some(to))) = listing_window(query) {
        // Milliseconds since 1970 before the year 10000.
        assert!(from < 253_402_300_800_000 && to < 253_402_300_800_000);
    }
});
