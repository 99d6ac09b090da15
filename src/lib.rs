//! # eventodb-kit
//!
//! A synchronous, thread-based kit for [EventoDB](https://github.com/eventodb/eventodb),
//! the HTTP event store in the Message DB tradition: a transactional outbox
//! in a local SQLite file, consumers with durable positions, and an embedded
//! EventoDB-compatible message store so the whole pipeline runs with no server.
//!
//! ## Usage
//!
//! ```
//! use eventodb_kit::{CategoryQuery, ConsumerGroup, EmbeddedStore, MessageStore, NewMessage, WriteOptions};
//! use serde_json::json;
//!
//! let store = EmbeddedStore::open_in_memory()?;
//! for id in 1..=4 {
//!     let msg = NewMessage::new("Opened", json!({ "id": id }));
//!     store.write(&format!("account-{id}"), &msg, &WriteOptions::new())?;
//! }
//! // Member 0 of a group of 2 gets accounts 1 and 3 (EventoDB's MD5 rule).
//! let mine = store.get_category("account", &CategoryQuery::new().consumer_group(ConsumerGroup::new(0, 2)?))?;
//! let streams: Vec<_> = mine.iter().map(|m| m.stream_name.as_str()).collect();
//! assert_eq!(streams, ["account-1", "account-3"]);
//! # Ok::<(), eventodb_kit::Error>(())
//! ```
//!
//! ## Outbox
//!
//! [`Kit::outbox`] writes events to the local database — inside the
//! application's own transaction if it likes — and [`Kit::spawn_sender`]
//! starts the thread that delivers them to the store, exactly once and in
//! order per stream; see the [`outbox`] module.
//!
//! ## Consumers
//!
//! [`Kit::consumer`] follows a category and runs a handler inside a
//! transaction on the kit's database, committing its writes with the
//! processed-event record and the new position; see the [`consumer`] module
//! for the promises, typed dispatch, channel subscriptions, checkpoints and
//! replay.
//!
//! ## Operating it
//!
//! [`Kit::metrics`] takes a [`Metrics`] snapshot — outbox backlog, every
//! consumer's position, lag and stall, dead letters by source, plus the live
//! figures of the senders and consumers the kit spawned — from the database
//! and the store, so it also works with nothing running;
//! [`render_prometheus`] turns it into the Prometheus text format.
//! [`Kit::health`] sums the kit up as [`HealthStatus`] `Ok`, `Degraded` or
//! `Down` with reasons. [`hooks`] lets an application hear of deliveries,
//! handled messages, failures and dead letters as they happen, and
//! [`Kit::spawn_cleanup`] applies the retention settings in the background.
//!
//! ## Configuration
//!
//! [`Kit::from_env`] reads `EVENTODB_URL` (`http(s)://…` for an EventoDB
//! server, `embedded:///path.db` or `embedded::memory:` for an embedded
//! store; see [`StoreUrl`]), `EVENTODB_TOKEN`, `EVENTODB_KIT_DB` and the
//! `OUTBOX_*` / `CONSUMER_*` settings; [`KitBuilder::from_env`] lets code
//! override them, and [`KitBuilder::from_lookup`] reads them from anywhere.
//!
//! ## Logging
//!
//! Through the [`log`] facade, on targets named after the modules
//! (`eventodb_kit::outbox::…`, `eventodb_kit::consumer::…`,
//! `eventodb_kit::store::http::…`, `eventodb_kit::server::…`,
//! `eventodb_kit::db`); [`KitBuilder::log_sql`] traces every SQL statement
//! (placeholders, never values) at `debug` on `eventodb_kit::sql`. Tokens
//! are never logged.
//!
//! ## Errors
//!
//! Every fallible call returns [`Result`] with the one [`Error`] enum; use
//! [`Error::is_transient`] to decide whether a retry can help.
//!
//! ## A real EventoDB
//!
//! [`HttpStore`] is the same [`MessageStore`] over HTTP, for an EventoDB
//! server (or `eventodb-kit serve`); the namespace comes from the token:
//!
//! ```no_run
//! use eventodb_kit::{HttpStore, MessageStore, NewMessage, WriteOptions};
//!
//! let store = HttpStore::new("http://127.0.0.1:8080", &std::env::var("EVENTODB_TOKEN").unwrap())?;
//! store.write("account-1", &NewMessage::new("Opened", serde_json::json!({})), &WriteOptions::new())?;
//! # Ok::<(), eventodb_kit::Error>(())
//! ```
//!
//! ## Features
//!
//! * `server` — an EventoDB-compatible HTTP server over [`EmbeddedStore`]
//!   (`server::Server`).
//! * `cli` — the `eventodb-kit` command-line tool (implies `server`):
//!   `serve`, and `status`, `outbox`, `dlq`, `positions`, `replay`, `drain`,
//!   `export` and `import` for operating a kit's database without SQL.
//!
//! The default build has neither, so a device build carries only the library.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod cleanup;
pub mod cloudevents;
pub mod consumer;
pub mod consumer_group;
pub mod db;
pub mod dlq;
mod env;
pub mod error;
pub mod health;
pub mod hooks;
mod kit;
pub mod message;
pub mod metrics;
mod migrate;
pub mod namespace;
pub mod outbox;
mod periodic;
mod retry;
mod runtime;
#[cfg(feature = "server")]
pub mod server;
pub mod store;
pub mod stream_name;
pub mod time;
pub mod token;
mod wire;

pub use cleanup::{CleanupConfig, CleanupHandle, CleanupReport};
pub use consumer::ConsumerDefaults;
pub use consumer::{
    Checkpoints, ConsumerBuilder, ConsumerHandle, ConsumerHealth, ConsumerStats, Dispatcher,
    FailurePolicy, MessageSubscription,
};
pub use consumer_group::ConsumerGroup;
pub use db::{Db, DbOptions, Synchronous};
pub use dlq::{DeadLetter, DeadLetterFilter, DeadLetterSource, Dlq};
pub use error::{Error, Result, TransportErrorKind};
pub use health::{HealthStatus, KitHealth};
pub use hooks::{KitHook, LogHook, NopHook};
pub use kit::{Kit, KitBuilder};
pub use message::{Message, NewMessage, WriteOptions, WriteResult};
pub use metrics::LatencySummary;
pub use metrics::{render_prometheus, Metrics, ReporterHandle};
pub use namespace::{CreatedNamespace, DeletedNamespace, NamespaceInfo, TokenCheck};
pub use outbox::{Outbox, OutboxEntry, SenderConfig, SenderHandle};
pub use retry::RetryPolicy;
pub use store::http::{
    ConnectionSnapshot, ConnectionState, ConnectionStatus, HttpStore, HttpStoreBuilder,
    ImportSummary, SseSubscription, SystemHealth,
};
pub use store::StoreUrl;
pub use store::{
    CategoryInfo, CategoryQuery, EmbeddedStore, MessageStore, Poke, StreamInfo, StreamListQuery,
    StreamQuery, SubscribeTarget, Subscription,
};
pub use token::Token;

/// The rusqlite version the kit uses (handlers receive its `Transaction`).
pub use rusqlite;
