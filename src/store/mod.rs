//! The [`MessageStore`] trait — the kit's one view of an EventoDB-like
//! store — with its query types and pokes.
//!
//! Two implementations come with the kit: [`EmbeddedStore`] (EventoDB's
//! semantics on a local SQLite file, in-process) and, for a real EventoDB
//! server, [`HttpStore`]. Everything else in the kit (outbox sender,
//! consumers) talks only to this trait, so it is also the extension point for
//! another transport.
//!
//! # Implementing `MessageStore`
//!
//! Implement every method with EventoDB's semantics (the protocol's rules for
//! positions, expected versions, duplicate ids, batch sizes, categories,
//! correlation and MD5 consumer groups), return the kit's [`Error`] variants
//! (the outbox relies on [`Error::DuplicateId`] and
//! [`Error::is_transient`]), and run the crate's contract suite
//! (`tests/contract/mod.rs`, `contract_tests!`) against it. A store that
//! wraps another one is the smallest example — here one that counts writes:
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use eventodb_kit::store::{
//!     CategoryInfo, CategoryQuery, StreamInfo, StreamListQuery, StreamQuery, SubscribeTarget,
//!     Subscription,
//! };
//! use eventodb_kit::{EmbeddedStore, Kit, Message, MessageStore, NewMessage, Result};
//! use eventodb_kit::{WriteOptions, WriteResult};
//!
//! #[derive(Debug)]
//! struct Counting<S> {
//!     inner: S,
//!     writes: AtomicU64,
//! }
//!
//! impl<S: MessageStore> MessageStore for Counting<S> {
//!     fn namespace(&self) -> &str {
//!         self.inner.namespace()
//!     }
//!     fn write(&self, stream: &str, msg: &NewMessage, opts: &WriteOptions) -> Result<WriteResult> {
//!         self.writes.fetch_add(1, Ordering::Relaxed);
//!         self.inner.write(stream, msg, opts)
//!     }
//!     fn get_stream(&self, stream: &str, q: &StreamQuery) -> Result<Vec<Message>> {
//!         self.inner.get_stream(stream, q)
//!     }
//!     fn last_message(&self, stream: &str, ty: Option<&str>) -> Result<Option<Message>> {
//!         self.inner.last_message(stream, ty)
//!     }
//!     fn stream_version(&self, stream: &str) -> Result<Option<i64>> {
//!         self.inner.stream_version(stream)
//!     }
//!     fn get_category(&self, category: &str, q: &CategoryQuery) -> Result<Vec<Message>> {
//!         self.inner.get_category(category, q)
//!     }
//!     fn list_streams(&self, q: &StreamListQuery) -> Result<Vec<StreamInfo>> {
//!         self.inner.list_streams(q)
//!     }
//!     fn list_categories(&self) -> Result<Vec<CategoryInfo>> {
//!         self.inner.list_categories()
//!     }
//!     fn subscribe(&self, target: &SubscribeTarget) -> Result<Subscription> {
//!         self.inner.subscribe(target)
//!     }
//!     // `watch_category` has a default; forward it to keep the inner store's
//!     // cheaper wake-ups.
//!     fn watch_category(&self, category: &str) -> Result<Subscription> {
//!         self.inner.watch_category(category)
//!     }
//! }
//!
//! let store = Counting { inner: EmbeddedStore::open_in_memory()?, writes: AtomicU64::new(0) };
//! store.write("account-1", &NewMessage::new("Opened", serde_json::json!({})), &WriteOptions::new())?;
//! assert_eq!(store.writes.load(Ordering::Relaxed), 1);
//! let kit = Kit::builder().store(store).build()?; // the outbox and consumers use it
//! # Ok::<(), eventodb_kit::Error>(())
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::consumer_group::ConsumerGroup;
use crate::error::{Error, Result};
use crate::message::{Message, NewMessage, WriteOptions, WriteResult};

pub mod embedded;
pub mod http;
pub mod ndjson;
pub mod pipeline;
mod url;

pub use embedded::EmbeddedStore;
pub use http::HttpStore;
pub use pipeline::{PipelinedAnswer, PipelinedWrite, WriteItem, WritePipeline};
pub use url::StoreUrl;

/// Default `batchSize` of `stream.get` and `category.get`.
pub const DEFAULT_BATCH_SIZE: i64 = 1000;
/// Largest `batchSize` EventoDB accepts (`-1` and other values ≤ 0 mean unlimited).
pub const MAX_BATCH_SIZE: i64 = 10_000;

/// An EventoDB-compatible message store, bound to one namespace.
///
/// Implementations are `Send + Sync` and used behind `Arc<dyn MessageStore>`;
/// every method may be called from many threads at once. Each method mirrors
/// one EventoDB RPC; its documentation names it.
pub trait MessageStore: Send + Sync + fmt::Debug {
    /// The namespace every call acts on.
    fn namespace(&self) -> &str;

    /// `stream.write`: appends `message` to `stream`.
    ///
    /// Errors: [`Error::InvalidInput`] for a bad stream name or message,
    /// [`Error::Conflict`] when `options.expected_version` does not match,
    /// [`Error::DuplicateId`] when `options.id` already exists in the namespace.
    fn write(
        &self,
        stream: &str,
        message: &NewMessage,
        options: &WriteOptions,
    ) -> Result<WriteResult>;

    /// `stream.write` for several messages, each on its own: one result per
    /// item, in order. Items do not depend on each other — one failing
    /// (a conflict, a duplicate id, invalid input) leaves the others as they
    /// would be alone; there is no atomicity across items.
    ///
    /// The default writes them one after the other with
    /// [`MessageStore::write`]; stores override it to do better (one
    /// transaction for [`EmbeddedStore`], pipelined requests for
    /// [`HttpStore`]).
    ///
    /// ```
    /// use eventodb_kit::store::WriteItem;
    /// use eventodb_kit::{EmbeddedStore, Error, MessageStore, NewMessage, WriteOptions};
    /// use serde_json::json;
    ///
    /// let store = EmbeddedStore::open_in_memory()?;
    /// let results = store.write_many(&[
    ///     WriteItem::new("account-1", NewMessage::new("Opened", json!({})), WriteOptions::new()),
    ///     WriteItem::new("account-1", NewMessage::new("Closed", json!({})), WriteOptions::new().expected_version(7)),
    ///     WriteItem::new("account-1", NewMessage::new("Reopened", json!({})), WriteOptions::new()),
    /// ]);
    /// assert_eq!(results[0].as_ref().unwrap().position, 0);
    /// assert!(matches!(results[1], Err(Error::Conflict { .. })));
    /// assert_eq!(results[2].as_ref().unwrap().position, 1);
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    fn write_many(&self, items: &[WriteItem]) -> Vec<Result<WriteResult>> {
        items
            .iter()
            .map(|i| self.write(&i.stream, &i.message, &i.options))
            .collect()
    }

    /// The store's own [`WritePipeline`], if it has one (e.g. HTTP/1.1
    /// pipelining); `Ok(None)` by default, and [`WritePipeline::open`] then
    /// batches writes into [`MessageStore::write_many`] calls instead.
    fn open_pipeline(&self) -> Result<Option<WritePipeline>> {
        Ok(None)
    }

    /// `stream.get`: messages of one stream in stream order.
    fn get_stream(&self, stream: &str, query: &StreamQuery) -> Result<Vec<Message>>;

    /// `stream.last`: the newest message of a stream (of `message_type`, if given).
    fn last_message(&self, stream: &str, message_type: Option<&str>) -> Result<Option<Message>>;

    /// `stream.version`: the position of the stream's last message, `None` when empty.
    fn stream_version(&self, stream: &str) -> Result<Option<i64>>;

    /// `category.get`: messages of a category (`""` = every message of the
    /// namespace) in global order, filtered by correlation and consumer group.
    fn get_category(&self, category: &str, query: &CategoryQuery) -> Result<Vec<Message>>;

    /// `ns.streams`: streams of the namespace, sorted by name.
    fn list_streams(&self, query: &StreamListQuery) -> Result<Vec<StreamInfo>>;

    /// `ns.categories`: categories of the namespace with counts, sorted by name.
    fn list_categories(&self) -> Result<Vec<CategoryInfo>>;

    /// `/subscribe`: pokes for new messages of a stream, a category (optionally
    /// one consumer-group member's share) or the whole namespace.
    ///
    /// Like EventoDB's SSE, a stream or category subscription first replays
    /// (up to 1000) existing messages at or after the given position as pokes.
    /// Pokes are hints: a reader must still fetch, and may see a poke twice or
    /// miss one when it falls behind. Dropping the [`Subscription`] ends it.
    fn subscribe(&self, target: &SubscribeTarget) -> Result<Subscription>;

    /// Live wake-ups for new messages of `category` (`""`: of every
    /// category): a poke per write from now on, no replay.
    ///
    /// Consumers block on these between fetches, so they must be cheap:
    /// implementations may share one connection among all watchers of a store
    /// and may drop pokes when a watcher falls behind (it has wake-ups pending
    /// anyway). The default implementation is a category subscription from
    /// global position 1 (its replayed pokes are harmless extra wake-ups).
    fn watch_category(&self, category: &str) -> Result<Subscription> {
        self.subscribe(&SubscribeTarget::category(category, 1))
    }
}

/// Options of [`MessageStore::get_stream`] (`stream.get`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamQuery {
    /// First stream position to return (inclusive). Defaults to 0.
    pub position: i64,
    /// When set, replaces `position`: returns messages whose global position is
    /// at least this, still in stream order. Defaults to none.
    pub global_position: Option<i64>,
    /// Maximum number of messages (≤ 0 = unlimited; at most 10 000).
    /// Defaults to 1000.
    pub batch_size: i64,
}

