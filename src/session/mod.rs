//! One viewer session: a WebRTC peer connection that answers the viewer's offer, trickles ICE
//! both ways, sends the shared H.264 stream, forwards keyframe requests, and ends on hangup,
//! on timeout, or when the daemon stops.
//!
//! Each session is a task of its own, so a slow or broken peer only ever affects itself.

pub mod ice;
pub mod liveness;
pub mod path;
pub mod peer;
pub mod policy;

use crate::config::IceConfig;
use crate::link::{self, Link};
use crate::media::audio_hub::{AudioHub, AudioSubscription, EncodedAudio};
use crate::media::hub::{EncodedFrame, KeyframeRequester, Subscription, VideoHub};
use crate::media::rtp::RtpStamper;
use crate::outbox::Outbox;
use crate::protocol::{Candidate, DeviceMessage, Segment};
use crate::sdp::{self, Negotiated};
use crate::signaling::sessions::{
    EndReason, SessionCommand, SessionError, SessionEvent, SessionReport,
};
use liveness::{LinkState, Liveness};
use policy::{FrameAction, FrameContext, LinkPolicy};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::statistics::StatsSelector;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription,
};

/// Commands a viewer can queue before its session processes them; beyond this a flooding
/// viewer's messages are dropped.
const COMMAND_QUEUE: usize = 64;
/// How long closing a peer connection may take before the session gives up on it.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// How often a session looks at its link: keyframes wanted, feedback gone quiet.
const LINK_CHECK_PERIOD: Duration = Duration::from_millis(250);
/// The longest the answer waits for host candidates: they come from sockets already bound,
/// within a millisecond; this only bounds a gatherer that never reports.
/// Applying a viewer's new offer and making the answer takes milliseconds; the viewer must
/// hear back either way, so a renegotiation that takes longer is refused.
const RENEGOTIATION_WAIT: Duration = Duration::from_secs(4);
const HOST_CANDIDATE_WAIT: Duration = Duration::from_millis(50);
/// How far the estimator may go above what campeer sends at most: some room, so the estimate
/// is not pinned to the ceiling, but not so much that a shrinking link takes long to notice.
const ESTIMATE_HEADROOM: f64 = 1.3;

/// How many session tasks run, and the most that ever ran at once: what admission control
/// promises to keep within the viewer limit, observable from outside.
#[derive(Debug, Default)]
pub struct SessionTasks {
    running: AtomicUsize,
    peak: AtomicUsize,
    started: AtomicUsize,
}

impl SessionTasks {
    fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
        let running = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(running, Ordering::Relaxed);
    }

    fn ended(&self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Session tasks started since the daemon started.
    pub fn started_total(&self) -> usize {
        self.started.load(Ordering::Relaxed)
    }
}

/// Everything a session needs from the daemon.
#[derive(Clone)]
pub struct SessionContext {
    pub hub: VideoHub,
    /// `None` when this device has no audio.
    pub audio: Option<AudioHub>,
    pub ice: IceConfig,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Where this device's messages to viewers go (MQTT, or a waiting WHEP request).
    pub outbox: Outbox,
    pub reports: mpsc::UnboundedSender<SessionReport>,
    pub tasks: Arc<SessionTasks>,
}

/// Tells the device that a session task ended, when dropped: at the end of the task, or
/// while a panic unwinds it.
struct EndNotice {
    reports: mpsc::UnboundedSender<SessionReport>,
    tasks: Arc<SessionTasks>,
    id: Segment,
    serial: u64,
    reason: Option<EndReason>,
}

impl Drop for EndNotice {
    fn drop(&mut self) {
        self.tasks.ended();
        let reason = self.reason.take().unwrap_or_else(|| {
            if std::thread::panicking() {
                tracing::error!(session = %self.id, "the session task panicked");
                EndReason::Failed("the session task panicked".into())
            } else {
                // Dropped at an await: the runtime is shutting down or the task was aborted.
                tracing::debug!(session = %self.id, "the session task was cancelled");
                EndReason::Failed("the session task was cancelled".into())
            }
        });
        let _ = self.reports.send(SessionReport {
            id: self.id.clone(),
            serial: self.serial,
            event: SessionEvent::Ended(reason),
        });
    }
}

