//! WHEP players' requests (offers, PATCHes and DELETEs) as the device task carries them out.
//! What WHEP adds to a session (its offer, ICE credentials and ETag) is
//! [`crate::web::whep_ice::WhepIceBook`]'s to decide; whether the session exists, the
//! signaling core's.

use super::Device;
use crate::protocol::{Candidate, DeviceMessage, ErrorCode, Segment, ViewerMessage};
use crate::web;
use crate::web::whep::{self, WhepError};
use crate::web::whep_ice::{PatchPlan, WhepIce};
use crate::web::whep_server::{Patched, WhepAnswer, WhepCommand};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How long a WHEP offer waits for its session's answer.
const WHEP_ANSWER_WAIT: Duration = web::whep_server::ANSWER_WAIT;

/// Waits (bounded) for the session's answer to a WHEP offer, or its refusal.
async fn wait_for_whep_answer(
    answer: oneshot::Receiver<DeviceMessage>,
) -> Result<String, WhepError> {
    match tokio::time::timeout(WHEP_ANSWER_WAIT, answer).await {
        Ok(Ok(DeviceMessage::Answer { sdp })) => Ok(sdp),
        Ok(Ok(DeviceMessage::Error { code, message })) => Err(match code {
            ErrorCode::Busy => WhepError::Busy(message),
            ErrorCode::RateLimited => WhepError::RateLimited(message),
            _ => WhepError::Refused(message),
        }),
        Ok(_) => Err(WhepError::Unavailable),
        Err(_) => Err(WhepError::AnswerTimeout),
    }
}

type PatchReply = oneshot::Sender<Result<Patched, WhepError>>;

/// A restart the session answered, back to the device task to commit and reply.
pub(super) struct WhepRestarted {
    session: Segment,
    restarted: WhepIce,
    fragment: String,
    reply: PatchReply,
}

/// Restarts answered but not yet committed, per device (one per waiting answer at most).
pub(super) const WHEP_RESTARTS_QUEUE: usize = crate::outbox::MAX_WAITING_ANSWERS;

/// A session id for a WHEP player: unguessable, so that nobody else can PATCH or DELETE it.
fn new_whep_session() -> Option<Segment> {
    Segment::parse(&format!(
        "{}{:032x}",
        crate::protocol::WHEP_SESSION_PREFIX,
        rand::random::<u128>()
    ))
    .ok()
}

impl Device {
    /// A WHEP player's request: an offer becomes a session like an MQTT viewer's (the same
    /// admission and limits), its answer or refusal going back to the request; a PATCH's
    /// candidates (or ICE restart) and a DELETE go to that session.
    pub(super) fn on_whep(&mut self, command: WhepCommand) {
        match command {
            WhepCommand::Offer { sdp, reply } => self.on_whep_offer(sdp, reply),
            WhepCommand::Trickle {
                session,
                if_match,
                fragment,
                reply,
            } => {
                let result = self.on_whep_patch(&session, if_match.as_deref(), fragment, reply);
                if let Err((error, reply)) = result {
                    let _ = reply.send(Err(error));
                }
            }
            WhepCommand::Delete { session, reply } => {
                let served = self.signaling.serves(&session);
                let result = self.whep_ice.on_delete(&session, served);
                if result.is_ok() {
                    self.signaling
                        .handle_viewer(Instant::now(), session, ViewerMessage::Hangup);
                }
                let _ = reply.send(result);
            }
        }
    }

    fn on_whep_offer(
        &mut self,
        sdp: String,
        reply: oneshot::Sender<Result<WhepAnswer, WhepError>>,
    ) {
        let Some(session) = new_whep_session() else {
            let _ = reply.send(Err(WhepError::Unavailable));
            return;
        };
        let Some(answer) = self.outbox.wait_for_answer(session.clone()) else {
            let _ = reply.send(Err(WhepError::Unavailable));
            return;
        };
        self.signaling.handle_viewer(
            Instant::now(),
            session.clone(),
            ViewerMessage::Offer { sdp: sdp.clone() },
        );
        let served = self.signaling.serves(&session);
        self.whep_ice.on_offer(session.clone(), sdp, served);
        tokio::spawn(async move {
            let result = wait_for_whep_answer(answer).await.map(|sdp| WhepAnswer {
                etag: whep::etag(session.as_str(), 0),
                session,
                sdp,
            });
            let _ = reply.send(result);
        });
    }

