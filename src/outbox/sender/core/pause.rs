//! The sender's pause: while the store is unreachable or refuses the token,
//! nothing is sent and nothing uses up attempts; a cheap probe on a short,
//! capped schedule notices when it is back.
//!
//! Connection failures in the middle of a request are not a pause by
//! themselves (the request is retried at once on a new connection); a
//! streak of them with no answer in between is.
//!
//! A store (or a proxy) that answers 429 or 503 with `Retry-After` is not
//! probed before that time (at most [`RETRY_AFTER_CAP`] ahead).

use std::time::Duration;

use crate::disposition::PauseReason;
use crate::retry::RetryPolicy;
use crate::time::millis;

/// The longest wait between probes while the store is unreachable: the
/// sender notices within about this long that it is back.
pub(crate) const UNREACHABLE_PROBE_CAP: Duration = Duration::from_secs(1);

/// Connection failures in a row (writes or the reads that settle them,
/// without an answer anywhere in between) that mean the store is
/// unreachable although connecting works: on a link
/// that drops a third of all requests, eight connections in a row failing
/// before any answer happens about once in a million.
pub(crate) const LINK_STREAK_PAUSE: u32 = 8;

/// The longest `Retry-After` honoured: a store asking for more is probed
/// after this long anyway.
pub(crate) const RETRY_AFTER_CAP: Duration = Duration::from_secs(5 * 60);

/// A pause in progress.
#[derive(Debug, Clone)]
pub(crate) struct Pause {
    pub(crate) reason: PauseReason,
    /// The error that started it, or the latest probe's.
    pub(crate) error: String,
    /// Wall-clock start (Unix ms), for the stats.
    pub(crate) since_wall_ms: i64,
    /// Probes that failed so far.
    pub(crate) probes_failed: u32,
    /// When the next probe is due (book ms); `None` while one runs.
    pub(crate) next_probe_ms: Option<i64>,
    /// No probe before this (book ms): the store asked to wait until then
    /// (`Retry-After`).
    pub(crate) not_before_ms: Option<i64>,
}

impl Pause {
    pub(crate) fn new(
        reason: PauseReason,
        error: String,
        now_book_ms: i64,
        now_wall_ms: i64,
        policy: &RetryPolicy,
    ) -> Self {
        let mut pause = Pause {
            reason,
            error,
            since_wall_ms: now_wall_ms,
            probes_failed: 0,
            next_probe_ms: None,
            not_before_ms: None,
        };
        pause.schedule(now_book_ms, policy);
        pause
    }

    /// The store asked to wait `retry_after` (from now): no probe before
    /// then (capped at [`RETRY_AFTER_CAP`]); a probe already scheduled
    /// earlier moves.
    pub(crate) fn hold_off(&mut self, now_book_ms: i64, retry_after: Option<Duration>) {
        let Some(wait) = retry_after else {
            return;
        };
        let until = now_book_ms.saturating_add(millis(wait.min(RETRY_AFTER_CAP)));
        let until = self.not_before_ms.map_or(until, |t| t.max(until));
        self.not_before_ms = Some(until);
        if let Some(next) = &mut self.next_probe_ms {
            *next = (*next).max(until);
        }
    }

    /// The wait before the next probe: the retry policy's backoff, capped
    /// at a second while the store is unreachable (so its return is
    /// noticed quickly), uncapped for a refused token or certificate
    /// (which a person has to fix).
    pub(crate) fn probe_delay(&self, policy: &RetryPolicy) -> Duration {
        let delay = policy.delay_after(self.probes_failed + 1);
        match self.reason {
            PauseReason::Unreachable => delay.min(UNREACHABLE_PROBE_CAP),
            _ => delay,
        }
    }

    /// Schedules the next probe: after the probe delay, and not before
    /// the store said (`Retry-After`).
    pub(crate) fn schedule(&mut self, now_book_ms: i64, policy: &RetryPolicy) {
        let delay = self.probe_delay(policy);
        let at = now_book_ms.saturating_add(millis(delay));
        self.next_probe_ms = Some(self.not_before_ms.map_or(at, |t| t.max(at)));
    }

    /// Whether a probe is due (and none is running).
    pub(crate) fn probe_due(&self, now_book_ms: i64) -> bool {
        self.next_probe_ms.is_some_and(|t| now_book_ms >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_probes_are_capped_auth_probes_are_not() {
        let policy = RetryPolicy::new();
        let mut p = Pause::new(PauseReason::Unreachable, "x".into(), 0, 0, &policy);
        assert_eq!(p.next_probe_ms, Some(100));
        p.probes_failed = 20;
        assert_eq!(p.probe_delay(&policy), UNREACHABLE_PROBE_CAP);
        p.reason = PauseReason::AuthRefused;
        assert_eq!(p.probe_delay(&policy), Duration::from_secs(30));
    }

    #[test]
    fn a_retry_after_puts_the_next_probe_off_up_to_the_cap() {
        let policy = RetryPolicy::new();
        let mut p = Pause::new(PauseReason::Unreachable, "429".into(), 0, 0, &policy);
        assert_eq!(p.next_probe_ms, Some(100));
        p.hold_off(0, Some(Duration::from_secs(1)));
        assert_eq!(p.next_probe_ms, Some(1_000), "the scheduled probe moves");
        // A probe that fails before then is scheduled after it too.
        p.next_probe_ms = None;
        p.probes_failed = 1;
        p.schedule(500, &policy);
        assert_eq!(p.next_probe_ms, Some(1_000));
        // Later, the probe delay counts again.
        p.schedule(5_000, &policy);
        assert_eq!(p.next_probe_ms, Some(5_200));
        // A shorter wait does not shorten a longer one; a huge one is capped.
        p.hold_off(5_000, Some(Duration::from_millis(10)));
        assert_eq!(p.next_probe_ms, Some(5_200));
        p.hold_off(5_000, Some(Duration::from_secs(86_400)));
        assert_eq!(p.next_probe_ms, Some(5_000 + 300_000));
        p.hold_off(6_000, None);
        assert_eq!(p.not_before_ms, Some(305_000));
    }
}
