//! What campeer keeps of each WHEP session besides the signaling core's state, and the
//! decisions made from it: the player's last offer and its ICE username fragment (a PATCH that
//! names another asks for an ICE restart, whose offer is made from the last one), and the
//! restart generation behind the session's ETag. A plain state machine: whether the signaling
//! core still serves a session is an input, so a session the core ended is forgotten here too;
//! the device task carries the plans out (hands offers and candidates to the core, waits for
//! the session's answer).

use super::whep::{self, SdpFragment, WhepError};
use crate::protocol::Segment;
use std::collections::HashMap;

/// One WHEP session's ICE state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhepIce {
    offer: String,
    ufrag: Option<String>,
    generation: u32,
}

/// What to do with a PATCH the book accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchPlan {
    /// The fragment's candidates go to the session.
    Trickle,
    /// An ICE restart: `offer` goes to the session (the fragment's candidates after it); once
    /// the session answers, [`WhepIceBook::commit_restart`] makes `restarted` the session's
    /// state, before the player hears of it, so that its next PATCH finds the new ETag.
    Restart { offer: String, restarted: WhepIce },
}

/// Every WHEP session's ICE state, for one device. Bounded by the signaling core: an entry
/// exists only for a session the core serves (entries are added when it takes an offer and
/// dropped when it ends the session, or when a request finds it no longer served).
#[derive(Debug, Default)]
pub struct WhepIceBook {
    sessions: HashMap<Segment, WhepIce>,
}

impl WhepIceBook {
    /// The signaling core took the player's offer for `session` (`served`), or refused it.
    pub fn on_offer(&mut self, session: Segment, offer: String, served: bool) {
        if !served {
            return;
        }
        let (_, ufrag) = crate::sdp::first_mid_and_ufrag(&offer);
        self.sessions.insert(
            session,
            WhepIce {
                offer,
                ufrag,
                generation: 0,
            },
        );
    }

    /// The session's state, when the core still serves it; forgets it otherwise.
    fn served(&mut self, session: &Segment, served: bool) -> Option<&WhepIce> {
        if !served {
            self.sessions.remove(session);
            return None;
        }
        self.sessions.get(session)
    }

    /// A PATCH: candidates, or new ICE credentials asking for a restart (RFC 9725 §4.3.2).
    /// `candidate_room` is how many more candidates the core takes for the session.
    pub fn plan_patch(
        &mut self,
        session: &Segment,
        served: bool,
        if_match: Option<&str>,
        fragment: &SdpFragment,
        candidate_room: usize,
    ) -> Result<PatchPlan, WhepError> {
        let ice = self.served(session, served).ok_or(WhepError::NotFound)?;
        let etag = whep::etag(session.as_str(), ice.generation);
        if !whep::if_match_accepts(if_match, &etag) {
            return Err(WhepError::PreconditionFailed);
        }
        let restart = fragment.ufrag.is_some() && fragment.ufrag != ice.ufrag;
        if !restart {
            if fragment.candidates.len() > candidate_room {
                return Err(WhepError::TooManyCandidates);
            }
            return Ok(PatchPlan::Trickle);
        }
        let (ufrag, pwd) = whep::restart_credentials(fragment)?;
        let offer = whep::restart_offer(&ice.offer, ufrag, pwd);
        let restarted = WhepIce {
            offer: offer.clone(),
            ufrag: Some(ufrag.to_owned()),
            generation: ice.generation.wrapping_add(1),
        };
        Ok(PatchPlan::Restart { offer, restarted })
    }

    /// The session answered a restart: its new state is committed; the new ETag goes to the
    /// player. A session that ended meanwhile is not found.
    pub fn commit_restart(
        &mut self,
        session: Segment,
        restarted: WhepIce,
        served: bool,
    ) -> Result<String, WhepError> {
        self.served(&session, served).ok_or(WhepError::NotFound)?;
        let etag = whep::etag(session.as_str(), restarted.generation);
        self.sessions.insert(session, restarted);
        Ok(etag)
    }

    /// A DELETE: the session is forgotten here; `Ok` when it existed, for the core to hang up.
    pub fn on_delete(&mut self, session: &Segment, served: bool) -> Result<(), WhepError> {
        self.served(session, served).ok_or(WhepError::NotFound)?;
        self.sessions.remove(session);
        Ok(())
    }

