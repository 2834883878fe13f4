//! The device's decisions about viewer messages, without any I/O: which message starts a
//! session, goes to one, ends one or is refused; who is let in under the viewer limit; what
//! each viewer may send; when the status goes out; and every reply a viewer gets from the
//! device itself.
//!
//! Like rumqttc's `MqttState` or str0m's `Rtc`, [`Signaling`] takes inputs stamped with `now`
//! and queues [`Action`]s; the device task only carries them out (publish, spawn, forward).
//! Every rule is unit-tested here without a broker or a peer connection.
//!
//! What a stranger can send costs bounded work and memory: offers are checked for shape
//! before anything reads them and negotiated in time linear in their size; a session counts
//! against the viewer limit from its offer until its task has ended; each session may send a
//! bounded number of candidates per offer and renegotiate a bounded number of times a
//! minute; error replies are rate-limited as a whole, so a flood of junk cannot crowd real
//! answers out of the MQTT queue; the status is coalesced.
//!
//! Places go to viewers who will use them: an offer whose hangup arrives before its session
//! was started never starts one; an offer that finds every place taken waits (briefly, and
//! bounded) for a place that is being given back, and takes the place of a session that has
//! still not connected [`Limits::unconnected_grace`] after its answer.

pub mod early;
pub mod pace;
pub mod sessions;

use crate::protocol::{Candidate, DeviceMessage, ErrorCode, Segment, VideoCodec, ViewerMessage};
use crate::sdp::{self, Negotiated, OfferError};
pub use early::EarlyCandidates;
use pace::{RateWindow, StatusPacer, TokenBucket};
use sessions::{EndReason, SessionCommand};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How often held candidates expire and suppressed replies are reported.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(1);
/// Sessions whose candidates may wait for their offer at once, and candidates each.
const EARLY_SESSIONS: usize = 64;
const EARLY_PER_SESSION: usize = 32;

/// What a viewer may send, and how often the device speaks.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_viewers: usize,
    /// Candidates a session takes per offer (its first and each renegotiation). A browser on
    /// a machine with many interfaces trickles a few dozen at most.
    pub candidates_per_offer: usize,
    /// Renegotiations a session may ask for in any minute.
    pub renegotiations_per_minute: usize,
    /// Fewest time between two status publishes.
    pub status_interval: Duration,
    /// The status goes out again this often while the broker connection is up, changed or
    /// not, for brokers that keep retained messages per cluster node (RabbitMQ).
    pub status_refresh: Duration,
    /// Error replies (busy, bad request, unsupported) the device sends at once, and per
    /// second after that, over all viewers.
    pub error_burst: u32,
    pub errors_per_second: u32,
    /// How long candidates may wait for their offer.
    pub early_ttl: Duration,
    /// How long after its answer a session that has not connected keeps its place against a
    /// new offer when every place is taken: a viewer reaching through a relay may need a
    /// few seconds, one that vanished after offering never connects.
    pub unconnected_grace: Duration,
    /// How long an offer waits for a place that is being given back before it is told busy.
    pub place_wait: Duration,
    /// Offers that may wait for a place at once (each holds its SDP meanwhile).
    pub waiting_offers: usize,
}

impl Limits {
    pub fn new(max_viewers: usize, early_ttl: Duration) -> Self {
        Self {
            max_viewers,
            candidates_per_offer: 64,
            renegotiations_per_minute: 10,
            status_interval: Duration::from_millis(500),
            status_refresh: Duration::from_secs(10),
            error_burst: 20,
            errors_per_second: 10,
            early_ttl,
            unconnected_grace: Duration::from_secs(3),
            place_wait: Duration::from_secs(5),
            waiting_offers: 8,
        }
    }
}

/// What the device task must do.
#[derive(Debug)]
pub enum Action {
    /// Send this to the viewer.
    Reply { to: Segment, message: DeviceMessage },
    /// Start a session task for an accepted offer.
    Start(StartSession),
    /// Hand a message to a running session.
    Forward {
        to: Segment,
        command: SessionCommand,
    },
    /// The viewer hung up: tell its session to end. Its slot stays taken until the task
    /// reports that it ended.
    Stop { session: Segment },
    /// The session's task ended by itself: drop the device's handle on it.
    Forget { session: Segment },
    /// Publish the status with this many viewers.
    PublishStatus { viewers: usize },
}

#[derive(Debug)]
pub struct StartSession {
    pub id: Segment,
    /// Tells this session apart from a later one under the same id.
    pub serial: u64,
    pub choice: Negotiated,
    pub offer: String,
    /// Candidates that arrived before the offer.
    pub early: Vec<Candidate>,
}

