//! [`SenderConfig`]: how the sender batches, retries, leases and cleans up;
//! from a builder or from `OUTBOX_*` environment variables.

use std::time::Duration;

use crate::env::Vars;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// What happens to the later messages of a stream after one of its messages
/// is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AfterDeadLetter {
    /// The stream goes on with its next message. The dead letter, if
    /// requeued, arrives after the messages that overtook it.
    #[default]
    Continue,
    /// The stream's later messages wait until the dead letter is requeued
    /// (and delivered) or purged. Other streams keep flowing.
    HoldStream,
}

/// Settings of the outbox sender ([`Kit::spawn_sender`](crate::Kit::spawn_sender)).
///
/// ```
/// use std::time::Duration;
/// use eventodb_kit::outbox::{AfterDeadLetter, SenderConfig};
/// use eventodb_kit::RetryPolicy;
///
/// let config = SenderConfig::new()
///     .concurrency(4)
///     .batch_size(200)
///     .retry(RetryPolicy::new().max_delay(Duration::from_secs(10)).max_attempts(20))
///     .after_dead_letter(AfterDeadLetter::HoldStream);
/// assert_eq!(config.concurrency_value(), 4);
/// ```
///
/// # Environment
///
/// [`SenderConfig::from_env`] starts from the defaults and reads:
///
/// | variable | setting | default |
/// | --- | --- | --- |
/// | `OUTBOX_BATCH_SIZE` | [`batch_size`](SenderConfig::batch_size) | `100` |
/// | `OUTBOX_POLL_INTERVAL` | [`poll_interval`](SenderConfig::poll_interval) | `1s` |
/// | `OUTBOX_CONCURRENCY` | [`concurrency`](SenderConfig::concurrency) | `1` |
/// | `OUTBOX_PIPELINE_DEPTH` | [`pipeline_depth`](SenderConfig::pipeline_depth) | `4096` |
/// | `OUTBOX_EXCLUSIVE_STREAMS` | [`exclusive_streams`](SenderConfig::exclusive_streams) | `true` |
/// | `OUTBOX_RETRY_INITIAL_DELAY` | [`RetryPolicy::initial_delay`] | `100ms` |
/// | `OUTBOX_RETRY_MAX_DELAY` | [`RetryPolicy::max_delay`] | `30s` |
/// | `OUTBOX_RETRY_MULTIPLIER` | [`RetryPolicy::multiplier`] | `2` |
/// | `OUTBOX_RETRY_JITTER` | [`RetryPolicy::jitter`] | `0.2` |
/// | `OUTBOX_RETRY_MAX_ATTEMPTS` | [`RetryPolicy::max_attempts`] | `off` (retry forever) |
/// | `OUTBOX_RETRY_MAX_AGE` | [`RetryPolicy::max_age`] | `off` (retry forever) |
/// | `OUTBOX_AFTER_DEAD_LETTER` | [`after_dead_letter`](SenderConfig::after_dead_letter): `continue` or `hold` | `continue` |
/// | `OUTBOX_LEASE_DURATION` | [`lease_duration`](SenderConfig::lease_duration) | `10s` |
/// | `OUTBOX_RETENTION` | [`retention`](SenderConfig::retention) (`off` keeps sent rows) | `7days` |
///
/// Durations are written the humantime way (`250ms`, `30s`, `5m`, `7days`);
/// `off` (or `none`) disables an optional limit.
#[derive(Debug, Clone, PartialEq)]
pub struct SenderConfig {
    batch_size: usize,
    poll_interval: Duration,
    concurrency: usize,
    pipeline_depth: usize,
    exclusive_streams: bool,
    retry: RetryPolicy,
    after_dead_letter: AfterDeadLetter,
    lease_duration: Duration,
    retention: Option<Duration>,
    /// Longest time delivered rows wait to be marked sent while others are
    /// still in flight.
    pub(crate) flush_interval: Duration,
    /// How often retention runs.
    pub(crate) retention_interval: Duration,
    /// Longest a dropped handle waits for the sender's threads.
    pub(crate) drop_wait: Duration,
    /// Longest a stopping sender waits for answers to its writes in flight.
    pub(crate) shutdown_wait: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            concurrency: 1,
            pipeline_depth: DEFAULT_PIPELINE_DEPTH,
            exclusive_streams: true,
            retry: RetryPolicy::default(),
            after_dead_letter: AfterDeadLetter::Continue,
            lease_duration: Duration::from_secs(10),
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            flush_interval: Duration::from_millis(10),
            retention_interval: Duration::from_secs(60),
            drop_wait: Duration::from_secs(5),
            shutdown_wait: Duration::from_secs(2),
        }
    }
}

/// Most lanes a sender runs.
const MAX_CONCURRENCY: usize = 64;
/// Largest batch the sender claims at once.
const MAX_BATCH_SIZE: usize = 10_000;
/// Writes a lane keeps in flight at most, by default.
const DEFAULT_PIPELINE_DEPTH: usize = 4096;

