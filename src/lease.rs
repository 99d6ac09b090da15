//! Leases: one row of `evento_leases` per singleton job (the outbox sender
//! of a namespace, each consumer) decides which would-be holder — of any
//! process on the database file — does the work, with an OS file lock next
//! to the database so that a holder that dies is replaced at once.
//!
//! # The row
//!
//! The holder renews the expiry while it runs and clears it when it stops; a
//! standby takes the lease over once it has expired. Every change of holder
//! increments the fencing token, and the holder checks holder and token in
//! the same transaction as its work (the sender's claims and write-backs, a
//! consumer's batches), so a holder that lost its lease (paused too long,
//! say) never commits on the new holder's behalf.
//!
//! Expiry is a wall-clock time, which a clock set back makes lie far ahead.
//! So a would-be holder also watches the row on its own monotonic clock: a
//! holder that has not renewed for its lease duration is gone, whatever the
//! stored expiry says.
//!
//! # The file lock
//!
//! A holder also holds an exclusive OS lock (`flock` on Unix, `LockFileEx`
//! on Windows) on the file `<database>.lease-<16 hex digits of the name's
//! sha256>` next to the database, and the row says so (`locked`). The
//! kernel releases the lock when the holder's process ends, however it
//! ends. A would-be holder that gets the lock while the row says its holder
//! has it therefore knows that holder is gone, and takes over at once
//! instead of waiting for the expiry. The lock only ever speeds a takeover
//! up; the row and its fencing token stay what decides, so a holder without
//! the lock (in-memory databases, a directory the process may not create
//! files in, a holder that took over by expiry while the old one still had
//! the lock) works as before, by expiry. Lock files are left in place (an
//! empty file per lease name; deleting one that another process has open
//! would give two processes "the" lock).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::disposition::PauseReason;
use crate::error::Result;
use crate::outbox::PauseState;
use crate::time::{from_ms, millis, to_ms};

/// A lease on a named singleton job, as seen by one would-be holder.
#[derive(Debug)]
pub(crate) struct Lease {
    name: String,
    holder: String,
    duration_ms: i64,
    /// The fencing token while held.
    token: Option<i64>,
    /// Someone else's lease row as last seen, and since when it has not
    /// changed (on the monotonic clock).
    watched: Option<(Observed, Instant)>,
    lock: FileLock,
    /// Whether the holder last seen claims the OS lock (so that a free lock
    /// means it is gone); `true` until a row says otherwise.
    holder_locks: bool,
}

/// The OS lock beside the database.
#[derive(Debug)]
enum FileLock {
    /// Not opened yet (the database's path comes with the first acquire).
    Unopened,
    /// No lock file: an in-memory database, or the file could not be opened.
    Unavailable,
    /// The lock file, and whether this would-be holder has it locked.
    Open { file: File, held: bool },
}

/// Another holder's lease row, as a would-be holder sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    holder: String,
    token: i64,
    expires_at: i64,
    renewed_at: i64,
    locked: bool,
}

impl Observed {
    /// The holder's lease duration (what it renews by), at least 1 ms.
    fn duration(&self) -> Duration {
        let ms = self.expires_at.saturating_sub(self.renewed_at).max(1);
        Duration::from_millis(ms as u64)
    }
}

/// The lock file of lease `name` of the database file `db`.
pub(crate) fn lock_path(db: &Path, name: &str) -> PathBuf {
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let mut file = db.as_os_str().to_owned();
    file.push(format!(".lease-{hex}"));
    PathBuf::from(file)
}

impl Lease {
    pub(crate) fn new(name: String, holder: String, duration: Duration) -> Self {
        Lease {
            name,
            holder,
            duration_ms: millis(duration).max(1),
            token: None,
            watched: None,
            lock: FileLock::Unopened,
            holder_locks: true,
        }
    }

    /// The lease row's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// This holder's id.
    pub(crate) fn holder(&self) -> &str {
        &self.holder
    }

    /// The fencing token, while held.
    pub(crate) fn token(&self) -> Option<i64> {
        self.token
    }