/// A session that is being served.
struct Active {
    serial: u64,
    choice: Negotiated,
    /// When the session sent its first answer; `None` until it has.
    answered_at: Option<Instant>,
    /// Whether its peer connection has come up (a connected viewer is never displaced).
    connected: bool,
    /// Candidates taken since the last accepted offer.
    candidates: usize,
    /// Whether dropping this session's candidates has been logged.
    candidates_refused: bool,
    renegotiations: RateWindow,
}

/// An offer waiting for a place that is being given back.
struct Waiting {
    id: Segment,
    sdp: String,
    choice: Negotiated,
    since: Instant,
}

pub struct Signaling {
    limits: Limits,
    audio_available: bool,
    /// What the device's video can be sent in, best first.
    video_codecs: &'static [VideoCodec],
    active: HashMap<Segment, Active>,
    /// Serials of sessions told to stop whose tasks have not ended yet: they still hold
    /// their slot, so a flood of offers and hangups cannot run more peer connections than
    /// the limit.
    ending: HashSet<u64>,
    /// Offers waiting for a place, oldest first; at most [`Limits::waiting_offers`], and only
    /// while a place may come free.
    waiting: VecDeque<Waiting>,
    early: EarlyCandidates,
    next_serial: u64,
    status: StatusPacer,
    errors: TokenBucket,
    /// Error replies left out since the last housekeeping, for the log.
    suppressed_errors: u64,
    next_housekeeping: Option<Instant>,
    actions: VecDeque<Action>,
}

impl Signaling {
    pub fn new(limits: Limits, audio_available: bool) -> Self {
        Self {
            early: EarlyCandidates::new(EARLY_SESSIONS, EARLY_PER_SESSION, limits.early_ttl),
            status: StatusPacer::new(limits.status_interval, limits.status_refresh),
            errors: TokenBucket::new(limits.error_burst, limits.errors_per_second),
            limits,
            audio_available,
            video_codecs: &[VideoCodec::H264, VideoCodec::Vp8],
            active: HashMap::new(),
            ending: HashSet::new(),
            waiting: VecDeque::new(),
            next_serial: 0,
            suppressed_errors: 0,
            next_housekeeping: None,
            actions: VecDeque::new(),
        }
    }

    /// Only these video codecs are answered (a camera passing its own H.264 through has no
    /// VP8 to send); both by default.
    pub fn with_video_codecs(mut self, codecs: &'static [VideoCodec]) -> Self {
        self.video_codecs = codecs;
        self
    }

    /// Sessions being served: the viewer count in the status.
    pub fn viewers(&self) -> usize {
        self.active.len()
    }

    /// Whether `session` is being served, or its offer waits for a place.
    pub fn serves(&self, session: &Segment) -> bool {
        self.active.contains_key(session) || self.waiting.iter().any(|w| w.id == *session)
    }

    /// How many more candidates `session`'s current offer may bring before the rest are
    /// dropped (none when the session is not served). A WHEP PATCH that would go over is
    /// refused whole, so that the player is told rather than silently cut short.
    pub fn candidate_room(&self, session: &Segment) -> usize {
        match self.active.get(session) {
            Some(active) => self
                .limits
                .candidates_per_offer
                .saturating_sub(active.candidates),
            // A waiting offer's candidates are held until it starts.
            None if self.serves(session) => self.early.room(session),
            None => 0,
        }
    }