impl SenderConfig {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows claimed per round trip to the database (1..=10 000); delivered
    /// rows are also marked sent in batches of about this size. Defaults to 100.
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.clamp(1, MAX_BATCH_SIZE);
        self
    }

    /// How often the sender looks for rows it was not woken for (written by
    /// another process, or requeued by one). Writes through this kit wake it
    /// at once. Defaults to 1 s.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Lanes that deliver in parallel (1..=64), each with its own
    /// connection (its own [`WritePipeline`](crate::store::WritePipeline))
    /// and window of writes in flight ([`SenderConfig::pipeline_depth`]).
    /// The messages of one stream still reach the store in order: a
    /// stream's messages in flight are all on one lane, and a stream without
    /// any goes to the least busy lane. Defaults to 1.
    pub fn concurrency(mut self, lanes: usize) -> Self {
        self.concurrency = lanes.clamp(1, MAX_CONCURRENCY);
        self
    }

    /// Most writes a lane keeps in flight (1..=16 384): the next writes go
    /// out before the answers of the earlier ones are back (HTTP/1.1
    /// pipelining on the lane's keep-alive connection; batches of one
    /// transaction for an embedded store), so a backlog drains at the
    /// store's speed instead of one message per round trip. `1` sends one
    /// write at a time, as a plain request/response client does.
    ///
    /// Each lane's window starts at a quarter of this, grows by one write
    /// with every answer that is not a failure (doubling per round trip) up
    /// to it, and halves on each failure; besides, a lane keeps at most
    /// 16 MiB of message data in flight. Writes of one stream in flight are
    /// chained with `expectedVersion`, so a write that fails makes the
    /// later ones of its stream fail rather than overtake it. To hide a
    /// round trip the window must hold the store's rate times the round
    /// trip (20 000 writes/s × 50 ms = 1 000). Defaults to 4096.
    pub fn pipeline_depth(mut self, writes: usize) -> Self {
        self.pipeline_depth = writes.clamp(1, crate::store::pipeline::PIPELINE_CAPACITY);
        self
    }

    /// Whether this outbox is the only writer of the streams it sends to
    /// (the usual case: an application's streams are its own). Then
    /// several messages of one stream are in flight at once, chained with
    /// `expectedVersion`, and a stream's backlog moves at the store's speed.
    ///
    /// Another writer appending to a stream while messages of it are in
    /// flight can make one of them land before an earlier one (its append
    /// lines a chain up: no scheme over `expectedVersion` can rule that
    /// out). The sender notices — an error in the log and
    /// [`SenderStats::reordered`](crate::outbox::SenderStats::reordered) —
    /// and sends that stream one message at a time from then on. With
    /// `false`, every stream is sent one message at a time from the start:
    /// order holds whatever others write, and streams still go out in
    /// parallel with each other, but one stream's backlog moves a message
    /// per round trip. Defaults to `true`.
    pub fn exclusive_streams(mut self, exclusive: bool) -> Self {
        self.exclusive_streams = exclusive;
        self
    }

    /// Backoff between attempts after transient failures, and when to give
    /// up (dead-letter). Defaults to [`RetryPolicy::default`]: 100 ms doubling
    /// to 30 s with ±20 % jitter, forever.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// What a stream does after one of its messages is dead-lettered.
    /// Defaults to [`AfterDeadLetter::Continue`].
    pub fn after_dead_letter(mut self, policy: AfterDeadLetter) -> Self {
        self.after_dead_letter = policy;
        self
    }

    /// How long the sender's lease lasts without renewal; a standby sender
    /// (another process on the same database) takes over this long after
    /// the active one died. The active sender renews it every third of
    /// this. Leases compare wall-clock times, which processes on one
    /// machine share. Defaults to 10 s.
    pub fn lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = duration.max(Duration::from_millis(10));
        self
    }

    /// Deletes sent rows this long after they were sent (`None` keeps them).
    /// Defaults to 7 days.
    pub fn retention(mut self, age: Option<Duration>) -> Self {
        self.retention = age;
        self
    }

    /// The configured batch size.
    pub fn batch_size_value(&self) -> usize {
        self.batch_size
    }

    /// The configured poll interval.
    pub fn poll_interval_value(&self) -> Duration {
        self.poll_interval
    }

    /// The configured number of lanes.
    pub fn concurrency_value(&self) -> usize {
        self.concurrency
    }

    /// The configured pipeline depth.
    pub fn pipeline_depth_value(&self) -> usize {
        self.pipeline_depth
    }

    /// Whether the outbox is the only writer of its streams.
    pub fn exclusive_streams_value(&self) -> bool {
        self.exclusive_streams
    }

    /// The configured retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The configured dead-letter policy.
    pub fn after_dead_letter_value(&self) -> AfterDeadLetter {
        self.after_dead_letter
    }

    /// The configured lease duration.
    pub fn lease_duration_value(&self) -> Duration {
        self.lease_duration
    }

    /// The configured retention.
    pub fn retention_value(&self) -> Option<Duration> {
        self.retention
    }

    /// The defaults overridden by the `OUTBOX_*` environment variables (see
    /// the table above). A value that does not parse is
    /// [`Error::InvalidInput`] naming the variable.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`SenderConfig::from_env`], reading variables through `lookup`
    /// (for configuration kept elsewhere, and for tests).
    ///
    /// ```
    /// use std::time::Duration;
    /// use eventodb_kit::outbox::SenderConfig;
    ///
    /// let config = SenderConfig::from_lookup(|name| match name {
    ///     "OUTBOX_CONCURRENCY" => Some("4".into()),
    ///     "OUTBOX_RETRY_MAX_DELAY" => Some("5s".into()),
    ///     _ => None,
    /// })?;
    /// assert_eq!(config.concurrency_value(), 4);
    /// assert_eq!(config.retry_policy().delay_after(100), Duration::from_secs(5));
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let vars = Vars::new(&lookup);
        let mut c = SenderConfig::default();
        if let Some(n) = vars.number("OUTBOX_BATCH_SIZE")? {
            c = c.batch_size(n);
        }
        if let Some(d) = vars.duration("OUTBOX_POLL_INTERVAL")? {
            c = c.poll_interval(d);
        }
        if let Some(n) = vars.number("OUTBOX_CONCURRENCY")? {
            c = c.concurrency(n);
        }
        if let Some(n) = vars.number("OUTBOX_PIPELINE_DEPTH")? {
            c = c.pipeline_depth(n);
        }
        if let Some(b) = vars.flag("OUTBOX_EXCLUSIVE_STREAMS")? {
            c = c.exclusive_streams(b);
        }
        c.retry = vars.retry_policy("OUTBOX_RETRY", c.retry)?;
        if let Some(v) = vars.get("OUTBOX_AFTER_DEAD_LETTER") {
            c.after_dead_letter = match v.to_ascii_lowercase().as_str() {
                "continue" => AfterDeadLetter::Continue,
                "hold" | "hold_stream" | "hold-stream" | "wait" => AfterDeadLetter::HoldStream,
                _ => {
                    return Err(Error::invalid(format!(
                        "OUTBOX_AFTER_DEAD_LETTER must be \"continue\" or \"hold\", not {v:?}"
                    )))
                }
            };
        }
        if let Some(d) = vars.duration("OUTBOX_LEASE_DURATION")? {
            c = c.lease_duration(d);
        }
        if let Some(retention) = vars.optional_duration("OUTBOX_RETENTION")? {
            c.retention = retention;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<SenderConfig> {
        SenderConfig::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn nothing_set_gives_the_defaults() {
        assert_eq!(from(&[]).unwrap(), SenderConfig::default());
    }

    #[test]
    fn every_variable_is_read() {
        let c = from(&[
            ("OUTBOX_BATCH_SIZE", "250"),
            ("OUTBOX_POLL_INTERVAL", "250ms"),
            ("OUTBOX_CONCURRENCY", "3"),
            ("OUTBOX_PIPELINE_DEPTH", "16"),
            ("OUTBOX_EXCLUSIVE_STREAMS", "false"),
            ("OUTBOX_RETRY_INITIAL_DELAY", "50ms"),
            ("OUTBOX_RETRY_MAX_DELAY", "2s"),
            ("OUTBOX_RETRY_MULTIPLIER", "3"),
            ("OUTBOX_RETRY_JITTER", "0"),
            ("OUTBOX_RETRY_MAX_ATTEMPTS", "7"),
            ("OUTBOX_RETRY_MAX_AGE", "1h"),
            ("OUTBOX_AFTER_DEAD_LETTER", "hold"),
            ("OUTBOX_LEASE_DURATION", "3s"),
            ("OUTBOX_RETENTION", "off"),
        ])
        .unwrap();
        assert_eq!(c.batch_size_value(), 250);
        assert_eq!(c.poll_interval_value(), Duration::from_millis(250));
        assert_eq!(c.concurrency_value(), 3);
        assert_eq!(c.pipeline_depth_value(), 16);
        assert!(!c.exclusive_streams_value());
        let r = c.retry_policy();
        assert_eq!(r.delay_after(1), Duration::from_millis(50));
        assert_eq!(r.delay_after(2), Duration::from_millis(150));
        assert_eq!(r.delay_after(10), Duration::from_secs(2));
        assert_eq!(r.attempt_limit(), Some(7));
        assert_eq!(r.age_limit(), Some(Duration::from_secs(3600)));
        assert_eq!(c.after_dead_letter_value(), AfterDeadLetter::HoldStream);
        assert_eq!(c.lease_duration_value(), Duration::from_secs(3));
        assert_eq!(c.retention_value(), None);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = from(&[("OUTBOX_POLL_INTERVAL", "soon")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("OUTBOX_POLL_INTERVAL"), "{err}");
        let err = from(&[("OUTBOX_CONCURRENCY", "-1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("OUTBOX_CONCURRENCY"), "{err}");
        let err = from(&[("OUTBOX_AFTER_DEAD_LETTER", "stop")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"continue\" or \"hold\""), "{err}");
    }
}
