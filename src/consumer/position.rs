//! Consumer positions and processed-event records in the kit's database, and
//! [`Checkpoints`], the public view of them (get, set, reset — to a position
//! or to a time).
//!
//! A position is the global position of the last message a consumer has
//! handled (or passed over); it fetches from position + 1. Its row also
//! gives the consumer an integer key (`consumer_key`, never reused), which
//! names it in its processed records (see `processed`) and its lease.

use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OptionalExtension};

use crate::consumer_group::ConsumerGroup;
use crate::error::{Error, Result};
use crate::kit::Kit;
use crate::store::{CategoryQuery, MessageStore};
use crate::time::{from_ms, now_ms};

use super::processed;
use super::retention;

/// Identifies one consumer's rows: namespace, category, consumer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerKey {
    pub(crate) namespace: String,
    pub(crate) category: String,
    pub(crate) consumer_id: String,
}

/// A consumer's saved position.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checkpoint {
    /// The category the consumer follows.
    pub category: String,
    /// The consumer's id.
    pub consumer_id: String,
    /// Global position of the last message handled or passed over (0: none).
    pub position: i64,
    /// The consumer group the position was saved with, if any.
    pub consumer_group: Option<ConsumerGroup>,
    /// When the position last changed.
    pub updated_at: SystemTime,
}

/// The group a position was saved with. In the table, `group_size` 0 means
/// "no group" and NULL means "not recorded" (after a checkpoint was set by
/// hand: the next start records its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SavedGroup {
    NotRecorded,
    Recorded(Option<ConsumerGroup>),
}

fn group_columns(group: Option<ConsumerGroup>) -> (i64, i64) {
    group.map_or((0, 0), |g| (g.member(), g.size()))
}

