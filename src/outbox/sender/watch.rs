//! The fallback poll's cheap change check: `PRAGMA data_version` on a
//! connection of its own tells whether any other connection (another
//! process, or this one's pool) committed since the last look.

use rusqlite::Connection;

use super::queue;
use crate::db::{self, Db, DbOptions};
use crate::error::Result;

pub(crate) struct ChangeWatch {
    /// `None` for an in-memory database (one connection; nothing else can
    /// write to it, and every poll simply scans).
    conn: Option<Connection>,
    version: Option<i64>,
    dead_letters: i64,
}

impl ChangeWatch {
    pub(crate) fn open(db: &Db) -> Result<Self> {
        let conn = match db.path() {
            Some(path) => {
                let mut conn = Connection::open(path)?;
                db::configure(&mut conn, &DbOptions::default())?;
                Some(conn)
            }
            None => None,
        };
        Ok(ChangeWatch {
            conn,
            version: None,
            dead_letters: 0,
        })
    }

    /// The outbox dead-letter count last seen.
    pub(crate) fn set_dead_letters(&mut self, count: i64) {
        self.dead_letters = count;
    }

    /// This sender dead-lettered `n` more messages itself.
    pub(crate) fn add_dead_letters(&mut self, n: i64) {
        self.dead_letters += n;
    }

    /// Whether the database changed since the last call, and whether the
    /// number of outbox dead letters did (a requeue or a purge somewhere).
    pub(crate) fn changed(&mut self, db: &Db, namespace: &str) -> Result<(bool, bool)> {
        let count = match &self.conn {
            Some(conn) => {
                let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
                if self.version == Some(version) {
                    return Ok((false, false));
                }
                self.version = Some(version);
                queue::dead_letter_count(conn, namespace)?
            }
            None => db.read(|c| queue::dead_letter_count(c, namespace))?,
        };
        let dead_letters_changed = count != self.dead_letters;
        self.dead_letters = count;
        Ok((true, dead_letters_changed))
    }
}
