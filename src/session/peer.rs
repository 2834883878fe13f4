//! Building one viewer's peer connection: the negotiated video codec, the interceptors, the
//! ICE policy, and the keyframe-request interceptor that lets PLI/FIR reach the application.

use super::ice::{self, IceError};
use crate::config::IceConfig;
use crate::link::{self, Link, LinkWriters};
use crate::sdp::{CongestionFeedback, Negotiated, OpusChoice, TRANSPORT_CC_URI, VideoChoice};
use rtc::interceptor::{
    Attribute, CongestionControlBuilder, Interceptor, Packet, Slot, StreamInfo, TaggedPacket,
    TwccSenderBuilder,
};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, Registry, SettingEngineBuilder,
};

/// Where campeer's own interceptors sit in the chain, as distances from the wire (rtc's named
/// slots are the thousands). The meter is wire-most, so it counts everything that leaves; the
/// feedback reader sits wire-ward of the report interceptors, which consume what it reads; the
/// keyframe-request marker is application-most, after every built-in interceptor has seen the
/// RTCP.
const WIRE_METER_SLOT: usize = 500;
/// Wire-ward of the pacer (3000): the abs-send-time stamp is the real departure.
const SEND_TIME_SLOT: usize = 2_500;
const FEEDBACK_READER_SLOT: usize = 4_500;
const KEYFRAME_REQUEST_SLOT: usize = 14_000;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("WebRTC: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    #[error(transparent)]
    Ice(#[from] IceError),
}

fn feedback(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    }
}

/// The RTCP feedback a codec announces for the viewer's congestion feedback.
fn congestion_feedback_types(congestion: CongestionFeedback) -> Vec<RTCPFeedback> {
    match congestion {
        CongestionFeedback::TransportCc => vec![feedback("transport-cc", "")],
        CongestionFeedback::Remb => vec![feedback("goog-remb", "")],
        CongestionFeedback::ReceiverReports => vec![],
    }
}

/// The video codec as registered with the media engine: exactly the codec, payload type and
/// fmtp the viewer offered, so the answer carries that one entry and nothing else.
pub fn video_codec(choice: &VideoChoice, congestion: CongestionFeedback) -> RTCRtpCodecParameters {
    let mut rtcp_feedback = vec![
        feedback("nack", ""),
        feedback("nack", "pli"),
        feedback("ccm", "fir"),
    ];
    rtcp_feedback.extend(congestion_feedback_types(congestion));
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: choice.codec.mime_type().to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: choice.fmtp.clone(),
            rtcp_feedback,
        },
        payload_type: choice.payload_type,
    }
}

/// Opus as registered with the media engine: the viewer's payload type and fmtp, so the answer
/// agrees with the offer on every parameter. With `transport_cc`, sound is counted in the
/// estimate too.
pub fn opus_codec(choice: &OpusChoice, transport_cc: bool) -> RTCRtpCodecParameters {
    let rtcp_feedback = if transport_cc {
        congestion_feedback_types(CongestionFeedback::TransportCc)
    } else {
        vec![]
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: "audio/opus".to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: choice.fmtp.clone(),
            rtcp_feedback,
        },
        payload_type: choice.payload_type,
    }
}

