//! Retention of processed-event records: deleting the ones older than an
//! age.
//!
//! There is no index on `processed_at` (it would double the cost of the
//! record every handled message writes), so retention walks the primary key
//! in pages: it reads a page of old keys outside any write lock, deletes them
//! in one short transaction, and goes on after the last key it saw — one pass
//! over the records, writers held up only for the deletes.

use rusqlite::params;

use crate::db::Db;
use crate::error::Result;

use super::position::ConsumerKey;

/// Keys read and deleted per step.
const PAGE: i64 = 1000;

/// A processed record's key after the namespace.
type RecordKey = (String, String, String);

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
    let mut after: RecordKey = match key {
        Some(k) => (k.category.clone(), k.consumer_id.clone(), String::new()),
        None => (String::new(), String::new(), String::new()),
    };
    let mut total = 0;
    loop {
        let page = old_keys(db, namespace, key, &after, cutoff_ms)?;
        let Some(last) = page.last() else {
            return Ok(total);
        };
        after = last.clone();
        total += db.write(|tx| {
            let mut delete = tx.prepare_cached(
                "DELETE FROM evento_processed_events
                 WHERE namespace = ?1 AND category = ?2 AND consumer_id = ?3 AND event_id = ?4
                   AND processed_at <= ?5",
            )?;
            let mut deleted = 0;
            for (category, consumer_id, event_id) in &page {
                deleted += delete.execute(params![
                    namespace,
                    category,
                    consumer_id,
                    event_id,
                    cutoff_ms
                ])?;
            }
            Ok(deleted)
        })?;
        if (page.len() as i64) < PAGE || stop() {
            return Ok(total);
        }
    }
}

/// The next page of keys after `after` whose records are old enough.
fn old_keys(
    db: &Db,
    namespace: &str,
    key: Option<&ConsumerKey>,
    after: &RecordKey,
    cutoff_ms: i64,
) -> Result<Vec<RecordKey>> {
    db.read(|c| {
        let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
        let keys = match key {
            Some(k) => c
                .prepare_cached(
                    "SELECT category, consumer_id, event_id FROM evento_processed_events
                     WHERE namespace = ?1 AND category = ?2 AND consumer_id = ?3
                       AND event_id > ?4 AND processed_at <= ?5
                     ORDER BY event_id LIMIT ?6",
                )?
                .query_map(
                    params![
                        namespace,
                        k.category,
                        k.consumer_id,
                        after.2,
                        cutoff_ms,
                        PAGE
                    ],
                    row,
                )?
                .collect::<rusqlite::Result<Vec<RecordKey>>>()?,
            None => c
                .prepare_cached(
                    "SELECT category, consumer_id, event_id FROM evento_processed_events
                     WHERE namespace = ?1 AND (category, consumer_id, event_id) > (?2, ?3, ?4)
                       AND processed_at <= ?5
                     ORDER BY category, consumer_id, event_id LIMIT ?6",
                )?
                .query_map(
                    params![namespace, after.0, after.1, after.2, cutoff_ms, PAGE],
                    row,
                )?
                .collect::<rusqlite::Result<Vec<RecordKey>>>()?,
        };
        Ok(keys)
    })
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
