//! What one viewer's session does about its link, decided in one place: which frames it sends
//! (the base layer only on a slow link; nothing while the pacer's queue is backed up, then a
//! fresh start at a keyframe), when it reads which candidate pair the media takes, and when a
//! viewer that stays connected but stopped sending feedback is given up. A plain state
//! machine: it is told what the link's interceptors measured and what time it is, and says
//! what to do; the session task does it.

use std::time::{Duration, Instant};

/// A viewer whose pacer would take longer than this to send what is queued is sent no more
/// frames until it drains to half of it; it then restarts at a keyframe. Keeps its latency
/// bounded when even the lowest rate is more than its link carries.
pub const MAX_PACER_DELAY: Duration = Duration::from_millis(400);

/// How often a connected session reads which candidate pair its media takes (ICE may switch
/// pairs, a relay may take over); reading the stats costs a walk over every stats object.
pub const PATH_READ_PERIOD: Duration = Duration::from_secs(2);

/// What to do with the next encoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameAction {
    Send,
    /// Leave it out and carry on: an enhancement-layer frame on a base-layer link (nothing
    /// refers to it), or a frame while the link drains.
    Skip,
    /// The link backed up with this frame: leave it and those after it out until it drains.
    Pause,
    /// The link drained: leave this frame out and start again at a keyframe, since the frames
    /// in between never left.
    Resume,
}

/// What the link check found, for the session to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkCheck {
    /// Time to read the media's candidate pair again.
    pub read_path: bool,
    /// Connected, yet no feedback for this long, beyond the limit: end the session.
    pub silent_for: Option<Duration>,
}

/// The link's measurements a frame decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameContext {
    /// How long the packets waiting in the pacer will take to leave.
    pub pacer_delay: Duration,
    /// This link gets the base layer only (the encoder works to a faster viewer's rate).
    pub base_layer_only: bool,
    /// The frame's temporal layer: 0 is the base layer.
    pub temporal_id: u8,
}

#[derive(Debug, Clone)]
pub struct LinkPolicy {
    /// How long a connected viewer may go without feedback (receiver reports, TWCC, REMB).
    feedback_timeout: Duration,
    /// When the connection last came up; `None` while not connected.
    connected_since: Option<Instant>,
    /// When the candidate pair was last read on this connection.
    path_read_at: Option<Instant>,
    /// Video paused until the pacer's queue drains.
    backed_up: bool,
}

impl LinkPolicy {
    pub fn new(feedback_timeout: Duration) -> Self {
        Self {
            feedback_timeout,
            connected_since: None,
            path_read_at: None,
            backed_up: false,
        }
    }

    /// The peer connection came up (or back up after an ICE restart).
    pub fn on_connected(&mut self, now: Instant) {
        self.connected_since = Some(now);
        self.path_read_at = None;
    }

    pub fn on_disconnected(&mut self) {
        self.connected_since = None;
    }

    pub fn on_frame(&mut self, frame: FrameContext) -> FrameAction {
        if frame.base_layer_only && frame.temporal_id > 0 {
            return FrameAction::Skip;
        }
        if self.backed_up {
            if frame.pacer_delay > MAX_PACER_DELAY / 2 {
                return FrameAction::Skip;
            }
            self.backed_up = false;
            return FrameAction::Resume;
        }
        if frame.pacer_delay > MAX_PACER_DELAY {
            self.backed_up = true;
            return FrameAction::Pause;
        }
        FrameAction::Send
    }

    /// The periodic look at the link: `last_feedback` as its interceptors left it.
    pub fn on_check(&mut self, now: Instant, last_feedback: Option<Instant>) -> LinkCheck {
        let mut check = LinkCheck::default();
        let Some(since) = self.connected_since else {
            return check;
        };
        let heard = last_feedback.map_or(since, |at| at.max(since));
        let silent = now.saturating_duration_since(heard);
        if silent > self.feedback_timeout {
            check.silent_for = Some(silent);
            return check;
        }
        let due = self
            .path_read_at
            .is_none_or(|at| now.saturating_duration_since(at) >= PATH_READ_PERIOD);
        if due {
            self.path_read_at = Some(now);
            check.read_path = true;
        }
        check
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn frame(pacer_ms: u64, temporal_id: u8, base_layer_only: bool) -> FrameContext {
        FrameContext {
            pacer_delay: Duration::from_millis(pacer_ms),
            base_layer_only,
            temporal_id,
        }
    }

    #[test]
    fn a_slow_link_gets_the_base_layer_only() {
        let mut policy = LinkPolicy::new(TIMEOUT);
        assert_eq!(policy.on_frame(frame(0, 0, true)), FrameAction::Send);
        assert_eq!(policy.on_frame(frame(0, 1, true)), FrameAction::Skip);
        assert_eq!(policy.on_frame(frame(0, 1, false)), FrameAction::Send);
    }

    #[test]
    fn a_backed_up_link_pauses_until_half_drained_then_resumes_at_a_keyframe() {
        let mut policy = LinkPolicy::new(TIMEOUT);
        assert_eq!(
            policy.on_frame(frame(400, 0, false)),
            FrameAction::Send,
            "at the limit"
        );
        assert_eq!(policy.on_frame(frame(401, 0, false)), FrameAction::Pause);
        // Below the limit but above half of it: still draining.
        assert_eq!(policy.on_frame(frame(300, 0, false)), FrameAction::Skip);
        assert_eq!(policy.on_frame(frame(201, 0, false)), FrameAction::Skip);
        assert_eq!(policy.on_frame(frame(200, 0, false)), FrameAction::Resume);
        assert_eq!(policy.on_frame(frame(200, 0, false)), FrameAction::Send);
        assert_eq!(
            policy.on_frame(frame(500, 0, false)),
            FrameAction::Pause,
            "again"
        );
    }

    #[test]
    fn a_connected_viewer_that_stops_reporting_is_given_up() {
        let start = Instant::now();
        let mut policy = LinkPolicy::new(TIMEOUT);
        let at = |secs: u64| start + Duration::from_secs(secs);
        // Not connected: the connection timeout is liveness's business, not this.
        assert_eq!(policy.on_check(at(100), None).silent_for, None);
        policy.on_connected(at(100));
        assert_eq!(policy.on_check(at(129), None).silent_for, None);
        let check = policy.on_check(at(131), None);
        assert_eq!(check.silent_for, Some(Duration::from_secs(31)));
        // Feedback keeps it alive; feedback from before this connection does not.
        let mut policy = LinkPolicy::new(TIMEOUT);
        policy.on_connected(at(0));
        assert_eq!(policy.on_check(at(50), Some(at(40))).silent_for, None);
        policy.on_disconnected();
        policy.on_connected(at(100));
        assert_eq!(policy.on_check(at(129), Some(at(40))).silent_for, None);
        assert!(policy.on_check(at(131), Some(at(40))).silent_for.is_some());
    }

    #[test]
    fn the_path_is_read_on_connecting_and_then_every_period() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut policy = LinkPolicy::new(TIMEOUT);
        assert!(!policy.on_check(at(0), None).read_path, "not connected");
        policy.on_connected(at(0));
        assert!(policy.on_check(at(250), None).read_path);
        assert!(!policy.on_check(at(500), None).read_path);
        assert!(!policy.on_check(at(2_000), None).read_path);
        assert!(policy.on_check(at(2_250), None).read_path);
        // A new connection (an ICE restart) reads it at once.
        policy.on_disconnected();
        policy.on_connected(at(2_500));
        assert!(policy.on_check(at(2_750), None).read_path);
    }
}