    /// The core ended the session.
    pub fn on_ended(&mut self, session: &Segment) {
        self.sessions.remove(session);
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
                         m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n\
                         a=mid:0\r\na=ice-ufrag:oldu\r\na=ice-pwd:oldpasswordoldpassword12\r\n\
                         a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n";

    fn session() -> Segment {
        Segment::parse("whep-1").unwrap()
    }

    fn fragment(ufrag: Option<&str>, pwd: Option<&str>, candidates: usize) -> SdpFragment {
        SdpFragment {
            ufrag: ufrag.map(str::to_owned),
            pwd: pwd.map(str::to_owned),
            mid: Some("0".into()),
            candidates: (0..candidates)
                .map(|i| format!("candidate:{i} 1 udp 1 127.0.0.1 {} typ host", 6000 + i))
                .collect(),
            end_of_candidates: false,
        }
    }

    fn book_with_session() -> WhepIceBook {
        let mut book = WhepIceBook::default();
        book.on_offer(session(), OFFER.into(), true);
        book
    }

    #[test]
    fn a_refused_offer_leaves_nothing_behind() {
        let mut book = WhepIceBook::default();
        book.on_offer(session(), OFFER.into(), false);
        assert!(book.is_empty());
    }

    #[test]
    fn candidates_with_the_same_credentials_trickle_within_the_room() {
        let mut book = book_with_session();
        let same = fragment(Some("oldu"), None, 2);
        assert_eq!(
            book.plan_patch(&session(), true, None, &same, 2),
            Ok(PatchPlan::Trickle)
        );
        assert_eq!(
            book.plan_patch(&session(), true, None, &same, 1),
            Err(WhepError::TooManyCandidates)
        );
        let no_credentials = fragment(None, None, 1);
        assert_eq!(
            book.plan_patch(&session(), true, None, &no_credentials, 8),
            Ok(PatchPlan::Trickle)
        );
    }

    #[test]
    fn a_stale_etag_is_refused() {
        let mut book = book_with_session();
        let patch = fragment(None, None, 1);
        let current = whep::etag("whep-1", 0);
        assert!(
            book.plan_patch(&session(), true, Some(&current), &patch, 8)
                .is_ok()
        );
        assert!(
            book.plan_patch(&session(), true, Some("*"), &patch, 8)
                .is_ok()
        );
        assert_eq!(
            book.plan_patch(&session(), true, Some("\"whep-1.7\""), &patch, 8),
            Err(WhepError::PreconditionFailed)
        );
    }

    #[test]
    fn a_restart_is_committed_only_once_answered_and_moves_the_etag_on() {
        let mut book = book_with_session();
        let new = fragment(Some("newu"), Some("newpasswordnewpassword12"), 0);
        let Ok(PatchPlan::Restart { offer, restarted }) =
            book.plan_patch(&session(), true, None, &new, 8)
        else {
            panic!("not a restart");
        };
        assert!(
            offer.contains("a=ice-ufrag:newu") && !offer.contains("oldu"),
            "{offer}"
        );
        // Until committed, the old ETag still holds.
        let old = whep::etag("whep-1", 0);
        let trickle = fragment(None, None, 1);
        assert!(
            book.plan_patch(&session(), true, Some(&old), &trickle, 8)
                .is_ok()
        );
        let etag = book.commit_restart(session(), restarted, true).unwrap();
        assert_eq!(etag, whep::etag("whep-1", 1));
        assert_eq!(
            book.plan_patch(&session(), true, Some(&old), &trickle, 8),
            Err(WhepError::PreconditionFailed)
        );
        // The new credentials are the session's now: naming them again is no restart.
        let again = fragment(Some("newu"), None, 1);
        assert_eq!(
            book.plan_patch(&session(), true, Some(&etag), &again, 8),
            Ok(PatchPlan::Trickle)
        );
    }

    #[test]
    fn a_restart_needs_well_formed_credentials() {
        let mut book = book_with_session();
        for bad in [
            fragment(Some("newu"), None, 0),
            fragment(Some("new u"), Some("newpasswordnewpassword12"), 0),
            fragment(Some("newu"), Some("short"), 0),
        ] {
            assert!(
                matches!(
                    book.plan_patch(&session(), true, None, &bad, 8),
                    Err(WhepError::BadFragment(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_session_the_core_ended_is_not_found_and_forgotten() {
        let mut book = book_with_session();
        let patch = fragment(None, None, 1);
        assert_eq!(
            book.plan_patch(&session(), false, None, &patch, 8),
            Err(WhepError::NotFound)
        );
        assert!(book.is_empty(), "forgotten when found no longer served");
        let mut book = book_with_session();
        let new = fragment(Some("newu"), Some("newpasswordnewpassword12"), 0);
        let Ok(PatchPlan::Restart { restarted, .. }) =
            book.plan_patch(&session(), true, None, &new, 8)
        else {
            panic!("not a restart");
        };
        assert_eq!(book.on_delete(&session(), true), Ok(()));
        assert_eq!(
            book.commit_restart(session(), restarted, false),
            Err(WhepError::NotFound),
            "a restart answered after the player hung up"
        );
        assert_eq!(book.on_delete(&session(), true), Err(WhepError::NotFound));
        assert!(book.is_empty());
    }
}
