//! Where an RTSP connection's bytes become messages (parsed by `rtsp-types`): the reader's
//! requests, and the RTCP it interleaves on the same TCP connection. Pure and bounded: a
//! message may take at most [`MAX_MESSAGE`] bytes, headers and body together, so a stranger
//! sending endless headers or a huge `Content-Length` is refused once that much has arrived,
//! never buffered without end.

use rtsp_types::{Message, ParseError, Request};

/// The largest message read: requests are a few hundred bytes, RTCP reports less.
pub const MAX_MESSAGE: usize = 16 * 1024;

/// What the reader sent.
#[derive(Debug)]
pub enum Incoming {
    Request(Request<Vec<u8>>),
    /// Interleaved data (`$`, channel, length): RTCP from the reader, which campeer reads past.
    Data {
        channel: u8,
        len: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("a message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error("not an RTSP message")]
    Malformed,
    #[error("a response where a request belongs")]
    UnexpectedResponse,
}

/// Bytes received and not yet read as messages.
#[derive(Debug, Default)]
pub struct MessageReader {
    buffer: Vec<u8>,
}

impl MessageReader {
    /// Takes bytes as they arrive. An error once more than a message's worth is waiting.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FramingError> {
        if self.buffer.len().saturating_add(bytes.len()) > MAX_MESSAGE * 2 {
            return Err(FramingError::TooLarge);
        }
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete message, `None` until one has arrived whole.
    pub fn next_message(&mut self) -> Result<Option<Incoming>, FramingError> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let parsed = Message::<Vec<u8>>::parse(&self.buffer);
        let (message, consumed) = match parsed {
            Ok(parsed) => parsed,
            Err(ParseError::Incomplete(_)) if self.buffer.len() >= MAX_MESSAGE => {
                return Err(FramingError::TooLarge);
            }
            Err(ParseError::Incomplete(_)) => return Ok(None),
            Err(ParseError::Error) => return Err(FramingError::Malformed),
        };
        if consumed > MAX_MESSAGE {
            return Err(FramingError::TooLarge);
        }
        self.buffer.drain(..consumed.min(self.buffer.len()));
        match message {
            Message::Request(request) => Ok(Some(Incoming::Request(request))),
            Message::Data(data) => Ok(Some(Incoming::Data {
                channel: data.channel_id(),
                len: data.len(),
            })),
            Message::Response(_) => Err(FramingError::UnexpectedResponse),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtsp_types::Method;

    #[test]
    fn requests_come_out_whole_however_the_bytes_were_cut() {
        let bytes = b"OPTIONS rtsp://127.0.0.1:8554/cam RTSP/1.0\r\nCSeq: 1\r\n\r\n\
                      $\x01\x00\x04abcd\
                      DESCRIBE rtsp://127.0.0.1:8554/cam RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n";
        for cut in 1..bytes.len() {
            let mut reader = MessageReader::default();
            let mut methods = Vec::new();
            let mut data = 0;
            for piece in [&bytes[..cut], &bytes[cut..]] {
                reader.push(piece).unwrap();
                while let Some(message) = reader.next_message().unwrap() {
                    match message {
                        Incoming::Request(request) => methods.push(request.method().clone()),
                        Incoming::Data { channel, len } => {
                            assert_eq!((channel, len), (1, 4));
                            data += 1;
                        }
                    }
                }
            }
            assert_eq!(methods, [Method::Options, Method::Describe], "cut at {cut}");
            assert_eq!(data, 1);
        }
    }

    #[test]
    fn endless_headers_and_huge_bodies_are_refused_not_kept() {
        let mut reader = MessageReader::default();
        reader
            .push(b"OPTIONS rtsp://h/cam RTSP/1.0\r\nCSeq: 1\r\n")
            .unwrap();
        let header = b"X-Junk: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut refused = false;
        for _ in 0..1000 {
            if reader.push(header).is_err() {
                refused = true;
                break;
            }
            if let Err(e) = reader.next_message() {
                assert_eq!(e, FramingError::TooLarge);
                refused = true;
                break;
            }
        }
        assert!(refused, "endless headers were kept");

        let mut reader = MessageReader::default();
        reader
            .push(b"SET_PARAMETER rtsp://h/cam RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 999999999\r\n\r\n")
            .unwrap();
        let chunk = [b'x'; 1024];
        let outcome = (0..100).find_map(|_| {
            reader
                .push(&chunk)
                .err()
                .or_else(|| reader.next_message().err())
        });
        assert_eq!(outcome, Some(FramingError::TooLarge));
    }

    #[test]
    fn junk_and_responses_are_refused() {
        let mut reader = MessageReader::default();
        reader
            .push(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            .unwrap();
        assert!(reader.next_message().is_err());
        let mut reader = MessageReader::default();
        reader.push(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n").unwrap();
        assert_eq!(
            reader.next_message().unwrap_err(),
            FramingError::UnexpectedResponse
        );
    }
}
