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
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde_json::{json, Value};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::time::{format_rfc3339_nanos, from_ms, now_ms, parse_rfc3339, to_ms};

/// Where a dead letter came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterSource {
    /// The outbox sender could not deliver it.
    Outbox,
    /// A consumer's handler could not process it.
    Consumer,
}

impl DeadLetterSource {
    /// `"outbox"` or `"consumer"`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterSource::Outbox => "outbox",
            DeadLetterSource::Consumer => "consumer",
        }
    }
}

impl fmt::Display for DeadLetterSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeadLetterSource {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "outbox" => Ok(DeadLetterSource::Outbox),
            "consumer" => Ok(DeadLetterSource::Consumer),
            other => Err(Error::invalid(format!(
                "unknown dead-letter source {other:?} (expected \"outbox\" or \"consumer\")"
            ))),
        }
    }
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Its id in the dead-letter table.
    pub id: i64,
    /// Outbox or consumer.
    pub source: DeadLetterSource,
    /// The namespace of the message.
    pub namespace: String,
    /// The message id.
    pub message_id: String,
    /// The message's stream.
    pub stream: String,
    /// The message type.
    pub message_type: String,
    /// The category the consumer follows (consumer dead letters).
    pub category: Option<String>,
    /// The consumer whose handler failed (consumer dead letters).
    pub consumer_id: Option<String>,
    /// The whole message as JSON (see [`DeadLetter::message`]).
    pub message: Value,
    /// The last error.
    pub error: String,
    /// Attempts made before giving up.
    pub attempts: u32,
    /// When the first attempt failed.
    pub first_failed_at: SystemTime,
    /// When the last attempt failed.
    pub last_failed_at: SystemTime,
    /// When it was requeued for its consumer (consumer dead letters waiting
    /// for their re-run).
    pub requeued_at: Option<SystemTime>,
}

impl DeadLetter {
    /// The message of a consumer dead letter, as the store delivered it.
    pub fn read_message(&self) -> Result<Message> {
        message_from_json(&self.message)
    }
}

/// Which dead letters an operation applies to. Every set field must match.
///
/// ```
/// use eventodb_kit::dlq::{DeadLetterFilter, DeadLetterSource};
/// let f = DeadLetterFilter::new().source(DeadLetterSource::Outbox).stream("account-7");
/// assert_eq!(f.stream.as_deref(), Some("account-7"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetterFilter {
    /// Only from this source. Defaults to both.
    pub source: Option<DeadLetterSource>,
    /// Only of this stream. Defaults to any.
    pub stream: Option<String>,
    /// Only of this consumer's category. Defaults to any.
    pub category: Option<String>,
    /// Only of this consumer. Defaults to any.
    pub consumer_id: Option<String>,
    /// Only these dead-letter ids. Defaults to any.
    pub ids: Vec<i64>,
    /// At most this many (for listing). Defaults to no limit.
    pub limit: Option<u32>,
}

impl DeadLetterFilter {
    /// Matches every dead letter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only dead letters from `source`.
    pub fn source(mut self, source: DeadLetterSource) -> Self {
        self.source = Some(source);
        self
    }

    /// Only dead letters of `stream`.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// Only consumer dead letters of `category`.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Only dead letters of consumer `consumer_id`.
    pub fn consumer_id(mut self, consumer_id: impl Into<String>) -> Self {
        self.consumer_id = Some(consumer_id.into());
        self
    }

    /// Only the dead letter with id `id` (may be called repeatedly).
    pub fn id(mut self, id: i64) -> Self {
        self.ids.push(id);
        self
    }

    /// At most `limit` dead letters when listing.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// A dead letter to record.
#[derive(Debug, Clone)]
pub(crate) struct NewDeadLetter<'a> {
    pub(crate) source: DeadLetterSource,
    pub(crate) namespace: &'a str,
    pub(crate) message_id: &'a str,
    pub(crate) stream: &'a str,
    pub(crate) message_type: &'a str,
    pub(crate) category: Option<&'a str>,
    pub(crate) consumer_id: Option<&'a str>,
    pub(crate) message: &'a Value,
    pub(crate) error: &'a str,
    pub(crate) attempts: u32,
    pub(crate) first_failed_at_ms: i64,
}