/// The interceptor chain for one viewer: RTCP reports, the keyframe-request marker, and the
/// link's estimator, pacer, retransmitter and meter, each given the writer of what it alone
/// measures and the `link` to read the others'. The estimate's one writer goes to the
/// estimator for a transport-cc viewer and to the feedback reader otherwise.
fn interceptors(
    media_engine: &mut MediaEngine,
    link: &Link,
    writers: LinkWriters,
    congestion: CongestionFeedback,
    audio_transport_cc: bool,
) -> Result<Registry, PeerError> {
    use link::feedback::Estimating;
    configure_simulcast_extension_headers(media_engine)?;
    let LinkWriters {
        estimate,
        receiver,
        congestion: congestion_report,
        wire,
        retransmissions,
        pacer,
        events,
    } = writers;
    let (estimator, estimating) = match congestion {
        CongestionFeedback::TransportCc => (Some(estimate), Estimating::Nothing),
        CongestionFeedback::Remb => (None, Estimating::FromRemb(estimate)),
        CongestionFeedback::ReceiverReports => (None, Estimating::FromLoss(estimate)),
    };
    let mut registry = configure_rtcp_reports(Registry::new())
        .with(
            Slot::from(WIRE_METER_SLOT),
            link::meter::WireMeter::new(wire),
        )
        .with(Slot::Pacer, link::pacer::Pacer::new(link.clone(), pacer))
        .with(
            Slot::NackResponder,
            link::retransmit::Retransmitter::new(link.clone(), retransmissions, events),
        )
        .with(
            Slot::from(FEEDBACK_READER_SLOT),
            link::feedback::FeedbackReader::new(receiver, estimating),
        )
        .with(
            Slot::from(KEYFRAME_REQUEST_SLOT),
            KeyframeRequestMarker::default(),
        );
    if congestion == CongestionFeedback::Remb {
        // A REMB viewer estimates from the send times campeer stamps on its packets.
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            media_engine.register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: link::send_time::ABS_SEND_TIME_URI.to_owned(),
                },
                kind,
                None,
            )?;
        }
        registry = registry.with(
            Slot::from(SEND_TIME_SLOT),
            link::send_time::SendTimeStamper::new(),
        );
    }
    if let Some(estimate) = estimator {
        let kinds: &[RtpCodecKind] = if audio_transport_cc {
            &[RtpCodecKind::Video, RtpCodecKind::Audio]
        } else {
            &[RtpCodecKind::Video]
        };
        for &kind in kinds {
            media_engine.register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: TRANSPORT_CC_URI.to_owned(),
                },
                kind,
                None,
            )?;
        }
        registry = registry
            .with(
                Slot::CongestionControl,
                CongestionControlBuilder::new(link::estimator::LinkEstimator::new(
                    estimate,
                    congestion_report,
                ))
                .build(),
            )
            .with(Slot::TwccSender, TwccSenderBuilder::new().build());
    }
    Ok(registry)
}

/// A new peer connection, and how many host candidates it will gather (one per socket).
pub struct BuiltPeer {
    pub peer: Arc<dyn PeerConnection>,
    pub host_sockets: usize,
}

/// How often ICE checks a candidate pair while connecting. rtc's default, 200 ms, puts a
/// tick or two of waiting (200-400 ms) between the answer and the first picture; a check
/// every 25 ms costs a few hundred bytes more per pair and brings the connection up as soon as
/// the viewer nominates.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(25);
/// Checks per pair before it counts as failed: as long in time as rtc's default (7 × 200 ms),
/// so a lossy Wi-Fi link gets the same chances.
const ICE_MAX_BINDING_REQUESTS: u16 = 56;