    /// Opens the lock file beside the database `conn` works on, once.
    fn open_lock(&mut self, conn: &Connection) {
        if !matches!(self.lock, FileLock::Unopened) {
            return;
        }
        // SQLite's own absolute file name; "" for in-memory and temporary
        // databases.
        let Some(db) = conn.path().filter(|p| !p.is_empty()) else {
            self.lock = FileLock::Unavailable;
            return;
        };
        let path = lock_path(Path::new(db), &self.name);
        self.lock = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(file) => FileLock::Open { file, held: false },
            Err(e) => {
                log::warn!(
                    "lease {}: no lock file {} ({e}); a holder that dies is replaced after its lease expires",
                    self.name,
                    path.display()
                );
                FileLock::Unavailable
            }
        };
    }

    /// Takes the OS lock if it is free; returns whether this would-be holder
    /// has it.
    fn take_lock(&mut self) -> bool {
        match &mut self.lock {
            FileLock::Open { held: true, .. } => true,
            FileLock::Open { file, held } => match file.try_lock() {
                Ok(()) => {
                    *held = true;
                    true
                }
                Err(TryLockError::WouldBlock) => false,
                Err(TryLockError::Error(e)) => {
                    log::warn!("lease {}: locking its lock file failed: {e}", self.name);
                    false
                }
            },
            _ => false,
        }
    }

    /// Lets go of the OS lock (if held).
    fn drop_lock(&mut self) {
        if let FileLock::Open { file, held } = &mut self.lock {
            if *held {
                if let Err(e) = file.unlock() {
                    log::warn!("lease {}: unlocking its lock file failed: {e}", self.name);
                }
                *held = false;
            }
        }
    }

    /// For a would-be holder between its attempts: whether the holder on
    /// this machine is gone — its OS lock was free and is now this
    /// would-be holder's, so the next [`Lease::try_acquire`] takes over at
    /// once. A cheap system call, no database access; always `false`
    /// without a lock file (and before the first `try_acquire`, which finds
    /// the file), and while the holder last seen works without the lock.
    pub(crate) fn holder_gone(&mut self) -> bool {
        self.token.is_none() && self.holder_locks && self.take_lock()
    }

    /// Takes the lease if it is free, expired, silent (not renewed for its
    /// duration, as this would-be holder has watched it), held by a holder
    /// that is gone (its OS lock is free) or already ours, inside the
    /// caller's `BEGIN IMMEDIATE` transaction. Returns whether it is held.
    pub(crate) fn try_acquire(&mut self, tx: &Connection, now_ms: i64) -> Result<bool> {
        self.open_lock(tx);
        let locked = self.take_lock();
        let current = tx
            .prepare_cached(
                "SELECT holder, fencing_token, expires_at, renewed_at, locked
                   FROM evento_leases WHERE name = ?1",
            )?
            .query_row([&self.name], |r| {
                Ok(Observed {
                    holder: r.get(0)?,
                    token: r.get(1)?,
                    expires_at: r.get(2)?,
                    renewed_at: r.get(3)?,
                    locked: r.get(4)?,
                })
            })
            .optional()?;
        let expires = now_ms.saturating_add(self.duration_ms);
        let token = match current {
            None => {
                tx.prepare_cached(
                    "INSERT INTO evento_leases
                       (name, holder, fencing_token, expires_at, acquired_at, renewed_at, locked)
                     VALUES (?1, ?2, 1, ?3, ?4, ?4, ?5)",
                )?
                .execute(params![
                    self.name,
                    self.holder,
                    expires,
                    now_ms,
                    locked
                ])?;
                1
            }
            Some(row) if row.holder == self.holder && Some(row.token) == self.token => {
                if !self.renew(tx, now_ms)? {
                    return Ok(false);
                }
                row.token
            }
            Some(row)
                if row.expires_at <= now_ms || (locked && row.locked) || self.silent(&row) =>
            {
                if row.expires_at > now_ms {
                    log::info!(
                        "lease {}: holder {} is gone, taking over before its expiry",
                        self.name,
                        row.holder
                    );
                }
                tx.prepare_cached(
                    "UPDATE evento_leases
                        SET holder = ?2, fencing_token = ?3, expires_at = ?4,
                            acquired_at = ?5, renewed_at = ?5, locked = ?6,
                            pause_reason = NULL, paused_since = NULL, pause_error = NULL
                      WHERE name = ?1",
                )?
                .execute(params![
                    self.name,
                    self.holder,
                    row.token + 1,
                    expires,
                    now_ms,
                    locked
                ])?;
                row.token + 1
            }
            Some(row) => {
                // The holder is alive (or works without a lock): leave the OS
                // lock to it.
                self.holder_locks = row.locked;
                self.token = None;
                self.drop_lock();
                return Ok(false);
            }
        };
        self.token = Some(token);
        self.watched = None;
        Ok(true)
    }

    /// Whether the lease row `observed` has stayed the same for a whole
    /// lease duration of its holder, by the monotonic clock.
    fn silent(&mut self, observed: &Observed) -> bool {
        match &self.watched {
            Some((seen, since)) if seen == observed => since.elapsed() >= observed.duration(),
            _ => {
                self.watched = Some((observed.clone(), Instant::now()));
                false
            }
        }
    }

    /// Extends the lease if this holder still has it (same holder, same
    /// fencing token), inside the caller's transaction, and takes the OS
    /// lock if it did not have it yet. Returns whether it is still held;
    /// when not, the lease is forgotten.
    pub(crate) fn renew(&mut self, tx: &Connection, now_ms: i64) -> Result<bool> {
        let Some(token) = self.token else {
            return Ok(false);
        };
        let locked = self.take_lock();
        let updated = tx
            .prepare_cached(
                "UPDATE evento_leases SET expires_at = ?4, renewed_at = ?5, locked = ?6
                  WHERE name = ?1 AND holder = ?2 AND fencing_token = ?3",
            )?
            .execute(params![
                self.name,
                self.holder,
                token,
                now_ms.saturating_add(self.duration_ms),
                now_ms,
                locked
            ])?;
        if updated == 0 {
            self.forget();
        }
        Ok(updated == 1)
    }

    /// Stores the holder's pause with the lease (`None`: not paused), inside
    /// the caller's transaction, if this holder still has it (same holder,
    /// same fencing token); returns whether it did. The error is cut to
    /// [`PAUSE_ERROR_CHARS`].
    pub(crate) fn store_pause(&self, tx: &Connection, pause: Option<&PauseState>) -> Result<bool> {
        let Some(token) = self.token else {
            return Ok(false);
        };
        let (reason, since, error) = match pause {
            Some(p) => (
                Some(p.reason.label()),
                Some(to_ms(p.since)),
                Some(short_error(&p.error)),
            ),
            None => (None, None, None),
        };
        let updated = tx
            .prepare_cached(
                "UPDATE evento_leases SET pause_reason = ?4, paused_since = ?5, pause_error = ?6
                  WHERE name = ?1 AND holder = ?2 AND fencing_token = ?3",
            )?
            .execute(params![self.name, self.holder, token, reason, since, error])?;
        Ok(updated == 1)
    }

    /// Gives the lease up (expiry set to 0, so a standby takes it at once;
    /// the row and its fencing token stay, the pause is cleared) and lets go
    /// of the OS lock.
    pub(crate) fn release(&mut self, conn: &Connection) -> Result<()> {
        if let Some(token) = self.token.take() {
            conn.prepare_cached(
                "UPDATE evento_leases
                    SET expires_at = 0, locked = 0,
                        pause_reason = NULL, paused_since = NULL, pause_error = NULL
                  WHERE name = ?1 AND holder = ?2 AND fencing_token = ?3",
            )?
            .execute(params![self.name, self.holder, token])?;
        }
        self.drop_lock();
        Ok(())
    }

    /// Forgets the lease without touching the database (after losing it),
    /// and lets go of the OS lock.
    pub(crate) fn forget(&mut self) {
        self.token = None;
        self.drop_lock();
    }
}

