//! [`EmbeddedStore`]: EventoDB's semantics on a local SQLite file, in-process.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crossbeam_channel::bounded;
use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;

use crate::db::{self, DbOptions, Synchronous};
use crate::error::Result;
use crate::message::{Message, NewMessage, WriteOptions, WriteResult};
use crate::migrate::{self, Schema};
use crate::namespace::{CreatedNamespace, DeletedNamespace, NamespaceInfo, TokenCheck};
use crate::store::{
    CategoryInfo, CategoryQuery, MessageStore, Poke, StreamInfo, StreamListQuery, StreamQuery,
    SubscribeTarget, Subscription, WriteItem,
};
use crate::time::now_ms;
use crate::token::Token;

pub(crate) mod import;
mod namespaces;
mod pokes;
mod read;
pub(crate) mod write;

use pokes::{Filter, Registry, LIVE_CAPACITY};

/// Most messages a subscription replays before going live (as EventoDB).
const REPLAY_LIMIT: i64 = 1000;
/// Pokes a category watcher may have pending; more are dropped (they are
/// only wake-ups).
const WATCH_CAPACITY: usize = 64;

fn store_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse("store", include_str!("schema.sql")))
}

/// An EventoDB-compatible message store in a local SQLite file (or in memory).
///
/// It keeps EventoDB's exact semantics — positions, global positions per
/// namespace, expected versions, duplicate ids, batch sizes, categories,
/// correlation and MD5 consumer groups — so the whole kit runs and is tested
/// with no server, and `eventodb-kit serve` can put it on the network.
///
/// A handle is bound to one namespace (`default` when opened);
/// [`EmbeddedStore::with_namespace`] gives a handle on another namespace of the
/// same database. Handles are cheap to clone and share one writer connection
/// (writes are serialised) and a pool of readers (reads never block writes in
/// a file; in memory, reads and writes take turns on one connection). Every
/// write pokes the in-process subscribers; writes by other processes on the
/// same file are not poked.
///
/// ```
/// use eventodb_kit::{CategoryQuery, EmbeddedStore, MessageStore, NewMessage, WriteOptions};
/// use serde_json::json;
///
/// let store = EmbeddedStore::open_in_memory()?;
/// let msg = NewMessage::new("Opened", json!({ "owner": "ann" }));
/// let written = store.write("account-1", &msg, &WriteOptions::new())?;
/// assert_eq!((written.position, written.global_position), (0, 1));
/// let all = store.get_category("account", &CategoryQuery::new())?;
/// assert_eq!(all[0].data["owner"], "ann");
/// # Ok::<(), eventodb_kit::Error>(())
/// ```
#[derive(Clone)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    namespace: Arc<str>,
}

struct Shared {
    writer: Mutex<Connection>,
    /// `None` in memory: reads use the writer connection.
    readers: Option<Pool<SqliteConnectionManager>>,
    pokes: Arc<Registry>,
    path: Option<PathBuf>,
    /// SQLite's absolute name of the file (`""` in memory).
    file: String,
    /// The durability its connections were opened with.
    synchronous: Synchronous,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.shared.path)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// Namespace a freshly opened handle is bound to.
pub const DEFAULT_NAMESPACE: &str = "default";

