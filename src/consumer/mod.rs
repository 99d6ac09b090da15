//! Consumers: follow a category of the store and run the application's
//! handler on each message, with the handler's writes, the processed-event
//! record and the new position committed in one local transaction.
//!
//! * [`Kit::consumer`] → [`ConsumerBuilder`] → [`ConsumerBuilder::spawn`] →
//!   [`ConsumerHandle`]: a durable consumer on its own thread.
//! * [`Dispatcher`]: typed handlers per message type (serde).
//! * [`Kit::subscribe`] → [`MessageSubscription`]: a category as a bounded
//!   channel of messages, for code that wants a stream.
//! * [`Kit::checkpoints`] → [`Checkpoints`]: read, set and reset positions
//!   (to a position or to a time); prune processed records; re-deliver a
//!   range to one consumer ([`Checkpoints::replay_range`]).
//! * [`Kit::replay`] → [`Replay`]: run a handler over a range without moving
//!   any position.
//!
//! # What a consumer promises
//!
//! * **Exactly-once local effects.** The handler gets the message and a
//!   transaction on the kit's database; the kit records the processed event
//!   (per namespace, category, consumer id and event id) and the new position
//!   in that same transaction. A message already recorded is skipped without
//!   running the handler, so two consumers of one category each see every
//!   event, and a message fetched again never runs twice.
//! * **Position** = global position of the last message handled or passed
//!   over; fetching resumes at position + 1; a fresh consumer starts at its
//!   [start position](ConsumerBuilder::start_position).
//! * **Failures are never skipped silently.** A handler error or panic rolls
//!   back that message's work alone (the messages before it in its
//!   transaction are done again, each in a savepoint, and committed — so
//!   their handlers run a second time), is retried with backoff, and then —
//!   by [`FailurePolicy`] — is dead-lettered (visible in [`Kit::dlq`]; a
//!   requeue runs the handler on it once more) or halts the consumer at it.
//!   The position never passes a message that neither succeeded nor was
//!   dead-lettered, and never moves back by itself. An error about the store
//!   as a whole ([`Disposition::Pause`](crate::Disposition::Pause)) pauses
//!   the consumer instead, without using up the message's attempts; a
//!   stored message that cannot be decoded fails like a handler would.
//! * **One working instance.** Instances of one consumer (category and
//!   consumer id on one database file, in any thread or process) share a
//!   lease: one works, the others stand by
//!   ([`ConsumerHealth::Standby`]) and take over when it stops or its
//!   process dies.
//! * **Consumer groups** use the store's own assignment (`category.get`'s
//!   consumerGroup, EventoDB's MD5 rule), so members in other processes and
//!   SDKs agree. The group is saved with the position; a different group is
//!   refused until the checkpoint is set or reset.
//! * **Push, not polling.** An idle consumer blocks on the store's live
//!   wake-ups ([`MessageStore::watch_category`](crate::MessageStore::watch_category)),
//!   its shutdown channel and the poll interval (the fallback) — never a busy
//!   loop. A fetcher thread reads the next batch while the worker handles the
//!   current one.
//!
//! # Threads and shutdown
//!
//! A consumer owns two named threads (`evento-consumer-<id>` and
//! `evento-fetch-<id>`). [`ConsumerHandle::shutdown`] lets the message in
//! flight finish and commit, then joins them; dropping the handle asks them to
//! stop the same way without waiting. A [`MessageSubscription`] owns one thread
//! and ends it likewise. Change a consumer's checkpoint only while it is not
//! running.
//!
//! ```
//! use std::time::Duration;
//! use eventodb_kit::{Kit, MessageStore, NewMessage, WriteOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
//! kit.db().write(|tx| Ok(tx.execute_batch("CREATE TABLE seen (id TEXT PRIMARY KEY)")?))?;
//!
//! let consumer = kit.consumer("order", "audit").spawn(|msg, tx| {
//!     tx.execute("INSERT INTO seen (id) VALUES (?1)", [&msg.id])?;
//!     Ok(())
//! })?;
//! let written = kit.store().write(
//!     "order-1",
//!     &NewMessage::new("Placed", serde_json::json!({ "total": 12 })),
//!     &WriteOptions::new(),
//! )?;
//! consumer.wait_for_position(written.global_position, Duration::from_secs(10))?;
//! assert_eq!(consumer.stats().processed, 1);
//! consumer.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::Result;
use crate::kit::Kit;

mod builder;
mod config;
mod defaults;
mod dispatch;
mod fetch;
mod filter;
mod handle;
mod handler;
mod position;
mod processed;
mod redeliver;
mod replay;
mod requeue;
mod retention;
mod stats;
mod subscription;
mod worker;

pub use builder::ConsumerBuilder;
pub use config::FailurePolicy;
pub use defaults::ConsumerDefaults;
pub use dispatch::{Dispatcher, UnknownTypes};
pub use handle::ConsumerHandle;
pub use position::{Checkpoint, Checkpoints};
pub use redeliver::ReplayRangePlan;
pub use replay::{Replay, ReplayReport};
pub use stats::{ConsumerHealth, ConsumerStats};
pub use subscription::{MessageSubscription, SubscribeOptions};

pub(crate) use position::lease_name as consumer_lease_name;
pub(crate) use retention::delete_processed_before_until;
pub(crate) use stats::Shared as ConsumerShared;

impl Kit {
    /// Configures a consumer `consumer_id` of `category` (`""`: every
    /// category of the namespace); see [`ConsumerBuilder`].
    ///
    /// The consumer id names the position and the processed records: use one
    /// id per purpose (e.g. `"email-sender"`), and one per group member.
    pub fn consumer(&self, category: &str, consumer_id: &str) -> ConsumerBuilder {
        ConsumerBuilder::new(self.clone(), category, consumer_id)
    }

    /// Delivers `category` from global position `from_position` on a bounded
    /// channel fed by a thread (see [`MessageSubscription`]).
    pub fn subscribe(&self, category: &str, from_position: i64) -> Result<MessageSubscription> {
        self.subscribe_with(
            category,
            SubscribeOptions::new().from_position(from_position),
        )
    }

    /// Like [`Kit::subscribe`], with options (capacity, batch size, consumer
    /// group, correlation, poll interval).
    pub fn subscribe_with(
        &self,
        category: &str,
        options: SubscribeOptions,
    ) -> Result<MessageSubscription> {
        MessageSubscription::start(self, category, options)
    }

    /// Consumer checkpoints of this kit's namespace.
    pub fn checkpoints(&self) -> Checkpoints {
        Checkpoints::new(self.clone())
    }

    /// Runs a handler over a range of `category` (see [`Replay`]).
    pub fn replay(&self, category: &str) -> Replay {
        Replay::new(self.clone(), category)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_can_be_shared_across_threads() {
        send_sync::<ConsumerHandle>();
        send_sync::<MessageSubscription>();
        send_sync::<Checkpoints>();
        fn send<T: Send>() {}
        send::<Dispatcher>();
        send::<ConsumerBuilder>();
    }
}
