//! `consumer_http`: messages a consumer on an `HttpStore` processes per
//! second (handler doing one insert, with positions and processed records
//! committed) against the raw rate of reading the same messages with
//! `category.get` through `HttpStore` from the same server in the same run.
//! `handler_latency_ms`: write → handler with push wake-ups over the store's
//! shared SSE connection.

use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{ConnectionState, Kit, MessageStore, NewMessage, WriteOptions};

use super::{percentile_ms, LATENCY_SAMPLES, MESSAGES};
use crate::report::Report;

pub fn run(report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::new().data_dir(dir.path().join("server"))).unwrap();
    let store = server.http_store().unwrap();
    let kit = Kit::builder()
        .database(dir.path().join("consumer.db"))
        .store(store.clone())
        .build()
        .unwrap();
    super::create_effects(&kit);
    throughput(report, &kit, &server);
    latency(report, &kit, &store);
    drop(kit);
    drop(store);
    server.shutdown();
}

/// More messages than the embedded figure: each round should last long
/// enough that a hiccup of this shared machine does not decide it.
const HTTP_MESSAGES: i64 = 4 * MESSAGES;
const ROUNDS: usize = 5;

fn throughput(report: &mut Report, kit: &Kit, server: &Server) {
    // Written straight into the server's store: only reading is measured.
    let started = Instant::now();
    let last = super::write_accounts(server.store(), HTTP_MESSAGES);
    println!(
        "({HTTP_MESSAGES} messages written in {:?})",
        started.elapsed()
    );

    // Raw: read the whole category with category.get through HttpStore.
    let read_all = || {
        let start = Instant::now();
        let read = super::read_category(kit, "account");
        assert_eq!(read as i64, HTTP_MESSAGES);
        read as f64 / start.elapsed().as_secs_f64()
    };
    // Kit: a fresh consumer each round processes the same messages.
    let consume = |round: usize| {
        let start = Instant::now();
        let consumer = kit
            .consumer("account", &format!("bench-{round}"))
            .spawn(super::insert_effect)
            .unwrap();
        consumer
            .wait_for_position(last, Duration::from_secs(300))
            .unwrap();
        let rate = HTTP_MESSAGES as f64 / start.elapsed().as_secs_f64();
        assert_eq!(consumer.stats().processed, HTTP_MESSAGES as u64);
        consumer.shutdown();
        rate
    };
    // Alternating rounds, so that load from elsewhere hits both alike.
    let (mut limit, mut consumer_rate) = (0f64, 0f64);
    for round in 0..ROUNDS {
        limit = limit.max(read_all());
        consumer_rate = consumer_rate.max(consume(round));
    }
    // The consumer needs a core for its worker besides the reading chain
    // (server + fetcher): other load on the machine shows in the ratio.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let one_minute = load.split_whitespace().next().unwrap_or("?");
        println!("(load average over the last minute: {one_minute})");
    }
    report.ratio("consumer_http", consumer_rate, limit);
}

fn latency(report: &mut Report, kit: &Kit, store: &eventodb_kit::HttpStore) {
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
    assert!(store
        .watch_status()
        .wait_for_state(ConnectionState::Connected, Duration::from_secs(10)));
    let msg = NewMessage::new("Ping", serde_json::json!({}));
    let mut samples: Vec<Duration> = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES + LATENCY_SAMPLES / 10 {
        let before = Instant::now();
        store
            .write(&format!("latency-{}", n % 10), &msg, &WriteOptions::new())
            .unwrap();
        let handled = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        // The first tenth warms up connections and caches.
        if n >= LATENCY_SAMPLES / 10 {
            samples.push(handled - before);
        }
    }
    assert_eq!(
        consumer.stats().processed as usize,
        samples.len() + LATENCY_SAMPLES / 10
    );
    consumer.shutdown();
    report.figure(
        "handler_latency_ms",
        &[
            ("p50", percentile_ms(&mut samples, 0.50)),
            ("p99", percentile_ms(&mut samples, 0.99)),
        ],
    );
}
