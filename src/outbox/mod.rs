//! The transactional outbox and its sender.
//!
//! Events are written to the `evento_outbox` table of the kit's local
//! database — alone, in batches, or inside the application's own
//! transaction ([`Outbox::write_in`]) so that they commit (or roll back)
//! together with its data. A sender thread ([`SenderHandle`], started by
//! [`Kit::spawn_sender`](crate::Kit::spawn_sender)) delivers them to the
//! [`MessageStore`](crate::MessageStore):
//!
//! * **no loss, no duplicates** — every row carries its message id from the
//!   moment it is written; a resend after a crash or an ambiguous failure is
//!   answered "id already exists" by the store and marked sent;
//! * **order per stream** — rows of one stream go out one after the other
//!   in commit order; a stream whose message fails waits, the others flow;
//! * **woken, not polling** — a commit that adds rows wakes the sender at
//!   once; a slow poll (with `PRAGMA data_version` as a cheap change check)
//!   only finds rows written by other processes;
//! * **classified errors** — transient failures are retried with
//!   exponential backoff and jitter (an unreachable store pauses the whole
//!   sender), permanent ones (version conflict, invalid request, auth, too
//!   large) go to the dead-letter queue ([`Kit::dlq`](crate::Kit::dlq)), from
//!   which a requeued message is delivered exactly once;
//! * **one sender per database** — a lease with a fencing token lets one
//!   sender per namespace and database file send; others stand by.
//!
//! ```
//! use std::time::Duration;
//! use eventodb_kit::outbox::SenderConfig;
//! use eventodb_kit::{Kit, MessageStore, NewMessage, StreamQuery};
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir()?;
//! let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
//! let sender = kit.spawn_sender(SenderConfig::new())?;
//! kit.db().write(|tx| {
//!     tx.execute_batch("CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY)")?;
//!     tx.execute("INSERT INTO accounts (id) VALUES ('a-7')", [])?;
//!     kit.outbox().write_in(tx, "account-7", &NewMessage::new("Opened", json!({ "id": "a-7" })))?;
//!     Ok(())
//! })?;
//! sender.wait_until_drained(Duration::from_secs(10))?;
//! assert_eq!(kit.store().get_stream("account-7", &StreamQuery::new())?.len(), 1);
//! sender.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod entry;
mod query;
mod record;
mod retention;
mod sender;
mod stats;
mod wake;
mod writer;

pub use crate::lease::LeaseInfo;
pub use config::{AfterDeadLetter, SenderConfig};
pub use entry::{OutboxEntry, DEFAULT_MAX_PAYLOAD_BYTES};
pub use query::OutboxFilter;
pub use record::{OutboxRecord, OutboxState, OutboxStatus};
pub use sender::SenderHandle;
pub use stats::{Delivery, PauseState, SenderHealth, SenderStats};
pub use writer::Outbox;

pub(crate) use retention::prune_sent;
pub(crate) use sender::spawn as spawn_sender;
pub(crate) use sender::Shared as SenderShared;
pub(crate) use wake::WakeHub;
