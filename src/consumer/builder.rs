//! [`ConsumerBuilder`]: configures a consumer and starts its thread.

use std::fmt::Display;
use std::time::Duration;

use rusqlite::Transaction;
use serde_json::Value;

use crate::consumer_group::ConsumerGroup;
use crate::error::{Error, Result};
use crate::kit::Kit;
use crate::lease::{self, Lease};
use crate::message::Message;
use crate::retry::RetryPolicy;
use crate::store::MAX_BATCH_SIZE;
use crate::time::now_ms;

use super::config::{ConsumerConfig, FailurePolicy};
use super::filter::{self, MessageFilter};
use super::handle::ConsumerHandle;
use super::handler;
use super::position::{self, ConsumerKey};
use super::processed;
use super::retention;
use super::worker;

/// Configures a consumer of one category; [`ConsumerBuilder::spawn`] starts
/// it. Made by [`Kit::consumer`].
///
/// ```
/// use std::time::Duration;
/// use eventodb_kit::consumer::FailurePolicy;
/// use eventodb_kit::{Kit, MessageStore, NewMessage, RetryPolicy, WriteOptions};
///
/// let dir = tempfile::tempdir()?;
/// let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
/// kit.db().write(|tx| {
///     tx.execute_batch("CREATE TABLE balances (account TEXT PRIMARY KEY, amount INTEGER NOT NULL)")?;
///     Ok(())
/// })?;
/// let written = kit.store().write(
///     "account-7",
///     &NewMessage::new("Deposited", serde_json::json!({ "amount": 10 })),
///     &WriteOptions::new(),
/// )?;
///
/// let consumer = kit
///     .consumer("account", "balances")
///     .types(["Deposited", "Withdrawn"])
///     .retry_policy(RetryPolicy::new().max_attempts(3))
///     .failure_policy(FailurePolicy::DeadLetter)
///     .spawn(|msg, tx| {
///         let amount = msg.data["amount"].as_i64().unwrap_or(0);
///         tx.execute(
///             "INSERT INTO balances (account, amount) VALUES (?1, ?2)
///              ON CONFLICT (account) DO UPDATE SET amount = amount + excluded.amount",
///             (&msg.stream_name, amount),
///         )?;
///         Ok(())
///     })?;
/// consumer.wait_for_position(written.global_position, Duration::from_secs(10))?;
/// consumer.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "a consumer does nothing until spawned"]
pub struct ConsumerBuilder {
    kit: Kit,
    category: String,
    consumer_id: String,
    config: ConsumerConfig,
}

impl ConsumerBuilder {
    pub(crate) fn new(kit: Kit, category: &str, consumer_id: &str) -> Self {
        ConsumerBuilder {
            category: category.to_string(),
            consumer_id: consumer_id.to_string(),
            config: ConsumerConfig::from_defaults(&kit.settings().consumer_defaults),
            kit,
        }
    }

    /// Messages fetched per `category.get` (1..=10 000); a fetched batch is
    /// handled in one local transaction with a savepoint per message.
    /// Defaults to the kit's [`ConsumerDefaults`](super::ConsumerDefaults) (1000).
    pub fn batch_size(mut self, batch_size: i64) -> Self {
        self.config.batch_size = batch_size;
        self
    }

    /// How often an idle consumer looks for new messages when no wake-up
    /// came (wake-ups normally make this irrelevant; it is the fallback while
    /// they are unavailable — with an [`HttpStore`](crate::HttpStore), while
    /// its SSE connection is down). Also how often requeued dead letters are
    /// picked up, by an idle consumer too. Defaults to the kit's
    /// [`ConsumerDefaults`](super::ConsumerDefaults) (1 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long one transaction may run handlers before it commits what it
    /// has done and the rest of the batch goes on in a new one. The
    /// transaction holds the database's write lock, so this bounds how long
    /// the application's own writes (the outbox among them) wait for a
    /// consumer with slow handlers: about this long plus one handler's run.
    /// `Duration::ZERO` commits after every message (slower, but never holds
    /// the lock across two handlers).
    /// Defaults to 100 ms.
    pub fn max_transaction_time(mut self, limit: Duration) -> Self {
        self.config.max_transaction_time = limit;
        self
    }

    /// The first global position a fresh consumer handles (one with no saved
    /// position); ignored once a position is saved. Defaults to 1 (the
    /// beginning).
    pub fn start_position(mut self, global_position: i64) -> Self {
        self.config.start_position = global_position.max(1);
        self
    }

