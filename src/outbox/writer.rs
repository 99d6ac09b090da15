//! [`Outbox`]: writing events to the outbox — alone, in batches, or inside
//! the caller's own transaction — and reading rows back.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use super::entry::{insert, prepare, OutboxEntry, DEFAULT_MAX_PAYLOAD_BYTES};
use super::query::{self, OutboxFilter};
use super::record::{self, OutboxRecord, OutboxStatus};
use super::retention;
use super::wake::{wake_on_commit, WakeHub};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::lease::{self, LeaseInfo};
use crate::message::{NewMessage, WriteOptions};
use crate::time::{millis, now_ms};

/// Writes events to the outbox of one namespace, for the sender to deliver.
///
/// Every row gets its message id (a UUID v7, or the custom id of
/// [`WriteOptions::id`]) when it is written; that id is what the store
/// receives, so a resend after an ambiguous failure is recognised as already
/// written. Each write returns the id.
///
/// Bad input is refused before anything is stored, with
/// [`Error::InvalidInput`] saying what is wrong: an empty stream or type, data
/// or metadata that is not a JSON object or is nested deeper than
/// [`MAX_JSON_DEPTH`](crate::message::MAX_JSON_DEPTH), a payload over
/// [`Outbox::max_payload_bytes`], a malformed custom id, an expected version
/// below -1 or an empty idempotency key. Custom ids are kept in canonical
/// form (see [`Outbox::write_with`]).
///
/// A write that commits wakes the sender of this kit at once.
///
/// Get one with [`Kit::outbox`](crate::Kit::outbox). Cheap to clone; clones
/// share the kit's database and may be used from any thread.
///
/// ```
/// use eventodb_kit::{Kit, NewMessage, WriteOptions};
/// use serde_json::json;
///
/// let dir = tempfile::tempdir()?;
/// let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
/// let outbox = kit.outbox();
/// let id = outbox.write("account-7", &NewMessage::new("Opened", json!({ "owner": "ann" })))?;
/// // An idempotency key makes a repeated write return the first row's id.
/// let opts = WriteOptions::new().idempotency_key("order-9-paid");
/// let first = outbox.write_with("order-9", &NewMessage::new("Paid", json!({})), &opts)?;
/// let again = outbox.write_with("order-9", &NewMessage::new("Paid", json!({})), &opts)?;
/// assert_eq!(first, again);
/// assert_eq!(outbox.status()?.unsent, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Outbox {
    db: Db,
    namespace: Arc<str>,
    hub: Arc<WakeHub>,
    max_payload_bytes: usize,
    /// The database file, resolved, to check `write_in` connections against.
    db_file: Option<Arc<PathBuf>>,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("namespace", &self.namespace)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .finish()
    }
}

