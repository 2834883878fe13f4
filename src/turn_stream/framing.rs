//! TURN messages on a byte stream. Over UDP each datagram is one message; over TCP or TLS the
//! messages follow one another and the reader finds their ends from their headers (RFC 8656
//! §12.5): a STUN message is its 20-byte header plus the length in it, a ChannelData message
//! its 4-byte header plus the length in it, padded to a multiple of four on a stream.

/// A STUN header: type, length, magic cookie, transaction id.
const STUN_HEADER: usize = 20;
/// A ChannelData header: channel number, length.
const CHANNEL_HEADER: usize = 4;
/// The most a reader keeps while waiting for a message's end: the largest message a 16-bit
/// length allows, padding included.
pub const MAX_MESSAGE: usize = STUN_HEADER + u16::MAX as usize + 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("a message starting {0:#04x} is neither STUN nor ChannelData")]
    UnknownKind(u8),
    #[error("a STUN message length of {0} bytes is not a multiple of four")]
    UnalignedStun(usize),
    #[error("a {actual}-byte datagram whose header says {declared} bytes")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("a {0}-byte datagram is too short for a TURN message")]
    TooShort(usize),
}

/// How long a message is, read from its first four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Extent {
    /// Header and body: what a datagram carries.
    message: usize,
    /// What the message takes on a stream: ChannelData is padded to four bytes there.
    on_stream: usize,
}

fn extent(head: [u8; 4]) -> Result<Extent, FramingError> {
    let [first, _, high, low] = head;
    let length = usize::from(u16::from_be_bytes([high, low]));
    match first >> 6 {
        // STUN: the two top bits of the type are zero (RFC 5389 §6).
        0b00 => {
            if length % 4 != 0 {
                return Err(FramingError::UnalignedStun(length));
            }
            let message = STUN_HEADER + length;
            Ok(Extent {
                message,
                on_stream: message,
            })
        }
        // ChannelData: channel numbers are 0x4000..=0x4FFF (RFC 8656 §12).
        0b01 => {
            let message = CHANNEL_HEADER + length;
            Ok(Extent {
                message,
                on_stream: message.next_multiple_of(4),
            })
        }
        _ => Err(FramingError::UnknownKind(first)),
    }
}

fn head_of(bytes: &[u8]) -> Option<[u8; 4]> {
    bytes.get(..4)?.try_into().ok()
}

/// Appends `datagram`, one TURN message from the local client, to `stream` as the server
/// expects it on TCP: checked against its header, ChannelData padded.
pub fn to_stream(datagram: &[u8], stream: &mut Vec<u8>) -> Result<(), FramingError> {
    let head = head_of(datagram).ok_or(FramingError::TooShort(datagram.len()))?;
    let extent = extent(head)?;
    // A UDP client may already pad ChannelData; anything else must match exactly.
    if datagram.len() != extent.message && datagram.len() != extent.on_stream {
        return Err(FramingError::LengthMismatch {
            declared: extent.message,
            actual: datagram.len(),
        });
    }
    stream.extend_from_slice(datagram);
    stream.resize(stream.len() + extent.on_stream - datagram.len(), 0);
    Ok(())
}

/// Collects bytes read from the server's stream and hands out whole messages, padding removed,
/// each ready to go to the local client as one datagram. Holds at most one message's worth
/// beyond what it was last given.
#[derive(Debug, Default)]
pub struct StreamReader {
    pending: Vec<u8>,
}

impl StreamReader {
    /// The bytes most recently read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next whole message, `None` until one has arrived. An error means the stream is out
    /// of step and cannot be trusted any further.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let Some(head) = head_of(&self.pending) else {
            return Ok(None);
        };
        let extent = extent(head)?;
        if self.pending.len() < extent.on_stream {
            return Ok(None);
        }
        let mut message: Vec<u8> = self.pending.drain(..extent.on_stream).collect();
        message.truncate(extent.message);
        Ok(Some(message))
    }

    /// Bytes held for a message still arriving.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(body: usize) -> Vec<u8> {
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(body as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        m.extend_from_slice(&[7; 12]);
        m.extend(std::iter::repeat_n(0xab, body));
        m
    }

    fn channel_data(payload: usize) -> Vec<u8> {
        let mut m = vec![0x40, 0x01];
        m.extend_from_slice(&(payload as u16).to_be_bytes());
        m.extend(std::iter::repeat_n(0xcd, payload));
        m
    }

    #[test]
    fn stun_goes_onto_the_stream_as_it_is() {
        let mut stream = Vec::new();
        to_stream(&stun(8), &mut stream).unwrap();
        assert_eq!(stream, stun(8));
    }

    #[test]
    fn channel_data_is_padded_on_the_stream_and_unpadded_off_it() {
        let mut stream = Vec::new();
        to_stream(&channel_data(5), &mut stream).unwrap();
        assert_eq!(stream.len(), 12, "4 header + 5 payload, padded to 12");
        // A client that padded already is taken as it is.
        let mut padded = channel_data(5);
        padded.extend_from_slice(&[0, 0, 0]);
        to_stream(&padded, &mut stream).unwrap();
        assert_eq!(stream.len(), 24);

        let mut reader = StreamReader::default();
        reader.push(&stream);
        assert_eq!(reader.next_message().unwrap(), Some(channel_data(5)));
        assert_eq!(reader.next_message().unwrap(), Some(channel_data(5)));
        assert_eq!(reader.next_message().unwrap(), None);
        assert_eq!(reader.pending(), 0);
    }

    #[test]
    fn messages_split_anywhere_across_reads_come_out_whole() {
        let mut stream = Vec::new();
        for message in [stun(12), channel_data(3), stun(0), channel_data(100)] {
            to_stream(&message, &mut stream).unwrap();
        }
        for chunk in [1, 2, 3, 7, 19, stream.len()] {
            let mut reader = StreamReader::default();
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                reader.push(piece);
                while let Some(message) = reader.next_message().unwrap() {
                    out.push(message);
                }
            }
            assert_eq!(
                out,
                vec![stun(12), channel_data(3), stun(0), channel_data(100)],
                "read {chunk} bytes at a time"
            );
        }
    }

    #[test]
    fn what_is_not_turn_is_refused() {
        let mut stream = Vec::new();
        assert_eq!(
            to_stream(&[0x80, 0, 0, 0, 1, 2], &mut stream),
            Err(FramingError::UnknownKind(0x80)),
            "an RTP packet"
        );
        assert_eq!(
            to_stream(&[0, 1], &mut stream),
            Err(FramingError::TooShort(2))
        );
        let mut truncated = stun(8);
        truncated.pop();
        assert!(matches!(
            to_stream(&truncated, &mut stream),
            Err(FramingError::LengthMismatch { .. })
        ));
        let mut unaligned = stun(0);
        unaligned[3] = 3;
        assert_eq!(
            to_stream(&unaligned, &mut stream),
            Err(FramingError::UnalignedStun(3))
        );
        assert!(stream.is_empty(), "nothing refused reaches the stream");

        let mut reader = StreamReader::default();
        reader.push(&[0xc0, 0, 0, 4]);
        assert_eq!(reader.next_message(), Err(FramingError::UnknownKind(0xc0)));
    }

    #[test]
    fn a_reader_never_waits_for_more_than_one_message() {
        let mut reader = StreamReader::default();
        reader.push(&[0x40, 0x00, 0xff, 0xff]);
        assert_eq!(reader.next_message().unwrap(), None);
        reader.push(&vec![0; MAX_MESSAGE]);
        assert!(reader.next_message().unwrap().is_some());
        assert!(reader.pending() < MAX_MESSAGE);
    }
}
