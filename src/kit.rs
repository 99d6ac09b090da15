//! [`Kit`]: the local database and the message store, tied together.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::consumer::ConsumerDefaults;
use crate::db::{Db, DbOptions, Synchronous};
use crate::dlq::Dlq;
use crate::error::Result;
use crate::hooks::{Hooks, KitHook};
use crate::outbox::{self, Outbox, SenderConfig, SenderHandle, WakeHub};
use crate::runtime::{Runtime, Settings};
use crate::store::{EmbeddedStore, MessageStore, StoreUrl};
use crate::tls::TlsSettings;

/// The kit: the local SQLite database (outbox, positions, dead letters) and
/// the [`MessageStore`] events go to and come from.
///
/// Cheap to clone; clones share the pool and the store (and the hooks, the
/// operating settings and the record of what was spawned, which
/// [`Kit::metrics`] and [`Kit::health`] read), and may be moved to other
/// threads.
///
/// ```
/// use eventodb_kit::Kit;
///
/// let dir = tempfile::tempdir()?;
/// // The kit's tables and an embedded store, both in one file.
/// let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
/// assert_eq!(kit.namespace(), "default");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Kit {
    db: Db,
    store: Arc<dyn MessageStore>,
    /// Wakes this kit's senders when outbox rows are committed.
    outbox_wake: Arc<WakeHub>,
    /// Hooks, live components and operating settings.
    runtime: Arc<Runtime>,
}

impl Kit {
    /// Starts configuring a kit.
    pub fn builder() -> KitBuilder {
        KitBuilder::default()
    }

    /// The local database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The message store.
    pub fn store(&self) -> &Arc<dyn MessageStore> {
        &self.store
    }

    /// The namespace of the store.
    pub fn namespace(&self) -> &str {
        self.store.namespace()
    }

    /// The dead letters of this kit's namespace.
    pub fn dlq(&self) -> Dlq {
        let wake = Arc::clone(&self.outbox_wake);
        Dlq::new(self.db.clone(), Some(self.namespace().to_string()))
            .on_outbox_requeue(Arc::new(move || wake.notify_rescan()))
    }

    /// The outbox of this kit's namespace: events written here (alone, in
    /// batches, or in the caller's own transaction) are delivered to the
    /// store by a sender (see [`Kit::spawn_sender`]).
    pub fn outbox(&self) -> Outbox {
        Outbox::new(
            self.db.clone(),
            self.namespace(),
            Arc::clone(&self.outbox_wake),
        )
    }

    /// Starts a sender that delivers this namespace's outbox to the store
    /// (see [`SenderHandle`]). Writes through this kit wake it at once.
    ///
    /// Several senders may run on one database file (in this process or in
    /// others): one sends, the others stand by and take over when it stops.
    pub fn spawn_sender(&self, config: SenderConfig) -> Result<SenderHandle> {
        let handle = outbox::spawn_sender(
            self.db.clone(),
            Arc::clone(&self.store),
            self.outbox(),
            Arc::clone(&self.outbox_wake),
            config,
            self.runtime.hooks.clone(),
        )?;
        self.runtime.registry.add_sender(handle.shared());
        Ok(handle)
    }

    /// The sender settings this kit was configured with
    /// ([`KitBuilder::sender_config`], or `OUTBOX_*` through
    /// [`KitBuilder::from_env`]), for [`Kit::spawn_sender`]:
    /// `kit.spawn_sender(kit.sender_config().clone())`.
    pub fn sender_config(&self) -> &SenderConfig {
        &self.runtime.settings.sender_config
    }

    /// The settings every [`Kit::consumer`] builder starts from.
    pub fn consumer_defaults(&self) -> &ConsumerDefaults {
        &self.runtime.settings.consumer_defaults
    }

    /// How long a consumer with lag may make no progress before
    /// [`Kit::metrics`] calls it stalled.
    pub fn stalled_after(&self) -> Duration {
        self.runtime.settings.stalled_after
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.runtime.settings
    }
}