/// Who holds a lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// The holder's id (`pid <pid> sender <uuid>` for outbox senders,
    /// `pid <pid> consumer <uuid>` for consumers).
    pub holder: String,
    /// Grows by one with every change of holder.
    pub fencing_token: i64,
    /// The lease ends then unless renewed (the Unix epoch once released).
    pub expires_at: SystemTime,
    /// The holder's pause, as it last stored it: an outbox sender that
    /// cannot work because the store is unreachable or refuses its token
    /// or certificate says so with its lease (written when the pause
    /// starts, changes or ends, and with every renewal; cleared on
    /// release). Only meaningful while the lease is held; `None` for
    /// consumers' leases.
    pub pause: Option<PauseState>,
}

impl LeaseInfo {
    /// Whether the lease is held at `now` (not expired or released).
    pub fn is_held_at(&self, now: SystemTime) -> bool {
        self.expires_at > now
    }
}

/// The lease row `name`, if any.
pub(crate) fn read(conn: &Connection, name: &str) -> Result<Option<LeaseInfo>> {
    Ok(conn
        .prepare_cached(
            "SELECT holder, fencing_token, expires_at, pause_reason, paused_since, pause_error
               FROM evento_leases WHERE name = ?1",
        )?
        .query_row([name], |r| {
            let reason: Option<String> = r.get(3)?;
            let since: Option<i64> = r.get(4)?;
            let error: Option<String> = r.get(5)?;
            Ok(LeaseInfo {
                holder: r.get(0)?,
                fencing_token: r.get(1)?,
                expires_at: from_ms(r.get(2)?),
                pause: reason.map(|reason| {
                    PauseState::new(
                        // A reason a newer build knows: the store cannot be
                        // used either way.
                        PauseReason::from_label(&reason).unwrap_or(PauseReason::Unreachable),
                        error.unwrap_or_default(),
                        from_ms(since.unwrap_or_default()),
                    )
                }),
            })
        })
        .optional()?)
}

/// Longest pause error stored with a lease, in characters.
pub(crate) const PAUSE_ERROR_CHARS: usize = 300;