    /// Makes the consumer one member of a consumer group: it handles only the
    /// streams the store assigns to `group` (EventoDB's MD5 rule, so members
    /// in other processes and SDKs agree). The group is saved with the
    /// position; starting later with another group is refused until the
    /// checkpoint is set or reset. Defaults to no group (every stream).
    pub fn consumer_group(mut self, group: ConsumerGroup) -> Self {
        self.config.consumer_group = Some(group);
        self
    }

    /// Hands only messages of these types to the handler: exact names
    /// (`"UserCreated"`) and prefixes ending in `*` (`"product.*"`). Other
    /// messages are passed over: the position moves past them, no processed
    /// record is written. Defaults to every type.
    pub fn types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Only messages whose `correlationStreamName` is in category `category`
    /// (`category.get`'s correlation filter, applied by the store). Defaults
    /// to none.
    pub fn correlation(mut self, category: impl Into<String>) -> Self {
        self.config.correlation = Some(category.into());
        self
    }

    /// Hands only messages whose metadata satisfies `predicate` to the
    /// handler (it gets `Value::Null` for a message without metadata); others
    /// are passed over like filtered types. May be called repeatedly: all
    /// predicates must hold. Defaults to none.
    pub fn metadata_filter(
        mut self,
        predicate: impl Fn(&Value) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.config.metadata.push(std::sync::Arc::new(predicate));
        self
    }

    /// Hands only messages whose metadata `key` is a string in `values` to
    /// the handler (e.g. only workflows this process owns). A shorthand for
    /// [`ConsumerBuilder::metadata_filter`]. Defaults to none.
    pub fn metadata_in<I, S>(mut self, key: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let values = values.into_iter().map(Into::into).collect();
        self.config
            .metadata
            .push(filter::metadata_in(key.into(), values));
        self
    }