impl Default for StreamQuery {
    fn default() -> Self {
        StreamQuery {
            position: 0,
            global_position: None,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

impl StreamQuery {
    /// From position 0, 1000 messages.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts at stream position `position`. Defaults to 0.
    pub fn position(mut self, position: i64) -> Self {
        self.position = position;
        self
    }

    /// Starts at global position `global_position` (replaces `position`).
    pub fn global_position(mut self, global_position: i64) -> Self {
        self.global_position = Some(global_position);
        self
    }

    /// Returns at most `batch_size` messages (≤ 0 = unlimited). Defaults to 1000.
    pub fn batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size;
        self
    }
}

/// Options of [`MessageStore::get_category`] (`category.get`).
///
/// ```
/// use eventodb_kit::{CategoryQuery, ConsumerGroup};
/// let q = CategoryQuery::new()
///     .position(101)
///     .batch_size(500)
///     .consumer_group(ConsumerGroup::new(0, 2)?)
///     .correlation("workflow");
/// assert_eq!(q.position, 101);
/// # Ok::<(), eventodb_kit::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CategoryQuery {
    /// First global position to return (inclusive). Defaults to 1.
    pub position: i64,
    /// Maximum number of messages, counted after filtering (≤ 0 = unlimited;
    /// at most 10 000). Defaults to 1000.
    pub batch_size: i64,
    /// Only messages whose `correlationStreamName` is in this category.
    /// Defaults to none.
    pub correlation: Option<String>,
    /// Only streams assigned to this member. Defaults to none.
    pub consumer_group: Option<ConsumerGroup>,
}

impl Default for CategoryQuery {
    fn default() -> Self {
        CategoryQuery {
            position: 1,
            batch_size: DEFAULT_BATCH_SIZE,
            correlation: None,
            consumer_group: None,
        }
    }
}

impl CategoryQuery {
    /// From global position 1, 1000 messages, no filters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts at global position `position`. Defaults to 1.
    pub fn position(mut self, position: i64) -> Self {
        self.position = position;
        self
    }