/// Reads a consumer's saved position and group.
fn load_row(conn: &Connection, key: &ConsumerKey) -> Result<Option<(Checkpoint, SavedGroup)>> {
    let row = conn
        .prepare_cached(
            "SELECT position, group_member, group_size, updated_at FROM evento_consumer_positions
             WHERE namespace = ?1 AND category = ?2 AND consumer_id = ?3",
        )?
        .query_row(params![key.namespace, key.category, key.consumer_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    let Some((position, member, size, updated_at)) = row else {
        return Ok(None);
    };
    let saved = match (member, size) {
        (_, None) => SavedGroup::NotRecorded,
        (_, Some(0)) => SavedGroup::Recorded(None),
        (m, Some(s)) => SavedGroup::Recorded(Some(ConsumerGroup::new(m.unwrap_or(0), s)?)),
    };
    let checkpoint = Checkpoint {
        category: key.category.clone(),
        consumer_id: key.consumer_id.clone(),
        position,
        consumer_group: match saved {
            SavedGroup::Recorded(g) => g,
            SavedGroup::NotRecorded => None,
        },
        updated_at: from_ms(updated_at),
    };
    Ok(Some((checkpoint, saved)))
}

/// Reads a consumer's saved position.
pub(crate) fn load(conn: &Connection, key: &ConsumerKey) -> Result<Option<Checkpoint>> {
    Ok(load_row(conn, key)?.map(|(checkpoint, _)| checkpoint))
}

/// Where a consumer starts: its saved position, or `start - 1` for a fresh
/// one (saved now, with its group), and its consumer key. Refuses a group
/// that differs from the saved one. Records the consumer's correlation
/// filter (for lag counts).
pub(crate) fn open(
    conn: &Connection,
    key: &ConsumerKey,
    start: i64,
    group: Option<ConsumerGroup>,
    correlation: Option<&str>,
) -> Result<(i64, i64)> {
    let position = open_position(conn, key, start, group)?;
    let consumer_key = conn
        .prepare_cached(
            "UPDATE evento_consumer_positions SET correlation = ?4
             WHERE namespace = ?1 AND category = ?2 AND consumer_id = ?3
             RETURNING consumer_key",
        )?
        .query_row(
            params![key.namespace, key.category, key.consumer_id, correlation],
            |r| r.get(0),
        )?;
    Ok((position, consumer_key))
}

/// The name of the lease of the consumer with key `consumer_key`.
pub(crate) fn lease_name(consumer_key: i64) -> String {
    format!("consumer:{consumer_key}")
}

/// The position saved for the consumer with key `consumer_key`.
pub(crate) fn load_by_key(conn: &Connection, consumer_key: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT position FROM evento_consumer_positions WHERE consumer_key = ?1")?
        .query_row([consumer_key], |r| r.get(0))
        .optional()?)
}

fn open_position(
    conn: &Connection,
    key: &ConsumerKey,
    start: i64,
    group: Option<ConsumerGroup>,
) -> Result<i64> {
    let (member, size) = group_columns(group);
    match load_row(conn, key)? {
        Some((saved, SavedGroup::Recorded(saved_group))) if saved_group != group => {
            Err(Error::invalid(format!(
                "consumer {:?} of category {:?} saved its position {} as {}, but is now configured as {}; \
                 a changed group reassigns streams, so set or reset its checkpoint first \
                 (kit.checkpoints().set(..), .reset_to_position(..) or .reset(..))",
                key.consumer_id,
                key.category,
                saved.position,
                describe_group(saved_group),
                describe_group(group),
            )))
        }
        Some((saved, SavedGroup::Recorded(_))) => Ok(saved.position),
        Some((saved, SavedGroup::NotRecorded)) => {
            conn.prepare_cached(
                "UPDATE evento_consumer_positions SET group_member = ?4, group_size = ?5
                 WHERE namespace = ?1 AND category = ?2 AND consumer_id = ?3",
            )?
            .execute(params![key.namespace, key.category, key.consumer_id, member, size])?;
            Ok(saved.position)
        }
        None => {
            let position = start.max(1) - 1;
            conn.prepare_cached(
                "INSERT INTO evento_consumer_positions
                   (namespace, category, consumer_id, position, group_member, group_size, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                key.namespace,
                key.category,
                key.consumer_id,
                position,
                member,
                size,
                now_ms(),
            ])?;
            Ok(position)
        }
    }
}

fn describe_group(group: Option<ConsumerGroup>) -> String {
    match group {
        Some(g) => format!("member {} of a group of {}", g.member(), g.size()),
        None => "a consumer without a group".to_string(),
    }
}

/// Moves a running consumer's position forward to `position` (never back:
/// only an explicit [`set`] does that), inside the caller's transaction,
/// and notes the time of the progress.
///
/// Errors: [`Error::NotFound`] when the position row is gone (the
/// checkpoint was reset while the consumer ran).
pub(crate) fn advance(conn: &Connection, consumer_key: i64, position: i64) -> Result<()> {
    advance_with(conn, consumer_key, position, None, now_ms())
}

/// [`advance`] at `now_ms`, raising the row's `recorded_through` to
/// `recorded_through` as well when given (the highest position of the
/// processed records the same transaction wrote): one update of the
/// position row per batch transaction.
///
/// Errors: as [`advance`].
pub(crate) fn advance_with(
    conn: &Connection,
    consumer_key: i64,
    position: i64,
    recorded_through: Option<i64>,
    now_ms: i64,
) -> Result<()> {
    let updated = conn
        .prepare_cached(
            "UPDATE evento_consumer_positions
                SET position = max(position, ?2), updated_at = ?3,
                    recorded_through = max(recorded_through, ?4)
              WHERE consumer_key = ?1",
        )?
        .execute(params![
            consumer_key,
            position,
            now_ms,
            // 0 leaves it (it is never below 0).
            recorded_through.unwrap_or(0)
        ])?;
    if updated == 0 {
        return Err(Error::NotFound(format!(
            "the position of consumer key {consumer_key} (its checkpoint was reset while it ran)"
        )));
    }
    Ok(())
}

/// Sets a consumer's position to `position`, back or forward (inside the
/// caller's transaction): for explicit moves of a checkpoint.
pub(crate) fn set(conn: &Connection, key: &ConsumerKey, position: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO evento_consumer_positions
           (namespace, category, consumer_id, position, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (namespace, category, consumer_id)
         DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
    )?
    .execute(params![
        key.namespace,
        key.category,
        key.consumer_id,
        position,
        now_ms()
    ])?;
    Ok(())
}

/// The consumer key of `key`, if it has a position row.
pub(crate) fn key_of(conn: &Connection, key: &ConsumerKey) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT consumer_key FROM evento_consumer_positions
              WHERE namespace = ?1 AND category = ?2 AND consumer_id = ?3",
        )?
        .query_row(params![key.namespace, key.category, key.consumer_id], |r| {
            r.get(0)
        })
        .optional()?)
}

