//! Counts the RTP that actually leaves for one viewer, first transmissions and
//! retransmissions apart: the wire-most interceptor, so everything the others emit is counted.

use super::{Publisher, WireCount};
use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::marshal::MarshalSize;
use std::collections::VecDeque;
use std::time::Instant;

pub struct WireMeter {
    count: Publisher<WireCount>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl WireMeter {
    pub fn new(count: Publisher<WireCount>) -> Self {
        Self {
            count,
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for WireMeter {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(rtp) = &msg.message.packet {
            let bytes = rtp.marshal_size() as u64;
            let retransmission = msg.message.has(&Attribute::Retransmission);
            self.count.update(|count| {
                count.sent_bytes += bytes;
                count.sent_packets += 1;
                if retransmission {
                    count.retransmitted_bytes += bytes;
                    count.retransmitted_packets += 1;
                }
            });
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for WireMeter {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
