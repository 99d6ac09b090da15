//! The sender's pause: while the store is unreachable or refuses the token,
//! nothing is sent and nothing uses up attempts; a cheap probe on a short,
//! capped schedule notices when it is back.
//!
//! Connection failures in the middle of a request are not a pause by
//! themselves (the request is retried at once on a new connection); a
//! streak of them with no answer in between is.

use std::time::Duration;

use crate::disposition::PauseReason;
use crate::retry::RetryPolicy;

/// The longest wait between probes while the store is unreachable: the
/// sender notices within about this long that it is back.
pub(crate) const UNREACHABLE_PROBE_CAP: Duration = Duration::from_secs(1);

/// Connection failures in a row (without an answer in between) that mean
/// the store is unreachable.
pub(crate) const LINK_STREAK_PAUSE: u32 = 3;

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
        };
        pause.schedule(now_book_ms, policy);
        pause
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

    pub(crate) fn schedule(&mut self, now_book_ms: i64, policy: &RetryPolicy) {
        let delay = self.probe_delay(policy);
        self.next_probe_ms = Some(now_book_ms.saturating_add(super::book::millis(delay)));
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
}
