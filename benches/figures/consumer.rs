//! `consumer_vs_handwritten`: messages a consumer processes per second
//! (handler doing one insert, with positions and processed records
//! committed) against a hand-written loop doing the same durable work on the
//! same files — read 1,000 messages with `category.get`, insert their rows
//! and save the position in one transaction per batch — in the same run. `handler_latency_embedded_ms`: write → handler
//! with push wake-ups on the embedded store. With the `server` feature,
//! the same figures over HTTP (see [`http`]).

use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use eventodb_kit::{CategoryQuery, Kit, MessageStore, NewMessage, WriteOptions};
use serde_json::json;

use crate::report::Report;

#[cfg(feature = "server")]
mod http;

const MESSAGES: i64 = 20_000;
const STREAMS: i64 = 100;
const LATENCY_SAMPLES: usize = 1000;
/// Messages of the embedded throughput figure: at a million a second a
/// round of 20 000 lasts 20 ms, which a hiccup of this shared machine (or a
/// thread's start) decides; 100 000 last long enough to measure a rate.
const EMBEDDED_MESSAGES: i64 = 5 * MESSAGES;
/// Rounds of each side of the throughput figure (the best counts).
const ROUNDS: usize = 5;

pub fn run(report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let kit = Kit::builder()
        .database(dir.path().join("consumer.db"))
        .build()
        .unwrap();
    create_effects(&kit);
    throughput(report, &kit);
    latency(report, &kit);
    #[cfg(feature = "server")]
    http::run(report);
}

/// The handler of the throughput figures: one insert.
fn insert_effect(
    msg: &eventodb_kit::Message,
    tx: &rusqlite::Transaction<'_>,
) -> eventodb_kit::Result<()> {
    tx.prepare_cached("INSERT INTO bench_effects (event_id, amount) VALUES (?1, ?2)")?
        .execute((&msg.id, msg.data["amount"].as_i64().unwrap_or(0)))?;
    Ok(())
}

fn create_effects(kit: &Kit) {
    kit.db()
        .write(|tx| {
            tx.execute_batch(
                "CREATE TABLE bench_effects (event_id TEXT NOT NULL, amount INTEGER NOT NULL);",
            )?;
            Ok(())
        })
        .unwrap();
}

/// The `q` quantile of `samples` in milliseconds.
fn percentile_ms(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i].as_secs_f64() * 1000.0
}

/// Reads the whole of `category` with `category.get`, batch by batch (the
/// raw side of the consumer figures); returns how many messages it read.
fn read_category(kit: &Kit, category: &str) -> usize {
    let mut position = 1;
    let mut read = 0usize;
    loop {
        let batch = kit
            .store()
            .get_category(category, &CategoryQuery::new().position(position))
            .unwrap();
        match batch.last() {
            Some(m) => position = m.global_position + 1,
            None => return read,
        }
        read += batch.len();
    }
}

/// Writes `count` `Deposited` messages round-robin over the `account`
/// streams of `store`; returns the last global position.
fn write_accounts(store: &dyn MessageStore, count: i64) -> i64 {
    let mut last = 0;
    for n in 0..count {
        let msg = NewMessage::new("Deposited", payload(n));
        let stream = format!("account-{}", n % STREAMS);
        last = store
            .write(&stream, &msg, &WriteOptions::new())
            .unwrap()
            .global_position;
    }
    last
}

fn payload(n: i64) -> serde_json::Value {
    json!({ "amount": n, "currency": "EUR", "note": "monthly savings transfer" })
}

fn throughput(report: &mut Report, kit: &Kit) {
    let last = write_accounts(kit.store().as_ref(), EMBEDDED_MESSAGES);

    // Limit: the same durable work, written by hand without the promises
    // (no processed records, no per-message rollback, no lease).
    let hand = |round: usize| {
        let start = Instant::now();
        let handled = handwritten(kit, "account", &format!("hand-{round}"));
        assert_eq!(handled, EMBEDDED_MESSAGES as usize);
        handled as f64 / start.elapsed().as_secs_f64()
    };
    // Kit: a fresh consumer each round processes the same messages.
    let consume = |round: usize| {
        let start = Instant::now();
        let consumer = kit
            .consumer("account", &format!("bench-{round}"))
            .spawn(insert_effect)
            .unwrap();
        consumer
            .wait_for_position(last, Duration::from_secs(300))
            .unwrap();
        let rate = EMBEDDED_MESSAGES as f64 / start.elapsed().as_secs_f64();
        assert_eq!(consumer.stats().processed, EMBEDDED_MESSAGES as u64);
        consumer.shutdown();
        rate
    };
    // Alternating rounds, so that load from elsewhere hits both alike.
    let (mut limit, mut consumer_rate) = (0f64, 0f64);
    for round in 0..ROUNDS {
        limit = limit.max(hand(round));
        consumer_rate = consumer_rate.max(consume(round));
    }
    report.ratio("consumer_vs_handwritten", consumer_rate, limit);
}

/// The hand-written consumer: reads `category` a batch of 1,000 at a time
/// and, per batch, inserts the rows and saves the position in one
/// transaction. Returns how many messages it handled.
fn handwritten(kit: &Kit, category: &str, name: &str) -> usize {
    kit.db()
        .write(|tx| {
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS bench_positions (name TEXT PRIMARY KEY, position INTEGER NOT NULL)",
            )?;
            Ok(())
        })
        .unwrap();
    let mut position = 1;
    let mut handled = 0;
    loop {
        let batch = kit
            .store()
            .get_category(
                category,
                &CategoryQuery::new().position(position).batch_size(1000),
            )
            .unwrap();
        let Some(last) = batch.last() else {
            return handled;
        };
        position = last.global_position + 1;
        kit.db()
            .write(|tx| {
                for msg in &batch {
                    insert_effect(msg, tx)?;
                }
                tx.prepare_cached(
                    "INSERT INTO bench_positions (name, position) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                )?
                .execute((name, last.global_position))?;
                Ok(())
            })
            .unwrap();
        handled += batch.len();
    }
}

fn latency(report: &mut Report, kit: &Kit) {
    let (tx, rx) = unbounded::<Instant>();
    let consumer = kit
        .consumer("latency", "bench")
        .spawn(move |msg, db| {
            db.prepare_cached("INSERT INTO bench_effects (event_id, amount) VALUES (?1, 0)")?
                .execute([&msg.id])?;
            tx.send(Instant::now()).ok();
            Ok(())
        })
        .unwrap();
    let msg = NewMessage::new("Ping", json!({}));
    let mut samples: Vec<Duration> = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES {
        let before = Instant::now();
        kit.store()
            .write(&format!("latency-{}", n % 10), &msg, &WriteOptions::new())
            .unwrap();
        let handled = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        samples.push(handled - before);
    }
    consumer.shutdown();
    report.figure(
        "handler_latency_embedded_ms",
        &[
            ("p50", percentile_ms(&mut samples, 0.50)),
            ("p99", percentile_ms(&mut samples, 0.99)),
        ],
    );
}