/// The position to resume from so that the first message fetched from
/// `category` is the first one recorded at or after `time`.
///
/// Message times grow with global positions, so this is a galloping binary
/// search with one-message `category.get` probes: a few dozen reads even for
/// a long history.
pub(crate) fn position_at_time(
    store: &dyn MessageStore,
    category: &str,
    time: SystemTime,
) -> Result<i64> {
    let at_or_after = |gp: i64| -> Result<bool> {
        let first =
            store.get_category(category, &CategoryQuery::new().position(gp).batch_size(1))?;
        Ok(first.first().is_none_or(|m| m.time >= time))
    };
    // Smallest gp with at_or_after(gp); it is monotone in gp.
    if at_or_after(1)? {
        return Ok(0);
    }
    let (mut lo, mut hi) = (1i64, 2i64);
    while !at_or_after(hi)? {
        lo = hi;
        hi = hi.saturating_mul(2);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if at_or_after(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi - 1)
}

/// Consumer checkpoints of one namespace: read, move and reset them.
///
/// Change the checkpoint of a consumer only while it is not running (its
/// thread would overwrite the position with its own progress).
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let kit = eventodb_kit::Kit::builder().database(dir.path().join("app.db")).build()?;
/// let checkpoints = kit.checkpoints();
/// assert!(checkpoints.get("account", "projector")?.is_none());
/// checkpoints.set("account", "projector", 41)?; // the next run starts at 42
/// assert_eq!(checkpoints.get("account", "projector")?.unwrap().position, 41);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Checkpoints {
    pub(super) kit: Kit,
}

impl Checkpoints {
    pub(crate) fn new(kit: Kit) -> Self {
        Checkpoints { kit }
    }

    pub(super) fn key(&self, category: &str, consumer_id: &str) -> ConsumerKey {
        ConsumerKey {
            namespace: self.kit.namespace().to_string(),
            category: category.to_string(),
            consumer_id: consumer_id.to_string(),
        }
    }

    /// The saved checkpoint of `consumer_id` on `category`, if it ever ran.
    pub fn get(&self, category: &str, consumer_id: &str) -> Result<Option<Checkpoint>> {
        let key = self.key(category, consumer_id);
        self.kit.db().read(|c| load(c, &key))
    }

