//! Retention of processed-event records: deleting the ones older than an
//! age.
//!
//! Old records are found through the `processed_at` index and deleted in
//! pages of [`PAGE`] rows, one short write transaction per page, so a large
//! clean-up never holds the write lock for long.

use rusqlite::params;

use crate::db::Db;
use crate::error::Result;

use super::position::ConsumerKey;

/// Records deleted per write transaction.
const PAGE: i64 = 1000;

/// Deletes processed records of `namespace` (of one consumer when `key` is
/// given) processed at or before `cutoff_ms`; returns how many.
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
    let mut total = 0;
    loop {
        let deleted = db.write(|tx| {
            Ok(tx
                .prepare_cached(
                    "DELETE FROM evento_processed_events
                     WHERE (namespace, category, consumer_id, event_id) IN (
                       SELECT namespace, category, consumer_id, event_id
                         FROM evento_processed_events INDEXED BY evento_processed_events_processed_at
                        WHERE processed_at <= ?1 AND namespace = ?2
                          AND (?3 IS NULL OR category = ?3)
                          AND (?4 IS NULL OR consumer_id = ?4)
                        LIMIT ?5)",
                )?
                .execute(params![cutoff_ms, namespace, category, consumer_id, PAGE])?)
        })?;
        total += deleted;
        if (deleted as i64) < PAGE || stop() {
            return Ok(total);
        }
    }
}

/// The cutoff for records older than `age`, in Unix milliseconds.
pub(crate) fn cutoff(age: std::time::Duration) -> i64 {
    crate::time::now_ms().saturating_sub(age.as_millis().min(i64::MAX as u128) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(db: &Db, consumer: &str, n: usize, processed_at: i64) {
        db.write(|tx| {
            let mut stmt = tx.prepare(
                "INSERT INTO evento_processed_events
                   (namespace, category, consumer_id, event_id, event_type, global_position, processed_at)
                 VALUES ('default', 'order', ?1, ?2, 'T', ?3, ?4)",
            )?;
            for i in 0..n {
                // Old and young records interleave in key order.
                let at = if i % 2 == 0 { processed_at } else { processed_at + 1_000 };
                stmt.execute(params![consumer, format!("{consumer}-{i:05}"), i as i64, at])?;
            }
            Ok(())
        })
        .unwrap();
    }

    fn count(db: &Db) -> i64 {
        db.read(|c| {
            Ok(
                c.query_row("SELECT COUNT(*) FROM evento_processed_events", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .unwrap()
    }

    #[test]
    fn deletes_in_pages_across_the_whole_key_range() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path().join("kit.db")).unwrap();
        insert(&db, "a", 2500, 100);
        insert(&db, "b", 2500, 100);
        let a = ConsumerKey {
            namespace: "default".into(),
            category: "order".into(),
            consumer_id: "a".into(),
        };
        assert_eq!(
            delete_processed_before(&db, "default", Some(&a), 100).unwrap(),
            1250
        );
        assert_eq!(count(&db), 3750, "only a's old records went");
        assert_eq!(
            delete_processed_before(&db, "other", None, i64::MAX).unwrap(),
            0
        );
        assert_eq!(
            delete_processed_before(&db, "default", None, 100).unwrap(),
            1250
        );
        assert_eq!(
            delete_processed_before(&db, "default", None, 1_100).unwrap(),
            2500
        );
        assert_eq!(count(&db), 0);
    }
}
