//! The types of a metrics snapshot ([`Kit::metrics`](crate::Kit::metrics)).
//!
//! Every type is `Clone` and serde-`Serialize`: durations serialize as
//! seconds (a float), instants as RFC 3339 UTC strings.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::units;
use super::LatencySummary;
use crate::consumer::ConsumerHealth;
use crate::consumer_group::ConsumerGroup;
use crate::outbox::PauseState;

/// One snapshot of what a kit's namespace is doing: the outbox, every
/// consumer with a saved position, and the dead letters — read from the
/// kit's database and the store — plus the live figures of the senders and
/// consumers this kit (or a clone) spawned and that are still alive.
///
/// See [`Kit::metrics`](crate::Kit::metrics) for how each figure is computed
/// and what it costs.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Metrics {
    /// The namespace the kit works in.
    pub namespace: String,
    /// When the snapshot was taken.
    #[serde(serialize_with = "units::time")]
    pub taken_at: SystemTime,
    /// The outbox and its sender.
    pub outbox: OutboxMetrics,
    /// Every consumer of the namespace that has a saved position (in this
    /// process or any other on the same database), sorted by category and
    /// consumer id.
    pub consumers: Vec<ConsumerMetrics>,
    /// Dead letters by source.
    pub dead_letters: DeadLetterMetrics,
    /// The error that stopped the snapshot from reading the store, if any:
    /// consumer lags are then unknown (`None`).
    pub store_error: Option<String>,
}

impl Metrics {
    /// The consumer `consumer_id` of `category`, if it has a saved position.
    pub fn consumer(&self, category: &str, consumer_id: &str) -> Option<&ConsumerMetrics> {
        self.consumers
            .iter()
            .find(|c| c.category == category && c.consumer_id == consumer_id)
    }
}

/// The outbox of the namespace (from the database) and the live figures of
/// its senders.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct OutboxMetrics {
    /// Messages waiting to be delivered (dead letters not counted).
    pub backlog: u64,
    /// When the oldest of them was written.
    #[serde(serialize_with = "units::opt_time")]
    pub oldest_unsent_at: Option<SystemTime>,
    /// How long the oldest of them has been waiting.
    #[serde(serialize_with = "units::opt_secs")]
    pub oldest_unsent_age: Option<Duration>,
    /// Outbox messages in the dead-letter queue.
    pub dead_letters: u64,
    /// Who holds (or last held) the namespace's sender lease.
    pub lease: Option<LeaseMetrics>,
    /// The live senders spawned by this kit, added up; `None` when there is
    /// none (e.g. a command-line tool reading the database).
    pub sender: Option<SenderMetrics>,
}

impl OutboxMetrics {
    /// Why the namespace's outbox sender is paused, if it is, and since
    /// when: this process's active sender's own state when it runs here,
    /// otherwise what the lease's holder stored with its lease (a sender
    /// in another process).
    ///
    /// ```
    /// let kit = eventodb_kit::Kit::builder().build()?;
    /// assert!(kit.metrics()?.outbox.sender_pause().is_none());
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    pub fn sender_pause(&self) -> Option<&PauseState> {
        match &self.sender {
            Some(s) if s.active => s.pause.as_ref(),
            _ => self.lease.as_ref().and_then(|l| l.pause.as_ref()),
        }
    }
}

/// A lease (the namespace's sender's, a consumer's), as stored.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LeaseMetrics {
    /// The holder (`pid <pid> sender <uuid>`, `pid <pid> consumer <uuid>`).
    pub holder: String,
    /// Grows by one with every change of holder.
    pub fencing_token: i64,
    /// When the lease ends unless renewed (the Unix epoch once released).
    #[serde(serialize_with = "units::time")]
    pub expires_at: SystemTime,
    /// Whether it is held now (not expired or released).
    pub held: bool,
    /// The holder's pause, while it holds the lease: the namespace's
    /// outbox sender, in this process or another, cannot deliver because
    /// the store is unreachable or refuses its token or certificate, since
    /// then (see [`LeaseInfo::pause`](crate::outbox::LeaseInfo::pause)).
    /// Always `None` for consumers.
    pub pause: Option<PauseState>,
}

impl LeaseMetrics {
    /// The process of the holder: `pid <pid>` of a holder id
    /// `pid <pid> <role> <uuid>`, or the holder id as it is.
    pub fn holder_process(&self) -> String {
        crate::lease::holder_process(&self.holder)
    }
}

