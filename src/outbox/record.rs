//! Reading the outbox back: one row ([`OutboxRecord`]) and the backlog
//! ([`OutboxStatus`]).

use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

use crate::error::Result;
use crate::time::from_ms;

/// Where an outbox message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxState {
    /// Waiting to be delivered (maybe after failed attempts).
    Pending,
    /// Delivered to the store.
    Sent,
    /// Refused by the store or out of retries; in the dead-letter queue until
    /// requeued or purged.
    DeadLettered,
}

/// One outbox row, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    /// Commit order (increases with every row written).
    pub seq: i64,
    /// The message id sent to the store.
    pub id: String,
    /// The stream it goes to.
    pub stream: String,
    /// The message type.
    pub message_type: String,
    /// The data.
    pub data: Value,
    /// The metadata, if any.
    pub metadata: Option<Value>,
    /// The expected version it is written with, if any.
    pub expected_version: Option<i64>,
    /// Its idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// When it was written to the outbox.
    pub created_at: SystemTime,
    /// When the store accepted it.
    pub sent_at: Option<SystemTime>,
    /// Delivery attempts so far (counted before each try).
    pub attempts: u32,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// Not retried before this time.
    pub next_attempt_at: Option<SystemTime>,
    /// When it was moved to the dead-letter queue.
    pub dead_lettered_at: Option<SystemTime>,
}

impl OutboxRecord {
    /// Pending, sent or dead-lettered.
    pub fn state(&self) -> OutboxState {
        if self.sent_at.is_some() {
            OutboxState::Sent
        } else if self.dead_lettered_at.is_some() {
            OutboxState::DeadLettered
        } else {
            OutboxState::Pending
        }
    }
}

pub(crate) const RECORD_COLUMNS: &str = "seq, id, stream, type, data, metadata, expected_version, \
     idempotency_key, created_at, sent_at, attempts, last_error, next_attempt_at, dead_lettered_at";

fn json_column(text: Option<String>) -> Option<Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

pub(crate) fn record_from_row(row: &Row<'_>) -> rusqlite::Result<OutboxRecord> {
    Ok(OutboxRecord {
        seq: row.get(0)?,
        id: row.get(1)?,
        stream: row.get(2)?,
        message_type: row.get(3)?,
        data: json_column(row.get(4)?).unwrap_or(Value::Null),
        metadata: json_column(row.get(5)?),
        expected_version: row.get(6)?,
        idempotency_key: row.get(7)?,
        created_at: from_ms(row.get(8)?),
        sent_at: row.get::<_, Option<i64>>(9)?.map(from_ms),
        attempts: row.get(10)?,
        last_error: row.get(11)?,
        next_attempt_at: row.get::<_, Option<i64>>(12)?.map(from_ms),
        dead_lettered_at: row.get::<_, Option<i64>>(13)?.map(from_ms),
    })
}

/// The row of message `id` in `namespace`, if any.
pub(crate) fn get(conn: &Connection, namespace: &str, id: &str) -> Result<Option<OutboxRecord>> {
    let sql =
        format!("SELECT {RECORD_COLUMNS} FROM evento_outbox WHERE id = ?1 AND namespace = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![id, namespace], record_from_row)
        .optional()?)
}

/// How much is waiting in one namespace's outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStatus {
    /// Messages waiting to be delivered (not counting dead letters).
    pub unsent: u64,
    /// When the oldest of them was written.
    pub oldest_unsent_at: Option<SystemTime>,
    /// Messages in the dead-letter queue.
    pub dead_lettered: u64,
}

impl OutboxStatus {
    /// How long the oldest unsent message has been waiting.
    pub fn oldest_unsent_age(&self) -> Option<Duration> {
        self.oldest_unsent_at
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default())
    }
}

/// Counts the backlog of `namespace`.
pub(crate) fn status(conn: &Connection, namespace: &str) -> Result<OutboxStatus> {
    let unsent: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM evento_outbox
             WHERE namespace = ?1 AND sent_at IS NULL AND dead_lettered_at IS NULL",
        )?
        .query_row([namespace], |r| r.get(0))?;
    let oldest: Option<i64> = conn
        .prepare_cached(
            "SELECT created_at FROM evento_outbox
             WHERE namespace = ?1 AND sent_at IS NULL AND dead_lettered_at IS NULL
             ORDER BY seq LIMIT 1",
        )?
        .query_row([namespace], |r| r.get(0))
        .optional()?;
    let dead: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM evento_outbox
             WHERE namespace = ?1 AND dead_lettered_at IS NOT NULL",
        )?
        .query_row([namespace], |r| r.get(0))?;
    Ok(OutboxStatus {
        unsent: unsent.max(0) as u64,
        oldest_unsent_at: oldest.map(from_ms),
        dead_lettered: dead.max(0) as u64,
    })
}
