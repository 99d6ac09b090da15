//! `embedded_write` and `embedded_category_read`: the embedded store against
//! plain rusqlite doing the same inserts and selects on the same schema with
//! the same pragmas. `embedded_write_many`: `write_many` of 100 messages
//! (one transaction, a savepoint and EventoDB's checks per message) against
//! a raw 100-row transaction.

use std::time::Duration;

use eventodb_kit::store::WriteItem;
use eventodb_kit::{CategoryQuery, EmbeddedStore, MessageStore, NewMessage, WriteOptions};
use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::json;

use crate::report::{best_of, rate, Report};

const STORE_SCHEMA: &str = include_str!("../../src/store/embedded/schema.sql");
const BUDGET: Duration = Duration::from_secs(2);
const STREAMS: u64 = 100;
const READ_MESSAGES: i64 = 20_000;

/// One message as plain columns: id, stream, type, position, global position,
/// data, metadata, time.
type RawRow = (
    String,
    String,
    String,
    i64,
    i64,
    String,
    Option<String>,
    i64,
);

/// The store's tables (the `up 1` section of its schema), for the raw side.
fn raw_connection(dir: &std::path::Path, name: &str) -> Connection {
    let conn = Connection::open(dir.join(name)).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        .unwrap();
    let up = STORE_SCHEMA
        .split("-- migrate:up 1")
        .nth(1)
        .and_then(|s| s.split("-- migrate:down 1").next())
        .unwrap();
    conn.execute_batch(up).unwrap();
    conn
}

fn payload() -> serde_json::Value {
    json!({ "amount": 125, "currency": "EUR", "note": "monthly savings transfer" })
}

pub fn run(report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    write(report, dir.path());
    write_many(report, dir.path());
    category_read(report, dir.path());
}

fn write(report: &mut Report, dir: &std::path::Path) {
    let store = EmbeddedStore::open(dir.join("kit-write.db")).unwrap();
    let message = NewMessage::new("Deposited", payload());
    let mut n = 0u64;
    let kit = best_of(3, || {
        rate(BUDGET, 1, || {
            n += 1;
            let stream = format!("account-{}", n % STREAMS);
            store
                .write(&stream, &message, &WriteOptions::new())
                .unwrap();
        })
    });

    let mut conn = raw_connection(dir, "raw-write.db");
    let data = serde_json::to_string(&payload()).unwrap();
    let mut positions = vec![0i64; STREAMS as usize];
    let mut gpos = 0i64;
    let limit = best_of(3, || {
        rate(BUDGET, 1, || {
            gpos += 1;
            let s = (gpos as u64 % STREAMS) as usize;
            let stream = format!("account-{s}");
            let id = uuid::Uuid::now_v7().to_string();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            tx.prepare_cached(
                "INSERT INTO evento_store_messages
                   (namespace, global_position, stream_name, position, id, category, cg_hash, type, data, metadata, time_ms)
                 VALUES ('default', ?1, ?2, ?3, ?4, 'account', 1, 'Deposited', ?5, NULL, 0)",
            )
            .unwrap()
            .execute(params![gpos, stream, positions[s], id, data])
            .unwrap();
            tx.commit().unwrap();
            positions[s] += 1;
        })
    });
    report.ratio("embedded_write", kit, limit);
}

/// Messages per `write_many` call (and per raw transaction).
const BATCH: u64 = 100;

fn write_many(report: &mut Report, dir: &std::path::Path) {
    let store = EmbeddedStore::open(dir.join("kit-write-many.db")).unwrap();
    let items: Vec<WriteItem> = (0..BATCH)
        .map(|n| {
            WriteItem::new(
                format!("account-{}", n % STREAMS),
                NewMessage::new("Deposited", payload()),
                WriteOptions::new(),
            )
        })
        .collect();
    let kit = best_of(3, || {
        rate(BUDGET, BATCH, || {
            for result in store.write_many(&items) {
                result.unwrap();
            }
        })
    });

    let mut conn = raw_connection(dir, "raw-write-many.db");
    let data = serde_json::to_string(&payload()).unwrap();
    let mut positions = vec![0i64; STREAMS as usize];
    let mut gpos = 0i64;
    let limit = best_of(3, || {
        rate(BUDGET, BATCH, || {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO evento_store_messages
                           (namespace, global_position, stream_name, position, id, category, cg_hash, type, data, metadata, time_ms)
                         VALUES ('default', ?1, ?2, ?3, ?4, 'account', 1, 'Deposited', ?5, NULL, 0)",
                    )
                    .unwrap();
                for n in 0..BATCH as usize {
                    gpos += 1;
                    let s = n % STREAMS as usize;
                    let id = uuid::Uuid::now_v7().to_string();
                    insert
                        .execute(params![
                            gpos,
                            format!("account-{s}"),
                            positions[s],
                            id,
                            data
                        ])
                        .unwrap();
                    positions[s] += 1;
                }
            }
            tx.commit().unwrap();
        })
    });
    report.ratio("embedded_write_many", kit, limit);
}

fn category_read(report: &mut Report, dir: &std::path::Path) {
    let store = EmbeddedStore::open(dir.join("kit-read.db")).unwrap();
    let message = NewMessage::new("Deposited", payload());
    for n in 0..READ_MESSAGES {
        let stream = format!("account-{}", n as u64 % STREAMS);
        store
            .write(&stream, &message, &WriteOptions::new())
            .unwrap();
    }
    let kit = best_of(3, || {
        rate(BUDGET, READ_MESSAGES as u64, || {
            let mut position = 1;
            loop {
                let batch = store
                    .get_category("account", &CategoryQuery::new().position(position))
                    .unwrap();
                match batch.last() {
                    Some(last) => position = last.global_position + 1,
                    None => break,
                }
            }
        })
    });

    // The raw side reads the same rows of the same file with one prepared
    // statement, into owned strings (no JSON decoding).
    let conn = Connection::open(dir.join("kit-read.db")).unwrap();
    let limit = best_of(3, || {
        rate(BUDGET, READ_MESSAGES as u64, || {
            let mut position = 1i64;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, stream_name, type, position, global_position, data, metadata, time_ms
                     FROM evento_store_messages
                     WHERE namespace = 'default' AND global_position >= ?1 AND category = 'account'
                     ORDER BY global_position LIMIT 1000",
                )
                .unwrap();
            loop {
                let rows: Vec<RawRow> = stmt
                    .query_map([position], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                        ))
                    })
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap();
                match rows.last() {
                    Some(last) => position = last.4 + 1,
                    None => break,
                }
            }
        })
    });
    report.ratio("embedded_category_read", kit, limit);
}
