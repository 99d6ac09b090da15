//! `sender_delivery_embedded_batch`: the sender (default configuration)
//! draining a backlog of 20 000 messages into a fresh embedded store in a
//! file of its own, against plain rusqlite inserting the same rows into the
//! store's table of a fresh file, 100 rows per `BEGIN IMMEDIATE`
//! transaction, with the same pragmas — what a hand-written batch loader
//! would do.
//!
//! The kit side is timed from spawning the sender until the outbox is
//! drained (claims, writes through the store's `write_many`, write-backs);
//! the raw side from the first insert to the last commit, with ids and JSON
//! made beforehand.

use std::path::Path;
use std::time::Instant;

use eventodb_kit::{EmbeddedStore, Kit};
use rusqlite::{params, TransactionBehavior};

use crate::outbox::{drain_rate, message, raw_db, STREAMS};
use crate::report::{best_of_pair, Report};

const STORE_SCHEMA: &str = include_str!("../../src/store/embedded/schema.sql");
const ROWS: usize = 20_000;
/// Rows per raw transaction.
const BATCH: usize = 100;

pub fn run(report: &mut Report, dir: &Path) {
    let (mut kit_round, mut raw_round) = (0, 0);
    let (kit, limit) = best_of_pair(
        3,
        || {
            kit_round += 1;
            sender_drain(dir, kit_round)
        },
        || {
            raw_round += 1;
            raw_batches(dir, raw_round)
        },
    );
    report.ratio("sender_delivery_embedded_batch", kit, limit);
}

/// The sender with its defaults delivering `ROWS` to a fresh embedded
/// store; messages per second.
fn sender_drain(dir: &Path, round: usize) -> f64 {
    let store = EmbeddedStore::open(dir.join(format!("batch-{round}-store.db"))).unwrap();
    let kit = Kit::builder()
        .database(dir.join(format!("batch-{round}-kit.db")))
        .store(store)
        .build()
        .unwrap();
    drain_rate(&kit, ROWS, 1)
}

/// The same messages (ids, streams, data, metadata) inserted into the
/// store's table by plain rusqlite, `BATCH` rows per transaction;
/// messages per second.
fn raw_batches(dir: &Path, round: usize) -> f64 {
    let mut conn = raw_db(&dir.join(format!("batch-{round}-raw.db")), STORE_SCHEMA);
    let rows: Vec<(String, String, String, String)> = (0..ROWS)
        .map(|n| {
            let m = message(n);
            (
                uuid::Uuid::now_v7().to_string(),
                format!("account-{}", n % STREAMS),
                serde_json::to_string(m.data()).unwrap(),
                serde_json::to_string(m.metadata().unwrap()).unwrap(),
            )
        })
        .collect();
    let mut positions = vec![0i64; STREAMS];
    let mut global = 0i64;
    let start = Instant::now();
    for (chunk_start, chunk) in (0..).step_by(BATCH).zip(rows.chunks(BATCH)) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO evento_store_messages
                       (namespace, global_position, stream_name, position, id, category, cg_hash,
                        type, data, metadata, time_ms)
                     VALUES ('default', ?1, ?2, ?3, ?4, 'account', 1, 'Deposited', ?5, ?6, ?7)",
                )
                .unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            for (i, (id, stream, data, metadata)) in chunk.iter().enumerate() {
                let s = (chunk_start + i) % STREAMS;
                global += 1;
                insert
                    .execute(params![
                        global,
                        stream,
                        positions[s],
                        id,
                        data,
                        metadata,
                        now
                    ])
                    .unwrap();
                positions[s] += 1;
            }
        }
        tx.commit().unwrap();
    }
    ROWS as f64 / start.elapsed().as_secs_f64()
}
