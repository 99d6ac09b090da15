//! The sender's SQL: reading unsent rows in commit order, recording an
//! attempt before each try, and writing outcomes back (sent, retry later,
//! dead letter) — always inside the dispatcher's short `BEGIN IMMEDIATE`
//! transactions, never across a network call.

use std::collections::{BTreeMap, HashSet};

use rusqlite::{params, Connection, Row};
use serde_json::{json, Value};

use crate::dlq::{self, DeadLetterSource, NewDeadLetter};
use crate::error::Result;
use crate::retry::RetryPolicy;
use crate::time::{format_rfc3339_nanos, from_ms, millis};

/// An unsent outbox row, as the sender handles it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutboxRow {
    pub(crate) seq: i64,
    pub(crate) id: String,
    pub(crate) stream: String,
    pub(crate) message_type: String,
    pub(crate) data: String,
    pub(crate) metadata: Option<String>,
    pub(crate) expected_version: Option<i64>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) created_at_ms: i64,
    /// Attempts recorded so far (including the current one once claimed).
    pub(crate) attempts: u32,
    /// `next_attempt_at` as it was before the claim.
    pub(crate) next_attempt_at_ms: Option<i64>,
    pub(crate) first_failed_at_ms: Option<i64>,
}

fn row_from(r: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        stream: r.get(2)?,
        message_type: r.get(3)?,
        data: r.get(4)?,
        metadata: r.get(5)?,
        expected_version: r.get(6)?,
        idempotency_key: r.get(7)?,
        created_at_ms: r.get(8)?,
        attempts: r.get(9)?,
        next_attempt_at_ms: r.get(10)?,
        first_failed_at_ms: r.get(11)?,
    })
}

/// Up to `limit` unsent, not dead-lettered rows of `namespace` after `after_seq`,
/// in commit order (a range scan of the partial index of unsent rows).
pub(crate) fn unsent_after(
    conn: &Connection,
    namespace: &str,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<OutboxRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, stream, type, data, metadata, expected_version, idempotency_key,
                created_at, attempts, next_attempt_at, first_failed_at
           FROM evento_outbox
          WHERE namespace = ?1 AND sent_at IS NULL AND dead_lettered_at IS NULL AND seq > ?2
          ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![namespace, after_seq, limit as i64], row_from)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records an attempt on each row before it is tried: attempts + 1, and a
/// next attempt time as if it will fail — so a sender that crashes while
/// sending still counts the attempt and backs off. One statement per
/// distinct attempt count (usually one for the whole batch).
pub(crate) fn record_attempts(
    conn: &Connection,
    rows: &mut [OutboxRow],
    now_ms: i64,
    policy: &RetryPolicy,
) -> Result<()> {
    let mut groups: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for row in rows.iter_mut() {
        row.attempts = row.attempts.saturating_add(1);
        groups.entry(row.attempts).or_default().push(row.seq);
    }
    let mut stmt = conn.prepare_cached(
        "UPDATE evento_outbox SET attempts = ?1, next_attempt_at = ?2
          WHERE seq IN (SELECT value FROM json_each(?3))",
    )?;
    for (attempts, seqs) in groups {
        let backoff = millis(policy.delay_after(attempts));
        stmt.execute(params![
            attempts,
            now_ms.saturating_add(backoff),
            serde_json::to_string(&seqs)?
        ])?;
    }
    Ok(())
}

/// What became of a claimed row, to be written back.
#[derive(Debug)]
pub(crate) enum Mark {
    /// The store has it.
    Sent {
        seq: i64,
        created_at_ms: i64,
        /// The store already had it (a resend).
        duplicate: bool,
        /// Message id and stream, for the hooks.
        id: String,
        stream: String,
    },
    /// A transient failure: try again at `next_attempt_at_ms`.
    Retry {
        seq: i64,
        error: String,
        next_attempt_at_ms: i64,
        first_failed_at_ms: i64,
        /// Message id, stream and attempts so far, for the hooks.
        id: String,
        stream: String,
        attempts: u32,
    },
    /// Claimed but not tried: give the attempt back.
    Unclaim {
        seq: i64,
        attempts: u32,
        next_attempt_at_ms: Option<i64>,
    },
    /// Refused for good: into the dead-letter queue.
    DeadLetter {
        row: Box<OutboxRow>,
        error: String,
        first_failed_at_ms: i64,
    },
}

/// The dead letters among `marks`: each one's row and stream.
pub(crate) fn dead_letters(marks: &[Mark]) -> Vec<(i64, String)> {
    marks
        .iter()
        .filter_map(|m| match m {
            Mark::DeadLetter { row, .. } => Some((row.seq, row.stream.clone())),
            _ => None,
        })
        .collect()
}