    /// Offers waiting for a place.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Slots taken: served sessions and those still ending.
    pub fn occupied(&self) -> usize {
        self.active.len() + self.ending.len()
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Signaling::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let oldest_wait = self
            .waiting
            .front()
            .map(|w| w.since + self.limits.place_wait);
        [
            self.status.due_at(),
            self.next_housekeeping,
            oldest_wait,
            self.next_displacement(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The broker accepted campeer's connection and its subscription to the viewers' topics
    /// (first time or again): publish the status at once.
    pub fn broker_connected(&mut self, now: Instant) {
        self.status.force(now);
        self.publish_status();
    }

    /// The broker connection is down: nothing is published until it is back.
    pub fn broker_lost(&mut self) {
        self.status.disconnected();
    }

    /// Something in the status besides the viewers changed (a source started or failed).
    pub fn status_changed(&mut self, now: Instant) {
        if self.status.changed(now) {
            self.publish_status();
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.status.poll(now) {
            self.publish_status();
        }
        self.make_room(now);
        while let Some(waited) = self
            .waiting
            .front()
            .filter(|w| now.saturating_duration_since(w.since) >= self.limits.place_wait)
        {
            let id = waited.id.clone();
            self.waiting.pop_front();
            self.early.forget(&id);
            tracing::debug!(session = %id, "refused: no place came free in time");
            let message = self.busy_message();
            self.refuse(now, id, ErrorCode::Busy, message);
        }
        if self.next_housekeeping.is_none_or(|at| now >= at) {
            self.next_housekeeping = Some(now + HOUSEKEEPING_PERIOD);
            self.early.expire(now);
            if self.suppressed_errors > 0 {
                tracing::warn!(
                    "left out {} error replies: a client is sending faster than the device \
                     answers errors",
                    self.suppressed_errors
                );
                self.suppressed_errors = 0;
            }
        }
    }

    /// A message on a viewer's inbound topic.
    pub fn handle_message(&mut self, now: Instant, session: Segment, payload: &[u8]) {
        let message = match ViewerMessage::parse(payload) {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(session = %session, "bad request: {e}");
                self.refuse(now, session, ErrorCode::BadRequest, e.to_string());
                return;
            }
        };
        self.handle_viewer(now, session, message);
    }

    /// A viewer's message, parsed: from MQTT, or from a WHEP request.
    pub fn handle_viewer(&mut self, now: Instant, session: Segment, message: ViewerMessage) {
        match message {
            ViewerMessage::Offer { sdp } => {
                if self.active.contains_key(&session) {
                    self.renegotiate(now, session, sdp);
                } else {
                    self.offer(now, session, sdp);
                }
            }
            ViewerMessage::Candidate(candidate) => self.candidate(now, session, candidate),
            ViewerMessage::Hangup => self.hangup(now, session),
        }
    }

    /// The viewer hung up. A session not started yet (its hangup came in the same batch as
    /// its offer) never starts, and its place is free at once; a running one holds its place
    /// until its task has ended.
    fn hangup(&mut self, now: Instant, session: Segment) {
        self.early.forget(&session);
        self.waiting.retain(|w| w.id != session);
        let Some(active) = self.active.remove(&session) else {
            return;
        };
        let unstarted = self
            .actions
            .iter()
            .position(|a| matches!(a, Action::Start(start) if start.serial == active.serial));
        if let Some(at) = unstarted {
            tracing::debug!(session = %session, "hung up before its session started");
            self.actions.remove(at);
            self.actions.retain(|a| {
                !matches!(a, Action::Forward { to, .. } | Action::Reply { to, .. } if *to == session)
            });
            self.admit_waiting(now);
        } else {
            tracing::info!(session = %session, "viewer hung up");
            self.ending.insert(active.serial);
            self.actions.push_back(Action::Stop { session });
        }
        self.status_changed(now);
    }

    /// A session sent its answer.
    pub fn session_answered(&mut self, now: Instant, id: &Segment, serial: u64) {
        if let Some(active) = self.active.get_mut(id).filter(|a| a.serial == serial) {
            active.answered_at.get_or_insert(now);
        }
    }

    /// A session's peer connection came up.
    pub fn session_connected(&mut self, id: &Segment, serial: u64) {
        if let Some(active) = self.active.get_mut(id).filter(|a| a.serial == serial) {
            active.connected = true;
        }
    }

    /// A session's task ended.
    pub fn session_ended(&mut self, now: Instant, id: Segment, serial: u64, reason: &EndReason) {
        if self.ending.remove(&serial) {
            self.admit_waiting(now);
            return;
        }
        if self.active.get(&id).is_none_or(|a| a.serial != serial) {
            return;
        }
        self.active.remove(&id);
        self.actions.push_back(Action::Forget {
            session: id.clone(),
        });
        if let EndReason::SetupFailed(error) = reason {
            self.refuse(now, id.clone(), error.code(), error.to_string());
        }
        if reason.notify_viewer() {
            self.actions.push_back(Action::Reply {
                to: id,
                message: DeviceMessage::Hangup,
            });
        }
        self.admit_waiting(now);
        self.status_changed(now);
    }

    /// Shutting down: every viewer served is told, and every session is to stop. Returns how
    /// many session tasks have yet to end.
    pub fn shutdown(&mut self) -> usize {
        self.waiting.clear();
        for (session, active) in self.active.drain() {
            self.ending.insert(active.serial);
            self.actions.push_back(Action::Reply {
                to: session.clone(),
                message: DeviceMessage::Hangup,
            });
            self.actions.push_back(Action::Stop { session });
        }
        self.ending.len()
    }

    fn offer(&mut self, now: Instant, session: Segment, sdp: String) {
        let room = self.occupied() < self.limits.max_viewers;
        let already_waiting = self.waiting.iter().any(|w| w.id == session);
        // Every place is taken: the offer may wait (a bounded number do) while a place is
        // being given back, or a session that has not connected may have to give one before
        // the wait is over.
        let coming =
            self.ending.len() + self.unconnected_past_grace_by(now, now + self.limits.place_wait);
        let may_wait = coming > 0 && self.waiting.len() < self.limits.waiting_offers;
        if !room && !already_waiting && !may_wait {
            self.early.forget(&session);
            tracing::debug!(session = %session, "refused: {} viewers already", self.limits.max_viewers);
            let message = self.busy_message();
            self.refuse(now, session, ErrorCode::Busy, message);
            return;
        }
        let choice = match sdp::negotiate(&sdp, self.video_codecs, self.audio_available) {
            Ok(choice) => choice,
            Err(e) => {
                self.early.forget(&session);
                self.waiting.retain(|w| w.id != session);
                tracing::debug!(session = %session, "refused: {e}");
                self.refuse(now, session, offer_error_code(&e), e.to_string());
                return;
            }
        };
        if room {
            self.start(now, session, sdp, choice);
            return;
        }
        // A viewer offering again while it waits keeps its turn with its newest offer.
        if let Some(waiting) = self.waiting.iter_mut().find(|w| w.id == session) {
            (waiting.sdp, waiting.choice) = (sdp, choice);
            return;
        }
        tracing::debug!(session = %session, "waiting for a place");
        self.waiting.push_back(Waiting {
            id: session,
            sdp,
            choice,
            since: now,
        });
        self.make_room(now);
    }

    /// Sessions that have not connected and will be past the grace after their answer by
    /// `at`, if they have not connected by then. One that has not answered yet counts as
    /// answering now: in a burst of offers and hangups it is most likely one whose hangup is
    /// on its way.
    fn unconnected_past_grace_by(&self, now: Instant, at: Instant) -> usize {
        self.active
            .values()
            .filter(|a| !a.connected)
            .map(|a| a.answered_at.unwrap_or(now))
            .filter(|answered| *answered + self.limits.unconnected_grace <= at)
            .count()
    }

    /// When the next session that has not connected will be past its grace, while waiting
    /// offers need more places than are being given back.
    fn next_displacement(&self) -> Option<Instant> {
        if self.waiting.len() <= self.ending.len() {
            return None;
        }
        self.active
            .values()
            .filter(|a| !a.connected)
            .filter_map(|a| a.answered_at)
            .min()
            .map(|answered| answered + self.limits.unconnected_grace)
    }

    /// Displaces sessions past their grace while waiting offers need more places than are
    /// being given back.
    fn make_room(&mut self, now: Instant) {
        while self.waiting.len() > self.ending.len() {
            let Some(id) = self.displaceable(now) else {
                return;
            };
            self.displace(now, id);
        }
    }

    /// The session that has gone longest without connecting since its answer, if that is
    /// longer than the grace.
    fn displaceable(&self, now: Instant) -> Option<Segment> {
        self.active
            .iter()
            .filter(|(_, a)| !a.connected)
            .filter_map(|(id, a)| Some((id, a.answered_at?)))
            .filter(|(_, answered)| {
                now.saturating_duration_since(*answered) >= self.limits.unconnected_grace
            })
            .min_by_key(|(_, answered)| *answered)
            .map(|(id, _)| id.clone())
    }

    /// Ends a session to give its place to a new viewer; its viewer is told with a hangup.
    fn displace(&mut self, now: Instant, id: Segment) {
        let Some(active) = self.active.remove(&id) else {
            return;
        };
        tracing::info!(
            session = %id,
            "not connected {:?} after its answer: its place goes to a new viewer",
            self.limits.unconnected_grace
        );
        self.ending.insert(active.serial);
        self.actions.push_back(Action::Reply {
            to: id.clone(),
            message: DeviceMessage::Hangup,
        });
        self.actions.push_back(Action::Stop { session: id });
        self.status_changed(now);
    }

    /// Starts waiting offers, oldest first, while there is room.
    fn admit_waiting(&mut self, now: Instant) {
        while self.occupied() < self.limits.max_viewers {
            let Some(waiting) = self.waiting.pop_front() else {
                return;
            };
            self.start(now, waiting.id, waiting.sdp, waiting.choice);
        }
    }

    fn busy_message(&self) -> String {
        format!(
            "this device serves at most {} viewers",
            self.limits.max_viewers
        )
    }

    fn start(&mut self, now: Instant, session: Segment, sdp: String, choice: Negotiated) {
        tracing::info!(
            session = %session,
            "new viewer; answering with {} payload type {} ({}){}",
            choice.video.codec.sdp_name(),
            choice.video.payload_type,
            choice.video.fmtp,
            match &choice.audio {
                Some(opus) => format!(" and Opus payload type {}", opus.payload_type),
                None => String::new(),
            }
        );
        self.next_serial += 1;
        let early = self.early.take(&session);
        self.active.insert(
            session.clone(),
            Active {
                serial: self.next_serial,
                choice: choice.clone(),
                answered_at: None,
                connected: false,
                candidates: early.len(),
                candidates_refused: false,
                renegotiations: RateWindow::new(
                    self.limits.renegotiations_per_minute,
                    Duration::from_secs(60),
                ),
            },
        );
        self.actions.push_back(Action::Start(StartSession {
            id: session,
            serial: self.next_serial,
            choice,
            offer: sdp,
            early,
        }));
        self.status_changed(now);
    }

    /// A new offer on a served session: an ICE restart or a browser renegotiating. The
    /// codecs must stay as they are: one encoder serves everyone.
    fn renegotiate(&mut self, now: Instant, session: Segment, sdp: String) {
        let Some(active) = self.active.get_mut(&session) else {
            return;
        };
        let refusal = if !active.renegotiations.allow(now) {
            Some((
                ErrorCode::RateLimited,
                format!(
                    "at most {} renegotiations a minute",
                    self.limits.renegotiations_per_minute
                ),
            ))
        } else {
            match sdp::negotiate(&sdp, self.video_codecs, self.audio_available) {
                Ok(choice) if choice == active.choice => None,
                Ok(_) => Some((
                    ErrorCode::Unsupported,
                    "a renegotiation may not change the codecs or their payload types".to_owned(),
                )),
                Err(e) => Some((offer_error_code(&e), e.to_string())),
            }
        };
        if refusal.is_none() {
            active.candidates = 0;
            active.candidates_refused = false;
        }
        match refusal {
            // A session being served renegotiates at most so often, so its refusals need no
            // share of the error budget: a flood of junk from strangers cannot silence them.
            Some((code, message)) if code != ErrorCode::RateLimited => {
                tracing::info!(session = %session, "renegotiation refused: {message}");
                self.actions.push_back(Action::Reply {
                    to: session,
                    message: DeviceMessage::error(code, message),
                });
            }
            Some((code, message)) => self.refuse(now, session, code, message),
            None => self.actions.push_back(Action::Forward {
                to: session,
                command: SessionCommand::Offer(sdp),
            }),
        }
    }

    fn candidate(&mut self, now: Instant, session: Segment, candidate: Option<Candidate>) {
        let Some(active) = self.active.get_mut(&session) else {
            if let Some(candidate) = candidate
                && !self.early.hold(&session, candidate, now)
            {
                tracing::debug!(session = %session, "too many early candidates; dropped one");
            }
            return;
        };
        if active.candidates >= self.limits.candidates_per_offer {
            if !active.candidates_refused {
                active.candidates_refused = true;
                tracing::warn!(
                    session = %session,
                    "the viewer sent more than {} candidates for one offer; ignoring the rest",
                    self.limits.candidates_per_offer
                );
            }
            return;
        }
        active.candidates += 1;
        self.actions.push_back(Action::Forward {
            to: session,
            command: SessionCommand::Candidate(candidate),
        });
    }

    /// An error reply, unless error replies are coming too fast.
    fn refuse(&mut self, now: Instant, to: Segment, code: ErrorCode, message: String) {
        if self.errors.take(now) {
            self.actions.push_back(Action::Reply {
                to,
                message: DeviceMessage::error(code, message),
            });
        } else {
            self.suppressed_errors += 1;
        }
    }

    fn publish_status(&mut self) {
        self.actions.push_back(Action::PublishStatus {
            viewers: self.active.len(),
        });
    }
}

/// A malformed offer is a bad request; a well-formed one campeer cannot serve is unsupported.
pub fn offer_error_code(error: &OfferError) -> ErrorCode {
    if error.is_malformed() {
        ErrorCode::BadRequest
    } else {
        ErrorCode::Unsupported
    }
}

#[cfg(test)]
mod tests;
