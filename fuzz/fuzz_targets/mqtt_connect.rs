//! The first bytes a stranger sends to the embedded broker's public port: the version sniffer
//! answers a version, "more", or a typed error, never needs more than its bound, and gives the
//! same answer however the bytes were cut.
#![no_main]

use campeer::web::mqtt_version::{ENOUGH_BYTES, sniff};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = sniff(data);
    if data.len() >= ENOUGH_BYTES {
        assert!(!matches!(whole, Ok(None)), "more asked of {data:?}");
    }
    // A prefix decides the same (the same version, or the same kind of error) or asks for
    // more.
    for cut in 0..data.len().min(ENOUGH_BYTES + 1) {
        match (sniff(&data[..cut]), &whole) {
            (Ok(None), _) => {}
            (Err(early), Err(late)) => assert_eq!(
                std::mem::discriminant(&early),
                std::mem::discriminant(late),
                "at {cut} of {data:?}"
            ),
            (decided, _) => assert_eq!(&decided, &whole, "at {cut} of {data:?}"),
        }
    }
});