    /// Returns at most `batch_size` messages (≤ 0 = unlimited). Defaults to 1000.
    pub fn batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Keeps messages correlated with category `category`. Defaults to none.
    pub fn correlation(mut self, category: impl Into<String>) -> Self {
        self.correlation = Some(category.into());
        self
    }

    /// Keeps only `group`'s share of the streams. Defaults to none.
    pub fn consumer_group(mut self, group: ConsumerGroup) -> Self {
        self.consumer_group = Some(group);
        self
    }
}

/// Options of [`MessageStore::list_streams`] (`ns.streams`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamListQuery {
    /// Only names starting with this (SQL `LIKE`, ASCII case-insensitive). Defaults to none.
    pub prefix: Option<String>,
    /// Only names sorting after this. Defaults to none.
    pub cursor: Option<String>,
    /// At most this many (1..=1000). Defaults to 100.
    pub limit: i64,
}

impl Default for StreamListQuery {
    fn default() -> Self {
        StreamListQuery {
            prefix: None,
            cursor: None,
            limit: 100,
        }
    }
}

impl StreamListQuery {
    /// The first 100 streams.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only names starting with `prefix`. Defaults to none.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Only names after `cursor` (the last name of the previous page). Defaults to none.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// At most `limit` streams (1..=1000). Defaults to 100.
    pub fn limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }
}

/// One entry of [`MessageStore::list_streams`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream name.
    pub stream: String,
    /// Its version (position of the last message).
    pub version: i64,
    /// Time of its newest message.
    pub last_activity: SystemTime,
}

/// One entry of [`MessageStore::list_categories`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryInfo {
    /// The category.
    pub category: String,
    /// Messages in it.
    pub message_count: i64,
    /// Streams in it.
    pub stream_count: i64,
}

