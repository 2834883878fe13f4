//! What a stranger sends to campeer's RTSP port: the message reader yields the same messages
//! however the bytes were cut, never holds more than its bound; a reader's conversation
//! answers every request with a response that echoes its CSeq when it had a valid one, and
//! never plays before a SETUP; the Digest check answers any Authorization header with a
//! verdict, never a panic; and the parameter sets are looked for in any payload a camera's
//! own H.264 may bring, without a panic.
#![no_main]

use campeer::rtsp::digest::{Credentials, DigestAuth};
use campeer::rtsp::exchange::{Action, Exchange, Offer, Track};
use campeer::rtsp::framing::{Incoming, MessageReader};
use std::time::Instant;
use libfuzzer_sys::fuzz_target;

/// Every message (or the error that ended the reading) of `pieces`, in order.
fn read(pieces: &[&[u8]]) -> Vec<String> {
    let mut reader = MessageReader::default();
    let mut seen = Vec::new();
    for piece in pieces {
        if let Err(e) = reader.push(piece) {
            seen.push(format!("error {e}"));
            return seen;
        }
        loop {
            match reader.next_message() {
                Ok(Some(Incoming::Request(request))) => {
                    seen.push(format!("{:?} {:?}", request.method(), request.request_uri()))
                }
                Ok(Some(Incoming::Data { channel, len })) => seen.push(format!("${channel} {len}")),
                Ok(None) => break,
                Err(e) => {
                    seen.push(format!("error {e}"));
                    return seen;
                }
            }
        }
    }
    seen
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let whole = read(&[bytes]);
    let cut = usize::from(cut).min(bytes.len());
    let split = read(&[&bytes[..cut], &bytes[cut..]]);
    // A cut may only end the reading earlier (an oversize message found sooner), never change
    // what was read before it.
    let common = whole.len().min(split.len()).saturating_sub(1);
    assert_eq!(whole[..common], split[..common], "cut at {cut}");

    let auth = DigestAuth::new(
        Credentials {
            username: "nvr".into(),
            password: "pw".into(),
        },
        b"fuzz",
    );
    let header = String::from_utf8_lossy(bytes);
    let _ = auth.verify(Some(&header), "DESCRIBE", 1_000);
    let payload = bytes::Bytes::copy_from_slice(bytes);
    let _ = campeer::rtsp::describe::ParameterSets::from_payloads(&[payload.clone(), payload]);

    // The whole conversation, the requests in order.
    let offer = |device: &str| {
        (device == "cam").then(|| Offer {
            sdp: "v=0\r\n".into(),
            tracks: vec![Track::Video, Track::Audio],
        })
    };
    let mut exchange = Exchange::new("s1".into(), Instant::now(), None, Some((6970, 6971)));
    let mut reader = MessageReader::default();
    if reader.push(bytes).is_err() {
        return;
    }
    let mut set_up = false;
    while let Ok(Some(message)) = reader.next_message() {
        let Incoming::Request(request) = message else {
            continue;
        };
        let (response, action) = exchange.handle(&request, Instant::now(), 1_000, &offer);
        match action {
            Action::Play { tracks, .. } => {
                assert!(set_up && !tracks.is_empty(), "played without a SETUP");
            }
            Action::Stop => set_up = false,
            Action::None | Action::Pause => {}
        }
        if request.method() == &rtsp_types::Method::Setup {
            set_up = set_up || response.status() == rtsp_types::StatusCode::Ok;
        }
    }
});
