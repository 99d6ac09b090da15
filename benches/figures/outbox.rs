//! `outbox_write`, `outbox_write_batch`, `sender_delivery_embedded_1`,
//! `sender_delivery_embedded_4`, `delivery_latency_ms` and `drain_1m_rss_mb`
//! (and `sender_delivery_embedded_batch`: see `outbox_embedded.rs`; with the
//! `server` feature, `sender_delivery_1` and `sender_delivery_4` over HTTP:
//! see `outbox_http.rs`).
//!
//! Writes are compared with plain rusqlite inserting the same rows into the
//! same table with the same pragmas (generating the UUID v7 and the JSON
//! too). Delivery is compared with a raw loop of `stream.write` calls with
//! the same ids against a fresh store of the same kind (the kit's outbox
//! lives in a file of its own, as it would next to a remote EventoDB).

#[cfg(feature = "server")]
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use eventodb_kit::outbox::{OutboxEntry, SenderConfig};
#[cfg(feature = "server")]
use eventodb_kit::CategoryQuery;
use eventodb_kit::{EmbeddedStore, Kit, MessageStore, NewMessage, SubscribeTarget, WriteOptions};
use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::json;

use crate::report::{best_of_pair, rate, Report};

const KIT_SCHEMA: &str = include_str!("../../schema.sql");
const BUDGET: Duration = Duration::from_secs(2);
pub const STREAMS: usize = 100;
const DELIVERY_ROWS: usize = 20_000;
const LATENCY_SAMPLES: usize = 1_000;

fn payload(n: usize) -> serde_json::Value {
    json!({ "amount": 125, "currency": "EUR", "note": "monthly savings transfer", "n": n })
}

pub fn message(n: usize) -> NewMessage {
    NewMessage::new("Deposited", payload(n)).correlation_stream_name("transfer-1")
}

pub fn run(report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    write(report, dir.path());
    write_batch(report, dir.path());
    delivery(report, dir.path(), 1);
    delivery(report, dir.path(), 4);
    crate::outbox_embedded::run(report, dir.path());
    #[cfg(feature = "server")]
    crate::outbox_http::run(report, dir.path());
    #[cfg(not(feature = "server"))]
    println!(
        "(sender_delivery_1/_4 over HTTP need the server feature: cargo bench --features server)"
    );
    latency(report, dir.path());
    drain_rss(report, dir.path());
}

/// A fresh file for the raw side, with the pragmas the kit sets and the
/// tables of every `up` section of `schema` (the kit's `schema.sql`, or
/// the embedded store's).
pub fn raw_db(path: &Path, schema: &str) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        .unwrap();
    for section in schema.split("-- migrate:up ").skip(1) {
        let up = section.split("-- migrate:down").next().unwrap();
        let up = up.split_once('\n').unwrap().1; // drop the version number
        conn.execute_batch(up).unwrap();
    }
    conn
}

const RAW_INSERT: &str = "INSERT INTO evento_outbox
   (id, namespace, stream, type, data, metadata, expected_version, idempotency_key, created_at)
 VALUES (?1, 'default', ?2, 'Deposited', ?3, ?4, NULL, NULL, ?5)";

