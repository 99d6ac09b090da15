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
//! use std::time::Duration;
//! use eventodb_kit::{Error, Kit, NewMessage, SenderConfig};
//! use serde_json::json;
//!
//! // In memory here; an application gives `.database(path)` so the outbox
//! // survives restarts. The store is the embedded EventoDB-compatible one.
//! let kit = Kit::builder().build()?;
//! kit.db().write(|tx| {
//!     tx.execute_batch("CREATE TABLE orders (id TEXT); CREATE TABLE audit (event TEXT)")?;
//!     Ok(())
//! })?;
//! let sender = kit.spawn_sender(SenderConfig::new())?;
//! let consumer = kit.consumer("order", "audit").spawn(|msg, tx| {
//!     // Runs in a transaction that also records the position.
//!     tx.execute("INSERT INTO audit (event) VALUES (?1)", [&msg.id])?;
//!     Ok(())
//! })?;
//!
//! // The order and its event commit together.
//! let id = kit.db().write(|tx| {
//!     tx.execute("INSERT INTO orders (id) VALUES ('o-1')", [])?;
//!     kit.outbox().write_in(tx, "order-o1", &NewMessage::new("OrderPlaced", json!({ "id": "o-1" })))
//! })?;
//! sender.wait_until_sent(&id, Duration::from_secs(5))?;
//! consumer.wait_for_position(1, Duration::from_secs(5))?;
//! let audited: String = kit.db().read(|c| Ok(c.query_row("SELECT event FROM audit", [], |r| r.get(0))?))?;
//! assert_eq!(audited, id);
//! consumer.shutdown();
//! sender.shutdown();
//! # Ok::<(), Error>(())
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
//! Every fallible call returns [`Result`] with the one [`Error`] enum;
//! [`Error::disposition`] says what to do about one — pause (the link, the
//! token or the store as a whole), retry (this message, maybe not next
//! time) or dead-letter (this message, for good) — and
//! [`Error::is_transient`] whether a retry can help at all; a store that
//! asks to wait (429, 503 with `Retry-After`) says how long in
//! [`Error::retry_after`].
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
//! * `platform-verifier` — `TlsSettings::platform_verifier`: trust the
//!   operating system's certificate store (`rustls-platform-verifier`).
//!
//! The default build has none, so a device build carries only the library.
//!
//! ## Threads and shutdown
//!
//! No async runtime: the sender, consumers, subscriptions, the SSE hub, the
//! cleanup thread and the server are named std threads talking over
//! crossbeam channels, idle in `select!` with time-outs. Each has an owner —
//! [`SenderHandle`], [`ConsumerHandle`], [`MessageSubscription`],
//! [`CleanupHandle`], `server::Server` (feature `server`), the store for its
//! hub — whose `shutdown()` finishes the work in flight and joins, and whose
//! `Drop` signals the threads to stop without waiting long.
//!
//! ## Minimum Rust version
//!
//! Rust 1.89 (`rust-version` in `Cargo.toml`).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod cleanup;
pub mod cloudevents;
pub mod consumer;
pub mod consumer_group;
pub mod db;
pub mod disposition;
pub mod dlq;
mod env;
pub mod error;
pub mod health;
pub mod hooks;
mod kit;
mod lease;
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
pub mod tls;
pub mod token;
mod wire;
mod write_scope;

pub use cleanup::{CleanupConfig, CleanupHandle, CleanupReport};
pub use consumer::ConsumerDefaults;
pub use consumer::{
    Checkpoints, ConsumerBuilder, ConsumerHandle, ConsumerHealth, ConsumerStats, Dispatcher,
    FailurePolicy, MessageSubscription,
};
pub use consumer_group::ConsumerGroup;
pub use db::{Db, DbOptions, Synchronous};
pub use disposition::{Disposition, PauseReason};
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
pub use tls::TlsSettings;
pub use token::Token;

/// The rusqlite version the kit uses (handlers receive its `Transaction`).
pub use rusqlite;