/// The device's handle on a running session.
pub struct SessionHandle {
    pub serial: u64,
    commands: mpsc::Sender<SessionCommand>,
    /// The viewer's link as the session measures it, for the stats topic.
    pub link: Link,
    pub sampler: link::stats::RateSampler,
}

impl SessionHandle {
    /// Queues a command without waiting. `false` when the session is gone or flooded.
    pub fn send(&self, command: SessionCommand) -> bool {
        self.commands.try_send(command).is_ok()
    }
}

/// Starts a session for an offer whose codecs have already been chosen.
pub fn spawn(
    context: SessionContext,
    id: Segment,
    serial: u64,
    choice: Negotiated,
    offer_sdp: String,
    early_candidates: Vec<Candidate>,
) -> SessionHandle {
    let role = Role::Answer {
        offer_sdp,
        early_candidates,
    };
    spawn_in_role(context, id, serial, choice, role)
}

/// Starts a session that makes the offer itself, with the codecs in `choice`, as a WHIP
/// publisher does: the offer (with campeer's host candidates) comes out of the receiver, and
/// the server's answer goes in as [`SessionCommand::Answer`]. Later candidates go to the
/// context's outbox.
pub fn spawn_offering(
    context: SessionContext,
    id: Segment,
    choice: Negotiated,
) -> (SessionHandle, oneshot::Receiver<String>) {
    let (offer_out, offer) = oneshot::channel();
    let handle = spawn_in_role(context, id, 0, choice, Role::Offer { offer_out });
    (handle, offer)
}

/// Which side of the offer/answer exchange the session is on.
enum Role {
    /// A viewer offered; campeer answers.
    Answer {
        offer_sdp: String,
        early_candidates: Vec<Candidate>,
    },
    /// campeer offers (to a WHIP server) and is told the answer later.
    Offer { offer_out: oneshot::Sender<String> },
}

fn spawn_in_role(
    context: SessionContext,
    id: Segment,
    serial: u64,
    choice: Negotiated,
    role: Role,
) -> SessionHandle {
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let link::ServedLink {
        link,
        writers,
        path,
        events: link_events,
    } = new_link(&context, &choice);
    let session_link = link.clone();
    context.tasks.started();
    tokio::spawn(async move {
        // Reports the end even if the task panics, so the viewer slot is always given back.
        let mut notice = EndNotice {
            reports: context.reports.clone(),
            tasks: Arc::clone(&context.tasks),
            id: id.clone(),
            serial,
            reason: None,
        };
        let started = Session::start(
            &context,
            &id,
            serial,
            choice,
            (session_link, writers, path),
            role,
        )
        .await;
        let reason = match started {
            Ok(mut session) => {
                let reason = session.serve(commands, link_events).await;
                session.close().await;
                reason
            }
            Err(error) => {
                tracing::warn!(session = %id, "could not start the session: {error}");
                EndReason::SetupFailed(error)
            }
        };
        tracing::info!(session = %id, "session ended: {reason:?}");
        notice.reason = Some(reason);
    });
    SessionHandle {
        serial,
        commands: commands_tx,
        link,
        sampler: link::stats::RateSampler::default(),
    }
}

/// The sound a viewer is sent beside the video, in bits per second of codec rate.
fn audio_bps(context: &SessionContext, choice: &Negotiated) -> f64 {
    match (&context.audio, &choice.audio) {
        (Some(hub), Some(_)) => f64::from(hub.settings().bitrate_bps),
        _ => 0.0,
    }
}

/// A fresh link for a viewer, its writers, and the receiver of what its interceptors ask of
/// the session: its estimate starts at [`link::INITIAL_ESTIMATE_BPS`] and may not go far above
/// the most campeer would send it.
fn new_link(context: &SessionContext, choice: &Negotiated) -> link::ServedLink {
    let most = estimate_ceiling_bps(
        context.hub.video().bitrate_bps(),
        audio_bps(context, choice),
    );
    Link::served(choice.feedback, link::INITIAL_ESTIMATE_BPS, most)
}

