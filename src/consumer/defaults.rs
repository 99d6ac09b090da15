//! [`ConsumerDefaults`]: the settings every consumer of a kit starts from,
//! from a builder or from `CONSUMER_*` environment variables.

use std::time::Duration;

use crate::env::Vars;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::store::MAX_BATCH_SIZE;

use super::config::FailurePolicy;

/// The settings [`Kit::consumer`](crate::Kit::consumer) builders start from;
/// each [`ConsumerBuilder`](super::ConsumerBuilder) setter still overrides
/// them for its consumer. Set them with
/// [`KitBuilder::consumer_defaults`](crate::KitBuilder::consumer_defaults)
/// (which [`KitBuilder::from_env`](crate::KitBuilder::from_env) fills from
/// the environment).
///
/// ```
/// use std::time::Duration;
/// use eventodb_kit::consumer::{ConsumerDefaults, FailurePolicy};
///
/// let defaults = ConsumerDefaults::from_lookup(|name| match name {
///     "CONSUMER_BATCH_SIZE" => Some("200".into()),
///     "CONSUMER_FAILURE_POLICY" => Some("stop".into()),
///     _ => None,
/// })?
/// .poll_interval(Duration::from_millis(250));
/// assert_eq!(defaults.batch_size_value(), 200);
/// assert_eq!(defaults.failure_policy_value(), FailurePolicy::Stop);
/// # Ok::<(), eventodb_kit::Error>(())
/// ```
///
/// # Environment
///
/// [`ConsumerDefaults::from_env`] starts from the defaults and reads:
///
/// | variable | setting | default |
/// | --- | --- | --- |
/// | `CONSUMER_BATCH_SIZE` | [`batch_size`](ConsumerDefaults::batch_size) | `1000` |
/// | `CONSUMER_POLL_INTERVAL` | [`poll_interval`](ConsumerDefaults::poll_interval) | `1s` |
/// | `CONSUMER_RETRY_INITIAL_DELAY` | [`RetryPolicy::initial_delay`] | `100ms` |
/// | `CONSUMER_RETRY_MAX_DELAY` | [`RetryPolicy::max_delay`] | `10s` |
/// | `CONSUMER_RETRY_MULTIPLIER` | [`RetryPolicy::multiplier`] | `2` |
/// | `CONSUMER_RETRY_JITTER` | [`RetryPolicy::jitter`] | `0.2` |
/// | `CONSUMER_RETRY_MAX_ATTEMPTS` | [`RetryPolicy::max_attempts`] (`off`: forever) | `5` |
/// | `CONSUMER_RETRY_MAX_AGE` | [`RetryPolicy::max_age`] | `off` |
/// | `CONSUMER_FAILURE_POLICY` | [`failure_policy`](ConsumerDefaults::failure_policy): `dead_letter` or `stop` | `dead_letter` |
/// | `CONSUMER_RETRY_PERMANENT_ERRORS` | [`retry_permanent_errors`](ConsumerDefaults::retry_permanent_errors) | `true` |
/// | `CONSUMER_PROCESSED_RETENTION` | [`processed_retention`](ConsumerDefaults::processed_retention) (`off` keeps them) | `7days` |
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerDefaults {
    pub(crate) batch_size: i64,
    pub(crate) poll_interval: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) failure_policy: FailurePolicy,
    pub(crate) retry_permanent_errors: bool,
    pub(crate) processed_retention: Option<Duration>,
}