/// What a [`MessageStore::subscribe`] call listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeTarget {
    /// One stream, from stream position `position`.
    Stream {
        /// The stream name.
        stream: String,
        /// First stream position of interest.
        position: i64,
    },
    /// One category (optionally one member's share), from global position `position`.
    Category {
        /// The category.
        category: String,
        /// First global position of interest.
        position: i64,
        /// Only this member's streams.
        consumer_group: Option<ConsumerGroup>,
    },
    /// Every message of the namespace from global position `position` (no replay).
    All {
        /// First global position of interest.
        position: i64,
    },
}

impl SubscribeTarget {
    /// A stream subscription from stream position `position`.
    pub fn stream(stream: impl Into<String>, position: i64) -> Self {
        SubscribeTarget::Stream {
            stream: stream.into(),
            position,
        }
    }

    /// A category subscription from global position `position`.
    pub fn category(category: impl Into<String>, position: i64) -> Self {
        SubscribeTarget::Category {
            category: category.into(),
            position,
            consumer_group: None,
        }
    }

    /// A category subscription for one consumer-group member.
    pub fn category_group(
        category: impl Into<String>,
        position: i64,
        group: ConsumerGroup,
    ) -> Self {
        SubscribeTarget::Category {
            category: category.into(),
            position,
            consumer_group: Some(group),
        }
    }

    /// A subscription to the whole namespace from global position `position`.
    pub fn all(position: i64) -> Self {
        SubscribeTarget::All { position }
    }
}

/// A notification that a message was written (EventoDB's SSE `poke`).
///
/// [`MessageStore::watch_category`] may also hand out wake-ups that stand
/// for no write ([`Poke::is_wake_up`]: an empty stream name), e.g. when an
/// [`HttpStore`]'s push connection breaks: read now, as after a poke.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Poke {
    /// The stream written to.
    pub stream: String,
    /// The message's stream position.
    pub position: i64,
    /// The message's global position.
    pub global_position: i64,
}

impl Poke {
    /// A wake-up that stands for no write.
    pub(crate) fn wake_up() -> Poke {
        Poke {
            stream: String::new(),
            position: -1,
            global_position: 0,
        }
    }

    /// Whether this is a wake-up without a write (empty stream name).
    pub fn is_wake_up(&self) -> bool {
        self.stream.is_empty()
    }
}

/// A live subscription: pokes arrive on [`Subscription::receiver`].
///
/// Dropping it ends the subscription (and stops any thread behind it).
pub struct Subscription {
    receiver: Receiver<Poke>,
    _guard: Box<dyn Send + Sync>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pending", &self.receiver.len())
            .finish()
    }
}

impl Subscription {
    /// A subscription fed through `receiver`; `guard` is dropped with it
    /// (use it to stop whatever feeds the channel).
    pub fn new(receiver: Receiver<Poke>, guard: impl Send + Sync + 'static) -> Self {
        Subscription {
            receiver,
            _guard: Box::new(guard),
        }
    }

    /// The channel of pokes, for use in `crossbeam_channel::select!`.
    pub fn receiver(&self) -> &Receiver<Poke> {
        &self.receiver
    }

    /// Waits up to `timeout` for the next poke.
    ///
    /// Errors: [`Error::Timeout`] when none came, [`Error::Shutdown`] when the
    /// subscription's source has gone away.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Poke> {
        self.receiver.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => Error::Timeout("no poke arrived".into()),
            RecvTimeoutError::Disconnected => Error::Shutdown,
        })
    }

    /// Takes every poke already waiting, without blocking.
    pub fn drain(&self) -> Vec<Poke> {
        self.receiver.try_iter().collect()
    }
}

/// Checks a `batchSize` the way EventoDB does.
pub(crate) fn check_batch_size(batch_size: i64) -> Result<()> {
    if batch_size > MAX_BATCH_SIZE && batch_size != -1 {
        return Err(Error::invalid(
            "options.batchSize must be <= 10000 or -1 for unlimited",
        ));
    }
    Ok(())
}

/// Checks a stream-name argument the way EventoDB does.
pub(crate) fn check_stream_name(stream: &str) -> Result<()> {
    if stream.is_empty() {
        return Err(Error::invalid("streamName must be a non-empty string"));
    }
    Ok(())
}

/// The checks of a write that need no store, in EventoDB's order, with its
/// messages: the stream name, then the message (and the kit's depth limit,
/// which EventoDB itself would take but the kit could not read back). Every
/// write of every store goes through here before anything is sent or
/// stored: one write, many, or pipelined.
pub(crate) fn check_write(stream: &str, message: &NewMessage) -> Result<()> {
    check_stream_name(stream)?;
    message.validate()
}
