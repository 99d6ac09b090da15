//! Operating the kit.
//!
//! * `metrics_snapshot` — `kit.metrics()` per second on a namespace with an
//!   outbox backlog of 10 000 rows, 100 dead letters and 10 consumers each
//!   more than 1000 messages behind (so every lag read returns the full
//!   1000), against doing the same reads directly in the same run: the
//!   outbox and dead-letter counts in plain SQL and one 1000-message
//!   `category.get` per consumer.
//! * `consumer_with_hook` — messages per second of a consumer on a kit with
//!   a hook that counts handled messages, against the same consumer on a
//!   kit without hooks (same file, same messages, alternating rounds, each
//!   kind going first every other round).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventodb_kit::hooks::{Handled, KitHook};
use eventodb_kit::{CategoryQuery, Kit, NewMessage, WriteOptions};
use serde_json::json;

use crate::report::{rate, Report};

const CONSUMERS: usize = 10;
const STORE_MESSAGES: i64 = 20_000;
const BACKLOG: usize = 10_000;
const ROUNDS: usize = 3;
/// Consumer rounds are short (≈ 40 ms): more of them, best of each kind.
const HOOK_ROUNDS: usize = 9;

pub fn run(report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.db");
    let kit = Kit::builder().database(&path).build().unwrap();
    fill(&kit);
    snapshot(report, &kit);
    hooks(report, &path);
}

fn fill(kit: &Kit) {
    for n in 0..STORE_MESSAGES {
        kit.store()
            .write(
                &format!("account-{}", n % 100),
                &NewMessage::new("Deposited", json!({ "amount": n, "note": "monthly" })),
                &WriteOptions::new(),
            )
            .unwrap();
    }
    let entries: Vec<_> = (0..BACKLOG)
        .map(|n| {
            eventodb_kit::OutboxEntry::new(
                format!("order-{}", n % 50),
                NewMessage::new("Placed", json!({ "n": n })),
            )
        })
        .collect();
    kit.outbox().write_batch(&entries).unwrap();
    kit.db()
        .write(|tx| {
            for n in 0..100 {
                tx.execute(
                    "INSERT INTO evento_dead_letters (source, namespace, message_id, stream, type,
                       category, consumer_id, message, error, attempts, first_failed_at, last_failed_at)
                     VALUES ('consumer', 'default', ?1, 'account-1', 'Deposited', 'account', 'c0',
                       '{}', 'bench', 1, 0, 0)",
                    [format!("dead-{n}")],
                )?;
            }
            Ok(())
        })
        .unwrap();
    for c in 0..CONSUMERS {
        kit.checkpoints()
            .set("account", &format!("c{c}"), (c as i64) * 500)
            .unwrap();
    }
}

fn snapshot(report: &mut Report, kit: &Kit) {
    let m = kit.metrics().unwrap();
    assert_eq!(m.consumers.len(), CONSUMERS);
    assert!(m
        .consumers
        .iter()
        .all(|c| c.lag.as_ref().unwrap().messages == 1000));
    let positions: Vec<i64> = m.consumers.iter().map(|c| c.position).collect();
    let budget = Duration::from_secs(2);
    let raw = || {
        kit.db()
            .read(|c| {
                let count = |sql: &str| -> rusqlite::Result<i64> { c.query_row(sql, [], |r| r.get(0)) };
                count("SELECT COUNT(*) FROM evento_outbox WHERE namespace = 'default' AND sent_at IS NULL AND dead_lettered_at IS NULL")?;
                count("SELECT COUNT(*) FROM evento_dead_letters WHERE namespace = 'default'")?;
                count("SELECT COUNT(*) FROM evento_consumer_positions WHERE namespace = 'default'")?;
                Ok(())
            })
            .unwrap();
        for p in &positions {
            let batch = kit
                .store()
                .get_category(
                    "account",
                    &CategoryQuery::new().position(p + 1).batch_size(1000),
                )
                .unwrap();
            assert_eq!(batch.len(), 1000);
        }
    };
    let (mut kit_best, mut limit_best) = (0.0f64, 0.0f64);
    for _ in 0..ROUNDS {
        limit_best = limit_best.max(rate(budget, 1, raw));
        kit_best = kit_best.max(rate(budget, 1, || {
            kit.metrics().unwrap();
        }));
    }
    report.ratio("metrics_snapshot", kit_best, limit_best);
}

#[derive(Debug, Default)]
struct CountHandled(AtomicU64);

impl KitHook for CountHandled {
    fn on_handled(&self, _: &Handled<'_>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Messages per second of a fresh consumer reading the whole category.
fn consume(kit: &Kit, id: &str) -> f64 {
    let start = Instant::now();
    let consumer = kit.consumer("account", id).spawn(|_m, _tx| Ok(())).unwrap();
    consumer
        .wait_for_position(STORE_MESSAGES, Duration::from_secs(300))
        .unwrap();
    let rate = STORE_MESSAGES as f64 / start.elapsed().as_secs_f64();
    consumer.shutdown();
    rate
}

fn hooks(report: &mut Report, path: &std::path::Path) {
    let plain = Kit::builder().database(path).build().unwrap();
    let counter = Arc::new(CountHandled::default());
    let hooked = Kit::builder()
        .database(path)
        .hook(counter.clone())
        .build()
        .unwrap();
    let (mut with, mut without) = (0.0f64, 0.0f64);
    for round in 0..HOOK_ROUNDS {
        // Alternate which goes first, so neither pays the other's checkpoints.
        if round % 2 == 0 {
            with = with.max(consume(&hooked, &format!("hooked-{round}")));
            without = without.max(consume(&plain, &format!("plain-{round}")));
        } else {
            without = without.max(consume(&plain, &format!("plain-{round}")));
            with = with.max(consume(&hooked, &format!("hooked-{round}")));
        }
    }
    // `shutdown` joined the worker: every hook call has returned.
    assert_eq!(
        counter.0.load(Ordering::Relaxed),
        (HOOK_ROUNDS as u64) * STORE_MESSAGES as u64
    );
    report.ratio("consumer_with_hook", with, without);
}