/// Writes `marks` back, in the caller's transaction.
pub(crate) fn apply(conn: &Connection, namespace: &str, marks: &[Mark], now_ms: i64) -> Result<()> {
    let sent: Vec<i64> = marks
        .iter()
        .filter_map(|m| match m {
            Mark::Sent { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    if !sent.is_empty() {
        conn.prepare_cached(
            "UPDATE evento_outbox SET sent_at = ?1
              WHERE seq IN (SELECT value FROM json_each(?2)) AND sent_at IS NULL",
        )?
        .execute(params![now_ms, serde_json::to_string(&sent)?])?;
    }
    for mark in marks {
        match mark {
            Mark::Sent { .. } => {}
            Mark::Retry {
                seq,
                error,
                next_attempt_at_ms,
                first_failed_at_ms,
                ..
            } => {
                conn.prepare_cached(
                    "UPDATE evento_outbox
                        SET last_error = ?2, next_attempt_at = ?3,
                            first_failed_at = COALESCE(first_failed_at, ?4)
                      WHERE seq = ?1",
                )?
                .execute(params![
                    seq,
                    error,
                    next_attempt_at_ms,
                    first_failed_at_ms
                ])?;
            }
            Mark::Unclaim {
                seq,
                attempts,
                next_attempt_at_ms,
            } => {
                conn.prepare_cached(
                    "UPDATE evento_outbox SET attempts = ?2, next_attempt_at = ?3 WHERE seq = ?1",
                )?
                .execute(params![seq, attempts, next_attempt_at_ms])?;
            }
            Mark::DeadLetter {
                row,
                error,
                first_failed_at_ms,
            } => {
                conn.prepare_cached(
                    "UPDATE evento_outbox
                        SET dead_lettered_at = ?2, last_error = ?3, next_attempt_at = NULL,
                            first_failed_at = COALESCE(first_failed_at, ?4)
                      WHERE seq = ?1",
                )?
                .execute(params![row.seq, now_ms, error, first_failed_at_ms])?;
                let message = dead_letter_message(row);
                dlq::record(
                    conn,
                    &NewDeadLetter {
                        source: DeadLetterSource::Outbox,
                        namespace,
                        message_id: &row.id,
                        stream: &row.stream,
                        message_type: &row.message_type,
                        category: None,
                        consumer_id: None,
                        message: &message,
                        error,
                        attempts: row.attempts,
                        first_failed_at_ms: *first_failed_at_ms,
                    },
                )?;
            }
        }
    }
    Ok(())
}

/// The message of an outbox dead letter, with what a requeue needs to
/// re-create the row should it be gone. (JSON that no longer parses — a row
/// edited by hand — is kept as a string rather than failing the write-back.)
fn dead_letter_message(row: &OutboxRow) -> Value {
    let parse = |text: &str| {
        serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_string()))
    };
    json!({
        "id": row.id,
        "streamName": row.stream,
        "type": row.message_type,
        "data": parse(&row.data),
        "metadata": row.metadata.as_deref().map(parse),
        "expectedVersion": row.expected_version,
        "idempotencyKey": row.idempotency_key,
        "createdAt": format_rfc3339_nanos(from_ms(row.created_at_ms)),
    })
}

/// Streams of `namespace` with a dead-lettered row in the outbox.
pub(crate) fn streams_with_dead_letters(
    conn: &Connection,
    namespace: &str,
) -> Result<HashSet<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT stream FROM evento_outbox
          WHERE namespace = ?1 AND dead_lettered_at IS NOT NULL",
    )?;
    let rows = stmt.query_map([namespace], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Outbox dead letters of `namespace` (changes when someone requeues or purges).
pub(crate) fn dead_letter_count(conn: &Connection, namespace: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM evento_dead_letters WHERE source = 'outbox' AND namespace = ?1",
        )?
        .query_row([namespace], |r| r.get(0))?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::OutboxRow;

    /// A fresh row `seq` of `stream` (id `id-<seq>`, type `T`, data `{}`).
    pub(crate) fn row(seq: i64, stream: &str) -> OutboxRow {
        OutboxRow {
            seq,
            id: format!("id-{seq}"),
            stream: stream.into(),
            message_type: "T".into(),
            data: "{}".into(),
            metadata: None,
            expected_version: None,
            idempotency_key: None,
            created_at_ms: 0,
            attempts: 1,
            next_attempt_at_ms: None,
            first_failed_at_ms: None,
        }
    }
}