/// Live figures of the senders this kit spawned (summed when there are
/// several), since each was spawned.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SenderMetrics {
    /// Live senders counted.
    pub senders: usize,
    /// Whether a sender thread runs.
    pub running: bool,
    /// Whether one of them holds the lease and sends (the others stand by).
    pub active: bool,
    /// Messages delivered (including `already_delivered`).
    pub sent: u64,
    /// Of `sent`, messages the store already had (resends), recognised by id.
    pub already_delivered: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Messages moved to the dead-letter queue.
    pub dead_lettered: u64,
    /// From the write to the outbox until the store accepted the message.
    pub latency: LatencySummary,
    /// Messages delivered per second over the last 10 seconds.
    pub throughput: f64,
    /// When a message was last delivered.
    #[serde(serialize_with = "units::opt_time")]
    pub last_success: Option<SystemTime>,
    /// The last error (delivery or database).
    pub last_error: Option<String>,
    /// When that was.
    #[serde(serialize_with = "units::opt_time")]
    pub last_error_at: Option<SystemTime>,
    /// Why the active sender of this process is paused, if it is
    /// ([`SenderStats::pause`](crate::outbox::SenderStats::pause)).
    pub pause: Option<PauseState>,
}

/// One consumer: its saved position and lag, and its live figures when this
/// kit runs it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ConsumerMetrics {
    /// The category it follows (`""`: every category).
    pub category: String,
    /// Its id.
    pub consumer_id: String,
    /// The consumer group saved with the position.
    #[serde(serialize_with = "units::opt_group")]
    pub consumer_group: Option<ConsumerGroup>,
    /// The correlation filter saved with the position.
    pub correlation: Option<String>,
    /// Global position of the last message handled or passed over.
    pub position: i64,
    /// When the position last moved (saved in the database with it).
    #[serde(serialize_with = "units::opt_time")]
    pub last_progress_at: Option<SystemTime>,
    /// How far behind the category it is; `None` when the store could not
    /// be read (see [`Metrics::store_error`]).
    pub lag: Option<ConsumerLag>,
    /// Lag above zero (or a halt) and no progress for the kit's
    /// [`stalled_after`](crate::KitBuilder::stalled_after).
    pub stalled: bool,
    /// Its messages in the dead-letter queue.
    pub dead_letters: u64,
    /// Of those, requeued ones waiting for their re-run.
    pub dead_letters_requeued: u64,
    /// Who holds (or last held) the consumer's lease: the one instance of
    /// it that works (`None` when it never ran since the kit had leases).
    pub lease: Option<LeaseMetrics>,
    /// Live figures when this kit runs the consumer.
    pub live: Option<LiveConsumerMetrics>,
}

/// How far a consumer is behind its category, counted by one `category.get`
/// from position + 1 (with the consumer's group and correlation) of at most
/// the kit's [`lag_count_limit`](crate::KitBuilder::lag_count_limit) messages.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ConsumerLag {
    /// Messages after the position that the consumer has still to handle
    /// (or pass over).
    pub messages: u64,
    /// Counting stopped at the limit: the lag is `messages` or more.
    pub at_least: bool,
    /// When the oldest of them was written (the store's time).
    #[serde(serialize_with = "units::opt_time")]
    pub oldest_unprocessed_at: Option<SystemTime>,
    /// How long the oldest of them has been waiting: the lag in time
    /// (zero when caught up).
    #[serde(serialize_with = "units::secs")]
    pub seconds: Duration,
    /// Global position of the newest message counted (the head of the
    /// category for this consumer, unless `at_least`).
    pub head_position: Option<i64>,
}

/// Figures of a consumer running in this kit, since it was spawned.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LiveConsumerMetrics {
    /// How it is doing.
    pub health: ConsumerHealth,
    /// Messages the handler processed (committed), requeued dead letters included.
    pub processed: u64,
    /// Messages skipped because they were already processed.
    pub duplicates_skipped: u64,
    /// Messages passed over by the type or metadata filters.
    pub filtered: u64,
    /// Handler runs that failed (errors and panics).
    pub failed_attempts: u64,
    /// Of those, the ones tried again.
    pub retried: u64,
    /// Messages moved to the dead-letter queue.
    pub dead_lettered: u64,
    /// Processed messages per second over the last 10 seconds.
    pub processed_per_second: f64,
    /// How long successful handler runs took.
    pub handler_time: LatencySummary,
    /// Successful handler runs / all handler runs (`None` before the first).
    pub success_rate: Option<f64>,
    /// Retried handler runs / all handler runs (`None` before the first).
    pub retry_rate: Option<f64>,
}

/// Dead letters of the namespace by source.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct DeadLetterMetrics {
    /// From the outbox (messages the store refused).
    pub outbox: u64,
    /// From consumers (messages their handlers could not process).
    pub consumer: u64,
    /// Consumer dead letters requeued and waiting for their consumer.
    pub requeued: u64,
}

impl DeadLetterMetrics {
    /// Every dead letter of the namespace.
    pub fn total(&self) -> u64 {
        self.outbox + self.consumer
    }
}
