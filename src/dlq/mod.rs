//! The dead-letter queue: messages that failed permanently, from the outbox
//! or from a consumer's handler, kept with their error until someone looks.
//!
//! * An **outbox** dead letter is an outbox row the store refused (version
//!   conflict, invalid request, auth, too large) or that ran out of retries.
//!   Its row stays in the outbox, out of the sender's way; [`Dlq::requeue`]
//!   puts it back in line with fresh attempts, and it is then delivered once.
//! * A **consumer** dead letter is a message whose handler kept failing.
//!   [`Dlq::requeue`] marks it, and the consumer runs its handler on it once
//!   more (removing the dead letter when that succeeds).

use std::fmt;
use std::sync::Arc;

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde_json::Value;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::time::{now_ms, parse_rfc3339, to_ms};

mod record;
mod types;

use record::{from_row, where_clause, COLUMNS};
pub(crate) use record::{message_from_json, message_to_json, record, NewDeadLetter};
pub use types::{DeadLetter, DeadLetterFilter, DeadLetterSource};

/// Called after outbox dead letters went back to the outbox (wakes the sender).
pub(crate) type RequeueHook = Arc<dyn Fn() + Send + Sync>;

/// Dead-letter inspection and repair, for one namespace (or all of them).
///
/// ```
/// use eventodb_kit::dlq::DeadLetterFilter;
/// let kit = eventodb_kit::Kit::builder().build()?;
/// let dlq = kit.dlq();
/// assert!(dlq.list(&DeadLetterFilter::new())?.is_empty());
/// # Ok::<(), eventodb_kit::Error>(())
/// ```
#[derive(Clone)]
pub struct Dlq {
    db: Db,
    namespace: Option<String>,
    on_outbox_requeue: Option<RequeueHook>,
}

