//! [`Kit`]: the local database and the message store, tied together.

use std::path::PathBuf;
use std::sync::Arc;

use crate::db::{Db, DbOptions};
use crate::dlq::Dlq;
use crate::error::Result;
use crate::outbox::{self, Outbox, SenderConfig, SenderHandle, WakeHub};
use crate::store::{EmbeddedStore, MessageStore};

/// The kit: the local SQLite database (outbox, positions, dead letters) and
/// the [`MessageStore`] events go to and come from.
///
/// Cheap to clone; clones share the pool and the store, and may be moved to
/// other threads.
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
        outbox::spawn_sender(
            self.db.clone(),
            Arc::clone(&self.store),
            self.outbox(),
            Arc::clone(&self.outbox_wake),
            config,
        )
    }
}

/// Configures a [`Kit`]; see [`Kit::builder`].
#[derive(Debug, Default)]
pub struct KitBuilder {
    path: Option<PathBuf>,
    db: Option<Db>,
    db_options: DbOptions,
    store: Option<Arc<dyn MessageStore>>,
}

impl KitBuilder {
    /// Keeps the local database in the file at `path`. Defaults to an
    /// in-memory database (lost at exit: fine for tests, not for an outbox).
    pub fn database(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Uses an already opened database (overrides [`KitBuilder::database`]).
    pub fn db(mut self, db: Db) -> Self {
        self.db = Some(db);
        self
    }

    /// Settings for opening the database file. Defaults to [`DbOptions::default`].
    pub fn db_options(mut self, options: DbOptions) -> Self {
        self.db_options = options;
        self
    }

    /// The store to deliver to and consume from. Defaults to an
    /// [`EmbeddedStore`] in the database file (in memory without one).
    pub fn store(mut self, store: impl MessageStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Like [`KitBuilder::store`], for a store already behind an `Arc`.
    pub fn shared_store(mut self, store: Arc<dyn MessageStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Opens the database (migrating it) and the default store if needed.
    pub fn build(self) -> Result<Kit> {
        let db = match (self.db, &self.path) {
            (Some(db), _) => db,
            (None, Some(path)) => Db::open_with(path, self.db_options.clone())?,
            (None, None) => Db::open_in_memory()?,
        };
        let store: Arc<dyn MessageStore> = match self.store {
            Some(store) => store,
            None => match db.path() {
                Some(path) => Arc::new(EmbeddedStore::open_with(path, self.db_options)?),
                None => Arc::new(EmbeddedStore::open_in_memory()?),
            },
        };
        Ok(Kit {
            db,
            store,
            outbox_wake: Arc::default(),
        })
    }
}
