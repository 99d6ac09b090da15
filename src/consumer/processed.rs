//! Processed records: which messages a consumer's handler has handled, so a
//! message delivered again (after its position moved back, or a requeued
//! dead letter already handled) is skipped without running the handler.
//!
//! A message is named by its global position (unique within a namespace),
//! a consumer by its consumer key. A transaction's handled messages are
//! recorded in one row: the first and last global positions and the
//! positions themselves, as a JSON array of offsets from the first, so
//! recording costs one insert per transaction, not per message, and every
//! question is still answered exactly per message.
//!
//! * A row spans at most [`MAX_SPAN`] global positions (a transaction whose
//!   messages lie further apart is recorded in several rows), so the rows
//!   that may hold a position are found with a bounded range of the primary
//!   key.
//! * The consumer's position row keeps `recorded_through`, the highest
//!   position any of its records holds: a consumer reading past it (the
//!   usual case) has nothing to look up.

use std::fmt::Write as _;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::message::Message;

/// The widest range of global positions one record row covers.
pub(crate) const MAX_SPAN: i64 = 1 << 16;

/// One record row.
struct Row {
    first: i64,
    positions: Vec<i64>,
    processed_at: i64,
}

fn offsets_json(first: i64, positions: &[i64]) -> String {
    let mut text = String::with_capacity(positions.len() * 4 + 2);
    text.push('[');
    for (i, gp) in positions.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let _ = write!(text, "{}", gp - first);
    }
    text.push(']');
    text
}

/// The rows of `consumer_key` that may hold positions `from..=to`.
fn rows_between(conn: &Connection, consumer_key: i64, from: i64, to: i64) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(
        "SELECT first_position, offsets, processed_at FROM evento_processed_events
          WHERE consumer_key = ?1 AND first_position BETWEEN ?2 AND ?3 AND last_position >= ?4
          ORDER BY first_position",
    )?;
    let rows = stmt.query_map(
        params![consumer_key, from.saturating_sub(MAX_SPAN), to, from],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (first, offsets, processed_at) = row?;
        let offsets: Vec<i64> = serde_json::from_str(&offsets).map_err(|e| {
            Error::invalid(format!(
                "a processed record of consumer key {consumer_key} is damaged: {e}"
            ))
        })?;
        out.push(Row {
            first,
            positions: offsets.into_iter().map(|o| first + o).collect(),
            processed_at,
        });
    }
    Ok(out)
}

