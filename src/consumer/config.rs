//! A consumer's settings, with every default in one place.

use std::fmt;
use std::time::Duration;

use crate::consumer_group::ConsumerGroup;
use crate::retry::RetryPolicy;

use super::defaults::ConsumerDefaults;
use super::filter::MetadataPredicate;

/// What a consumer does with a message whose handler keeps failing, once the
/// retry policy gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Move the message to the dead-letter table (see [`Kit::dlq`](crate::Kit::dlq))
    /// and go on with the next one. Requeuing it later runs the handler once
    /// more.
    #[default]
    DeadLetter,
    /// Stop at the message: the position stays just before it, the consumer's
    /// health becomes [`ConsumerHealth::Halted`](super::ConsumerHealth::Halted)
    /// and its thread ends. A restart tries the message again.
    Stop,
}

/// How long a batch transaction may hold the database's write lock before it
/// commits what it has done (see `ConsumerBuilder::max_transaction_time`).
pub(crate) const DEFAULT_MAX_TRANSACTION_TIME: Duration = Duration::from_millis(100);

/// How long a consumer's lease lasts unless renewed (see
/// `ConsumerBuilder::lease_duration`).
pub(crate) const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(10);

/// Settings of one consumer; see [`ConsumerBuilder`](super::ConsumerBuilder).
#[derive(Clone)]
pub(crate) struct ConsumerConfig {
    pub(crate) batch_size: i64,
    pub(crate) poll_interval: Duration,
    pub(crate) start_position: i64,
    pub(crate) consumer_group: Option<ConsumerGroup>,
    pub(crate) types: Option<Vec<String>>,
    pub(crate) correlation: Option<String>,
    pub(crate) metadata: Vec<MetadataPredicate>,
    pub(crate) retry: RetryPolicy,
    pub(crate) failure_policy: FailurePolicy,
    pub(crate) retry_permanent_errors: bool,
    pub(crate) processed_retention: Option<Duration>,
    pub(crate) max_transaction_time: Duration,
    pub(crate) lease_duration: Duration,
    /// How often a consumer prunes its processed records (crate-private knob).
    pub(crate) retention_interval: Duration,
    /// Backoff while the store or the local database fails (crate-private knob).
    pub(crate) io_retry: RetryPolicy,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig::from_defaults(&ConsumerDefaults::default())
    }
}

impl ConsumerConfig {
    /// A consumer's settings, starting from its kit's defaults.
    pub(crate) fn from_defaults(d: &ConsumerDefaults) -> Self {
        ConsumerConfig {
            batch_size: d.batch_size,
            poll_interval: d.poll_interval,
            start_position: 1,
            consumer_group: None,
            types: None,
            correlation: None,
            metadata: Vec::new(),
            retry: d.retry.clone(),
            failure_policy: d.failure_policy,
            retry_permanent_errors: d.retry_permanent_errors,
            processed_retention: d.processed_retention,
            max_transaction_time: DEFAULT_MAX_TRANSACTION_TIME,
            lease_duration: DEFAULT_LEASE_DURATION,
            retention_interval: Duration::from_secs(3600),
            io_retry: RetryPolicy::new()
                .initial_delay(Duration::from_millis(100))
                .max_delay(Duration::from_secs(30)),
        }
    }
}

impl fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerConfig")
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .field("start_position", &self.start_position)
            .field("consumer_group", &self.consumer_group)
            .field("types", &self.types)
            .field("correlation", &self.correlation)
            .field("metadata_predicates", &self.metadata.len())
            .field("retry", &self.retry)
            .field("failure_policy", &self.failure_policy)
            .field("retry_permanent_errors", &self.retry_permanent_errors)
            .field("processed_retention", &self.processed_retention)
            .field("max_transaction_time", &self.max_transaction_time)
            .field("lease_duration", &self.lease_duration)
            .finish()
    }
}