    /// Every saved checkpoint of the namespace, by category and consumer id.
    pub fn list(&self) -> Result<Vec<Checkpoint>> {
        let namespace = self.kit.namespace().to_string();
        let keys: Vec<(String, String)> = self.kit.db().read(|c| {
            let mut stmt = c.prepare(
                "SELECT category, consumer_id FROM evento_consumer_positions
                 WHERE namespace = ?1 ORDER BY category, consumer_id",
            )?;
            let rows = stmt.query_map([&namespace], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        let mut out = Vec::with_capacity(keys.len());
        for (category, consumer_id) in keys {
            if let Some(cp) = self.get(&category, &consumer_id)? {
                out.push(cp);
            }
        }
        Ok(out)
    }

    /// Moves the checkpoint to `position` (the next run fetches from
    /// `position + 1`) and forgets the saved consumer group, so the consumer
    /// may start with a different one.
    ///
    /// Processed records are kept: messages the consumer already handled are
    /// still skipped. To handle them again, use [`Checkpoints::reset_to_position`].
    pub fn set(&self, category: &str, consumer_id: &str, position: i64) -> Result<()> {
        if position < 0 {
            return Err(Error::invalid("a checkpoint position must not be negative"));
        }
        let key = self.key(category, consumer_id);
        self.kit.db().write(|tx| {
            set(tx, &key, position)?;
            clear_group(tx, &key)
        })
    }

    /// Forgets the consumer entirely — position, group and processed records:
    /// its next run starts afresh at its configured start position and handles
    /// every message again.
    pub fn reset(&self, category: &str, consumer_id: &str) -> Result<()> {
        let key = self.key(category, consumer_id);
        self.kit.db().write(|tx| {
            forget_processed_after(tx, &key, 0)?;
            tx.execute(
                "DELETE FROM evento_consumer_positions
                 WHERE namespace = ?1 AND category = ?2 AND consumer_id = ?3",
                params![key.namespace, key.category, key.consumer_id],
            )?;
            Ok(())
        })
    }

    /// Moves the consumer back (or forward) to `position` and forgets its
    /// processed records after it, so the next run handles every message after
    /// `position` again. The saved group is forgotten, as with [`Checkpoints::set`].
    pub fn reset_to_position(
        &self,
        category: &str,
        consumer_id: &str,
        position: i64,
    ) -> Result<()> {
        if position < 0 {
            return Err(Error::invalid("a checkpoint position must not be negative"));
        }
        let key = self.key(category, consumer_id);
        self.kit.db().write(|tx| {
            set(tx, &key, position)?;
            clear_group(tx, &key)?;
            forget_processed_after(tx, &key, position)
        })
    }

    /// Like [`Checkpoints::reset_to_position`], to just before the first
    /// message of `category` recorded at or after `time`. Returns the position.
    ///
    /// The store keeps times to the millisecond (EventoDB's SQLite backend: to
    /// the second).
    pub fn reset_to_time(
        &self,
        category: &str,
        consumer_id: &str,
        time: SystemTime,
    ) -> Result<i64> {
        let position = position_at_time(self.kit.store().as_ref(), category, time)?;
        self.reset_to_position(category, consumer_id, position)?;
        Ok(position)
    }

    /// The position [`Checkpoints::reset_to_time`] would move to: just
    /// before the first message of `category` recorded at or after `time`
    /// (the head of the category when there is none).
    pub fn position_at_time(&self, category: &str, time: SystemTime) -> Result<i64> {
        position_at_time(self.kit.store().as_ref(), category, time)
    }

    /// Deletes processed records (of every consumer in the namespace) older
    /// than `age`; returns how many. Positions are unaffected.
    ///
    /// A processed record only matters while its message could be delivered
    /// again — after a position moved back or a crash between store and kit —
    /// so old ones can go. Consumers also do this themselves (see
    /// [`ConsumerBuilder::processed_retention`](super::ConsumerBuilder::processed_retention)).
    pub fn delete_processed_older_than(&self, age: Duration) -> Result<usize> {
        let cutoff = retention::cutoff(age);
        retention::delete_processed_before(self.kit.db(), self.kit.namespace(), None, cutoff)
    }
}

fn clear_group(conn: &Connection, key: &ConsumerKey) -> Result<()> {
    conn.execute(
        "UPDATE evento_consumer_positions SET group_member = NULL, group_size = NULL
         WHERE namespace = ?1 AND category = ?2 AND consumer_id = ?3",
        params![key.namespace, key.category, key.consumer_id],
    )?;
    Ok(())
}

fn forget_processed_after(conn: &Connection, key: &ConsumerKey, position: i64) -> Result<()> {
    if let Some(consumer_key) = key_of(conn, key)? {
        processed::forget_between(conn, consumer_key, position.saturating_add(1), i64::MAX)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn a_running_consumer_never_moves_its_position_back_only_an_explicit_set_does() {
        let db = Db::open_in_memory().unwrap();
        let key = ConsumerKey {
            namespace: "default".into(),
            category: "order".into(),
            consumer_id: "ledger".into(),
        };
        let (_, id) = db.write(|tx| open(tx, &key, 1, None, None)).unwrap();
        let position = |db: &Db| db.read(|c| load_by_key(c, id)).unwrap();
        db.write(|tx| advance(tx, id, 10)).unwrap();
        // A second worker that lagged behind (before leases made that
        // impossible) saving its older position.
        db.write(|tx| advance(tx, id, 4)).unwrap();
        assert_eq!(position(&db), Some(10));
        db.write(|tx| set(tx, &key, 4)).unwrap();
        assert_eq!(position(&db), Some(4));
        db.write(|tx| {
            tx.execute("DELETE FROM evento_consumer_positions", [])?;
            Ok(())
        })
        .unwrap();
        assert!(matches!(
            db.write(|tx| advance(tx, id, 11)),
            Err(Error::NotFound(_))
        ));
    }
}
