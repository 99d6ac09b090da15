//! Retry policy: exponential backoff with jitter, and when to give up.

use std::time::Duration;

/// How failed work is retried: exponential backoff with jitter, forever or up
/// to a number of attempts or an age.
///
/// The delay before attempt `n + 1` (after `n` failures) is
/// `initial_delay * multiplier^(n-1)`, capped at `max_delay`, then spread by
/// ±`jitter` so that many failing workers do not retry in lock-step.
///
/// ```
/// use std::time::Duration;
/// use eventodb_kit::RetryPolicy;
///
/// let policy = RetryPolicy::new()
///     .initial_delay(Duration::from_millis(100))
///     .max_delay(Duration::from_secs(10))
///     .multiplier(2.0)
///     .jitter(0.0)
///     .max_attempts(5);
/// assert_eq!(policy.delay_after(3), Duration::from_millis(400));
/// assert!(!policy.gives_up(4, Duration::ZERO));
/// assert!(policy.gives_up(5, Duration::ZERO));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    initial_delay: Duration,
    max_delay: Duration,
    multiplier: f64,
    jitter: f64,
    max_attempts: Option<u32>,
    max_age: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: None,
            max_age: None,
        }
    }
}

impl RetryPolicy {
    /// The default policy: 100 ms doubling to 30 s, ±20 % jitter, no limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Delay after the first failure. Defaults to 100 ms.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Longest delay between attempts. Defaults to 30 s.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Growth factor of the delay per failure (at least 1). Defaults to 2.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() {
            multiplier.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// Spread of each delay as a fraction (0 = none, 0.2 = ±20 %, at most 1).
    /// Defaults to 0.2.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Gives up after this many failed attempts. Defaults to never.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Gives up once the first failure is this old. Defaults to never.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Removes any attempt or age limit: retry forever.
    pub fn forever(mut self) -> Self {
        self.max_attempts = None;
        self.max_age = None;
        self
    }

    /// The longest delay between attempts.
    pub(crate) fn max_delay_value(&self) -> Duration {
        self.max_delay
    }

    /// The configured attempt limit.
    pub fn attempt_limit(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The configured age limit.
    pub fn age_limit(&self) -> Option<Duration> {
        self.max_age
    }

    /// The delay before the next attempt after `failures` failed attempts
    /// (≥ 1), without jitter.
    pub fn delay_after(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(64) as i32;
        let secs = self.initial_delay.as_secs_f64() * self.multiplier.powi(exponent);
        let capped = secs.min(self.max_delay.as_secs_f64());
        Duration::try_from_secs_f64(capped).unwrap_or(self.max_delay)
    }

    /// [`RetryPolicy::delay_after`] spread by the jitter, never above `max_delay`.
    pub fn jittered_delay_after(&self, failures: u32) -> Duration {
        self.delay_with_jitter(failures, fastrand::f64())
    }

    /// [`RetryPolicy::delay_after`] spread by the jitter, drawn from
    /// `unit` (uniform in `0..1`, so a caller can supply its own randomness).
    pub(crate) fn delay_with_jitter(&self, failures: u32, unit: f64) -> Duration {
        let base = self.delay_after(failures).as_secs_f64();
        let factor = 1.0 + self.jitter * (2.0 * unit - 1.0);
        let secs = (base * factor).clamp(0.0, self.max_delay.as_secs_f64());
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay)
    }

    /// Whether to stop after `failures` failed attempts, the first of which
    /// happened `since_first_failure` ago.
    pub fn gives_up(&self, failures: u32, since_first_failure: Duration) -> bool {
        self.max_attempts.is_some_and(|max| failures >= max)
            || self.max_age.is_some_and(|max| since_first_failure >= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy::new()
            .initial_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(100))
            .jitter(0.0);
        let delays: Vec<u128> = (1..=6).map(|n| p.delay_after(n).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 100, 100]);
        assert_eq!(p.delay_after(1_000_000), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let p = RetryPolicy::new()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1))
            .jitter(0.5);
        for _ in 0..1000 {
            let d = p.jittered_delay_after(1).as_millis();
            assert!((50..=150).contains(&d), "{d}");
        }
        let spread: std::collections::HashSet<u128> = (0..100)
            .map(|_| p.jittered_delay_after(1).as_micros())
            .collect();
        assert!(spread.len() > 10, "jitter varies the delay");
    }

    #[test]
    fn limits() {
        let forever = RetryPolicy::new();
        assert!(!forever.gives_up(u32::MAX, Duration::from_secs(1 << 30)));
        let aged = RetryPolicy::new().max_age(Duration::from_secs(60));
        assert!(!aged.gives_up(100, Duration::from_secs(59)));
        assert!(aged.gives_up(1, Duration::from_secs(60)));
        assert!(!aged.clone().forever().gives_up(1, Duration::from_secs(60)));
    }
}
