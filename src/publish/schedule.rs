//! One publication's course, pure: when to try again after it failed, and what to say about
//! it. A WHIP server that goes away, refuses (a Janus front-end keeps an endpoint busy with 403
//! until it times out a publisher that vanished without DELETE) or whose session fails is
//! tried again after a backoff that doubles from [`FIRST_RETRY`] to [`LAST_RETRY`], spread by
//! a random share so that a fleet does not come back in step; a publication that stayed up
//! for [`STABLE_AFTER`] starts again from the shortest wait.

use std::time::{Duration, Instant};

pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const LAST_RETRY: Duration = Duration::from_secs(60);
/// Publishing this long counts as a success: the next failure waits [`FIRST_RETRY`] again.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// The share of a wait that is spread at random, up or down.
const SPREAD: f64 = 0.2;

/// What a publication is doing, for the status topic, metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicationState {
    /// Offering, posting, or connecting to the server.
    Connecting,
    /// Media flows to the server.
    Publishing,
    /// The last attempt failed; waiting to try again.
    Retrying,
}

impl PublicationState {
    pub const ALL: [Self; 3] = [Self::Connecting, Self::Publishing, Self::Retrying];

    pub fn name(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Publishing => "publishing",
            Self::Retrying => "retrying",
        }
    }
}

/// A publication's figures as others see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationStatus {
    pub url: String,
    pub device: String,
    pub state: PublicationState,
    /// Attempts made, the first included.
    pub attempts: u64,
    /// Why the last attempt ended, if one did.
    pub last_error: Option<String>,
}

impl PublicationStatus {
    /// A publication about to make its first attempt.
    pub fn starting(target: &crate::config::PublishTarget) -> Self {
        Self {
            url: target.shown_url(),
            device: target.device.to_string(),
            state: PublicationState::Connecting,
            attempts: 0,
            last_error: None,
        }
    }
}

/// The rules of one publication.
#[derive(Debug)]
pub struct Publication {
    status: PublicationStatus,
    failures_in_a_row: u32,
    publishing_since: Option<Instant>,
}

impl Publication {
    pub fn new(url: String, device: String) -> Self {
        Self {
            status: PublicationStatus {
                url,
                device,
                state: PublicationState::Connecting,
                attempts: 0,
                last_error: None,
            },
            failures_in_a_row: 0,
            publishing_since: None,
        }
    }

    pub fn status(&self) -> &PublicationStatus {
        &self.status
    }

    /// A new attempt starts.
    pub fn attempt(&mut self) {
        self.status.attempts += 1;
        self.status.state = PublicationState::Connecting;
        self.publishing_since = None;
    }

    /// Media flows.
    pub fn publishing(&mut self, now: Instant) {
        self.status.state = PublicationState::Publishing;
        self.publishing_since = Some(now);
    }

    /// The attempt ended for `error`: how long to wait before the next. `spread` is a random
    /// number in `0.0..=1.0`.
    pub fn ended(&mut self, now: Instant, error: String, spread: f64) -> Duration {
        let stable = self
            .publishing_since
            .is_some_and(|since| now.saturating_duration_since(since) >= STABLE_AFTER);
        if stable {
            self.failures_in_a_row = 0;
        }
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        self.publishing_since = None;
        self.status.state = PublicationState::Retrying;
        self.status.last_error = Some(error);
        let doublings = self.failures_in_a_row.saturating_sub(1).min(16);
        let wait = FIRST_RETRY
            .saturating_mul(1 << doublings)
            .min(LAST_RETRY)
            .as_secs_f64();
        let factor = 1.0 - SPREAD + 2.0 * SPREAD * spread.clamp(0.0, 1.0);
        Duration::from_secs_f64(wait * factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_a_minute_and_start_again_after_a_stable_run() {
        let start = Instant::now();
        let mut publication = Publication::new("http://sfu/whip".into(), "cam".into());
        let waits: Vec<u64> = (0..9)
            .map(|_| {
                publication.attempt();
                publication.ended(start, "refused".into(), 0.5).as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(publication.status().attempts, 9);
        assert_eq!(publication.status().state, PublicationState::Retrying);
        assert_eq!(publication.status().last_error.as_deref(), Some("refused"));

        // Up only briefly: still backing off.
        publication.attempt();
        publication.publishing(start);
        let brief = publication.ended(start + Duration::from_secs(5), "failed".into(), 0.5);
        assert_eq!(brief, LAST_RETRY);
        // Up long enough: the next wait is the shortest again.
        publication.attempt();
        publication.publishing(start);
        assert_eq!(publication.status().state, PublicationState::Publishing);
        let after_stable = publication.ended(start + STABLE_AFTER, "failed".into(), 0.5);
        assert_eq!(after_stable, FIRST_RETRY);
    }

    #[test]
    fn the_spread_stays_within_a_fifth_either_way() {
        let now = Instant::now();
        let mut low = Publication::new("u".into(), "cam".into());
        let mut high = Publication::new("u".into(), "cam".into());
        assert_eq!(low.ended(now, "x".into(), 0.0), Duration::from_millis(800));
        assert_eq!(
            high.ended(now, "x".into(), 1.0),
            Duration::from_millis(1200)
        );
        assert_eq!(
            high.ended(now, "x".into(), 7.0),
            Duration::from_millis(2400)
        );
    }
}
