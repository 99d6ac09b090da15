//! Retention of processed-event records: deleting the ones older than an
//! age, in small transactions so writers are never held up for long.

use rusqlite::params;

use crate::db::Db;
use crate::error::Result;

use super::position::ConsumerKey;

/// Rows deleted per transaction.
const CHUNK: i64 = 1000;

/// Deletes processed records of `namespace` (of one consumer when `key` is
/// given) processed at or before `cutoff_ms`; returns how many.
pub(crate) fn delete_processed_before(
    db: &Db,
    namespace: &str,
    key: Option<&ConsumerKey>,
    cutoff_ms: i64,
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
                         FROM evento_processed_events
                        WHERE processed_at <= ?1 AND namespace = ?2
                          AND (?3 IS NULL OR category = ?3)
                          AND (?4 IS NULL OR consumer_id = ?4)
                        LIMIT ?5)",
                )?
                .execute(params![cutoff_ms, namespace, category, consumer_id, CHUNK])?)
        })?;
        total += deleted;
        if (deleted as i64) < CHUNK {
            return Ok(total);
        }
    }
}

/// The cutoff for records older than `age`, in Unix milliseconds.
pub(crate) fn cutoff(age: std::time::Duration) -> i64 {
    crate::time::now_ms().saturating_sub(age.as_millis().min(i64::MAX as u128) as i64)
}