impl EmbeddedStore {
    /// Opens (creating if needed) the store in the SQLite file at `path`.
    ///
    /// The file may be the kit's own database file or a separate one; the
    /// store's tables have their own schema version.
    ///
    /// A path that cannot work fails at once with
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) naming the path
    /// and the reason (as [`Db::open`](crate::Db::open)): an empty path or
    /// `:memory:` (in memory is [`EmbeddedStore::open_in_memory`]), a
    /// missing directory, a directory, a file that is not an SQLite
    /// database or that can only be read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, DbOptions::default())
    }

    /// Opens the store at `path` with `options` (durability, busy timeout,
    /// reader pool size).
    pub fn open_with(path: impl AsRef<Path>, options: DbOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut writer = db::open_connection(&path, &options)?;
        migrate::migrate_to(&mut writer, store_schema(), store_schema().latest())?;
        let readers = db::build_pool(
            SqliteConnectionManager::file(&path),
            &options,
            options.pool_size_value(),
        )?;
        Ok(Self::from_parts(
            writer,
            Some(readers),
            Some(path),
            &options,
        ))
    }

    /// A private in-memory store, gone when the last handle is dropped.
    pub fn open_in_memory() -> Result<Self> {
        Self::open_in_memory_with(DbOptions::default())
    }

    /// Like [`EmbeddedStore::open_in_memory`], with `options` (durability,
    /// busy timeout, SQL tracing).
    pub fn open_in_memory_with(options: DbOptions) -> Result<Self> {
        let mut writer = Connection::open_in_memory()?;
        db::configure(&mut writer, &options)?;
        migrate::migrate_to(&mut writer, store_schema(), store_schema().latest())?;
        Ok(Self::from_parts(writer, None, None, &options))
    }

    fn from_parts(
        writer: Connection,
        readers: Option<Pool<SqliteConnectionManager>>,
        path: Option<PathBuf>,
        options: &DbOptions,
    ) -> Self {
        EmbeddedStore {
            shared: Arc::new(Shared {
                file: writer.path().unwrap_or_default().to_string(),
                writer: Mutex::new(writer),
                readers,
                pokes: Arc::new(Registry::default()),
                path,
                synchronous: options.synchronous_value(),
            }),
            namespace: Arc::from(DEFAULT_NAMESPACE),
        }
    }

    /// A handle on namespace `namespace` of the same database.
    ///
    /// In-process handles do not need the namespace to be registered (see
    /// [`EmbeddedStore::create_namespace`], which a server uses for tokens).
    pub fn with_namespace(&self, namespace: &str) -> Self {
        EmbeddedStore {
            shared: Arc::clone(&self.shared),
            namespace: Arc::from(namespace),
        }
    }

    /// The file the store lives in (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.shared.path.as_deref()
    }

    /// The durability its connections were opened with (see
    /// [`DbOptions::synchronous`]).
    pub fn synchronous(&self) -> Synchronous {
        self.shared.synchronous
    }

    /// The writer connection for writing messages, the one way `write` and
    /// `write_many` get it: refused while this thread has a write
    /// transaction open on the same file (a consumer handler's, say), which
    /// the write would wait for until the busy timeout.
    fn message_writer(&self) -> Result<MutexGuard<'_, Connection>> {
        if !self.shared.file.is_empty() && crate::write_scope::held(&self.shared.file) {
            return Err(nested_write_error());
        }
        Ok(self.writer())
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no open transaction behind
        // (rusqlite rolls back on drop), so the connection is still usable.
        self.shared.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        match &self.shared.readers {
            Some(pool) => f(&*pool.get()?),
            None => f(&self.writer()),
        }
    }

    /// Number of live subscriptions on this database (all namespaces).
    pub fn subscriber_count(&self) -> usize {
        self.shared.pokes.len()
    }

    // ----- namespace administration (what a server needs) -----

    /// `ns.create`: registers namespace `id` with `token` (or a fresh one) and
    /// returns the token. Only its sha256 hash is stored.
    ///
    /// Errors: [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty
    /// id or a token that does not parse or is for another namespace;
    /// [`Error::Store`](crate::Error::Store) with code `NAMESPACE_EXISTS` when
    /// the id is taken.
    pub fn create_namespace(
        &self,
        id: &str,
        description: &str,
        token: Option<&str>,
    ) -> Result<CreatedNamespace> {
        namespaces::create(&mut self.writer(), id, description, token)
    }

    /// Registers namespace `id` unless it exists. Returns the token when it
    /// was created (`token`, or a fresh one), `None` when it already existed
    /// (its stored hash is kept, as EventoDB does for `default`).
    pub fn ensure_namespace(&self, id: &str, token: Option<&Token>) -> Result<Option<Token>> {
        let mut conn = self.writer();
        if namespaces::exists(&conn, id)? {
            return Ok(None);
        }
        let description = if id == DEFAULT_NAMESPACE {
            "Default namespace"
        } else {
            ""
        };
        let created =
            namespaces::create(&mut conn, id, description, token.map(Token::expose_secret))?;
        Ok(Some(created.token))
    }

    /// `ns.delete`: removes namespace `id`, its token and all its messages.
    /// Unknown id: [`Error::NotFound`](crate::Error::NotFound).
    pub fn delete_namespace(&self, id: &str) -> Result<DeletedNamespace> {
        namespaces::delete(&mut self.writer(), id)
    }

    /// `ns.list`: registered namespaces, newest first.
    pub fn list_namespaces(&self) -> Result<Vec<NamespaceInfo>> {
        self.read(namespaces::list)
    }

    /// `ns.info`: one namespace with its message count.
    /// Unknown id: [`Error::NotFound`](crate::Error::NotFound).
    pub fn namespace_info(&self, id: &str) -> Result<NamespaceInfo> {
        self.read(|c| namespaces::info(c, id))
    }

    /// Whether namespace `id` is registered.
    pub fn namespace_exists(&self, id: &str) -> Result<bool> {
        self.read(|c| namespaces::exists(c, id))
    }

    /// Every registered namespace with its newest global position (0 when
    /// empty; global positions are gapless, so this is its message count
    /// unless an import left gaps), by name. Cheap: one index lookup each.
    pub fn namespace_heads(&self) -> Result<Vec<(String, i64)>> {
        self.read(namespaces::heads)
    }

    /// Checks `token` against the registered namespaces.
    pub fn check_token(&self, token: &Token) -> Result<TokenCheck> {
        self.read(|c| namespaces::check_token(c, token))
    }
}