/// The highest estimate a viewer's link may reach: what campeer sends at most (the encoder's
/// configured rate and the sound, as payload), with [`ESTIMATE_HEADROOM`].
pub(crate) fn estimate_ceiling_bps(video_bps: u32, audio_bps: f64) -> f64 {
    (f64::from(video_bps) + audio_bps) / crate::media::rate::PAYLOAD_SHARE * ESTIMATE_HEADROOM
}

fn send(outbox: &Outbox, id: &Segment, message: &DeviceMessage) {
    if let Err(e) = outbox.send(id, message) {
        tracing::warn!(session = %id, "could not send to the viewer: {e}");
    }
}

/// Peer-connection events, moved from the webrtc callbacks into the session task.
enum PeerEvent {
    LocalCandidate(String),
    GatheringComplete,
    State(RTCPeerConnectionState),
}

struct EventForwarder(mpsc::UnboundedSender<PeerEvent>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for EventForwarder {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let _ = self.0.send(PeerEvent::LocalCandidate(init.candidate));
            }
            Err(e) => tracing::warn!("could not encode a local ICE candidate: {e}"),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.0.send(PeerEvent::GatheringComplete);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.0.send(PeerEvent::State(state));
    }
}

/// The audio half of a session, when the viewer asked for audio and the device has it.
struct AudioSend {
    track: Arc<TrackLocalStaticRTP>,
    subscription: AudioSubscription,
    stamper: RtpStamper,
}

/// A local track for one viewer: the video and audio tracks share a stream id, so the browser
/// puts them in one MediaStream and keeps them in sync.
fn local_track(
    id: &Segment,
    kind: RtpCodecKind,
    ssrc: u32,
    codec: rtc::rtp_transceiver::rtp_sender::RTCRtpCodec,
) -> Arc<TrackLocalStaticRTP> {
    let name = match kind {
        RtpCodecKind::Audio => "audio",
        _ => "video",
    };
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("campeer-{id}"),
        name.to_owned(),
        format!("campeer {name}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )))
}

/// Adds a local track, closing the peer connection if it cannot be added.
async fn add_track(
    peer: &Arc<dyn PeerConnection>,
    track: &Arc<TrackLocalStaticRTP>,
    kind: &str,
) -> Result<(), SessionError> {
    if let Err(e) = peer
        .add_track(Arc::clone(track) as Arc<dyn TrackLocal>)
        .await
    {
        let _ = peer.close().await;
        return Err(SessionError::Setup(format!(
            "cannot add the {kind} track: {e}"
        )));
    }
    Ok(())
}

struct Session<'a> {
    context: &'a SessionContext,
    id: &'a Segment,
    serial: u64,
    /// Whether the device has been told that the connection came up.
    reported_connected: bool,
    peer: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    events: mpsc::UnboundedReceiver<PeerEvent>,
    subscription: Subscription,
    link: Link,
    /// The session publishes the media path on the link; the interceptors the rest.
    path: link::PathWriter,
    /// What to do about the link: which frames to send, keyframes, the feedback timeout.
    policy: LinkPolicy,
    audio: Option<AudioSend>,
    liveness: Liveness,
    stamper: RtpStamper,
    /// The local description's first mid and ICE ufrag, named in every trickled candidate.
    local_mid: Option<String>,
    local_ufrag: Option<String>,
    /// Host candidates to wait for before answering (one per socket).
    host_sockets: usize,
    /// Candidates the last answer carried, which need no trickling.
    answered_candidates: Vec<String>,
    keyframe_requests: tokio::task::JoinHandle<()>,
}

