//! One publication's task, carrying out what its [`Publication`] decides: each attempt makes a
//! session that offers (one more consumer of the one encode, its rate following its own link
//! like any viewer's), POSTs the offer, gives the session the server's answer, PATCHes the
//! candidates gathered after the offer, and DELETEs the session when it ends or campeer stops.

use super::client::{WhipClient, WhipError, excerpt};
use super::links;
use super::schedule::{Publication, PublicationStatus};
use crate::config::{IceConfig, IceServer, PublishTarget, SessionConfig};
use crate::media::audio_hub::AudioHub;
use crate::media::hub::VideoHub;
use crate::outbox::Outbox;
use crate::protocol::{Candidate, DeviceMessage, Segment, VideoCodec};
use crate::sdp::{CongestionFeedback, Negotiated, OpusChoice, VideoChoice};
use crate::session::{self, SessionContext, SessionTasks};
use crate::signaling::sessions::{EndReason, SessionCommand, SessionEvent};
use hyper::{Method, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use url::Url;

/// A publication's session ends after this long without a connection (or without feedback
/// from the server while connected), shorter than a viewer's: nobody is watching campeer
/// directly, and the server's audience waits for the publication to come back.
const PUBLICATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the session may take to make its offer (gathering host candidates included).
const OFFER_WAIT: Duration = Duration::from_secs(10);
/// The payload types campeer offers: the ones browsers use, which SFUs expect.
const VIDEO_PAYLOAD_TYPE: u8 = 102;
const AUDIO_PAYLOAD_TYPE: u8 = 111;
/// H.264 as campeer's encoders make it: constrained baseline, level 3.1.
const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";

/// What a publication's task needs.
pub struct PublicationParts {
    pub target: PublishTarget,
    /// The entry's place among the `[[publish]]` entries, from 1.
    pub number: usize,
    pub hub: VideoHub,
    /// `None` when the device has no microphone.
    pub audio: Option<AudioHub>,
    pub ice: IceConfig,
    pub sessions: SessionConfig,
    pub tasks: Arc<SessionTasks>,
    pub client: WhipClient,
    pub status: watch::Sender<PublicationStatus>,
}

/// How an attempt ended.
enum Outcome {
    /// campeer is stopping.
    Stopped,
    Ended(String),
}

/// Publishes until `stop` turns true, trying again after every failure.
pub async fn run(parts: PublicationParts, mut stop: watch::Receiver<bool>) {
    let url = parts.target.shown_url();
    let mut publication = Publication::new(url.clone(), parts.target.device.to_string());
    let mut servers_given: Vec<IceServer> = Vec::new();
    loop {
        publication.attempt();
        parts.status.send_replace(publication.status().clone());
        let outcome = attempt(&parts, &mut publication, &mut servers_given, &mut stop).await;
        let error = match outcome {
            Outcome::Stopped => return,
            Outcome::Ended(error) => error,
        };
        let wait = publication.ended(Instant::now(), error.clone(), rand::random());
        parts.status.send_replace(publication.status().clone());
        tracing::warn!(
            "publication of {} to {url} ended: {error}; trying again in {:.1} s",
            parts.target.device,
            wait.as_secs_f64()
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// Resolves once campeer is stopping (or the sender is gone, which means the same).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// The codecs a publication offers: H.264 from the one encode, and Opus when the device has a
/// microphone; transport-wide congestion control, which SFUs answer, for its link's estimate.
fn offered_codecs(with_audio: bool) -> Negotiated {
    let opus = with_audio.then(|| OpusChoice {
        payload_type: AUDIO_PAYLOAD_TYPE,
        fmtp: OPUS_FMTP.to_owned(),
    });
    Negotiated {
        video: VideoChoice {
            codec: VideoCodec::H264,
            payload_type: VIDEO_PAYLOAD_TYPE,
            fmtp: H264_FMTP.to_owned(),
        },
        audio: opus.clone(),
        offered_audio: opus,
        feedback: CongestionFeedback::Remb,
        audio_transport_cc: false,
    }
}

/// One attempt, from the offer to the session's end.
async fn attempt(
    parts: &PublicationParts,
    publication: &mut Publication,
    servers_given: &mut Vec<IceServer>,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let target = &parts.target;
    let (outbox, mut trickled) = Outbox::for_publication();
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let mut ice = parts.ice.clone();
    ice.servers.extend(servers_given.iter().cloned());
    let context = SessionContext {
        hub: parts.hub.clone(),
        audio: parts.audio.clone(),
        ice,
        timeout: parts.sessions.timeout().min(PUBLICATION_TIMEOUT),
        connect_timeout: parts.sessions.connect_timeout().min(PUBLICATION_TIMEOUT),
        outbox,
        reports: reports_tx,
        tasks: Arc::clone(&parts.tasks),
    };
    // Named in the log beside viewers' sessions: `whip-1` is the first `[[publish]]` entry.
    let id =
        Segment::parse(&format!("whip-{}", parts.number)).unwrap_or_else(|_| target.device.clone());
    let choice = offered_codecs(context.audio.is_some());
    let (session, offer) = session::spawn_offering(context, id, choice);

    let offer = tokio::select! {
        offer = tokio::time::timeout(OFFER_WAIT, offer) => match offer {
            Ok(Ok(offer)) => offer,
            Ok(Err(_)) => return Outcome::Ended(ended_early(&mut reports).await),
            Err(_) => return Outcome::Ended("campeer's offer took too long".into()),
        },
        () = stopped(stop) => return Outcome::Stopped,
    };
    let token = target.token.as_ref().map(|t| format!("Bearer {}", t.0));
    let mut headers = vec![("content-type", "application/sdp")];
    if let Some(token) = &token {
        headers.push(("authorization", token.as_str()));
    }
    let posted = tokio::select! {
        posted = parts.client.send(Method::POST, &target.url, &headers, offer) => posted,
        () = stopped(stop) => return Outcome::Stopped,
    };
    let resource = match answered(&target.url, posted) {
        Ok(answer) => {
            *servers_given = answer.ice_servers;
            session.send(SessionCommand::Answer(answer.sdp));
            answer.resource
        }
        Err(e) => {
            session.send(SessionCommand::Hangup);
            return Outcome::Ended(e.to_string());
        }
    };
    let shown = target.shown_url();
    tracing::info!(
        "publication of {} to {shown}: answered, connecting",
        target.device
    );

    let mut trickle = Trickle::default();
    let outcome = loop {
        tokio::select! {
            report = reports.recv() => match report.map(|r| r.event) {
                Some(SessionEvent::Connected) => {
                    publication.publishing(Instant::now());
                    parts.status.send_replace(publication.status().clone());
                    tracing::info!("publishing {} to {shown}", target.device);
                }
                Some(SessionEvent::Answered) => {}
                Some(SessionEvent::Ended(reason)) => break Outcome::Ended(why_it_ended(&reason)),
                None => break Outcome::Ended("the session vanished".into()),
            },
            Some(message) = trickled.recv() => {
                if let DeviceMessage::Candidate { candidate } = message {
                    trickle.send(parts, &resource, token.as_deref(), candidate).await;
                }
            }
            () = stopped(stop) => break Outcome::Stopped,
        }
    };
    session.send(SessionCommand::Hangup);
    delete(parts, &resource, token.as_deref()).await;
    outcome
}

/// A publication's session's end, in words for the status and the log.
fn why_it_ended(reason: &EndReason) -> String {
    match reason {
        EndReason::Timeout => format!(
            "no connection to the server for {} s",
            PUBLICATION_TIMEOUT.as_secs()
        ),
        EndReason::SetupFailed(error) => format!("the server's answer was refused: {error}"),
        EndReason::Failed(why) => why.clone(),
        other => format!("the session ended ({})", other.name()),
    }
}

/// Why a session ended before it made its offer.
async fn ended_early(
    reports: &mut mpsc::UnboundedReceiver<crate::signaling::sessions::SessionReport>,
) -> String {
    match tokio::time::timeout(Duration::from_secs(1), reports.recv()).await {
        Ok(Some(report)) => match report.event {
            SessionEvent::Ended(reason) => format!("campeer could not offer: {reason:?}"),
            other => format!("campeer could not offer ({other:?})"),
        },
        _ => "campeer could not offer".into(),
    }
}

/// What a 201 brings.
#[derive(Debug)]
pub struct Answered {
    pub sdp: String,
    pub resource: Url,
    pub ice_servers: Vec<IceServer>,
}

/// Reads the server's reply to the offer: 201 with an SDP answer and a Location (relative to
/// the endpoint or absolute); anything else is a typed refusal.
pub fn answered(
    endpoint: &Url,
    posted: Result<super::client::Reply, WhipError>,
) -> Result<Answered, WhipError> {
    let reply = posted?;
    let url = crate::config::url_without_credentials(endpoint);
    if reply.status != StatusCode::CREATED {
        return Err(WhipError::Refused {
            url,
            status: reply.status.as_u16(),
            excerpt: excerpt(&reply.body),
        });
    }
    let resource = reply
        .header("location")
        .and_then(|location| endpoint.join(location.trim()).ok())
        .filter(|resource| matches!(resource.scheme(), "http" | "https"))
        .ok_or(WhipError::NoLocation { url: url.clone() })?;
    if !reply.body.trim_start().starts_with("v=0") {
        return Err(WhipError::NotAnAnswer { url });
    }
    Ok(Answered {
        ice_servers: links::ice_servers(reply.headers_named("link")),
        sdp: reply.body,
        resource,
    })
}

/// Candidates gathered after the offer, sent by PATCH until the server refuses one (it may
/// not take trickle: the offer's host candidates then have to do).
#[derive(Default)]
struct Trickle {
    refused: bool,
}

impl Trickle {
    async fn send(
        &mut self,
        parts: &PublicationParts,
        resource: &Url,
        token: Option<&str>,
        candidate: Option<Candidate>,
    ) {
        if self.refused {
            return;
        }
        let fragment = sdp_fragment(candidate.as_ref());
        let mut headers = vec![
            ("content-type", "application/trickle-ice-sdpfrag"),
            ("if-match", "*"),
        ];
        if let Some(token) = token {
            headers.push(("authorization", token));
        }
        match parts
            .client
            .send(Method::PATCH, resource, &headers, fragment)
            .await
        {
            Ok(reply) if reply.status.is_success() => {}
            Ok(reply) => {
                tracing::debug!(
                    "{resource} takes no trickled candidates ({}); the offer's have to do",
                    reply.status
                );
                self.refused = true;
            }
            Err(e) => tracing::debug!("could not trickle a candidate to {resource}: {e}"),
        }
    }
}

/// A trickle-ice-sdpfrag (RFC 8840) with one candidate, or the end of candidates.
fn sdp_fragment(candidate: Option<&Candidate>) -> String {
    let Some(candidate) = candidate else {
        return "a=end-of-candidates\r\n".to_owned();
    };
    let mut fragment = String::new();
    if let Some(ufrag) = &candidate.username_fragment {
        fragment.push_str(&format!("a=ice-ufrag:{ufrag}\r\n"));
    }
    fragment.push_str("m=video 9 UDP/TLS/RTP/SAVPF 0\r\n");
    if let Some(mid) = &candidate.sdp_mid {
        fragment.push_str(&format!("a=mid:{mid}\r\n"));
    }
    let line = candidate.candidate.trim();
    let line = line.strip_prefix("a=").unwrap_or(line);
    fragment.push_str(&format!("a={line}\r\n"));
    fragment
}

/// Ends the session on the server (best effort: a server that is gone has ended it already).
async fn delete(parts: &PublicationParts, resource: &Url, token: Option<&str>) {
    let headers: Vec<(&str, &str)> = token.map(|t| ("authorization", t)).into_iter().collect();
    match parts
        .client
        .send(Method::DELETE, resource, &headers, String::new())
        .await
    {
        Ok(reply) => tracing::debug!("DELETE {resource}: {}", reply.status),
        Err(e) => tracing::debug!("DELETE {resource} failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::client::Reply;

    fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Result<Reply, WhipError> {
        Ok(Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.to_owned(),
        })
    }

    #[test]
    fn a_201_gives_the_answer_its_resource_and_ice_servers() {
        let endpoint = Url::parse("http://sfu.example:7080/whip/endpoint/cam").unwrap();
        let ok = answered(
            &endpoint,
            reply(
                201,
                &[
                    ("location", "/whip/resource/abc"),
                    ("link", r#"<stun:stun.example.net>; rel="ice-server""#),
                ],
                "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n",
            ),
        )
        .ok()
        .unwrap();
        assert_eq!(
            ok.resource.as_str(),
            "http://sfu.example:7080/whip/resource/abc"
        );
        assert_eq!(ok.ice_servers.len(), 1);
        let absolute = answered(
            &endpoint,
            reply(201, &[("location", "https://other.example/r/1")], "v=0\r\n"),
        )
        .ok()
        .unwrap();
        assert_eq!(absolute.resource.as_str(), "https://other.example/r/1");
    }

    #[test]
    fn refusals_junk_and_missing_locations_are_typed_errors() {
        let endpoint = Url::parse("http://sfu.example/whip/endpoint/cam").unwrap();
        let busy = answered(&endpoint, reply(403, &[], "Endpoint ID already in use\n"));
        assert!(
            matches!(&busy, Err(WhipError::Refused { status: 403, excerpt, .. }) if excerpt == "Endpoint ID already in use"),
            "{:?}",
            busy.err()
        );
        let nowhere = answered(&endpoint, reply(201, &[], "v=0\r\n"));
        assert!(matches!(nowhere, Err(WhipError::NoLocation { .. })));
        let junk = answered(&endpoint, reply(201, &[("location", "/r/1")], "<html>"));
        assert!(matches!(junk, Err(WhipError::NotAnAnswer { .. })));
        let elsewhere = answered(&endpoint, reply(201, &[("location", "ftp://x/r")], "v=0"));
        assert!(matches!(elsewhere, Err(WhipError::NoLocation { .. })));
    }

    #[test]
    fn candidates_travel_in_trickle_fragments() {
        let candidate = Candidate {
            candidate: "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: Some("abcd".into()),
        };
        assert_eq!(
            sdp_fragment(Some(&candidate)),
            "a=ice-ufrag:abcd\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
             a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\n"
        );
        assert_eq!(sdp_fragment(None), "a=end-of-candidates\r\n");
    }
}
