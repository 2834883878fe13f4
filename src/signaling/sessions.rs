//! What the signaling core says to a viewer's session and hears back from it: the commands
//! the device forwards, and the events a session reports (answered, connected, ended and
//! why). Plain data, so the core decides on them without knowing how a session is built
//! (webrtc, in `crate::session`).

use crate::protocol::{Candidate, ErrorCode, Segment};

/// What the device forwards to a session.
#[derive(Debug)]
pub enum SessionCommand {
    /// A new offer on a live session: renegotiate (ICE restart included).
    Offer(String),
    /// The answer to the session's own offer (a WHIP server's).
    Answer(String),
    Candidate(Option<Candidate>),
    Hangup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The viewer hung up; nothing more is sent to it.
    ViewerHangup,
    /// Unconnected for longer than the session timeout.
    Timeout,
    /// The session could not answer the viewer's offer: the viewer is told why, with the
    /// error's code, instead of a hangup.
    SetupFailed(SessionError),
    Failed(String),
    Shutdown,
}

impl EndReason {
    /// Whether the viewer must be told with a hangup.
    pub fn notify_viewer(&self) -> bool {
        !matches!(self, EndReason::ViewerHangup | EndReason::SetupFailed(_))
    }

    /// The reason's name in the metrics: one of a fixed few, whatever the details.
    pub fn name(&self) -> &'static str {
        match self {
            EndReason::ViewerHangup => "viewer_hangup",
            EndReason::Timeout => "timeout",
            EndReason::SetupFailed(_) => "setup_failed",
            EndReason::Failed(_) => "failed",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// Why a session could not answer an offer (its first or a renegotiation). The kind decides
/// the one error code the viewer is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// webrtc would not take an offer that passed campeer's own checks: the viewer's fault.
    #[error("the offer cannot be applied: {0}")]
    OfferRefused(String),
    /// campeer could not build its side (peer connection, tracks, answer): its own fault.
    #[error("{0}")]
    Setup(String),
}

impl SessionError {
    pub fn code(&self) -> ErrorCode {
        match self {
            SessionError::OfferRefused(_) => ErrorCode::BadRequest,
            SessionError::Setup(_) => ErrorCode::Internal,
        }
    }
}

/// What a session tells the device about itself: the admission decisions (which place a
/// new viewer may take) depend on it.
#[derive(Debug)]
pub enum SessionEvent {
    /// The first answer went out.
    Answered,
    /// The peer connection came up for the first time.
    Connected,
    /// The task ended.
    Ended(EndReason),
}

/// A session's event, reported to the device. At most three per session, so an unbounded
/// channel stays bounded by the viewer limit.
#[derive(Debug)]
pub struct SessionReport {
    pub id: Segment,
    /// Tells this session apart from a later one that reuses its id.
    pub serial: u64,
    pub event: SessionEvent,
}
