//! Requeued dead letters: [`Dlq::requeue`](crate::Dlq::requeue) marks a
//! consumer's dead letter, and the consumer runs its handler on it once.
//!
//! One transaction per dead letter: on success the handler's writes, the
//! processed record and the removal of the dead letter commit together; on
//! failure the handler's work is rolled back and the dead letter keeps the
//! new error, one more attempt, and loses its requeue mark.

use rusqlite::params;

use crate::db::Db;
use crate::disposition::Disposition;
use crate::dlq::message_from_json;
use crate::error::Result;
use crate::hooks::{Handled, HandlerFailed, Hooks, NextStep};
use crate::lease::Lease;
use crate::time::now_ms;
use crate::write_scope::WriteScope;

use super::handler::{self, BoxedHandler, Savepoints};
use super::position::ConsumerKey;
use super::processed;
use super::stats::Shared;

/// The consumer whose requeued dead letters run: who it is, the lease it
/// holds, and where its processed records reach.
pub(crate) struct Holder<'a> {
    pub(crate) key: &'a ConsumerKey,
    pub(crate) consumer_key: i64,
    pub(crate) lease: &'a mut Lease,
    pub(crate) recorded_through: &'a mut i64,
}

/// Runs the handler once on every requeued dead letter of this consumer,
/// each in a transaction that renews the consumer's lease first.
/// Returns `false` when the lease is lost (another instance works now).
pub(crate) fn run_requeued(
    db: &Db,
    holder: Holder<'_>,
    handler: &mut BoxedHandler,
    shared: &Shared,
    hooks: &Hooks,
) -> Result<bool> {
    let Holder {
        key,
        consumer_key,
        lease,
        recorded_through,
    } = holder;
    let letters: Vec<(i64, String)> = db.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT id, message FROM evento_dead_letters
             WHERE source = 'consumer' AND namespace = ?1 AND category = ?2 AND consumer_id = ?3
               AND requeued_at IS NOT NULL
             ORDER BY id",
        )?;
        let rows = stmt.query_map(params![key.namespace, key.category, key.consumer_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })?;
    for (id, text) in letters {
        if shared.stopping() {
            break;
        }
        let message = match serde_json::from_str(&text)
            .map_err(crate::Error::from)
            .and_then(|v| message_from_json(&v))
        {
            Ok(m) => m,
            Err(e) => {
                fail(db, id, &format!("requeued dead letter is unreadable: {e}"))?;
                continue;
            }
        };
        let mut conn = db.connection()?;
        let scope = WriteScope::enter(db.file())?;
        let tx = conn.transaction()?;
        if !lease.renew(&tx, now_ms())? {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        let outcome = {
            let mut savepoints = Savepoints::prepare(&tx)?;
            let work = savepoints.begin()?;
            if !processed::mark(&tx, consumer_key, &message, now_ms())? {
                // Already handled (say, after a reset): the dead letter is moot.
                work.keep()?;
                None
            } else {
                match handler::run(handler, &message, &tx) {
                    Ok(()) => {
                        work.keep()?;
                        Some(Ok(()))
                    }
                    Err(failure) => {
                        work.undo()?;
                        Some(Err(failure))
                    }
                }
            }
        };
        match outcome {
            None | Some(Ok(())) => {
                delete(&tx, id)?;
                tx.commit()?;
                scope.committed();
                *recorded_through = (*recorded_through).max(message.global_position);
                if outcome.is_some() {
                    shared.requeue_processed();
                    let took = started.elapsed();
                    hooks.emit(|h| {
                        h.on_handled(&Handled {
                            category: &key.category,
                            consumer_id: &key.consumer_id,
                            message: &message,
                            took,
                        })
                    });
                }
            }
            Some(Err(failure)) if matches!(failure.disposition, Disposition::Pause(_)) => {
                // About the store, not the message: it keeps its requeue
                // mark and runs again at the next turn.
                log::warn!(
                    "consumer {:?}: requeued message {} waits for the store: {}",
                    key.consumer_id,
                    message.id,
                    failure.error
                );
                return Ok(true);
            }
            Some(Err(failure)) => {
                drop(tx);
                drop(scope);
                drop(conn);
                shared.handler_failed();
                log::warn!(
                    "consumer {:?}: requeued message {} failed again: {}",
                    key.consumer_id,
                    message.id,
                    failure.error
                );
                fail(db, id, &failure.error)?;
                hooks.emit(|h| {
                    h.on_handler_failed(&HandlerFailed {
                        category: &key.category,
                        consumer_id: &key.consumer_id,
                        message: &message,
                        attempts: 1,
                        error: &failure.error,
                        next: NextStep::KeepDeadLetter,
                    })
                });
            }
        }
    }
    Ok(true)
}

fn delete(conn: &rusqlite::Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM evento_dead_letters WHERE id = ?1", [id])?;
    Ok(())
}

/// Keeps the dead letter with its new error, one more attempt, and no mark.
fn fail(db: &Db, id: i64, error: &str) -> Result<()> {
    db.write(|tx| {
        tx.execute(
            "UPDATE evento_dead_letters
                SET error = ?2, attempts = attempts + 1, last_failed_at = ?3, requeued_at = NULL
              WHERE id = ?1",
            params![id, error, now_ms()],
        )?;
        Ok(())
    })
}
