//! Retention of processed-event records: deleting the ones older than an
//! age.
//!
//! A consumer's record rows are keyed by its consumer key and their first
//! global position, and it records messages in position order, so its
//! oldest rows are at the start of its key range. Retention walks that range
//! from the start and deletes rows up to the first one younger than the
//! cutoff — there is no time index for every transaction to pay for. (A row
//! written out of order — a requeued dead letter handled later — holds back
//! the older ones after it until it is old enough itself.) Deletes run in
//! pages of [`PAGE`] rows, one short write transaction per page, so a large
//! clean-up never holds the write lock for long. Counts are of messages
//! (a row records a transaction's worth).

use rusqlite::{params, Connection, OptionalExtension};

use crate::db::Db;
use crate::error::Result;

use super::position::ConsumerKey;

/// Record rows deleted per write transaction.
const PAGE: i64 = 1000;

/// Deletes processed records of `namespace` (of one consumer when `key` is
/// given) processed at or before `cutoff_ms`; returns how many messages
/// they recorded.
pub(crate) fn delete_processed_before(
    db: &Db,
    namespace: &str,
    key: Option<&ConsumerKey>,
    cutoff_ms: i64,
) -> Result<usize> {
    delete_processed_before_until(db, namespace, key, cutoff_ms, || false)
}

/// Like [`delete_processed_before`], stopping after a page when `stop()` says so.
pub(crate) fn delete_processed_before_until(
    db: &Db,
    namespace: &str,
    key: Option<&ConsumerKey>,
    cutoff_ms: i64,
    stop: impl Fn() -> bool,
) -> Result<usize> {
    let (category, consumer_id) = match key {
        Some(k) => (Some(k.category.as_str()), Some(k.consumer_id.as_str())),
        None => (None, None),
    };
    let consumers: Vec<i64> = db.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT consumer_key FROM evento_consumer_positions
              WHERE namespace = ?1 AND (?2 IS NULL OR category = ?2)
                AND (?3 IS NULL OR consumer_id = ?3)
              ORDER BY consumer_key",
        )?;
        let rows = stmt.query_map(params![namespace, category, consumer_id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })?;
    let mut total = 0;
    for consumer in consumers {
        // Outside the write lock: where the rows young enough to keep begin
        // (the walk reads only the rows it is about to delete).
        let boundary = db.read(|c| first_young(c, consumer, cutoff_ms))?;
        loop {
            let (rows, messages) = db.write(|tx| delete_page(tx, consumer, boundary))?;
            total += messages;
            if stop() {
                return Ok(total);
            }
            if rows < PAGE {
                break;
            }
        }
    }
    Ok(total)
}

/// The first position of `consumer`'s oldest row younger than `cutoff_ms`
/// (`i64::MAX` when there is none).
fn first_young(conn: &Connection, consumer: i64, cutoff_ms: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT first_position FROM evento_processed_events
              WHERE consumer_key = ?1 AND processed_at > ?2
              ORDER BY first_position LIMIT 1",
        )?
        .query_row(params![consumer, cutoff_ms], |r| r.get(0))
        .optional()?
        .unwrap_or(i64::MAX))
}

/// Deletes up to [`PAGE`] of `consumer`'s rows below `boundary`, from the
/// lowest position on; returns how many rows and how many messages they
/// recorded.
fn delete_page(conn: &Connection, consumer: i64, boundary: i64) -> Result<(i64, usize)> {
    let (rows, messages, last): (i64, i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(messages), 0), max(first_position) FROM (
               SELECT first_position, messages FROM evento_processed_events
                WHERE consumer_key = ?1 AND first_position < ?2
                ORDER BY first_position LIMIT ?3)",
        )?
        .query_row(params![consumer, boundary, PAGE], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if let Some(last) = last {
        conn.prepare_cached(
            "DELETE FROM evento_processed_events
              WHERE consumer_key = ?1 AND first_position <= ?2",
        )?
        .execute(params![consumer, last])?;
    }
    Ok((rows, messages.max(0) as usize))
}

/// The cutoff for records older than `age`, in Unix milliseconds.
pub(crate) fn cutoff(age: std::time::Duration) -> i64 {
    crate::time::now_ms().saturating_sub(crate::time::millis(age))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(db: &Db, consumer_id: &str) -> (ConsumerKey, i64) {
        let key = ConsumerKey {
            namespace: "default".into(),
            category: "order".into(),
            consumer_id: consumer_id.into(),
        };
        let (_, id) = db
            .write(|tx| super::super::position::open(tx, &key, 1, None, None))
            .unwrap();
        (key, id)
    }

    /// `n` records, one per position from 1 on (as a consumer handling one
    /// message per transaction writes them), the first `old` of them at
    /// time 100, the rest at 1 100.
    fn insert(db: &Db, consumer: i64, n: i64, old: i64) {
        db.write(|tx| {
            for gp in 1..=n {
                let at = if gp <= old { 100 } else { 1_100 };
                crate::consumer::processed::record(tx, consumer, &[gp], at)?;
            }
            Ok(())
        })
        .unwrap();
    }

    fn count(db: &Db) -> i64 {
        db.read(|c| {
            Ok(c.query_row(
                "SELECT coalesce(sum(messages), 0) FROM evento_processed_events",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap()
    }

    #[test]
    fn deletes_the_old_start_of_each_consumers_range_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path().join("kit.db")).unwrap();
        let (a, a_id) = consumer(&db, "a");
        let (_, b_id) = consumer(&db, "b");
        insert(&db, a_id, 5000, 2500);
        insert(&db, b_id, 5000, 2500);
        assert_eq!(
            delete_processed_before(&db, "default", Some(&a), 100).unwrap(),
            2500
        );
        assert_eq!(count(&db), 7500, "only a's old records went");
        assert_eq!(
            delete_processed_before(&db, "other", None, i64::MAX).unwrap(),
            0
        );
        assert_eq!(
            delete_processed_before(&db, "default", None, 100).unwrap(),
            2500
        );
        assert_eq!(
            delete_processed_before(&db, "default", None, 1_100).unwrap(),
            5000
        );
        assert_eq!(count(&db), 0);
    }

    #[test]
    fn stops_at_the_first_young_record() {
        let db = Db::open_in_memory().unwrap();
        let (_, id) = consumer(&db, "a");
        insert(&db, id, 10, 4);
        // A requeued dead letter at position 2, handled late.
        db.write(|tx| {
            tx.execute(
                "UPDATE evento_processed_events SET processed_at = 5000 WHERE first_position = 2",
                [],
            )?;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            delete_processed_before(&db, "default", None, 100).unwrap(),
            1
        );
        assert_eq!(count(&db), 9);
    }
}