/// The global positions in `from..=to` that `consumer_key` has handled,
/// sorted.
pub(crate) fn handled_between(
    conn: &Connection,
    consumer_key: i64,
    from: i64,
    to: i64,
) -> Result<Vec<i64>> {
    let mut out: Vec<i64> = rows_between(conn, consumer_key, from, to)?
        .into_iter()
        .flat_map(|r| r.positions)
        .filter(|gp| (from..=to).contains(gp))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// How many of positions `from..=to` `consumer_key` has handled.
pub(crate) fn count_between(
    conn: &Connection,
    consumer_key: i64,
    from: i64,
    to: i64,
) -> Result<u64> {
    Ok(handled_between(conn, consumer_key, from, to)?.len() as u64)
}

/// Records that `consumer_key` handled the messages at `positions`
/// (ascending, none recorded yet), at `now_ms`, inside the caller's
/// transaction.
pub(crate) fn record(
    conn: &Connection,
    consumer_key: i64,
    positions: &[i64],
    now_ms: i64,
) -> Result<()> {
    insert_rows(conn, consumer_key, positions, now_ms)?;
    if let Some(&last) = positions.last() {
        conn.prepare_cached(
            "UPDATE evento_consumer_positions
                SET recorded_through = max(recorded_through, ?2)
              WHERE consumer_key = ?1",
        )?
        .execute(params![consumer_key, last])?;
    }
    Ok(())
}

/// Inserts the record rows of `positions` (ascending) with time
/// `processed_at`, leaving the position row's `recorded_through` to the
/// caller.
fn insert_rows(
    conn: &Connection,
    consumer_key: i64,
    positions: &[i64],
    processed_at: i64,
) -> Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO evento_processed_events
           (consumer_key, first_position, last_position, messages, offsets, processed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut rest = positions;
    while let Some(&first) = rest.first() {
        let n = rest.partition_point(|&gp| gp - first <= MAX_SPAN);
        let (chunk, tail) = rest.split_at(n);
        insert.execute(params![
            consumer_key,
            first,
            chunk[chunk.len() - 1],
            chunk.len() as i64,
            offsets_json(first, chunk),
            processed_at
        ])?;
        rest = tail;
    }
    Ok(())
}

/// The highest position any record of `consumer_key` holds (0: none).
pub(crate) fn recorded_through(conn: &Connection, consumer_key: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT recorded_through FROM evento_consumer_positions WHERE consumer_key = ?1",
        )?
        .query_row([consumer_key], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Records that `consumer_key` handled `message`, unless it had; returns
/// whether it was recorded now.
pub(crate) fn mark(
    conn: &Connection,
    consumer_key: i64,
    message: &Message,
    now_ms: i64,
) -> Result<bool> {
    let gp = message.global_position;
    if !handled_between(conn, consumer_key, gp, gp)?.is_empty() {
        return Ok(false);
    }
    record(conn, consumer_key, &[gp], now_ms)?;
    Ok(true)
}

/// Forgets that `consumer_key` handled the messages at positions
/// `from..=to`, inside the caller's transaction; returns how many records
/// went.
pub(crate) fn forget_between(
    conn: &Connection,
    consumer_key: i64,
    from: i64,
    to: i64,
) -> Result<u64> {
    let rows = rows_between(conn, consumer_key, from, to)?;
    let mut forgotten = 0u64;
    for row in rows {
        let (gone, kept): (Vec<i64>, Vec<i64>) = row
            .positions
            .iter()
            .partition(|gp| (from..=to).contains(*gp));
        if gone.is_empty() {
            continue;
        }
        forgotten += gone.len() as u64;
        conn.prepare_cached(
            "DELETE FROM evento_processed_events WHERE consumer_key = ?1 AND first_position = ?2",
        )?
        .execute(params![consumer_key, row.first])?;
        // The rest of the row (within its span: one row again), keeping
        // the row's age, for retention.
        insert_rows(conn, consumer_key, &kept, row.processed_at)?;
    }
    conn.prepare_cached(
        "UPDATE evento_consumer_positions
            SET recorded_through = coalesce(
              (SELECT max(last_position) FROM evento_processed_events WHERE consumer_key = ?1), 0)
          WHERE consumer_key = ?1",
    )?
    .execute([consumer_key])?;
    Ok(forgotten)
}

/// One transaction's processed records of a consumer: the ones already
/// there among the messages it is about to handle, and the ones it adds,
/// written with one row before the commit.
pub(crate) struct ProcessedRecords {
    consumer_key: i64,
    /// Already recorded global positions among the transaction's messages.
    recorded: Vec<i64>,
    /// Global positions handled in this transaction, in order.
    handled: Vec<i64>,
}

impl ProcessedRecords {
    /// The records of `consumer_key` among global positions `from..=to`,
    /// looked up only when `recorded_through` says there may be some.
    pub(crate) fn load(
        conn: &Connection,
        consumer_key: i64,
        recorded_through: i64,
        from: i64,
        to: i64,
    ) -> Result<Self> {
        let recorded = if from <= recorded_through {
            handled_between(conn, consumer_key, from, to)?
        } else {
            Vec::new()
        };
        Ok(ProcessedRecords {
            consumer_key,
            recorded,
            handled: Vec::new(),
        })
    }

    /// Whether the consumer had already handled `message` (before this
    /// transaction).
    pub(crate) fn contains(&self, message: &Message) -> bool {
        !self.recorded.is_empty()
            && self
                .recorded
                .binary_search(&message.global_position)
                .is_ok()
    }

    /// Notes that the consumer handled `message` in this transaction.
    pub(crate) fn add(&mut self, message: &Message) {
        self.handled.push(message.global_position);
    }

    /// Writes the record rows added (inside the transaction, before its
    /// commit); returns the highest position recorded, if any, which the
    /// caller saves as the position row's `recorded_through` with the
    /// position itself (see `position::advance_with`), in one update.
    pub(crate) fn write(&mut self, conn: &Connection, now_ms: i64) -> Result<Option<i64>> {
        insert_rows(conn, self.consumer_key, &self.handled, now_ms)?;
        let last = self.handled.last().copied();
        self.handled.clear();
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::position::{self, ConsumerKey};
    use crate::db::Db;

    fn consumer(db: &Db) -> i64 {
        let key = ConsumerKey {
            namespace: "default".into(),
            category: "order".into(),
            consumer_id: "ledger".into(),
        };
        db.write(|tx| position::open(tx, &key, 1, None, None))
            .unwrap()
            .1
    }

    fn rows(db: &Db) -> i64 {
        db.read(|c| {
            Ok(
                c.query_row("SELECT count(*) FROM evento_processed_events", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .unwrap()
    }

    #[test]
    fn one_row_per_transaction_answers_per_message() {
        let db = Db::open_in_memory().unwrap();
        let k = consumer(&db);
        db.write(|tx| record(tx, k, &[3, 4, 7, 9], 100)).unwrap();
        db.write(|tx| record(tx, k, &[10, 12], 200)).unwrap();
        assert_eq!(rows(&db), 2);
        db.read(|c| {
            assert_eq!(handled_between(c, k, 1, 100)?, [3, 4, 7, 9, 10, 12]);
            assert_eq!(handled_between(c, k, 5, 10)?, [7, 9, 10]);
            assert_eq!(handled_between(c, k, 8, 8)?, Vec::<i64>::new());
            assert_eq!(count_between(c, k, 4, 11)?, 4);
            assert_eq!(recorded_through(c, k)?, 12);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn far_apart_messages_split_into_rows_of_a_bounded_span() {
        let db = Db::open_in_memory().unwrap();
        let k = consumer(&db);
        let positions = [1, MAX_SPAN, MAX_SPAN + 1, MAX_SPAN + 2, 5 * MAX_SPAN];
        db.write(|tx| record(tx, k, &positions, 100)).unwrap();
        assert_eq!(rows(&db), 3);
        db.read(|c| {
            assert_eq!(handled_between(c, k, 0, i64::MAX)?, positions);
            assert_eq!(
                handled_between(c, k, MAX_SPAN + 2, 5 * MAX_SPAN)?,
                [MAX_SPAN + 2, 5 * MAX_SPAN]
            );
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn forgetting_a_range_keeps_the_rest_of_each_row() {
        let db = Db::open_in_memory().unwrap();
        let k = consumer(&db);
        db.write(|tx| record(tx, k, &[1, 2, 3, 4, 5, 6], 100))
            .unwrap();
        db.write(|tx| record(tx, k, &[8, 9], 200)).unwrap();
        assert_eq!(db.write(|tx| forget_between(tx, k, 3, 4)).unwrap(), 2);
        db.read(|c| {
            assert_eq!(handled_between(c, k, 0, 100)?, [1, 2, 5, 6, 8, 9]);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            db.write(|tx| forget_between(tx, k, 6, i64::MAX)).unwrap(),
            3
        );
        db.read(|c| {
            assert_eq!(handled_between(c, k, 0, 100)?, [1, 2, 5]);
            assert_eq!(recorded_through(c, k)?, 5);
            // The rewritten row keeps its time (for retention).
            let at: i64 = c.query_row(
                "SELECT processed_at FROM evento_processed_events WHERE first_position = 1",
                [],
                |r| r.get(0),
            )?;
            assert_eq!(at, 100);
            Ok(())
        })
        .unwrap();
        let message = |gp| Message {
            id: format!("m{gp}"),
            stream_name: "order-1".into(),
            message_type: "T".into(),
            position: 0,
            global_position: gp,
            data: serde_json::Value::Null,
            metadata: None,
            time: std::time::SystemTime::now(),
        };
        assert!(!db.write(|tx| mark(tx, k, &message(2), 300)).unwrap());
        assert!(db.write(|tx| mark(tx, k, &message(3), 300)).unwrap());
        db.read(|c| {
            assert_eq!(handled_between(c, k, 0, 100)?, [1, 2, 3, 5]);
            Ok(())
        })
        .unwrap();
    }
}