/// A token kept out of `Debug`.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Configures a [`Kit`]; see [`Kit::builder`].
#[derive(Debug, Default)]
pub struct KitBuilder {
    path: Option<PathBuf>,
    db: Option<Db>,
    db_options: DbOptions,
    /// Whether `db_options` was called.
    db_options_given: bool,
    store: Option<Arc<dyn MessageStore>>,
    /// The durability of an [`EmbeddedStore`] given with `store`.
    store_synchronous: Option<Synchronous>,
    url: Option<String>,
    token: Option<Secret>,
    tls: Option<TlsSettings>,
    log_sql: Option<bool>,
    hooks: Vec<Arc<dyn KitHook>>,
    settings: Settings,
    /// Set by `from_env` when no database file is configured.
    pub(crate) warn_in_memory: bool,
}

impl KitBuilder {
    /// Keeps the local database in the file at `path`. Defaults to an
    /// in-memory database (lost at exit: fine for tests, not for an outbox)
    /// — which is asked for by not calling this: an empty path or
    /// `:memory:` is refused by [`KitBuilder::build`], as is a path that
    /// cannot be opened (see [`Db::open`]).
    pub fn database(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Uses an already opened database (overrides [`KitBuilder::database`]).
    pub fn db(mut self, db: Db) -> Self {
        self.db = Some(db);
        self
    }

    /// Settings for opening the database file — and the embedded store the
    /// kit opens itself (by default, or from [`KitBuilder::url`]), so its
    /// durability is set once. Defaults to [`DbOptions::default`], or, with
    /// an [`EmbeddedStore`] given to [`KitBuilder::store`], to that store's
    /// durability.
    pub fn db_options(mut self, options: DbOptions) -> Self {
        self.db_options = options;
        self.db_options_given = true;
        self
    }

    /// The store to deliver to and consume from. Defaults to an
    /// [`EmbeddedStore`] in the database file (in memory without one).
    ///
    /// Durability is set once: given an [`EmbeddedStore`], the kit opens
    /// its own database with the store's [`synchronous`](EmbeddedStore::synchronous)
    /// setting; [`KitBuilder::build`] refuses [`KitBuilder::db_options`] or
    /// a [`KitBuilder::db`] that say otherwise.
    pub fn store(mut self, store: impl MessageStore + 'static) -> Self {
        let any: &dyn Any = &store;
        self.store_synchronous = any
            .downcast_ref::<EmbeddedStore>()
            .map(EmbeddedStore::synchronous);
        self.store = Some(Arc::new(store));
        self
    }

    /// Like [`KitBuilder::store`], for a store already behind an `Arc` (an
    /// embedded store's durability is not checked here: open it with the
    /// kit's [`DbOptions`]).
    pub fn shared_store(mut self, store: Arc<dyn MessageStore>) -> Self {
        self.store = Some(store);
        self.store_synchronous = None;
        self
    }

    /// The store as a URL: `http(s)://…` for an EventoDB server (with
    /// [`KitBuilder::token`]), `embedded:///path/events.db`,
    /// `embedded:relative/path.db` or `embedded::memory:` for an embedded
    /// store (see [`StoreUrl`]). [`KitBuilder::store`] takes precedence.
    /// Defaults to an [`EmbeddedStore`] in the database file (in memory
    /// without one).
    ///
    /// An unusable URL is reported by [`KitBuilder::build`].
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The namespace token for an HTTP [`KitBuilder::url`] (required there;
    /// with an embedded URL it picks the namespace). Never logged or shown
    /// in `Debug`. Defaults to none.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret(token.into()));
        self
    }

    /// The TLS settings of an `https://` [`KitBuilder::url`]: private
    /// certificate authorities, a client certificate (see [`TlsSettings`];
    /// `from_env` reads `EVENTODB_CA_CERT`, `EVENTODB_CLIENT_CERT` and
    /// `EVENTODB_CLIENT_KEY`). Not used with [`KitBuilder::store`], whose
    /// store brings its own. Defaults to [`TlsSettings::new`].
    pub fn tls(mut self, tls: TlsSettings) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Traces every SQL statement the kit's database connections (and an
    /// embedded store it opens) run, at `debug` level on the log target
    /// `eventodb_kit::sql` (see [`DbOptions::log_sql`]). Overrides the
    /// setting in [`KitBuilder::db_options`]. Defaults to off.
    pub fn log_sql(mut self, on: bool) -> Self {
        self.log_sql = Some(on);
        self
    }

    /// Adds a hook that the kit's senders and consumers call on their
    /// events (see [`hooks`](crate::hooks)). May be called repeatedly; hooks
    /// are called in the order they were added. Defaults to none.
    pub fn hook(mut self, hook: Arc<dyn KitHook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// A consumer whose lag is above zero and whose position has not moved
    /// for this long is reported as stalled by [`Kit::metrics`]. Defaults
    /// to 60 s.
    pub fn stalled_after(mut self, after: Duration) -> Self {
        self.settings.stalled_after = after;
        self
    }

    /// Most messages [`Kit::metrics`] reads per consumer to count its lag;
    /// a larger lag is reported as "at least" this many (from 1 to 10 000,
    /// the most one read of a category returns; values outside are
    /// clamped). Defaults to 1000.
    pub fn lag_count_limit(mut self, messages: u32) -> Self {
        self.settings.lag_count_limit = messages.clamp(1, crate::store::MAX_BATCH_SIZE as u32);
        self
    }

    /// The settings every [`Kit::consumer`] builder starts from. Defaults to
    /// [`ConsumerDefaults::default`].
    pub fn consumer_defaults(mut self, defaults: ConsumerDefaults) -> Self {
        self.settings.consumer_defaults = defaults;
        self
    }

    /// The sender settings the kit keeps for [`Kit::sender_config`].
    /// Defaults to [`SenderConfig::default`].
    pub fn sender_config(mut self, config: SenderConfig) -> Self {
        self.settings.sender_config = config;
        self
    }

    /// Opens the database (migrating it) and the store: the one given, the
    /// one the URL names, or the default embedded store.
    ///
    /// A kit whose store is not embedded (an [`HttpStore`](crate::HttpStore))
    /// creates only the kit's own tables in its database file, none of the
    /// embedded store's.
    ///
    /// Errors: [`Error::InvalidInput`](crate::Error::InvalidInput) for an
    /// unusable URL, an HTTP URL without a token, a token that does not
    /// parse, a database path that cannot work (empty, `:memory:`, a
    /// missing directory, a directory, not an SQLite file, read-only — at
    /// once, naming the path and the reason), and for an [`EmbeddedStore`]
    /// given to [`KitBuilder::store`] whose durability differs from the
    /// [`KitBuilder::db_options`] or the [`KitBuilder::db`] given; database
    /// errors.
    pub fn build(self) -> Result<Kit> {
        let mut db_options = self.db_options;
        if let Some(store) = self.store_synchronous {
            let kit = match &self.db {
                Some(db) => Some(("the database given to KitBuilder::db", db.synchronous())),
                None if self.db_options_given => {
                    Some(("KitBuilder::db_options", db_options.synchronous_value()))
                }
                None => None,
            };
            match kit {
                Some((what, kit)) if kit != store => {
                    return Err(crate::Error::invalid(format!(
                        "the embedded store given to KitBuilder::store is opened with synchronous = {store:?}, \
                         but {what} says {kit:?}: open both with the same DbOptions \
                         (or give the kit only the store, whose setting it adopts)"
                    )));
                }
                Some(_) => {}
                None => db_options = db_options.synchronous(store),
            }
        }
        if let Some(on) = self.log_sql {
            db_options = db_options.log_sql(on);
        }
        if self.db.is_none() && self.path.is_none() && self.warn_in_memory {
            log::warn!(
                target: "eventodb_kit::kit",
                "EVENTODB_KIT_DB is not set: the outbox, positions and dead letters are kept in memory and lost at exit"
            );
        }
        let db = match (self.db, &self.path) {
            (Some(db), _) => db,
            (None, Some(path)) => Db::open_with(path, db_options.clone())?,
            (None, None) => Db::open_in_memory_with(db_options.clone())?,
        };
        let store: Arc<dyn MessageStore> = match (self.store, &self.url) {
            (Some(store), _) => store,
            (None, Some(url)) => StoreUrl::parse(url)?.open_with_tls(
                self.token.as_ref().map(|t| t.0.as_str()),
                db_options,
                self.tls.as_ref(),
            )?,
            (None, None) => match db.path() {
                Some(path) => Arc::new(EmbeddedStore::open_with(path, db_options)?),
                None => Arc::new(EmbeddedStore::open_in_memory_with(db_options)?),
            },
        };
        Ok(Kit {
            db,
            store,
            outbox_wake: Arc::default(),
            runtime: Arc::new(Runtime {
                hooks: Hooks::new(self.hooks),
                registry: Default::default(),
                settings: self.settings,
            }),
        })
    }
}