impl Default for ConsumerDefaults {
    fn default() -> Self {
        ConsumerDefaults {
            batch_size: 1000,
            poll_interval: Duration::from_secs(1),
            retry: RetryPolicy::new()
                .initial_delay(Duration::from_millis(100))
                .max_delay(Duration::from_secs(10))
                .max_attempts(5),
            failure_policy: FailurePolicy::DeadLetter,
            retry_permanent_errors: true,
            processed_retention: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

impl ConsumerDefaults {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages fetched per `category.get` (1..=10 000; checked when a
    /// consumer is spawned). Defaults to 1000.
    pub fn batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// How often an idle consumer looks for messages when no wake-up came.
    /// Defaults to 1 s.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How a failing handler is retried. Defaults to 5 attempts, 100 ms
    /// doubling up to 10 s, with jitter.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// What happens once the retries are used up. Defaults to
    /// [`FailurePolicy::DeadLetter`].
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Whether handler errors that cannot succeed on a retry are retried
    /// anyway (see [`ConsumerBuilder::retry_permanent_errors`](super::ConsumerBuilder::retry_permanent_errors)).
    /// Defaults to `true`.
    pub fn retry_permanent_errors(mut self, retry: bool) -> Self {
        self.retry_permanent_errors = retry;
        self
    }

    /// How long processed-event records are kept (`None`: for ever).
    /// Defaults to 7 days.
    pub fn processed_retention(mut self, age: Option<Duration>) -> Self {
        self.processed_retention = age;
        self
    }

    /// The configured batch size.
    pub fn batch_size_value(&self) -> i64 {
        self.batch_size
    }

    /// The configured poll interval.
    pub fn poll_interval_value(&self) -> Duration {
        self.poll_interval
    }

    /// The configured retry policy.
    pub fn retry_policy_value(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The configured failure policy.
    pub fn failure_policy_value(&self) -> FailurePolicy {
        self.failure_policy
    }

    /// The configured processed-record retention.
    pub fn processed_retention_value(&self) -> Option<Duration> {
        self.processed_retention
    }

    /// The defaults overridden by the `CONSUMER_*` environment variables
    /// (see the table above). A value that does not parse is
    /// [`Error::InvalidInput`] naming the variable.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(crate::env::process_env)
    }

    /// Like [`ConsumerDefaults::from_env`], reading variables through
    /// `lookup` (for configuration kept elsewhere, and for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let vars = Vars::new(&lookup);
        let mut d = ConsumerDefaults::default();
        if let Some(n) = vars.number::<i64>("CONSUMER_BATCH_SIZE")? {
            if !(1..=MAX_BATCH_SIZE).contains(&n) {
                return Err(Error::invalid(format!(
                    "CONSUMER_BATCH_SIZE must be between 1 and {MAX_BATCH_SIZE}, not {n}"
                )));
            }
            d.batch_size = n;
        }
        if let Some(interval) = vars.duration("CONSUMER_POLL_INTERVAL")? {
            d = d.poll_interval(interval);
        }
        d.retry = vars.retry_policy("CONSUMER_RETRY", d.retry)?;
        if let Some(v) = vars.get("CONSUMER_FAILURE_POLICY") {
            d.failure_policy = match v.to_ascii_lowercase().replace('-', "_").as_str() {
                "dead_letter" | "deadletter" | "dlq" => FailurePolicy::DeadLetter,
                "stop" | "halt" => FailurePolicy::Stop,
                _ => {
                    return Err(Error::invalid(format!(
                        "CONSUMER_FAILURE_POLICY must be \"dead_letter\" or \"stop\", not {v:?}"
                    )))
                }
            };
        }
        if let Some(retry) = vars.flag("CONSUMER_RETRY_PERMANENT_ERRORS")? {
            d.retry_permanent_errors = retry;
        }
        if let Some(retention) = vars.optional_duration("CONSUMER_PROCESSED_RETENTION")? {
            d.processed_retention = retention;
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<ConsumerDefaults> {
        ConsumerDefaults::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn nothing_set_gives_the_defaults() {
        assert_eq!(from(&[]).unwrap(), ConsumerDefaults::default());
    }

    #[test]
    fn every_variable_is_read() {
        let d = from(&[
            ("CONSUMER_BATCH_SIZE", "50"),
            ("CONSUMER_POLL_INTERVAL", "20ms"),
            ("CONSUMER_RETRY_INITIAL_DELAY", "5ms"),
            ("CONSUMER_RETRY_MAX_DELAY", "1s"),
            ("CONSUMER_RETRY_MULTIPLIER", "3"),
            ("CONSUMER_RETRY_JITTER", "0"),
            ("CONSUMER_RETRY_MAX_ATTEMPTS", "off"),
            ("CONSUMER_RETRY_MAX_AGE", "1m"),
            ("CONSUMER_FAILURE_POLICY", "stop"),
            ("CONSUMER_RETRY_PERMANENT_ERRORS", "false"),
            ("CONSUMER_PROCESSED_RETENTION", "off"),
        ])
        .unwrap();
        assert_eq!(d.batch_size_value(), 50);
        assert_eq!(d.poll_interval_value(), Duration::from_millis(20));
        let r = d.retry_policy_value();
        assert_eq!(r.delay_after(2), Duration::from_millis(15));
        assert_eq!(r.attempt_limit(), None);
        assert_eq!(r.age_limit(), Some(Duration::from_secs(60)));
        assert_eq!(d.failure_policy_value(), FailurePolicy::Stop);
        assert!(!d.retry_permanent_errors);
        assert_eq!(d.processed_retention_value(), None);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("CONSUMER_BATCH_SIZE", "0"),
            ("CONSUMER_BATCH_SIZE", "lots"),
            ("CONSUMER_POLL_INTERVAL", "soon"),
            ("CONSUMER_FAILURE_POLICY", "ignore"),
            ("CONSUMER_RETRY_JITTER", "NaN"),
        ] {
            let err = from(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
