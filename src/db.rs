//! The kit's local SQLite database: a connection pool, per-connection
//! pragmas and the versioned schema of `schema.sql`.
//!
//! Every connection gets WAL, `synchronous=NORMAL` (or `FULL`), a busy
//! timeout and foreign keys. Transactions started with
//! [`Connection::transaction`](rusqlite::Connection::transaction) on a pooled
//! connection are `BEGIN IMMEDIATE`, so a reader that later writes never fails
//! with `SQLITE_BUSY_SNAPSHOT`.
//!
//! ```
//! use eventodb_kit::Db;
//!
//! let dir = tempfile::tempdir()?;
//! let db = Db::open(dir.path().join("app.db"))?;
//! assert_eq!(db.schema_version()?, eventodb_kit::db::SCHEMA_VERSION);
//! db.write(|tx| {
//!     tx.execute_batch("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY)")?;
//!     Ok(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};

use crate::error::{Error, Result};
use crate::migrate::{self, Schema};
use crate::write_scope::{self, WriteScope};

/// The newest schema version of the kit's tables (see `schema.sql`).
pub const SCHEMA_VERSION: u32 = 4;

/// A connection taken from the [`Db`] pool; returned to it on drop.
pub type DbConnection = PooledConnection<SqliteConnectionManager>;

fn kit_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse("kit", include_str!("../schema.sql")))
}

/// How durable a commit is (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// Commits survive an application crash; the last ones may be lost on
    /// power loss. Fast; the usual choice with WAL.
    #[default]
    Normal,
    /// Every commit is flushed to disk before it returns.
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Settings of a [`Db`]. Built with setters; [`Default`] holds every default.
#[derive(Debug, Clone)]
pub struct DbOptions {
    synchronous: Synchronous,
    busy_timeout: Duration,
    pool_size: u32,
    pool_timeout: Duration,
    migrate: bool,
    log_sql: bool,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            pool_size: 8,
            pool_timeout: Duration::from_secs(30),
            migrate: true,
            log_sql: false,
        }
    }
}

impl DbOptions {
    /// Default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Commit durability. Defaults to [`Synchronous::Normal`].
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long a statement waits for another writer's lock. Defaults to 5 s.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Maximum pooled connections (at least 1). Defaults to 8.
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size.max(1);
        self
    }

    pub(crate) fn pool_size_value(&self) -> u32 {
        self.pool_size
    }

    /// How long taking a connection from the pool waits while every
    /// connection is in use, before it fails with
    /// [`Error::Pool`] (a transient error). Opening a
    /// file never waits this long: an unusable path fails at once. Defaults
    /// to 30 s.
    pub fn pool_timeout(mut self, timeout: Duration) -> Self {
        self.pool_timeout = timeout;
        self
    }

    pub(crate) fn synchronous_value(&self) -> Synchronous {
        self.synchronous
    }

    /// Whether opening applies pending migrations. Defaults to `true`.
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Traces every SQL statement run on these connections, at `debug`
    /// level on the log target [`SQL_LOG_TARGET`] (`eventodb_kit::sql`):
    /// the statement's text as written, with `?` placeholders — bound
    /// values never appear. Costs a call into the logger per statement
    /// (cheap when the target is filtered out). Defaults to off.
    pub fn log_sql(mut self, on: bool) -> Self {
        self.log_sql = on;
        self
    }
}

/// The log target of [`DbOptions::log_sql`].
pub const SQL_LOG_TARGET: &str = "eventodb_kit::sql";

/// Logs one statement as SQLite starts running it (unexpanded SQL: the
/// text with its placeholders, never the bound values).
fn trace_statement(event: rusqlite::trace::TraceEvent<'_>) {
    if let rusqlite::trace::TraceEvent::Stmt(_, sql) = event {
        log::debug!(target: SQL_LOG_TARGET, "{}", sql.trim());
    }
}

/// Applies the kit's pragmas to a fresh connection.
pub(crate) fn configure(conn: &mut Connection, options: &DbOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    // journal_mode answers with a row; an in-memory database stays "memory".
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
        options.synchronous.pragma()
    ))?;
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    if options.log_sql {
        conn.trace_v2(
            rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT,
            Some(trace_statement),
        );
    }
    Ok(())
}

/// Builds an r2d2 pool whose connections are configured with `options`.
pub(crate) fn build_pool(
    manager: SqliteConnectionManager,
    options: &DbOptions,
    max_size: u32,
) -> Result<Pool<SqliteConnectionManager>> {
    let opts = options.clone();
    let manager = manager.with_init(move |c| configure(c, &opts));
    let pool = Pool::builder()
        .max_size(max_size)
        .min_idle(Some(1))
        .idle_timeout(None)
        .max_lifetime(None)
        .connection_timeout(options.pool_timeout)
        .build(manager)?;
    Ok(pool)
}