/// `error` cut to [`PAUSE_ERROR_CHARS`] (with `…` when cut).
fn short_error(error: &str) -> String {
    match error.char_indices().nth(PAUSE_ERROR_CHARS) {
        Some((at, _)) => format!("{}…", &error[..at]),
        None => error.to_string(),
    }
}

/// A holder id: `pid <pid> <role> <uuid v4>` (unique per would-be holder).
pub(crate) fn holder_id(role: &str) -> String {
    format!("pid {} {role} {}", std::process::id(), uuid::Uuid::new_v4())
}

/// `pid <pid>` of a holder id `pid <pid> <role> <uuid>` (the process that
/// holds a lease), or the id as it is.
pub(crate) fn holder_process(holder: &str) -> String {
    let mut words = holder.split(' ');
    match (words.next(), words.next()) {
        (Some("pid"), Some(pid)) => format!("pid {pid}"),
        _ => holder.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn one_holder_at_a_time_and_takeover_after_expiry() {
        let db = Db::open_in_memory().unwrap();
        let mut a = Lease::new("job".into(), "a".into(), Duration::from_millis(100));
        let mut b = Lease::new("job".into(), "b".into(), Duration::from_millis(100));
        let t0 = 1_000_000;
        db.write(|tx| {
            assert!(a.try_acquire(tx, t0)?);
            assert!(!b.try_acquire(tx, t0 + 50)?, "still a's");
            assert!(a.renew(tx, t0 + 60)?);
            assert!(!b.try_acquire(tx, t0 + 150)?, "renewed until t0 + 160");
            assert!(b.try_acquire(tx, t0 + 160)?, "expired: b takes over");
            assert_eq!(b.token(), Some(2), "fencing token grows");
            assert!(!a.renew(tx, t0 + 170)?, "a lost it");
            assert_eq!(a.token(), None);
            b.release(tx)?;
            assert!(a.try_acquire(tx, t0 + 171)?, "released: free at once");
            assert_eq!(a.token(), Some(3));
            let row = read(tx, "job")?.unwrap();
            assert_eq!((row.holder.as_str(), row.fencing_token), ("a", 3));
            Ok(())
        })
        .unwrap();
        assert!(!a.holder_gone(), "no lock file in memory");
    }

    fn locked_column(db: &Db) -> bool {
        db.read(|c| {
            Ok(c.query_row(
                "SELECT locked FROM evento_leases WHERE name = 'job'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap()
    }

    #[test]
    fn a_holder_whose_lock_is_free_is_gone_and_replaced_before_its_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        let db = Db::open(&path).unwrap();
        let hour = Duration::from_secs(3600);
        let mut a = Lease::new("job".into(), "a".into(), hour);
        let mut b = Lease::new("job".into(), "b".into(), hour);
        let t0 = 1_000_000;
        assert!(db.write(|tx| a.try_acquire(tx, t0)).unwrap());
        assert!(locked_column(&db), "the row says its holder has the lock");
        assert!(lock_path(&path, "job").is_file());
        assert!(!db.write(|tx| b.try_acquire(tx, t0 + 1)).unwrap());
        assert!(!b.holder_gone(), "a is alive: its lock is taken");

        // a dies: its lock goes with its file handle (as with its process).
        drop(a);
        assert!(b.holder_gone());
        assert!(
            db.write(|tx| b.try_acquire(tx, t0 + 2)).unwrap(),
            "taken over an hour before the expiry"
        );
        assert_eq!(b.token(), Some(2));
    }

    #[test]
    fn a_live_holder_without_the_lock_is_not_taken_over_by_one_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path().join("app.db")).unwrap();
        let hour = Duration::from_secs(3600);
        let mut a = Lease::new("job".into(), "a".into(), hour);
        let mut b = Lease::new("job".into(), "b".into(), Duration::from_millis(10));
        let mut c = Lease::new("job".into(), "c".into(), hour);
        let t0 = 1_000_000;
        assert!(db.write(|tx| b.try_acquire(tx, t0)).unwrap());
        // b stalls past its expiry and a takes over, while b still has the
        // lock: a holds the row without it.
        assert!(db.write(|tx| a.try_acquire(tx, t0 + 20)).unwrap());
        assert!(!locked_column(&db));
        // A third would-be holder that gets the lock must not take a live
        // lease whose row does not claim the lock, nor keep probing it.
        b.forget();
        assert!(!db.write(|tx| c.try_acquire(tx, t0 + 30)).unwrap());
        assert!(!c.holder_gone(), "a holder without the lock is not probed");
        // a picks the lock up with its next renewal.
        assert!(db.write(|tx| a.renew(tx, t0 + 40)).unwrap());
        assert!(locked_column(&db));
        assert!(!c.holder_gone());
    }
}