fn raw_insert(tx: &Connection, n: usize) {
    let m = message(n);
    let id = uuid::Uuid::now_v7().to_string();
    let data = serde_json::to_string(m.data()).unwrap();
    let metadata = serde_json::to_string(m.metadata().unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tx.prepare_cached(RAW_INSERT)
        .unwrap()
        .execute(params![
            id,
            format!("account-{}", n % STREAMS),
            data,
            metadata,
            now
        ])
        .unwrap();
}

fn write(report: &mut Report, dir: &Path) {
    let kit = Kit::builder()
        .database(dir.join("kit-write.db"))
        .build()
        .unwrap();
    let outbox = kit.outbox();
    let mut conn = raw_db(&dir.join("raw-write.db"), KIT_SCHEMA);
    let (mut kit_n, mut raw_n) = (0, 0);
    let (kit_rate, limit) = best_of_pair(
        3,
        || {
            rate(BUDGET, 1, || {
                kit_n += 1;
                outbox
                    .write(&format!("account-{}", kit_n % STREAMS), &message(kit_n))
                    .unwrap();
            })
        },
        || {
            rate(BUDGET, 1, || {
                raw_n += 1;
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .unwrap();
                raw_insert(&tx, raw_n);
                tx.commit().unwrap();
            })
        },
    );
    report.ratio("outbox_write", kit_rate, limit);
}

fn write_batch(report: &mut Report, dir: &Path) {
    let kit = Kit::builder()
        .database(dir.join("kit-batch.db"))
        .build()
        .unwrap();
    let outbox = kit.outbox();
    let mut conn = raw_db(&dir.join("raw-batch.db"), KIT_SCHEMA);
    let (mut kit_n, mut raw_n) = (0, 0);
    let (kit_rate, limit) = best_of_pair(
        3,
        || {
            rate(BUDGET, 100, || {
                let entries: Vec<OutboxEntry> = (0..100)
                    .map(|i| {
                        let n = kit_n + i;
                        OutboxEntry::new(format!("account-{}", n % STREAMS), message(n))
                    })
                    .collect();
                kit_n += 100;
                outbox.write_batch(&entries).unwrap();
            })
        },
        || {
            rate(BUDGET, 100, || {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .unwrap();
                for i in 0..100 {
                    raw_insert(&tx, raw_n + i);
                }
                raw_n += 100;
                tx.commit().unwrap();
            })
        },
    );
    report.ratio("outbox_write_batch", kit_rate, limit);
}

/// Writes `entries` to the outbox, 1000 per batch; their ids per stream,
/// in commit order (for [`check_store`]).
#[cfg(feature = "server")]
pub fn write_backlog(kit: &Kit, entries: &[OutboxEntry]) -> HashMap<String, Vec<String>> {
    let mut ids: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in entries.chunks(1000) {
        let written = kit.outbox().write_batch(chunk).unwrap();
        for (entry, id) in chunk.iter().zip(written) {
            ids.entry(entry.stream().to_string()).or_default().push(id);
        }
    }
    ids
}

/// Every message of `category` in `store` exactly once, each stream in
/// commit order: what [`write_backlog`] wrote.
#[cfg(feature = "server")]
pub fn check_store(store: &EmbeddedStore, category: &str, ids: &HashMap<String, Vec<String>>) {
    let mut stored: HashMap<String, Vec<String>> = HashMap::new();
    let mut position = 1;
    loop {
        let page = store
            .get_category(
                category,
                &CategoryQuery::new().position(position).batch_size(10_000),
            )
            .unwrap();
        let Some(last) = page.last() else { break };
        position = last.global_position + 1;
        for m in page {
            stored.entry(m.stream_name).or_default().push(m.id);
        }
    }
    assert_eq!(
        &stored, ids,
        "the store holds each stream's messages once, in order"
    );
}

/// Writes a backlog of `rows` to the outbox; returns the last id.
pub fn fill(kit: &Kit, rows: usize) -> String {
    let mut last = String::new();
    for chunk in (0..rows).collect::<Vec<_>>().chunks(1000) {
        let entries: Vec<OutboxEntry> = chunk
            .iter()
            .map(|&n| OutboxEntry::new(format!("account-{}", n % STREAMS), message(n)))
            .collect();
        last = kit.outbox().write_batch(&entries).unwrap().pop().unwrap();
    }
    last
}

fn delivery(report: &mut Report, dir: &Path, lanes: usize) {
    let (mut kit_round, mut raw_round) = (0, 0);
    let (kit_rate, limit) = best_of_pair(
        3,
        || {
            kit_round += 1;
            deliver_backlog(dir, lanes, kit_round)
        },
        || {
            raw_round += 1;
            raw_store_writes(dir, lanes, raw_round)
        },
    );
    report.ratio(
        &format!("sender_delivery_embedded_{lanes}"),
        kit_rate,
        limit,
    );
}

/// The sender delivering a backlog of `DELIVERY_ROWS` to a fresh embedded
/// store; messages per second.
fn deliver_backlog(dir: &Path, lanes: usize, round: usize) -> f64 {
    let store = EmbeddedStore::open(dir.join(format!("deliver-{lanes}-{round}-store.db"))).unwrap();
    let kit = Kit::builder()
        .database(dir.join(format!("deliver-{lanes}-{round}-kit.db")))
        .store(store)
        .build()
        .unwrap();
    drain_rate(&kit, DELIVERY_ROWS, lanes)
}

/// Fills `kit`'s outbox with `rows` messages, then times a sender with
/// `lanes` lanes delivering them all; messages per second.
pub fn drain_rate(kit: &Kit, rows: usize, lanes: usize) -> f64 {
    let last = fill(kit, rows);
    let start = Instant::now();
    let sender = kit
        .spawn_sender(SenderConfig::new().concurrency(lanes))
        .unwrap();
    let _ = sender
        .wait_until_sent(&last, Duration::from_secs(600))
        .unwrap();
    sender.wait_until_drained(Duration::from_secs(600)).unwrap();
    let elapsed = start.elapsed();
    sender.shutdown();
    rows as f64 / elapsed.as_secs_f64()
}

/// The raw limit: the same messages, with their ids, written straight to a
/// fresh store by `lanes` threads; messages per second.
fn raw_store_writes(dir: &Path, lanes: usize, round: usize) -> f64 {
    let store =
        Arc::new(EmbeddedStore::open(dir.join(format!("deliver-{lanes}-{round}-raw.db"))).unwrap());
    let messages: Vec<(String, NewMessage, WriteOptions)> = (0..DELIVERY_ROWS)
        .map(|n| {
            let id = uuid::Uuid::now_v7().to_string();
            (
                format!("account-{}", n % STREAMS),
                message(n),
                WriteOptions::new().id(id),
            )
        })
        .collect();
    let messages = Arc::new(messages);
    let start = Instant::now();
    let threads: Vec<_> = (0..lanes)
        .map(|lane| {
            let (store, messages) = (Arc::clone(&store), Arc::clone(&messages));
            thread::spawn(move || {
                for (stream, m, opts) in messages.iter().skip(lane).step_by(lanes) {
                    store.write(stream, m, opts).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    DELIVERY_ROWS as f64 / start.elapsed().as_secs_f64()
}

/// Write → in the store, one message at a time with the sender idle
/// between them; "in the store" is the store's own poke.
fn latency(report: &mut Report, dir: &Path) {
    let store = EmbeddedStore::open(dir.join("latency-store.db")).unwrap();
    let pokes = store.subscribe(&SubscribeTarget::all(0)).unwrap();
    let kit = Kit::builder()
        .database(dir.join("latency-kit.db"))
        .store(store)
        .build()
        .unwrap();
    let sender = kit.spawn_sender(SenderConfig::new()).unwrap();
    let outbox = kit.outbox();
    let mut samples: Vec<Duration> = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES + 50 {
        thread::sleep(Duration::from_millis(2)); // let the sender go idle
        let start = Instant::now();
        outbox.write("latency-1", &message(n)).unwrap();
        pokes.recv_timeout(Duration::from_secs(10)).unwrap();
        if n >= 50 {
            samples.push(start.elapsed());
        }
    }
    sender.shutdown();
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    report.figure(
        "delivery_latency_ms",
        &[("p50", ms(at(0.50))), ("p99", ms(at(0.99)))],
    );
}

/// Resident memory (MiB) from /proc/self/status: (VmRSS, VmHWM).
fn rss_mb() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Drains a backlog of 1 000 000 rows (`OUTBOX_BENCH_DRAIN_ROWS` to change)
/// while sampling resident memory.
fn drain_rss(report: &mut Report, dir: &Path) {
    let Some((before, _)) = rss_mb() else {
        println!("drain_1m_rss_mb: skipped (no /proc/self/status)");
        return;
    };
    let rows: usize = std::env::var("OUTBOX_BENCH_DRAIN_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let store = EmbeddedStore::open(dir.join("drain-store.db")).unwrap();
    let kit = Kit::builder()
        .database(dir.join("drain-kit.db"))
        .store(store)
        .build()
        .unwrap();
    let filled = Instant::now();
    let last = fill(&kit, rows);
    println!("drain: {rows} rows written in {:.1?}", filled.elapsed());
    let (start_rss, _) = rss_mb().unwrap();

    let peak = Arc::new(AtomicU64::new(start_rss.to_bits()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        thread::spawn(move || {
            let mut samples = Vec::new();
            while !done.load(Ordering::Acquire) {
                let (rss, _) = rss_mb().unwrap();
                samples.push(rss);
                if rss > f64::from_bits(peak.load(Ordering::Acquire)) {
                    peak.store(rss.to_bits(), Ordering::Release);
                }
                thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };
    let started = Instant::now();
    let sender = kit.spawn_sender(SenderConfig::new()).unwrap();
    let _ = sender
        .wait_until_sent(&last, Duration::from_secs(3600))
        .unwrap();
    sender
        .wait_until_drained(Duration::from_secs(3600))
        .unwrap();
    let took = started.elapsed();
    sender.shutdown();
    done.store(true, Ordering::Release);
    let samples = sampler.join().unwrap();
    let peak = f64::from_bits(peak.load(Ordering::Acquire));
    let deciles: Vec<String> = (0..10)
        .map(|d| {
            format!(
                "{:.1}",
                samples.get(d * samples.len() / 10).copied().unwrap_or(0.0)
            )
        })
        .collect();
    println!(
        "drain: RSS (MiB) at each tenth of the drain: {}",
        deciles.join(" ")
    );
    let tenth = samples.len() / 10;
    let early = samples.get(tenth).copied().unwrap_or(start_rss);
    let late = samples
        .get(samples.len().saturating_sub(tenth + 1))
        .copied()
        .unwrap_or(peak);
    println!(
        "drain: {rows} rows delivered in {took:.1?} ({:.0}/s); RSS before filling {before:.1} MiB",
        rows as f64 / took.as_secs_f64()
    );
    report.figure(
        "drain_1m_rss_mb",
        &[
            ("peak", peak),
            ("start", start_rss),
            ("at_10pct", early),
            ("at_90pct", late),
        ],
    );
}