/// The refusal of a write while this thread has a write transaction open
/// on the same file.
fn nested_write_error() -> crate::Error {
    crate::write_scope::nested_write_error("writing to the embedded store in the same file")
}

impl MessageStore for EmbeddedStore {
    fn namespace(&self) -> &str {
        &self.namespace
    }

    fn write(
        &self,
        stream: &str,
        message: &NewMessage,
        options: &WriteOptions,
    ) -> Result<WriteResult> {
        let mut conn = self.message_writer()?;
        let result = write::append(
            &mut conn,
            &self.namespace,
            stream,
            message,
            options,
            now_ms(),
        )?;
        // Published while the writer lock is held, so a subscription set up
        // under the same lock sees every write exactly once (replay or live).
        self.shared.pokes.publish(
            &self.namespace,
            &Poke {
                stream: stream.to_string(),
                position: result.position,
                global_position: result.global_position,
            },
        );
        Ok(result)
    }

    /// Every item in one transaction with a savepoint per item (see
    /// [`MessageStore::write_many`]): one commit for the lot, and an item
    /// that fails is undone alone, consuming no position.
    fn write_many(&self, items: &[WriteItem]) -> Vec<Result<WriteResult>> {
        let mut conn = match self.message_writer() {
            Ok(conn) => conn,
            // Each item gets the refusal `write` answers it with.
            Err(_) => return items.iter().map(|_| Err(nested_write_error())).collect(),
        };
        let results = write::append_many(&mut conn, &self.namespace, items, now_ms);
        // After the commit, under the writer lock, as `write` does.
        for (item, result) in items.iter().zip(&results) {
            if let Ok(written) = result {
                self.shared.pokes.publish(
                    &self.namespace,
                    &Poke {
                        stream: item.stream.clone(),
                        position: written.position,
                        global_position: written.global_position,
                    },
                );
            }
        }
        results
    }

    fn get_stream(&self, stream: &str, query: &StreamQuery) -> Result<Vec<Message>> {
        self.read(|c| read::stream_messages(c, &self.namespace, stream, query))
    }

    fn last_message(&self, stream: &str, message_type: Option<&str>) -> Result<Option<Message>> {
        self.read(|c| read::last_message(c, &self.namespace, stream, message_type))
    }

