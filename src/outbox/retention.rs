//! Retention: sent rows older than a configured age are deleted, in small
//! batches so the write lock is never held for long.

use rusqlite::params;

use crate::db::Db;
use crate::error::Result;

/// Rows deleted per transaction.
pub(crate) const PRUNE_BATCH: i64 = 500;

/// Deletes rows of `namespace` sent at or before `sent_before_ms`, `PRUNE_BATCH`
/// at a time, each batch in its own short transaction. Stops early when
/// `stop()` says so. Returns how many rows were deleted.
pub(crate) fn prune_sent(
    db: &Db,
    namespace: &str,
    sent_before_ms: i64,
    stop: impl Fn() -> bool,
) -> Result<u64> {
    let mut total = 0u64;
    loop {
        let deleted = db.write(|tx| {
            Ok(tx
                .prepare_cached(
                    "DELETE FROM evento_outbox WHERE seq IN (
                       SELECT seq FROM evento_outbox
                        WHERE sent_at IS NOT NULL AND sent_at <= ?1 AND namespace = ?2
                        LIMIT ?3)",
                )?
                .execute(params![sent_before_ms, namespace, PRUNE_BATCH])?)
        })?;
        total += deleted as u64;
        if (deleted as i64) < PRUNE_BATCH || stop() {
            return Ok(total);
        }
    }
}