impl Outbox {
    pub(crate) fn new(db: Db, namespace: &str, hub: Arc<WakeHub>) -> Self {
        let db_file = db
            .path()
            .map(|p| Arc::new(std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())));
        Outbox {
            db,
            namespace: Arc::from(namespace),
            hub,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            db_file,
        }
    }

    /// Refuses messages whose data and metadata, as JSON, exceed `bytes`.
    /// Defaults to 1 MiB.
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Who holds this namespace's sender lease (the active sender, in this
    /// process or another), if a sender ever ran on this database.
    pub fn sender_lease(&self) -> Result<Option<LeaseInfo>> {
        let name = super::sender::lease_name(&self.namespace);
        self.db.read(|c| lease::read(c, &name))
    }

    /// The namespace this outbox writes for.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Writes `message` for `stream` in a transaction of its own; returns
    /// the message id.
    pub fn write(&self, stream: &str, message: &NewMessage) -> Result<String> {
        self.write_with(stream, message, &WriteOptions::new())
    }

    /// [`Outbox::write`] with options: an expected version (checked by the
    /// store on delivery; a mismatch dead-letters the message), a custom id,
    /// an idempotency key.
    ///
    /// Writing an idempotency key that this namespace's outbox already holds
    /// stores nothing and returns the first row's id, also when several
    /// writers race. A custom id that is already in the outbox is
    /// [`Error::DuplicateId`].
    ///
    /// A custom id may come in any form EventoDB accepts — 36 characters
    /// with hyphens, 32 hex digits, `{…}`, `urn:uuid:…`, in any case — and
    /// is stored, sent and returned in **canonical form**: 36 characters,
    /// lowercase, hyphenated. So ids that differ only in case or form are
    /// one id, as on EventoDB's Postgres backend, and what the outbox
    /// stores, what the store receives and what the sender compares agree
    /// on every backend. Anything else is [`Error::InvalidInput`].
    ///
    /// ```
    /// # use eventodb_kit::{Kit, NewMessage, WriteOptions};
    /// # let kit = Kit::builder().build()?;
    /// let opts = WriteOptions::new().id("0190B6A4-6A3E-7C3E-9B1A-3F2D1C0B9A87");
    /// let id = kit.outbox().write_with("order-9", &NewMessage::new("Paid", serde_json::json!({})), &opts)?;
    /// assert_eq!(id, "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87");
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    pub fn write_with(
        &self,
        stream: &str,
        message: &NewMessage,
        options: &WriteOptions,
    ) -> Result<String> {
        let row = prepare(stream, message, options, self.max_payload_bytes)?;
        let id = self.db.write(|tx| insert(tx, &self.namespace, &row))?;
        self.hub.notify();
        Ok(id)
    }

    /// Writes every entry, all or nothing, in one transaction; returns their
    /// ids in order.
    ///
    /// Every entry is checked before anything is stored; an error names the
    /// entry by its index.
    ///
    /// ```
    /// use eventodb_kit::outbox::OutboxEntry;
    /// use eventodb_kit::{Error, Kit, NewMessage};
    /// use serde_json::json;
    ///
    /// let kit = Kit::builder().build()?;
    /// let good = OutboxEntry::new("cart-1", NewMessage::new("ItemAdded", json!({ "sku": "a" })));
    /// let bad = OutboxEntry::new("cart-1", NewMessage::new("ItemAdded", json!("not an object")));
    /// let err = kit.outbox().write_batch(&[good.clone(), bad]).unwrap_err();
    /// assert!(matches!(err, Error::InvalidInput(_)));
    /// assert_eq!(kit.outbox().status()?.unsent, 0, "nothing was stored");
    /// assert_eq!(kit.outbox().write_batch(&[good.clone(), good])?.len(), 2);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn write_batch(&self, entries: &[OutboxEntry]) -> Result<Vec<String>> {
        let rows = self.prepare_all(entries)?;
        let ids = self.db.write(|tx| {
            rows.iter()
                .map(|row| insert(tx, &self.namespace, row))
                .collect::<Result<Vec<_>>>()
        })?;
        self.hub.notify();
        Ok(ids)
    }

    /// Writes `message` inside the caller's open transaction on the kit's
    /// database: it is delivered only if that transaction commits, and the
    /// commit wakes the sender.
    ///
    /// `conn` is a [`rusqlite::Transaction`] (or savepoint) — pass `&tx`. It
    /// must be a connection to the kit's database file (for example from
    /// [`Db::write`](crate::Db::write) or [`Db::connection`](crate::Db::connection))
    /// with a transaction open; otherwise the call fails with
    /// [`Error::InvalidInput`].
    ///
    /// This is how a consumer handler emits (consume-then-emit): call it
    /// with the handler's transaction, and the message commits with the
    /// handler's work. (`write`, `write_with` and `write_batch` open a
    /// transaction of their own, which inside a handler fails at once: the
    /// handler's transaction holds the file's write lock.)
    ///
    /// Waking the sender: inside a transaction the kit runs ([`Db::write`](crate::Db::write),
    /// a consumer handler's, a replay's) the sender is woken after the
    /// commit, and the connection is left alone. In a transaction of the
    /// application's own it installs a commit hook and a rollback hook on
    /// the connection — SQLite keeps one of each per connection, so these
    /// replace any the application set there; set yours again after
    /// `write_in` if you use hooks on that connection.
    ///
    /// ```
    /// use eventodb_kit::{Kit, NewMessage};
    /// use serde_json::json;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
    /// let outbox = kit.outbox();
    /// kit.db().write(|tx| {
    ///     tx.execute_batch("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY)")?;
    ///     tx.execute("INSERT INTO orders (id) VALUES ('o-1')", [])?;
    ///     outbox.write_in(tx, "order-o1", &NewMessage::new("Placed", json!({ "id": "o-1" })))?;
    ///     Ok(())
    /// })?;
    /// assert_eq!(outbox.status()?.unsent, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_in(
        &self,
        conn: &Connection,
        stream: &str,
        message: &NewMessage,
    ) -> Result<String> {
        self.write_in_with(conn, stream, message, &WriteOptions::new())
    }

    /// [`Outbox::write_in`] with options (see [`Outbox::write_with`]).
    pub fn write_in_with(
        &self,
        conn: &Connection,
        stream: &str,
        message: &NewMessage,
        options: &WriteOptions,
    ) -> Result<String> {
        let row = prepare(stream, message, options, self.max_payload_bytes)?;
        self.check_joinable(conn)?;
        let id = insert(conn, &self.namespace, &row)?;
        wake_on_commit(conn, &self.hub)?;
        Ok(id)
    }

    /// [`Outbox::write_batch`] inside the caller's open transaction (see
    /// [`Outbox::write_in`]). If one entry fails, none of them was inserted.
    pub fn write_batch_in(
        &self,
        conn: &Connection,
        entries: &[OutboxEntry],
    ) -> Result<Vec<String>> {
        let rows = self.prepare_all(entries)?;
        self.check_joinable(conn)?;
        conn.execute_batch("SAVEPOINT evento_outbox_batch")?;
        let ids = rows
            .iter()
            .map(|row| insert(conn, &self.namespace, row))
            .collect::<Result<Vec<_>>>();
        match ids {
            Ok(ids) => {
                conn.execute_batch("RELEASE evento_outbox_batch")?;
                wake_on_commit(conn, &self.hub)?;
                Ok(ids)
            }
            Err(e) => {
                conn.execute_batch("ROLLBACK TO evento_outbox_batch; RELEASE evento_outbox_batch")?;
                Err(e)
            }
        }
    }

    /// The outbox row of message `id`; [`Error::NotFound`] if there is none
    /// (never written, or deleted by retention or a purge).
    pub fn get(&self, id: &str) -> Result<OutboxRecord> {
        self.db
            .read(|c| record::get(c, &self.namespace, id))?
            .ok_or_else(|| Error::NotFound(format!("outbox message {id}")))
    }

    /// Rows matching `filter`, oldest first — for looking at what waits, what
    /// went out and what was refused.
    ///
    /// ```
    /// use eventodb_kit::outbox::{OutboxFilter, OutboxState};
    /// use eventodb_kit::{Kit, NewMessage};
    ///
    /// let kit = Kit::builder().build()?;
    /// kit.outbox().write("account-7", &NewMessage::new("Opened", serde_json::json!({})))?;
    /// let waiting = kit.outbox().list(&OutboxFilter::new().state(OutboxState::Pending))?;
    /// assert_eq!(waiting[0].stream, "account-7");
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    pub fn list(&self, filter: &OutboxFilter) -> Result<Vec<OutboxRecord>> {
        self.db.read(|c| query::list(c, &self.namespace, filter))
    }

    /// How many rows match `filter` (its limit is ignored).
    pub fn count(&self, filter: &OutboxFilter) -> Result<u64> {
        self.db.read(|c| query::count(c, &self.namespace, filter))
    }

    /// How many messages wait, since when, and how many are dead-lettered.
    pub fn status(&self) -> Result<OutboxStatus> {
        self.db.read(|c| record::status(c, &self.namespace))
    }

    /// Deletes rows that were sent at least `older_than` ago, a few hundred
    /// per transaction; returns how many. (A running sender does this by
    /// itself, see [`SenderConfig::retention`](super::SenderConfig::retention).)
    ///
    /// A deleted row's idempotency key is free again.
    pub fn prune_sent(&self, older_than: Duration) -> Result<u64> {
        let cutoff = now_ms().saturating_sub(millis(older_than));
        retention::prune_sent(&self.db, &self.namespace, cutoff, || false)
    }

    fn prepare_all<'a>(
        &self,
        entries: &'a [OutboxEntry],
    ) -> Result<Vec<super::entry::PreparedRow<'a>>> {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                prepare(
                    e.stream(),
                    e.message(),
                    e.write_options(),
                    self.max_payload_bytes,
                )
                .map_err(|err| match err {
                    Error::InvalidInput(m) => Error::InvalidInput(format!("entry {i}: {m}")),
                    other => other,
                })
            })
            .collect()
    }

    /// `conn` must have a transaction open and be on the kit's database file.
    fn check_joinable(&self, conn: &Connection) -> Result<()> {
        if conn.is_autocommit() {
            return Err(Error::invalid(
                "write_in needs a connection with an open transaction (pass &tx of a rusqlite::Transaction)",
            ));
        }
        let (Some(ours), Some(theirs)) = (&self.db_file, conn.path().filter(|p| !p.is_empty()))
        else {
            return Ok(());
        };
        let theirs = Path::new(theirs);
        if theirs == ours.as_path() || std::fs::canonicalize(theirs).is_ok_and(|p| p == **ours) {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "write_in got a transaction on {}, but the kit's outbox is in {}",
            theirs.display(),
            ours.display()
        )))
    }
}