impl<'a> Session<'a> {
    async fn start(
        context: &'a SessionContext,
        id: &'a Segment,
        serial: u64,
        choice: Negotiated,
        (link, writers, path): (Link, link::LinkWriters, link::PathWriter),
        role: Role,
    ) -> Result<Session<'a>, SessionError> {
        let (events_tx, events) = mpsc::unbounded_channel();
        // Audio goes out only when the viewer asked for it and this device has it.
        let audio = context.audio.as_ref().zip(choice.audio.as_ref());
        let peer::BuiltPeer { peer, host_sockets } = peer::build(
            &choice,
            &link,
            writers,
            &context.ice,
            Arc::new(EventForwarder(events_tx)),
        )
        .await
        .map_err(|e| SessionError::Setup(format!("cannot create the peer connection: {e}")))?;
        let stamper = RtpStamper::new(choice.video.payload_type);
        let track = local_track(
            id,
            RtpCodecKind::Video,
            stamper.ssrc(),
            peer::video_codec(&choice.video, choice.feedback).rtp_codec,
        );
        add_track(&peer, &track, "video").await?;
        let audio = match audio {
            Some((hub, opus)) => {
                let stamper = RtpStamper::new(opus.payload_type);
                let track = local_track(
                    id,
                    RtpCodecKind::Audio,
                    stamper.ssrc(),
                    peer::opus_codec(opus, choice.audio_transport_cc).rtp_codec,
                );
                add_track(&peer, &track, "audio").await?;
                Some(AudioSend {
                    track,
                    subscription: hub.subscribe(),
                    stamper,
                })
            }
            None => None,
        };
        // The subscription starts the encoder now, so it is warm by the time ICE connects.
        let mut subscription = context.hub.subscribe(choice.video.codec);
        subscription.prepare_first_keyframe();
        subscription.follow_link(link.clone(), audio_bps(context, &choice));
        let keyframe_requests = tokio::spawn(forward_keyframe_requests(
            Arc::clone(&track),
            subscription.keyframe_requester(),
        ));
        let mut session = Session {
            context,
            id,
            serial,
            reported_connected: false,
            peer,
            track,
            events,
            subscription,
            link,
            path,
            policy: LinkPolicy::new(context.timeout),
            audio,
            liveness: Liveness::new(context.connect_timeout, context.timeout, Instant::now()),
            stamper,
            local_mid: None,
            local_ufrag: None,
            host_sockets,
            answered_candidates: Vec::new(),
            keyframe_requests,
        };
        match role {
            Role::Answer {
                offer_sdp,
                early_candidates,
            } => {
                if let Err(e) = session.answer(offer_sdp).await {
                    session.close().await;
                    return Err(e);
                }
                session.report(SessionEvent::Answered);
                for candidate in early_candidates {
                    session.add_remote_candidate(Some(candidate)).await;
                }
            }
            Role::Offer { offer_out } => match session.offer().await {
                Ok(offer) => {
                    // The publication may have given up meanwhile; the session then ends
                    // when its command channel closes.
                    let _ = offer_out.send(offer);
                }
                Err(e) => {
                    session.close().await;
                    return Err(e);
                }
            },
        }
        Ok(session)
    }

    /// Applies an offer and sends the answer.
    async fn answer(&mut self, offer_sdp: String) -> Result<(), SessionError> {
        let sdp = if self.context.ice.loopback_only {
            sdp::keep_loopback_candidates(&offer_sdp)
        } else {
            offer_sdp
        };
        let sdp = sdp::for_webrtc(&sdp);
        let offer = RTCSessionDescription::offer(sdp)
            .map_err(|e| SessionError::OfferRefused(e.to_string()))?;
        self.peer
            .set_remote_description(offer)
            .await
            .map_err(|e| SessionError::OfferRefused(e.to_string()))?;
        let answer = self
            .peer
            .create_answer(None)
            .await
            .map_err(|e| SessionError::Setup(format!("cannot create an answer: {e}")))?;
        self.peer
            .set_local_description(answer)
            .await
            .map_err(|e| SessionError::Setup(format!("cannot apply the answer: {e}")))?;
        let applied = self.peer.local_description().await.ok_or_else(|| {
            SessionError::Setup("the answer vanished after it was applied".to_owned())
        })?;
        let (_, ufrag) = sdp::first_mid_and_ufrag(&applied.sdp);
        // A new ICE generation (the first answer, or an ICE restart) gathers again.
        let held = if ufrag != self.local_ufrag {
            self.await_host_candidates().await
        } else {
            Vec::new()
        };
        // Read again: the description now lists the candidates gathered so far.
        let local = self.peer.local_description().await.unwrap_or(applied);
        (self.local_mid, self.local_ufrag) = sdp::first_mid_and_ufrag(&local.sdp);
        self.answered_candidates = sdp::candidate_lines(&local.sdp);
        send(
            &self.context.outbox,
            self.id,
            &DeviceMessage::Answer {
                sdp: sdp::complete_answer(&local.sdp),
            },
        );
        for event in held {
            self.on_peer_event(event);
        }
        Ok(())
    }

    /// Makes the offer, with the host candidates gathered (as the answer has them), for a
    /// server to answer. Candidates gathered later go to the outbox.
    async fn offer(&mut self) -> Result<String, SessionError> {
        let offer = self
            .peer
            .create_offer(None)
            .await
            .map_err(|e| SessionError::Setup(format!("cannot create an offer: {e}")))?;
        self.peer
            .set_local_description(offer)
            .await
            .map_err(|e| SessionError::Setup(format!("cannot apply the offer: {e}")))?;
        let held = self.await_host_candidates().await;
        let local = self.peer.local_description().await.ok_or_else(|| {
            SessionError::Setup("the offer vanished after it was applied".to_owned())
        })?;
        (self.local_mid, self.local_ufrag) = sdp::first_mid_and_ufrag(&local.sdp);
        self.answered_candidates = sdp::candidate_lines(&local.sdp);
        for event in held {
            self.on_peer_event(event);
        }
        Ok(local.sdp)
    }

    /// Applies the server's answer to campeer's offer.
    async fn accept_answer(&mut self, answer_sdp: String) -> Result<(), SessionError> {
        let answer = RTCSessionDescription::answer(sdp::for_webrtc(&answer_sdp))
            .map_err(|e| SessionError::OfferRefused(e.to_string()))?;
        self.peer
            .set_remote_description(answer)
            .await
            .map_err(|e| SessionError::OfferRefused(e.to_string()))
    }

    /// Waits (briefly) until every socket has its host candidate, so that the answer carries
    /// them. Trickled just after the answer, they would race campeer's first connectivity
    /// check to the viewer; a viewer that meets the check first takes campeer's address for
    /// peer-reflexive, and pion-style agents (webrtc-rs among them) then wait a second before
    /// nominating that pair (1 join in 6 took 1.1 s instead of 0.1 s, `cargo bench --bench
    /// stream`). Returns the events that arrived meanwhile, for the caller to handle after
    /// the answer is sent.
    async fn await_host_candidates(&mut self) -> Vec<PeerEvent> {
        let deadline = tokio::time::Instant::now() + HOST_CANDIDATE_WAIT;
        let mut held = Vec::new();
        let mut hosts = 0;
        while hosts < self.host_sockets {
            let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await
            else {
                break;
            };
            let complete = matches!(event, PeerEvent::GatheringComplete);
            if let PeerEvent::LocalCandidate(line) = &event
                && sdp::is_host_candidate(line)
            {
                hosts += 1;
            }
            held.push(event);
            if complete {
                break;
            }
        }
        held
    }

    async fn serve(
        &mut self,
        mut commands: mpsc::Receiver<SessionCommand>,
        mut link_events: mpsc::Receiver<link::LinkEvent>,
    ) -> EndReason {
        let mut link_check = tokio::time::interval(LINK_CHECK_PERIOD);
        link_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.liveness.deadline();
            let sending = self.liveness.is_connected();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(SessionCommand::Offer(sdp)) => self.renegotiate(sdp).await,
                    Some(SessionCommand::Answer(sdp)) => {
                        if let Err(error) = self.accept_answer(sdp).await {
                            return EndReason::SetupFailed(error);
                        }
                    }
                    Some(SessionCommand::Candidate(candidate)) => {
                        self.add_remote_candidate(candidate).await
                    }
                    Some(SessionCommand::Hangup) => return EndReason::ViewerHangup,
                    None => return EndReason::Shutdown,
                },
                event = self.events.recv() => match event {
                    Some(event) => self.on_peer_event(event),
                    None => return EndReason::Failed("the peer connection stopped".into()),
                },
                // Never closed while serving: this session's own link holds a sender.
                Some(event) = link_events.recv() => self.on_link_event(event),
                frame = self.subscription.next_frame(), if sending => match frame {
                    Some(frame) => self.send_frame(&frame).await,
                    None => return EndReason::Failed("the video hub closed".into()),
                },
                packet = next_audio(&mut self.audio), if sending => match packet {
                    Some(packet) => self.send_audio(&packet).await,
                    None => self.audio = None,
                },
                _ = sleep_until(deadline), if deadline.is_some() => {}
                _ = link_check.tick() => {
                    let now = Instant::now();
                    if let Some(reason) = self.check_link(now).await {
                        return reason;
                    }
                }
            }
            if self.liveness.must_end(Instant::now()) {
                return EndReason::Timeout;
            }
        }
    }

    fn report(&self, event: SessionEvent) {
        let _ = self.context.reports.send(SessionReport {
            id: self.id.clone(),
            serial: self.serial,
            event,
        });
    }

    /// What the link's interceptors ask for, as they ask it.
    fn on_link_event(&mut self, event: link::LinkEvent) {
        match event {
            link::LinkEvent::KeyframeWanted => {
                tracing::debug!(session = %self.id, "loss beyond repair; asking for a keyframe");
                self.subscription.request_keyframe();
            }
        }
    }

    /// Carries out what the policy makes of the link: the media path read for the stats
    /// topic, and the end of a viewer that stays connected but stopped reporting.
    async fn check_link(&mut self, now: Instant) -> Option<EndReason> {
        let last_feedback = self.link.last_feedback_at();
        let check = self.policy.on_check(now, last_feedback);
        if let Some(silent) = check.silent_for {
            return Some(EndReason::Failed(format!(
                "no feedback from the viewer for {} s although connected",
                silent.as_secs()
            )));
        }
        if check.read_path {
            self.read_path(now).await;
        }
        None
    }

    /// Reads which candidate pair the media takes, for the stats topic; logs each change.
    async fn read_path(&mut self, now: Instant) {
        let report = self.peer.get_stats(now, StatsSelector::None).await;
        let path = path::selected_path(&report);
        if path != self.path.get() {
            if let Some(path) = &path {
                tracing::info!(
                    session = %self.id,
                    "media path: campeer's {} candidate, the viewer's {} candidate ({})",
                    path.local,
                    path.remote,
                    path.remote_address
                );
            }
            self.path.update(|published| *published = path);
        }
    }

    /// Answers a renegotiation; the signaling core has already checked that it keeps the
    /// codecs.
    async fn renegotiate(&mut self, sdp: String) {
        let answered = tokio::time::timeout(RENEGOTIATION_WAIT, self.answer(sdp))
            .await
            .unwrap_or_else(|_| {
                Err(SessionError::Setup(format!(
                    "the renegotiation was not answered within {RENEGOTIATION_WAIT:?}"
                )))
            });
        if let Err(error) = answered {
            tracing::warn!(session = %self.id, "renegotiation failed: {error}");
            send(
                &self.context.outbox,
                self.id,
                &DeviceMessage::error(error.code(), error.to_string()),
            );
        }
    }

    async fn add_remote_candidate(&mut self, candidate: Option<Candidate>) {
        let Some(candidate) = candidate else {
            // End of candidates: ICE keeps checking what it has.
            return;
        };
        if self.context.ice.loopback_only && !sdp::is_loopback_candidate(&candidate.candidate) {
            tracing::debug!(session = %self.id, "ignoring a non-loopback candidate");
            return;
        }
        let init = RTCIceCandidateInit {
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_mline_index,
            username_fragment: candidate.username_fragment,
            url: None,
        };
        if let Err(e) = self.peer.add_ice_candidate(init).await {
            tracing::debug!(session = %self.id, "ignoring an unusable remote candidate: {e}");
        }
    }

    fn on_peer_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::LocalCandidate(line) => {
                if self.answered_candidates.contains(&line) {
                    return;
                }
                tracing::debug!(session = %self.id, "trickling {line}");
                let candidate = Candidate {
                    candidate: line,
                    sdp_mid: self.local_mid.clone(),
                    sdp_mline_index: Some(0),
                    username_fragment: self.local_ufrag.clone(),
                };
                send(
                    &self.context.outbox,
                    self.id,
                    &DeviceMessage::Candidate {
                        candidate: Some(candidate),
                    },
                );
            }
            PeerEvent::GatheringComplete => send(
                &self.context.outbox,
                self.id,
                &DeviceMessage::Candidate { candidate: None },
            ),
            PeerEvent::State(state) => {
                tracing::info!(session = %self.id, "peer connection {state}");
                let was_connected = self.liveness.is_connected();
                let link = match state {
                    RTCPeerConnectionState::Connected => LinkState::Connected,
                    RTCPeerConnectionState::Disconnected => LinkState::Disconnected,
                    RTCPeerConnectionState::Failed => LinkState::Failed,
                    RTCPeerConnectionState::Closed => LinkState::Closed,
                    _ => LinkState::Connecting,
                };
                self.liveness.on_state(link, Instant::now());
                if self.liveness.is_connected() && !was_connected {
                    // A decoder that just (re)connected needs a keyframe, not stale frames.
                    self.subscription.start_viewing();
                    self.policy.on_connected(Instant::now());
                    if !std::mem::replace(&mut self.reported_connected, true) {
                        self.report(SessionEvent::Connected);
                    }
                } else if !self.liveness.is_connected() {
                    self.policy.on_disconnected();
                }
            }
        }
    }

    async fn send_audio(&mut self, packet: &EncodedAudio) {
        let Some(audio) = self.audio.as_mut() else {
            return;
        };
        let payload = std::slice::from_ref(&packet.payload);
        for rtp in audio.stamper.packets(packet.rtp_ticks, payload, false) {
            if let Err(e) = audio.track.write_rtp(rtp).await {
                tracing::debug!(session = %self.id, "dropping an audio packet: {e}");
            }
        }
    }

    async fn send_frame(&mut self, frame: &EncodedFrame) {
        let context = FrameContext {
            pacer_delay: self.link.pacer_delay(),
            base_layer_only: self.subscription.base_layer_only(),
            temporal_id: frame.temporal_id,
        };
        match self.policy.on_frame(context) {
            FrameAction::Send => {}
            FrameAction::Skip => return,
            FrameAction::Pause => {
                tracing::debug!(
                    session = %self.id,
                    "link backed up ({:?} queued); pausing video",
                    context.pacer_delay
                );
                return;
            }
            FrameAction::Resume => {
                tracing::debug!(session = %self.id, "link drained; resuming at a keyframe");
                self.subscription.resync();
                return;
            }
        }
        for packet in self.stamper.packets(frame.rtp_ticks, &frame.payloads, true) {
            if let Err(e) = self.track.write_rtp(packet).await {
                tracing::debug!(session = %self.id, "dropping a frame: {e}");
                self.subscription.resync();
                return;
            }
        }
    }

    async fn close(self) {
        self.keyframe_requests.abort();
        match tokio::time::timeout(CLOSE_WAIT, self.peer.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(session = %self.id, "closing the peer connection: {e}"),
            Err(_) => {
                tracing::warn!(session = %self.id, "the peer connection did not close in time")
            }
        }
    }
}

/// The next audio packet, or never when this session sends no audio.
async fn next_audio(audio: &mut Option<AudioSend>) -> Option<Arc<EncodedAudio>> {
    match audio {
        Some(audio) => audio.subscription.next_packet().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// Reads the RTCP the keyframe-request interceptor marked for us and asks the viewer's stream
/// for a keyframe.
async fn forward_keyframe_requests(track: Arc<TrackLocalStaticRTP>, stream: KeyframeRequester) {
    while let Some(event) = track.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(packets) = event
            && packets
                .iter()
                .any(|packet| peer::is_keyframe_request(packet.as_ref()))
        {
            tracing::debug!("viewer asked for a keyframe");
            stream.request_keyframe();
        }
    }
}