    /// A PATCH: candidates for the session, or, when it names new ICE credentials, an ICE
    /// restart (RFC 9725 §4.3.2), answered once the session has answered the restart offer.
    /// A refusal hands the reply back to be sent.
    fn on_whep_patch(
        &mut self,
        session: &Segment,
        if_match: Option<&str>,
        fragment: whep::SdpFragment,
        reply: PatchReply,
    ) -> Result<(), (WhepError, PatchReply)> {
        let served = self.signaling.serves(session);
        let room = self.signaling.candidate_room(session);
        let plan = self
            .whep_ice
            .plan_patch(session, served, if_match, &fragment, room);
        let now = Instant::now();
        let (offer, restarted) = match plan {
            Err(error) => return Err((error, reply)),
            Ok(PatchPlan::Trickle) => {
                self.forward_whep_candidates(now, session, fragment);
                let _ = reply.send(Ok(Patched::Trickled));
                return Ok(());
            }
            Ok(PatchPlan::Restart { offer, restarted }) => (offer, restarted),
        };
        let Some(answer) = self.outbox.wait_for_answer(session.clone()) else {
            return Err((WhepError::Unavailable, reply));
        };
        self.signaling
            .handle_viewer(now, session.clone(), ViewerMessage::Offer { sdp: offer });
        self.forward_whep_candidates(now, session, fragment);
        let restarts = self.whep_restarts.0.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let result = wait_for_whep_answer(answer).await.and_then(|sdp| {
                whep::restart_fragment(&sdp).ok_or_else(|| {
                    WhepError::Refused("the answer to the restart had no ICE credentials".into())
                })
            });
            match result {
                // The device commits the new credentials before the player hears of them, so
                // that its next PATCH finds them.
                Ok(fragment) => {
                    let done = WhepRestarted {
                        session,
                        restarted,
                        fragment,
                        reply,
                    };
                    if let Err(mpsc::error::SendError(done)) = restarts.send(done).await {
                        let _ = done.reply.send(Err(WhepError::Unavailable));
                    }
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            }
        });
        Ok(())
    }

    /// A restart the session answered: its credentials and generation become the session's.
    pub(super) fn on_whep_restarted(&mut self, done: WhepRestarted) {
        let WhepRestarted {
            session,
            restarted,
            fragment,
            reply,
        } = done;
        let served = self.signaling.serves(&session);
        let result = self
            .whep_ice
            .commit_restart(session, restarted, served)
            .map(|etag| Patched::Restarted { fragment, etag });
        let _ = reply.send(result);
    }

    fn forward_whep_candidates(
        &mut self,
        now: Instant,
        session: &Segment,
        fragment: whep::SdpFragment,
    ) {
        for line in fragment.candidates {
            let candidate = Candidate {
                candidate: line,
                sdp_mid: fragment.mid.clone(),
                sdp_mline_index: fragment.mid.is_none().then_some(0),
                username_fragment: fragment.ufrag.clone(),
            };
            self.signaling.handle_viewer(
                now,
                session.clone(),
                ViewerMessage::Candidate(Some(candidate)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whep_sessions_are_unguessable_and_valid_topic_segments() {
        let first = new_whep_session().expect("a valid segment");
        let second = new_whep_session().expect("a valid segment");
        assert_ne!(first, second);
        let random = first
            .as_str()
            .strip_prefix(crate::protocol::WHEP_SESSION_PREFIX)
            .expect("the WHEP prefix");
        assert_eq!(random.len(), 32, "128 random bits in hex");
        assert!(random.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
