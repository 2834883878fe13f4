//! Building one viewer's peer connection: the negotiated H.264 codec, the interceptors, the
//! ICE policy, and the keyframe-request interceptor that lets PLI/FIR reach the application.

use super::offer::{H264Choice, OpusChoice};
use crate::config::IceConfig;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceServer, Registry, SettingEngineBuilder,
    register_default_interceptors,
};

/// Slot for the keyframe-request marker: after every built-in interceptor, so they have all
/// seen the RTCP (NACK responder, reports) before it is marked for the application.
const KEYFRAME_REQUEST_SLOT: usize = 14_000;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("WebRTC: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    #[error("no usable address on ICE interface {0:?}")]
    NoInterfaceAddress(String),
}

/// The codec as registered with the media engine: exactly the payload type and fmtp the viewer
/// offered, so the answer carries that one H.264 entry and nothing else.
pub fn h264_codec(choice: &H264Choice) -> RTCRtpCodecParameters {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: "video/H264".to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: choice.fmtp.clone(),
            rtcp_feedback: vec![
                feedback("nack", ""),
                feedback("nack", "pli"),
                feedback("ccm", "fir"),
            ],
        },
        payload_type: choice.payload_type,
    }
}

/// Opus as registered with the media engine: the viewer's payload type and fmtp, so the answer
/// agrees with the offer on every parameter.
pub fn opus_codec(choice: &OpusChoice) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: "audio/opus".to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: choice.fmtp.clone(),
            rtcp_feedback: vec![],
        },
        payload_type: choice.payload_type,
    }
}

/// Builds a peer connection that can send exactly the negotiated codecs: H.264, and Opus when
/// the viewer asked for audio and this device has it (otherwise the answer declines audio).
pub async fn build(
    video: &H264Choice,
    audio: Option<&OpusChoice>,
    ice: &IceConfig,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> Result<Arc<dyn PeerConnection>, PeerError> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_codec(h264_codec(video), RtpCodecKind::Video)?;
    if let Some(audio) = audio {
        media_engine.register_codec(opus_codec(audio), RtpCodecKind::Audio)?;
    }
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)?.with(
        Slot::from(KEYFRAME_REQUEST_SLOT),
        KeyframeRequestMarker::default(),
    );

    let mut settings = SettingEngineBuilder::new();
    let mut servers = Vec::new();
    let bind_addrs: Vec<SocketAddr> = if ice.loopback_only {
        settings = settings
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(true);
        vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)]
    } else {
        servers = ice
            .servers
            .iter()
            .map(|server| RTCIceServer {
                urls: server.urls.clone(),
                username: server.username.clone().unwrap_or_default(),
                credential: server
                    .credential
                    .as_ref()
                    .map(|c| c.0.clone())
                    .unwrap_or_default(),
            })
            .collect();
        bind_addresses(&ice.interfaces)?
    };
    let configuration = RTCConfigurationBuilder::new()
        .with_ice_servers(servers)
        .build();
    let peer = PeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_media_engine(media_engine)
        .with_setting_engine(settings.build())
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(bind_addrs)
        .build()
        .await?;
    Ok(Arc::new(peer))
}

/// Socket addresses for host candidates: each configured interface's addresses (names are
/// looked up now, so an interface that came up since start is found), or the IPv4 wildcard,
/// which webrtc expands to every non-loopback interface.
fn bind_addresses(interfaces: &[String]) -> Result<Vec<SocketAddr>, PeerError> {
    if interfaces.is_empty() {
        return Ok(vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)]);
    }
    let known = rtc::shared::ifaces::ifaces().unwrap_or_default();
    let mut addrs = Vec::new();
    for wanted in interfaces {
        if let Ok(ip) = wanted.parse::<IpAddr>() {
            addrs.push(SocketAddr::new(ip, 0));
            continue;
        }
        let before = addrs.len();
        for iface in known.iter().filter(|i| &i.name == wanted) {
            if let Some(addr) = iface.addr {
                addrs.push(SocketAddr::new(addr.ip(), 0));
            }
        }
        if addrs.len() == before {
            return Err(PeerError::NoInterfaceAddress(wanted.clone()));
        }
    }
    Ok(addrs)
}

/// Whether an RTCP packet asks for a keyframe.
pub fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Marks inbound RTCP compounds that contain a PLI or FIR for delivery to the application.
/// Inbound RTCP otherwise ends at the interceptor chain, and the keyframe request would never
/// reach the encoder. Nothing is dropped or rewritten here.
#[derive(Default)]
struct KeyframeRequestMarker {
    inbound: VecDeque<TaggedPacket>,
    outbound: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestMarker {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        let wants_keyframe = match &msg.message.packet {
            Packet::Rtcp(packets) => packets.iter().any(|p| is_keyframe_request(p.as_ref())),
            _ => false,
        };
        if wants_keyframe {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.inbound.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.inbound.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.outbound.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.outbound.pop_front()
    }
}

impl Interceptor for KeyframeRequestMarker {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_resolve_to_bind_addresses() {
        let wildcard = bind_addresses(&[]).unwrap();
        assert_eq!(wildcard, vec!["0.0.0.0:0".parse::<SocketAddr>().unwrap()]);
        let explicit = bind_addresses(&["10.1.2.3".into()]).unwrap();
        assert_eq!(explicit, vec!["10.1.2.3:0".parse::<SocketAddr>().unwrap()]);
        let lo = bind_addresses(&["lo".into()]).unwrap();
        assert!(lo.iter().any(|a| a.ip().is_loopback()), "{lo:?}");
        assert!(matches!(
            bind_addresses(&["no-such-if0".into()]),
            Err(PeerError::NoInterfaceAddress(_))
        ));
    }

    #[test]
    fn the_codec_echoes_the_offer_and_asks_for_keyframe_feedback() {
        let codec = h264_codec(&H264Choice {
            payload_type: 108,
            fmtp: "packetization-mode=1;profile-level-id=42e01f".into(),
        });
        assert_eq!(codec.payload_type, 108);
        assert_eq!(
            codec.rtp_codec.sdp_fmtp_line,
            "packetization-mode=1;profile-level-id=42e01f"
        );
        let feedback: Vec<_> = codec
            .rtp_codec
            .rtcp_feedback
            .iter()
            .map(|f| format!("{} {}", f.typ, f.parameter))
            .collect();
        assert!(feedback.contains(&"nack pli".to_owned()));
        assert!(feedback.contains(&"ccm fir".to_owned()));
    }
}