/// Opens the SQLite file at `path` for reading and writing (creating it if
/// needed) and applies the kit's pragmas — the first connection of a [`Db`]
/// or an [`EmbeddedStore`](crate::EmbeddedStore), opened directly so that a
/// path that cannot work fails at once.
///
/// Errors, all [`Error::InvalidInput`] (permanent: retrying cannot help)
/// naming the path and the reason: an empty path or one SQLite would take
/// for an in-memory database (each pooled connection would get a private
/// one); a file that cannot be opened or created (a missing directory, a
/// directory, no permission — the OS's reason); a file that is not an
/// SQLite database; a file that can only be read.
pub(crate) fn open_connection(path: &Path, options: &DbOptions) -> Result<Connection> {
    check_path(path)?;
    let cannot_open = |reason: String| {
        Error::invalid(format!(
            "cannot open database file {}: {reason}",
            path.display()
        ))
    };
    let mut conn = Connection::open(path).map_err(|e| cannot_open(os_reason(path, &e)))?;
    if let Err(e) = configure(&mut conn, options) {
        return Err(match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => {
                cannot_open("the file is not an SQLite database".into())
            }
            Some(ErrorCode::CannotOpen) => cannot_open(os_reason(path, &e)),
            _ => e.into(),
        });
    }
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(cannot_open(
            "the file can only be read (the kit needs to write to it)".into(),
        ));
    }
    Ok(conn)
}

/// Refuses paths that are not a file: empty, or in-memory spelled as a path.
fn check_path(path: &Path) -> Result<()> {
    let text = path.to_string_lossy();
    if text.is_empty() {
        return Err(Error::invalid(
            "the database path is empty: give a file, or open a database in memory explicitly (Db::open_in_memory, EmbeddedStore::open_in_memory, a Kit without .database(..))",
        ));
    }
    let memory = text == ":memory:"
        || (text.starts_with("file:")
            && (text.contains(":memory:") || text.contains("mode=memory")));
    if memory {
        return Err(Error::invalid(format!(
            "the database path {text:?} names an in-memory database, which every pooled connection would get a private copy of: use Db::open_in_memory or EmbeddedStore::open_in_memory"
        )));
    }
    Ok(())
}

/// Why `path` cannot be opened, in the OS's words where they can be found
/// (SQLite itself only says "unable to open database file").
fn os_reason(path: &Path, sqlite: &rusqlite::Error) -> String {
    if path.is_dir() {
        return "it is a directory".to_string();
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::metadata(parent) {
            Err(e) => return format!("directory {}: {e}", parent.display()),
            Ok(m) if !m.is_dir() => return format!("{} is not a directory", parent.display()),
            Ok(_) => {}
        }
    }
    let attempt = if path.exists() {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
    } else {
        // Probe the directory without leaving a file behind.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .inspect(|_| {
                let _ = std::fs::remove_file(path);
            })
    };
    match attempt {
        Err(e) => e.to_string(),
        Ok(_) => sqlite.to_string(),
    }
}

/// The kit's local database. Cheap to clone: clones share one pool.
///
/// Hold a connection only as long as a transaction needs it; in particular
/// never across a network call.
#[derive(Clone)]
pub struct Db {
    pool: Pool<SqliteConnectionManager>,
    path: Option<PathBuf>,
    /// SQLite's absolute name of the file (a unique `:memory:<n>` in
    /// memory): what [`write_scope`] knows this database by.
    file: Arc<str>,
    synchronous: Synchronous,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .field("pool_size", &self.pool.max_size())
            .finish()
    }
}