/// Records a dead letter inside the caller's transaction; returns its id.
pub(crate) fn record(conn: &Connection, entry: &NewDeadLetter<'_>) -> Result<i64> {
    let now = now_ms();
    conn.prepare_cached(
        "INSERT INTO evento_dead_letters
           (source, namespace, message_id, stream, type, category, consumer_id, message, error,
            attempts, first_failed_at, last_failed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        entry.source.as_str(),
        entry.namespace,
        entry.message_id,
        entry.stream,
        entry.message_type,
        entry.category,
        entry.consumer_id,
        serde_json::to_string(entry.message)?,
        entry.error,
        entry.attempts,
        entry.first_failed_at_ms.min(now),
        now,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// A read message as JSON, in EventoDB's key names.
pub(crate) fn message_to_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "streamName": m.stream_name,
        "type": m.message_type,
        "position": m.position,
        "globalPosition": m.global_position,
        "data": m.data,
        "metadata": m.metadata,
        "time": format_rfc3339_nanos(m.time),
    })
}

/// The inverse of [`message_to_json`].
pub(crate) fn message_from_json(v: &Value) -> Result<Message> {
    let text = |key: &str| -> Result<String> {
        v.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::invalid(format!("dead letter message has no {key:?}")))
    };
    let number = |key: &str| -> Result<i64> {
        v.get(key)
            .and_then(Value::as_i64)
            .ok_or_else(|| Error::invalid(format!("dead letter message has no {key:?}")))
    };
    Ok(Message {
        id: text("id")?,
        stream_name: text("streamName")?,
        message_type: text("type")?,
        position: number("position")?,
        global_position: number("globalPosition")?,
        data: v.get("data").cloned().unwrap_or(Value::Null),
        metadata: v.get("metadata").cloned().filter(|m| !m.is_null()),
        time: parse_rfc3339(&text("time")?)?,
    })
}

const COLUMNS: &str = "id, source, namespace, message_id, stream, type, category, consumer_id, \
                       message, error, attempts, first_failed_at, last_failed_at, requeued_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<DeadLetter> {
    let source: String = row.get(1)?;
    let message: String = row.get(8)?;
    Ok(DeadLetter {
        id: row.get(0)?,
        source: source.parse().unwrap_or(DeadLetterSource::Outbox),
        namespace: row.get(2)?,
        message_id: row.get(3)?,
        stream: row.get(4)?,
        message_type: row.get(5)?,
        category: row.get(6)?,
        consumer_id: row.get(7)?,
        message: serde_json::from_str(&message).unwrap_or(Value::String(message)),
        error: row.get(9)?,
        attempts: row.get(10)?,
        first_failed_at: from_ms(row.get(11)?),
        last_failed_at: from_ms(row.get(12)?),
        requeued_at: row.get::<_, Option<i64>>(13)?.map(from_ms),
    })
}

/// Builds `WHERE …` and its parameters for `filter` within `namespace`.
fn where_clause(namespace: Option<&str>, filter: &DeadLetterFilter) -> (String, Vec<SqlValue>) {
    let mut sql = String::from(" WHERE 1 = 1");
    let mut args: Vec<SqlValue> = Vec::new();
    let mut eq = |column: &str, value: SqlValue, sql: &mut String| {
        args.push(value);
        sql.push_str(&format!(" AND {column} = ?{}", args.len()));
    };
    if let Some(ns) = namespace {
        eq("namespace", ns.to_string().into(), &mut sql);
    }
    if let Some(source) = filter.source {
        eq("source", source.as_str().to_string().into(), &mut sql);
    }
    if let Some(stream) = &filter.stream {
        eq("stream", stream.clone().into(), &mut sql);
    }
    if let Some(category) = &filter.category {
        eq("category", category.clone().into(), &mut sql);
    }
    if let Some(consumer) = &filter.consumer_id {
        eq("consumer_id", consumer.clone().into(), &mut sql);
    }
    if !filter.ids.is_empty() {
        let list: Vec<String> = filter.ids.iter().map(i64::to_string).collect();
        sql.push_str(&format!(" AND id IN ({})", list.join(", ")));
    }
    (sql, args)
}

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
