//! Helpers shared by the consumer tests: a kit in a temporary file, writes,
//! an `effects` table that handlers write one row per handled event to,
//! quick retries, and a stored message that cannot be decoded.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use eventodb_kit::{Kit, MessageStore, NewMessage, RetryPolicy, WriteOptions, WriteResult};
use rusqlite::{Connection, Transaction};
use serde_json::Value;

/// Generous deadline for conditions that normally hold within milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A kit (database + embedded store) in one file of a fresh temp dir, with
/// an `effects` table (deliberately without a unique key, so a duplicate
/// effect would show).
pub fn kit() -> (Kit, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let kit = Kit::builder()
        .database(dir.path().join("app.db"))
        .build()
        .unwrap();
    create_effects(&kit);
    (kit, dir)
}

/// A kit whose database is `app.db` in `dir` over `store`, with the
/// `effects` table.
pub fn kit_over(dir: &Path, store: impl MessageStore + 'static) -> Kit {
    let kit = Kit::builder()
        .database(dir.join("app.db"))
        .store(store)
        .build()
        .unwrap();
    create_effects(&kit);
    kit
}

pub fn create_effects(kit: &Kit) {
    kit.db()
        .write(|tx| {
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS effects (
                    consumer TEXT NOT NULL, event_id TEXT NOT NULL, stream TEXT NOT NULL,
                    global_position INTEGER NOT NULL)",
            )?;
            Ok(())
        })
        .unwrap();
}

/// Writes one message of `message_type` with `data` to `stream`.
pub fn write(kit: &Kit, stream: &str, message_type: &str, data: Value) -> WriteResult {
    write_msg(kit, stream, NewMessage::new(message_type, data))
}

pub fn write_msg(kit: &Kit, stream: &str, msg: NewMessage) -> WriteResult {
    kit.store()
        .write(stream, &msg, &WriteOptions::new())
        .unwrap()
}

/// Writes `n` messages `{"n": i}` round-robin over `streams` streams of
/// `category`; returns the last global position.
pub fn write_many(kit: &Kit, category: &str, streams: usize, n: usize) -> i64 {
    let mut last = 0;
    for i in 0..n {
        let stream = format!("{category}-{}", i % streams);
        last = write(kit, &stream, "Happened", serde_json::json!({ "n": i })).global_position;
    }
    last
}

/// Records an effect row for `msg` on behalf of `consumer`.
pub fn record_effect(
    consumer: &str,
    msg: &eventodb_kit::Message,
    tx: &Transaction<'_>,
) -> eventodb_kit::Result<()> {
    tx.execute(
        "INSERT INTO effects (consumer, event_id, stream, global_position) VALUES (?1, ?2, ?3, ?4)",
        (consumer, &msg.id, &msg.stream_name, msg.global_position),
    )?;
    Ok(())
}

/// Global positions of `consumer`'s effect rows, in order.
pub fn effects(kit: &Kit, consumer: &str) -> Vec<i64> {
    kit.db()
        .read(|c| {
            let mut stmt = c.prepare(
                "SELECT global_position FROM effects WHERE consumer = ?1 ORDER BY global_position",
            )?;
            let rows = stmt.query_map([consumer], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
        })
        .unwrap()
}

/// Retries `attempts` times in all, a millisecond or a few apart.
pub fn quick_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
        .max_attempts(attempts)
}

/// Inserts, with SQL straight into the embedded store's table on `conn`
/// (a connection to the database file, or a transaction on it), a message
/// of `stream` whose data nests deeper than serde_json reads back (as an
/// older version of the kit could store); returns its global position.
pub fn insert_undecodable(conn: &Connection, stream: &str) -> rusqlite::Result<i64> {
    let depth = 200;
    let data = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let gp: i64 = conn.query_row(
        "SELECT COALESCE(MAX(global_position), 0) + 1 FROM evento_store_messages
         WHERE namespace = 'default'",
        [],
        |r| r.get(0),
    )?;
    let position: i64 = conn.query_row(
        "SELECT COALESCE(MAX(position), -1) + 1 FROM evento_store_messages
         WHERE namespace = 'default' AND stream_name = ?1",
        [stream],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO evento_store_messages
           (namespace, global_position, stream_name, position, id, category, cg_hash, type, data, metadata, time_ms)
         VALUES ('default', ?1, ?2, ?3, ?4, ?5, NULL, 'Deep', ?6, NULL, 0)",
        (
            gp,
            stream,
            position,
            uuid::Uuid::new_v4().to_string(),
            stream.split('-').next().unwrap(),
            &data,
        ),
    )?;
    Ok(gp)
}