impl Db {
    /// Opens (creating if needed) the database file at `path` and migrates
    /// it to [`SCHEMA_VERSION`].
    ///
    /// A path that cannot work fails at once with
    /// [`Error::InvalidInput`] naming the path
    /// and the reason: an empty path or `:memory:` (a database in memory is
    /// [`Db::open_in_memory`]), a missing directory, a directory, a file
    /// that is not an SQLite database or that can only be read.
    ///
    /// ```
    /// use eventodb_kit::{Db, Error};
    ///
    /// assert!(matches!(Db::open(""), Err(Error::InvalidInput(_))));
    /// let err = Db::open("/nonexistent-dir/app.db").unwrap_err();
    /// assert!(!err.is_transient());
    /// assert!(err.to_string().contains("/nonexistent-dir/app.db"));
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Self::open_with(path, DbOptions::default())
    }

    /// Opens the file at `path` with `options` (errors as [`Db::open`]).
    pub fn open_with(path: impl AsRef<Path>, options: DbOptions) -> Result<Db> {
        let path = path.as_ref().to_path_buf();
        // The first connection, directly: a pool would retry an unusable
        // path until its time-out and then report a transient error.
        drop(open_connection(&path, &options)?);
        let manager = SqliteConnectionManager::file(&path);
        let pool = build_pool(manager, &options, options.pool_size)?;
        Self::finish(pool, Some(path), &options)
    }

    /// Opens the kit database at `path` only if the file exists and holds
    /// the kit's tables — for tools that inspect an application's database,
    /// where a mistyped path must not silently create an empty one.
    ///
    /// Errors: [`Error::NotFound`] when there is no
    /// such file; [`Error::InvalidInput`] when the
    /// file is not a kit database (never opened by a [`Kit`](crate::Kit)).
    ///
    /// ```
    /// use eventodb_kit::{Db, DbOptions, Error};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("app.db");
    /// assert!(matches!(Db::open_existing(&path, DbOptions::new()), Err(Error::NotFound(_))));
    /// assert!(!path.exists(), "nothing was created");
    /// Db::open(&path)?;
    /// Db::open_existing(&path, DbOptions::new())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_existing(path: impl AsRef<Path>, options: DbOptions) -> Result<Db> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(crate::Error::NotFound(format!(
                "database file {}",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            path,
            // Read-write without CREATE: never creates a file (read-only
            // connections cannot always open a WAL database).
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let version = migrate::current_version(&conn, kit_schema().component).map_err(|e| {
            crate::Error::invalid(format!(
                "{} is not an SQLite database the kit can read: {e}",
                path.display()
            ))
        })?;
        drop(conn);
        if version == 0 {
            return Err(crate::Error::invalid(format!(
                "{} has no eventodb-kit tables (it is not the database of a kit)",
                path.display()
            )));
        }
        Self::open_with(path, options)
    }

    /// The namespaces that have rows in the outbox, the consumer positions or
    /// the dead letters of this database, sorted.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT namespace FROM evento_outbox
                 UNION SELECT namespace FROM evento_consumer_positions
                 UNION SELECT namespace FROM evento_dead_letters
                 ORDER BY 1",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// A private in-memory database, gone when the last clone is dropped.
    ///
    /// It has a single connection, so work on it is serialised; use a file
    /// (e.g. in a temporary directory) for anything concurrent.
    pub fn open_in_memory() -> Result<Db> {
        Self::open_in_memory_with(DbOptions::default())
    }

    /// Like [`Db::open_in_memory`], with `options` (the pool size is 1).
    pub fn open_in_memory_with(options: DbOptions) -> Result<Db> {
        let pool = build_pool(SqliteConnectionManager::memory(), &options, 1)?;
        Self::finish(pool, None, &options)
    }

    fn finish(
        pool: Pool<SqliteConnectionManager>,
        path: Option<PathBuf>,
        options: &DbOptions,
    ) -> Result<Db> {
        let file = match path {
            Some(_) => Arc::from(pool.get()?.path().unwrap_or_default()),
            None => write_scope::memory_name(),
        };
        let db = Db {
            pool,
            path,
            file,
            synchronous: options.synchronous,
        };
        if options.migrate {
            db.migrate_to(SCHEMA_VERSION)?;
        }
        Ok(db)
    }

    /// The file this database lives in (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The durability its connections were opened with.
    pub fn synchronous(&self) -> Synchronous {
        self.synchronous
    }

    /// SQLite's name of the file (`:memory:<n>` in memory).
    pub(crate) fn file(&self) -> &Arc<str> {
        &self.file
    }

    /// Takes a connection from the pool (waits up to
    /// [`DbOptions::pool_timeout`] for one).
    ///
    /// Errors at once, instead of waiting, for an in-memory database while
    /// this thread's own open transaction holds its one connection (inside
    /// a consumer handler or [`Db::write`]).
    pub fn connection(&self) -> Result<DbConnection> {
        if self.path.is_none() && write_scope::held(&self.file) {
            return Err(write_scope::nested_write_error(
                "taking the in-memory database's one connection",
            ));
        }
        Ok(self.pool.get()?)
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction: commits when it returns
    /// `Ok`, rolls back when it returns `Err` (or panics).
    ///
    /// Errors at once with [`Error::InvalidInput`]
    /// when this thread already has a write transaction open on the same
    /// file — inside a consumer handler, a replay or another `write` — which
    /// the new one would wait for until the busy timeout: write through that
    /// transaction instead.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.connection()?;
        let scope = WriteScope::enter(&self.file)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        scope.committed();
        Ok(value)
    }

    /// Runs `f` with a pooled connection, outside any transaction.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.connection()?;
        f(&conn)
    }

    /// The applied version of the kit's schema (0 before any migration).
    pub fn schema_version(&self) -> Result<u32> {
        let conn = self.connection()?;
        migrate::current_version(&conn, kit_schema().component)
    }

    /// Migrates the kit's tables up or down to `version` (0 removes them).
    ///
    /// Going down drops the tables of the newer versions with their rows.
    pub fn migrate_to(&self, version: u32) -> Result<()> {
        let mut conn = self.connection()?;
        migrate::migrate_to(&mut conn, kit_schema(), version)
    }
}