    fn stream_version(&self, stream: &str) -> Result<Option<i64>> {
        crate::store::check_stream_name(stream)?;
        let v = self.read(|c| write::stream_version(c, &self.namespace, stream))?;
        Ok((v >= 0).then_some(v))
    }

    fn get_category(&self, category: &str, query: &CategoryQuery) -> Result<Vec<Message>> {
        self.read(|c| read::category_messages(c, &self.namespace, category, query))
    }

    fn list_streams(&self, query: &StreamListQuery) -> Result<Vec<StreamInfo>> {
        self.read(|c| read::streams(c, &self.namespace, query))
    }

    fn list_categories(&self) -> Result<Vec<CategoryInfo>> {
        self.read(|c| read::categories(c, &self.namespace))
    }

    fn subscribe(&self, target: &SubscribeTarget) -> Result<Subscription> {
        // Hold the writer lock while replaying and registering: every write
        // is then either replayed or delivered live, never both, never neither.
        let conn = self.writer();
        let ns = &self.namespace;
        let (filter, replay, live_from) = match target {
            SubscribeTarget::Stream { stream, position } => {
                let q = StreamQuery::new()
                    .position(*position)
                    .batch_size(REPLAY_LIMIT);
                let replay = read::stream_messages(&conn, ns, stream, &q)?;
                let from = replay.last().map_or(*position, |m| m.position + 1);
                (Filter::Stream(stream.clone()), replay, from)
            }
            SubscribeTarget::Category {
                category,
                position,
                consumer_group,
            } => {
                let mut q = CategoryQuery::new()
                    .position(*position)
                    .batch_size(REPLAY_LIMIT);
                q.consumer_group = *consumer_group;
                let replay = read::category_messages(&conn, ns, category, &q)?;
                let from = replay.last().map_or(*position, |m| m.global_position + 1);
                (
                    Filter::Category(category.clone(), *consumer_group),
                    replay,
                    from,
                )
            }
            SubscribeTarget::All { position } => (Filter::All, Vec::new(), *position),
        };
        let (tx, rx) = bounded(replay.len() + LIVE_CAPACITY);
        for m in &replay {
            // Cannot fail: the channel has room for the whole replay.
            let _ = tx.try_send(Poke {
                stream: m.stream_name.clone(),
                position: m.position,
                global_position: m.global_position,
            });
        }
        let guard = self.shared.pokes.add(ns, filter, live_from, tx);
        drop(conn);
        Ok(Subscription::new(rx, guard))
    }

    fn watch_category(&self, category: &str) -> Result<Subscription> {
        let (tx, rx) = bounded(WATCH_CAPACITY);
        let filter = Filter::Category(category.to_string(), None);
        let guard = self.shared.pokes.add(&self.namespace, filter, 0, tx);
        Ok(Subscription::new(rx, guard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write_scope::WriteScope;
    use crate::Error;
    use serde_json::json;

    #[test]
    fn write_and_write_many_refuse_to_wait_for_this_threads_own_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("events.db")).unwrap();
        let item = WriteItem::new("a-1", NewMessage::new("T", json!({})), WriteOptions::new());
        let file: Arc<str> = Arc::from(store.shared.file.as_str());
        let scope = WriteScope::enter(&file).unwrap();
        let nested = |r: &Result<WriteResult>| matches!(r, Err(Error::InvalidInput(m)) if m.contains("would wait for the write transaction"));
        let one = store.write(&item.stream, &item.message, &item.options);
        assert!(nested(&one), "{one:?}");
        let many = store.write_many(&[item.clone(), item.clone()]);
        assert_eq!(many.len(), 2);
        assert!(many.iter().all(nested), "{many:?}");
        drop(scope);
        assert!(store
            .write_many(&[item.clone(), item])
            .iter()
            .all(|r| r.is_ok()));
        assert_eq!(store.stream_version("a-1").unwrap(), Some(1));
    }
}