    /// How a failing handler is retried before the [`FailurePolicy`] applies.
    /// Defaults to the kit's [`ConsumerDefaults`](super::ConsumerDefaults)
    /// (5 attempts, 100 ms doubling up to 10 s, with jitter).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// What happens once the retry policy gives up on a message. Defaults to
    /// the kit's [`ConsumerDefaults`](super::ConsumerDefaults) ([`FailurePolicy::DeadLetter`]).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.config.failure_policy = policy;
        self
    }

    /// Whether handler errors that cannot succeed on a retry are retried
    /// anyway. With `false`, a handler error that is a kit [`Error`] or a
    /// `rusqlite::Error` (also boxed) which is not
    /// [transient](Error::is_transient) — such as data that does not
    /// deserialize, or a constraint violation — goes to the failure policy at
    /// once. Defaults to the kit's [`ConsumerDefaults`](super::ConsumerDefaults)
    /// (`true`: every error is retried).
    pub fn retry_permanent_errors(mut self, retry: bool) -> Self {
        self.config.retry_permanent_errors = retry;
        self
    }

    /// Deletes this consumer's processed-event records once they are older
    /// than `age` (checked when it starts and then hourly); `None` keeps them
    /// for ever. Defaults to the kit's [`ConsumerDefaults`](super::ConsumerDefaults) (7 days).
    pub fn processed_retention(mut self, age: Option<Duration>) -> Self {
        self.config.processed_retention = age;
        self
    }

    /// How long the consumer's lease lasts unless renewed. One instance of
    /// a consumer works at a time — across threads and processes on the
    /// database file —, the one holding its lease; it renews it with every
    /// transaction and at least every third of this duration. Others stand
    /// by ([`ConsumerHealth::Standby`](super::ConsumerHealth::Standby)) and
    /// take over when it stops, at once when its process dies on this
    /// machine (the OS releases the lock file beside the database), after
    /// this long otherwise (an in-memory database, a frozen process).
    /// Defaults to 10 s.
    pub fn lease_duration(mut self, duration: Duration) -> Self {
        self.config.lease_duration = duration.max(Duration::from_millis(10));
        self
    }

    /// Starts the consumer: a thread that fetches the category from the saved
    /// position + 1 and runs `handler` on each message inside a transaction
    /// on the kit's database, committing the handler's writes, the processed
    /// record and the new position together.
    ///
    /// The handler returns the kit's [`Result`], so `?` works on the kit's,
    /// rusqlite's and serde_json's errors and a closure needs no type
    /// annotation: `spawn(|msg, tx| { tx.execute(..)?; Ok(()) })`. (For an
    /// error type of your own, see [`ConsumerBuilder::spawn_typed`].) An
    /// error or a panic rolls back that message's work alone and is retried,
    /// then handled by the [`FailurePolicy`]; an error about the store as a
    /// whole ([`Disposition::Pause`](crate::Disposition::Pause): unreachable,
    /// token refused) pauses the consumer instead, without using up the
    /// message's attempts.
    ///
    /// To emit messages from the handler, write them to the outbox in its
    /// transaction: `kit.outbox().write_in(tx, ..)` (they commit with the
    /// handler's work). Calls that open a write transaction of their own on
    /// the kit's database file from inside the handler — `outbox().write`,
    /// `db().write`, a write to an [`EmbeddedStore`](crate::EmbeddedStore)
    /// in that file — fail at once with [`Error::InvalidInput`]: the
    /// handler's transaction holds the file's write lock.
    ///
    /// If another instance of this consumer holds its lease, the new one
    /// stands by (see [`ConsumerBuilder::lease_duration`]).
    ///
    /// Errors: [`Error::InvalidInput`] for an empty consumer id, a batch size
    /// out of range, a bad type pattern, or a consumer group that differs
    /// from the one saved with the position; database errors reading the
    /// position.
    pub fn spawn<F>(self, handler: F) -> Result<ConsumerHandle>
    where
        F: FnMut(&Message, &Transaction<'_>) -> Result<()> + Send + 'static,
    {
        self.start(handler::boxed(handler))
    }

    /// Like [`ConsumerBuilder::spawn`], for a handler with an error type of
    /// its own (anything that implements `Display`). Its errors are worth a
    /// retry, except the kit's [`Error`] and `rusqlite::Error` (also in a
    /// `Box<dyn std::error::Error>`), which are classified by
    /// [`Error::disposition`].
    ///
    /// ```
    /// # let kit = eventodb_kit::Kit::builder().build()?;
    /// #[derive(Debug)]
    /// enum BillingError { CardDeclined }
    /// impl std::fmt::Display for BillingError {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         f.write_str("card declined")
    ///     }
    /// }
    /// let consumer = kit.consumer("invoice", "billing").spawn_typed(|msg, _tx| {
    ///     match msg.data["card"].as_str() {
    ///         Some("declined") => Err(BillingError::CardDeclined),
    ///         _ => Ok(()),
    ///     }
    /// })?;
    /// consumer.shutdown();
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    pub fn spawn_typed<F, E>(self, handler: F) -> Result<ConsumerHandle>
    where
        F: FnMut(&Message, &Transaction<'_>) -> std::result::Result<(), E> + Send + 'static,
        E: Display + 'static,
    {
        self.start(handler::boxed_typed(handler))
    }

    fn start(self, handler: handler::BoxedHandler) -> Result<ConsumerHandle> {
        if self.consumer_id.is_empty() {
            return Err(Error::invalid("a consumer id must not be empty"));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.config.batch_size) {
            return Err(Error::invalid(format!(
                "consumer batch size must be between 1 and {MAX_BATCH_SIZE}, not {}",
                self.config.batch_size
            )));
        }
        let filter =
            MessageFilter::new(self.config.types.as_deref(), self.config.metadata.clone())?;
        let key = ConsumerKey {
            namespace: self.kit.namespace().to_string(),
            category: self.category,
            consumer_id: self.consumer_id,
        };
        if let Some(age) = self.config.processed_retention {
            retention::delete_processed_before(
                self.kit.db(),
                &key.namespace,
                Some(&key),
                retention::cutoff(age),
            )?;
        }
        let (start, group) = (self.config.start_position, self.config.consumer_group);
        let (position, consumer_key, lease, recorded_through) = self.kit.db().write(|tx| {
            let (position, consumer_key) =
                position::open(tx, &key, start, group, self.config.correlation.as_deref())?;
            let recorded_through = processed::recorded_through(tx, consumer_key)?;
            // Taken at once when free; otherwise the worker stands by.
            let mut lease = Lease::new(
                position::lease_name(consumer_key),
                lease::holder_id("consumer"),
                self.config.lease_duration,
            );
            lease.try_acquire(tx, now_ms())?;
            Ok((position, consumer_key, lease, recorded_through))
        })?;
        worker::spawn(
            &self.kit,
            worker::Start {
                key,
                consumer_key,
                config: self.config,
                filter,
                handler,
                lease,
                position,
                recorded_through,
            },
        )
    }
}
