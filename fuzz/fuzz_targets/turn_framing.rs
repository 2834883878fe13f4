//! Bytes from a TURN server's stream, split anywhere: the reader yields messages or a typed
//! error, and its buffer stays bounded.
#![no_main]

use campeer::turn_stream::framing::StreamReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((split, bytes)) = data.split_first() else {
        return;
    };
    let mut reader = StreamReader::default();
    let cut = usize::from(*split).min(bytes.len());
    let (first, second) = bytes.split_at(cut);
    for chunk in [first, second] {
        reader.push(chunk);
        loop {
            match reader.next_message() {
                Ok(Some(message)) => assert!(message.len() <= 65_536 + 20),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // What is held never exceeds one message's worth beyond the last chunk.
        assert!(reader.pending() <= chunk.len() + 65_536 + 24);
    }
});