/// Builds a peer connection that can send exactly the negotiated codecs: the video codec, and Opus when
/// the viewer asked for audio and this device has it (otherwise the answer declines audio).
pub async fn build(
    choice: &Negotiated,
    link: &Link,
    writers: LinkWriters,
    ice: &IceConfig,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> Result<BuiltPeer, PeerError> {
    let congestion = choice.feedback;
    // The offer's Opus is registered even when the device sends none, so that the answer
    // names it for an inactive audio section.
    let audio_transport_cc =
        choice.audio_transport_cc && congestion == CongestionFeedback::TransportCc;
    let mut media_engine = MediaEngine::default();
    media_engine.register_codec(video_codec(&choice.video, congestion), RtpCodecKind::Video)?;
    if let Some(audio) = &choice.offered_audio {
        media_engine.register_codec(opus_codec(audio, audio_transport_cc), RtpCodecKind::Audio)?;
    }
    let registry = interceptors(
        &mut media_engine,
        link,
        writers,
        congestion,
        audio_transport_cc,
    )?;

    let mut settings = SettingEngineBuilder::new()
        .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_MAX_BINDING_REQUESTS));
    let mut servers = Vec::new();
    let bind_addrs: Vec<SocketAddr> = if ice.loopback_only {
        settings = settings
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(true);
        vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)]
    } else {
        if !ice::mdns_available() {
            settings = settings.with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled);
        }
        servers = ice::ice_servers(ice);
        ice::bind_addresses(&ice.interfaces)?
    };
    let host_sockets = bind_addrs.len();
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
    Ok(BuiltPeer {
        peer: Arc::new(peer),
        host_sockets,
    })
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

    fn feedback_lines(codec: &RTCRtpCodecParameters) -> Vec<String> {
        codec
            .rtp_codec
            .rtcp_feedback
            .iter()
            .map(|f| format!("{} {}", f.typ, f.parameter).trim().to_owned())
            .collect()
    }

    #[test]
    fn the_codec_echoes_the_offer_and_asks_for_keyframe_and_link_feedback() {
        let choice = VideoChoice {
            codec: crate::protocol::VideoCodec::H264,
            payload_type: 108,
            fmtp: "packetization-mode=1;profile-level-id=42e01f".into(),
        };
        let codec = video_codec(&choice, CongestionFeedback::TransportCc);
        assert_eq!(codec.payload_type, 108);
        assert_eq!(
            codec.rtp_codec.sdp_fmtp_line,
            "packetization-mode=1;profile-level-id=42e01f"
        );
        let lines = feedback_lines(&codec);
        for wanted in ["nack", "nack pli", "ccm fir", "transport-cc"] {
            assert!(lines.contains(&wanted.to_owned()), "{lines:?}");
        }
        let remb = feedback_lines(&video_codec(&choice, CongestionFeedback::Remb));
        assert!(
            remb.contains(&"goog-remb".to_owned()) && !remb.contains(&"transport-cc".to_owned())
        );
        let plain = feedback_lines(&video_codec(&choice, CongestionFeedback::ReceiverReports));
        assert_eq!(plain, vec!["nack", "nack pli", "ccm fir"]);
        let vp8 = VideoChoice {
            codec: crate::protocol::VideoCodec::Vp8,
            payload_type: 120,
            fmtp: "max-fs=12288;max-fr=60".into(),
        };
        let codec = video_codec(&vp8, CongestionFeedback::TransportCc);
        assert_eq!(codec.rtp_codec.mime_type, "video/VP8");
        assert_eq!(codec.payload_type, 120);
        assert_eq!(codec.rtp_codec.sdp_fmtp_line, "max-fs=12288;max-fr=60");
    }

    #[test]
    fn the_chain_has_campeers_link_interceptors_and_the_negotiated_congestion_control() {
        let chain = |feedback: CongestionFeedback| {
            let (link, writers) = Link::new(feedback, 500_000.0, 2_000_000.0);
            let mut engine = MediaEngine::default();
            interceptors(&mut engine, &link, writers, feedback, true).unwrap()
        };
        let with_twcc = chain(CongestionFeedback::TransportCc);
        let slots: Vec<usize> = with_twcc
            .slots()
            .into_iter()
            .map(|(s, _)| s.slot())
            .collect();
        assert_eq!(
            slots,
            vec![
                500, 1_000, 2_000, 3_000, 4_000, 4_500, 10_000, 11_000, 14_000
            ]
        );
        // REMB: the send-time stamper instead of the estimator and the TWCC sender.
        let remb = chain(CongestionFeedback::Remb);
        let slots: Vec<usize> = remb.slots().into_iter().map(|(s, _)| s.slot()).collect();
        assert_eq!(
            slots,
            vec![500, 2_500, 3_000, 4_000, 4_500, 10_000, 11_000, 14_000]
        );
        let plain = chain(CongestionFeedback::ReceiverReports);
        let slots: Vec<usize> = plain.slots().into_iter().map(|(s, _)| s.slot()).collect();
        assert_eq!(
            slots,
            vec![500, 3_000, 4_000, 4_500, 10_000, 11_000, 14_000]
        );
    }
}
