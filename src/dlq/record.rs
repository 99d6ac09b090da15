//! The dead-letter table: recording, reading rows, and message JSON.

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, Row};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::message::Message;
use crate::time::{format_rfc3339_nanos, from_ms, now_ms, parse_rfc3339};

use super::types::{DeadLetter, DeadLetterFilter, DeadLetterSource};

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

pub(super) const COLUMNS: &str =
    "id, source, namespace, message_id, stream, type, category, consumer_id, \
                       message, error, attempts, first_failed_at, last_failed_at, requeued_at";

pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<DeadLetter> {
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
pub(super) fn where_clause(
    namespace: Option<&str>,
    filter: &DeadLetterFilter,
) -> (String, Vec<SqlValue>) {
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