impl fmt::Debug for Dlq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dlq")
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Dlq {
    /// The dead letters of `namespace` in `db` (`None`: of every namespace).
    pub fn new(db: Db, namespace: Option<String>) -> Self {
        Dlq {
            db,
            namespace,
            on_outbox_requeue: None,
        }
    }

    /// Runs `hook` after outbox dead letters were requeued.
    pub(crate) fn on_outbox_requeue(mut self, hook: RequeueHook) -> Self {
        self.on_outbox_requeue = Some(hook);
        self
    }

    /// Dead letters matching `filter`, oldest first.
    pub fn list(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        let (mut sql, args) = where_clause(self.namespace.as_deref(), filter);
        sql = format!("SELECT {COLUMNS} FROM evento_dead_letters{sql} ORDER BY id");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        self.db.read(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// One dead letter; [`Error::NotFound`] if there is none with that id.
    pub fn get(&self, id: i64) -> Result<DeadLetter> {
        let (sql, args) = where_clause(self.namespace.as_deref(), &DeadLetterFilter::new().id(id));
        let sql = format!("SELECT {COLUMNS} FROM evento_dead_letters{sql}");
        self.db
            .read(|c| {
                Ok(c.prepare(&sql)?
                    .query_row(params_from_iter(args), from_row)
                    .optional()?)
            })?
            .ok_or_else(|| Error::NotFound(format!("dead letter {id}")))
    }

    /// How many dead letters match `filter`.
    pub fn count(&self, filter: &DeadLetterFilter) -> Result<u64> {
        let (sql, args) = where_clause(self.namespace.as_deref(), filter);
        let sql = format!("SELECT COUNT(*) FROM evento_dead_letters{sql}");
        self.db
            .read(|c| Ok(c.query_row(&sql, params_from_iter(args), |r| r.get::<_, i64>(0))?))
            .map(|n| n.max(0) as u64)
    }

    /// Requeues one dead letter; [`Error::NotFound`] if there is none with that id.
    pub fn requeue(&self, id: i64) -> Result<()> {
        match self.requeue_where(&DeadLetterFilter::new().id(id))? {
            0 => Err(Error::NotFound(format!("dead letter {id}"))),
            _ => Ok(()),
        }
    }

    /// Requeues every dead letter matching `filter`; returns how many.
    ///
    /// Outbox dead letters go back into the outbox at their original place in
    /// commit order, with fresh attempts, and leave the dead-letter table.
    /// Consumer dead letters are marked for one more run of their consumer's
    /// handler.
    pub fn requeue_where(&self, filter: &DeadLetterFilter) -> Result<usize> {
        let letters = self.list(filter)?;
        let mut outbox = 0;
        self.db.write(|tx| {
            let now = now_ms();
            for letter in &letters {
                match letter.source {
                    DeadLetterSource::Outbox => {
                        requeue_outbox_row(tx, letter)?;
                        tx.execute("DELETE FROM evento_dead_letters WHERE id = ?1", [letter.id])?;
                        outbox += 1;
                    }
                    DeadLetterSource::Consumer => {
                        tx.execute(
                            "UPDATE evento_dead_letters SET requeued_at = ?2 WHERE id = ?1",
                            params![letter.id, now],
                        )?;
                    }
                }
            }
            Ok(())
        })?;
        if outbox > 0 {
            if let Some(hook) = &self.on_outbox_requeue {
                hook();
            }
        }
        Ok(letters.len())
    }

    /// Requeues every dead letter; returns how many.
    pub fn requeue_all(&self) -> Result<usize> {
        self.requeue_where(&DeadLetterFilter::new())
    }

    /// Deletes one dead letter for good; [`Error::NotFound`] if there is none.
    ///
    /// Purging an outbox dead letter also removes its outbox row: the message
    /// will never be sent.
    pub fn purge(&self, id: i64) -> Result<()> {
        match self.purge_where(&DeadLetterFilter::new().id(id))? {
            0 => Err(Error::NotFound(format!("dead letter {id}"))),
            _ => Ok(()),
        }
    }

    /// Deletes every dead letter matching `filter`; returns how many.
    pub fn purge_where(&self, filter: &DeadLetterFilter) -> Result<usize> {
        let letters = self.list(filter)?;
        self.db.write(|tx| {
            for letter in &letters {
                if letter.source == DeadLetterSource::Outbox {
                    tx.execute(
                        "DELETE FROM evento_outbox WHERE id = ?1 AND dead_lettered_at IS NOT NULL",
                        [&letter.message_id],
                    )?;
                }
                tx.execute("DELETE FROM evento_dead_letters WHERE id = ?1", [letter.id])?;
            }
            Ok(())
        })?;
        Ok(letters.len())
    }

    /// Deletes every dead letter; returns how many.
    pub fn purge_all(&self) -> Result<usize> {
        self.purge_where(&DeadLetterFilter::new())
    }
}

/// Puts an outbox dead letter's row back in line (re-creating it from the
/// stored message if the row is gone).
fn requeue_outbox_row(conn: &Connection, letter: &DeadLetter) -> Result<()> {
    let updated = conn.execute(
        "UPDATE evento_outbox
            SET dead_lettered_at = NULL, sent_at = NULL, attempts = 0, last_error = NULL,
                next_attempt_at = NULL, first_failed_at = NULL
          WHERE id = ?1",
        [&letter.message_id],
    )?;
    if updated > 0 {
        return Ok(());
    }
    let m = &letter.message;
    let json_text = |key: &str| -> Result<Option<String>> {
        m.get(key)
            .filter(|v| !v.is_null())
            .map(serde_json::to_string)
            .transpose()
            .map_err(Error::from)
    };
    conn.execute(
        "INSERT INTO evento_outbox
           (id, namespace, stream, type, data, metadata, expected_version, idempotency_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            letter.message_id,
            letter.namespace,
            letter.stream,
            letter.message_type,
            json_text("data")?.unwrap_or_else(|| "{}".into()),
            json_text("metadata")?,
            m.get("expectedVersion").and_then(Value::as_i64),
            m.get("idempotencyKey").and_then(Value::as_str),
            m.get("createdAt")
                .and_then(Value::as_str)
                .and_then(|t| parse_rfc3339(t).ok())
                .map_or_else(now_ms, to_ms),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::time::from_ms;
    use serde_json::json;

    #[test]
    fn message_json_round_trips() {
        let m = Message {
            id: "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87".into(),
            stream_name: "a-1".into(),
            message_type: "T".into(),
            position: 2,
            global_position: 7,
            data: json!({"x": 1}),
            metadata: None,
            time: from_ms(1_700_000_000_123),
        };
        assert_eq!(message_from_json(&message_to_json(&m)).unwrap(), m);
    }

    #[test]
    fn list_requeue_purge() {
        let db = Db::open_in_memory().unwrap();
        let outbox_message = json!({ "data": {"n": 1}, "metadata": null });
        db.write(|tx| {
            tx.execute(
                "INSERT INTO evento_outbox (id, namespace, stream, type, data, created_at, attempts, dead_lettered_at)
                 VALUES ('m-1', 'default', 'a-1', 'T', '{\"n\":1}', 0, 3, 5)",
                [],
            )?;
            record(
                tx,
                &NewDeadLetter {
                    source: DeadLetterSource::Outbox,
                    namespace: "default",
                    message_id: "m-1",
                    stream: "a-1",
                    message_type: "T",
                    category: None,
                    consumer_id: None,
                    message: &outbox_message,
                    error: "conflict",
                    attempts: 3,
                    first_failed_at_ms: 1,
                },
            )?;
            record(
                tx,
                &NewDeadLetter {
                    source: DeadLetterSource::Consumer,
                    namespace: "default",
                    message_id: "m-2",
                    stream: "b-1",
                    message_type: "T",
                    category: Some("b"),
                    consumer_id: Some("c1"),
                    message: &json!({}),
                    error: "boom",
                    attempts: 5,
                    first_failed_at_ms: 1,
                },
            )?;
            Ok(())
        })
        .unwrap();
        let dlq = Dlq::new(db.clone(), Some("default".into()));
        let all = dlq.list(&DeadLetterFilter::new()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].error, "conflict");
        assert_eq!(
            dlq.count(&DeadLetterFilter::new().source(DeadLetterSource::Consumer))
                .unwrap(),
            1
        );
        assert!(Dlq::new(db.clone(), Some("other".into()))
            .list(&DeadLetterFilter::new())
            .unwrap()
            .is_empty());

        dlq.requeue(all[0].id).unwrap();
        let (attempts, dead): (i64, Option<i64>) = db
            .read(|c| {
                Ok(c.query_row(
                    "SELECT attempts, dead_lettered_at FROM evento_outbox WHERE id = 'm-1'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .unwrap();
        assert_eq!((attempts, dead), (0, None));
        assert!(matches!(dlq.get(all[0].id), Err(Error::NotFound(_))));

        dlq.requeue(all[1].id).unwrap();
        assert!(dlq.get(all[1].id).unwrap().requeued_at.is_some());
        assert_eq!(dlq.purge_all().unwrap(), 1);
        assert!(matches!(dlq.purge(all[1].id), Err(Error::NotFound(_))));
    }
}
