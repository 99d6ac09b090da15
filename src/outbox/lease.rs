//! The sender's lease: one row of `evento_leases` per namespace decides
//! which sender (of any process on the database file) may send.
//!
//! The holder renews the expiry while it runs and clears it on shutdown; a
//! standby takes the lease over once it has expired. Every change of holder
//! increments the fencing token, and the holder checks holder and token in
//! the same transaction as every claim and every "mark sent", so a sender
//! that lost its lease (paused too long, say) never writes on the new
//! holder's behalf.
//!
//! Expiry is a wall-clock time, which a clock set back makes lie far ahead.
//! So a would-be holder also watches the row on its own monotonic clock: a
//! holder that has not renewed for its lease duration is gone, whatever the
//! stored expiry says.

use std::time::{Duration, Instant, SystemTime};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;
use crate::time::from_ms;

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
}

/// Another holder's lease row, as a would-be holder sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    holder: String,
    token: i64,
    expires_at: i64,
    renewed_at: i64,
}

impl Observed {
    /// The holder's lease duration (what it renews by), at least 1 ms.
    fn duration(&self) -> Duration {
        let ms = self.expires_at.saturating_sub(self.renewed_at).max(1);
        Duration::from_millis(ms as u64)
    }
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl Lease {
    pub(crate) fn new(name: String, holder: String, duration: Duration) -> Self {
        Lease {
            name,
            holder,
            duration_ms: millis(duration).max(1),
            token: None,
            watched: None,
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

    /// Takes the lease if it is free, expired, silent (not renewed for its
    /// duration, as this would-be holder has watched it) or already ours,
    /// inside the caller's `BEGIN IMMEDIATE` transaction. Returns whether it
    /// is held.
    pub(crate) fn try_acquire(&mut self, tx: &Connection, now_ms: i64) -> Result<bool> {
        let current = tx
            .prepare_cached(
                "SELECT holder, fencing_token, expires_at, renewed_at
                   FROM evento_leases WHERE name = ?1",
            )?
            .query_row([&self.name], |r| {
                Ok(Observed {
                    holder: r.get(0)?,
                    token: r.get(1)?,
                    expires_at: r.get(2)?,
                    renewed_at: r.get(3)?,
                })
            })
            .optional()?;
        let expires = now_ms.saturating_add(self.duration_ms);
        let token = match current {
            None => {
                tx.prepare_cached(
                    "INSERT INTO evento_leases
                       (name, holder, fencing_token, expires_at, acquired_at, renewed_at)
                     VALUES (?1, ?2, 1, ?3, ?4, ?4)",
                )?
                .execute(params![self.name, self.holder, expires, now_ms])?;
                1
            }
            Some(row) if row.holder == self.holder && Some(row.token) == self.token => {
                self.renew(tx, now_ms)?;
                row.token
            }
            Some(row) if row.expires_at <= now_ms || self.silent(&row) => {
                tx.prepare_cached(
                    "UPDATE evento_leases
                        SET holder = ?2, fencing_token = ?3, expires_at = ?4,
                            acquired_at = ?5, renewed_at = ?5
                      WHERE name = ?1",
                )?
                .execute(params![
                    self.name,
                    self.holder,
                    row.token + 1,
                    expires,
                    now_ms
                ])?;
                row.token + 1
            }
            Some(_) => {
                self.token = None;
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
    /// fencing token), inside the caller's transaction. Returns whether it
    /// is still held; when not, the lease is forgotten.
    pub(crate) fn renew(&mut self, tx: &Connection, now_ms: i64) -> Result<bool> {
        let Some(token) = self.token else {
            return Ok(false);
        };
        let updated = tx
            .prepare_cached(
                "UPDATE evento_leases SET expires_at = ?4, renewed_at = ?5
                  WHERE name = ?1 AND holder = ?2 AND fencing_token = ?3",
            )?
            .execute(params![
                self.name,
                self.holder,
                token,
                now_ms.saturating_add(self.duration_ms),
                now_ms
            ])?;
        if updated == 0 {
            self.token = None;
        }
        Ok(updated == 1)
    }

    /// Gives the lease up (expiry set to 0, so a standby takes it at once;
    /// the row and its fencing token stay).
    pub(crate) fn release(&mut self, conn: &Connection) -> Result<()> {
        if let Some(token) = self.token.take() {
            conn.prepare_cached(
                "UPDATE evento_leases SET expires_at = 0
                  WHERE name = ?1 AND holder = ?2 AND fencing_token = ?3",
            )?
            .execute(params![self.name, self.holder, token])?;
        }
        Ok(())
    }

    /// Forgets the lease without touching the database (after losing it).
    pub(crate) fn forget(&mut self) {
        self.token = None;
    }
}

/// Who holds a lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The holder's id (`pid <pid> sender <uuid>` for outbox senders).
    pub holder: String,
    /// Grows by one with every change of holder.
    pub fencing_token: i64,
    /// The lease ends then unless renewed (the Unix epoch once released).
    pub expires_at: SystemTime,
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
            "SELECT holder, fencing_token, expires_at FROM evento_leases WHERE name = ?1",
        )?
        .query_row([name], |r| {
            Ok(LeaseInfo {
                holder: r.get(0)?,
                fencing_token: r.get(1)?,
                expires_at: from_ms(r.get(2)?),
            })
        })
        .optional()?)
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
    }
}
