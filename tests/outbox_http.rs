//! The sender over real HTTP to the project's server: every message arrives
//! once, in stream order; through a proxy that drops, resets after the
//! request was processed, delays and answers 500 at ~30 % of requests,
//! nothing is lost, doubled or reordered; and with the server stopped for a
//! while, writes keep succeeding and the backlog drains after the restart.
#![cfg(feature = "server")]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::proxy::Proxy;
use eventodb_kit::outbox::{Delivery, OutboxEntry};
use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{
    HttpStore, Kit, MessageStore, NewMessage, PauseReason, RetryPolicy, WriteOptions,
};
use serde_json::json;

fn http_store(url: &str, token: &str) -> HttpStore {
    HttpStore::builder(url, token)
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn kit(dir: &std::path::Path, store: HttpStore) -> Kit {
    Kit::builder()
        .database(dir.join("app.db"))
        .store(store)
        .build()
        .unwrap()
}

fn token(server: &Server) -> String {
    server.default_token().unwrap().expose_secret().to_string()
}

/// Messages over `streams` streams, plus as many for `ledger-1` written with
/// expected versions (each must land exactly once, at its position).
fn write_workload(kit: &Kit, streams: usize, per_stream: usize) -> Vec<String> {
    let outbox = kit.outbox();
    let ledger_version = |kit: &Kit| -> i64 {
        kit.db()
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) - 1 FROM evento_outbox WHERE stream = 'ledger-1'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap()
    };
    let mut ids = Vec::new();
    for (version, n) in (ledger_version(kit)..).zip(0..per_stream) {
        let entries: Vec<OutboxEntry> = (0..streams)
            .map(|s| {
                let m = NewMessage::new("Deposited", json!({ "s": s, "n": n }))
                    .trace_id(format!("t-{n}"));
                OutboxEntry::new(format!("account-{s}"), m)
            })
            .collect();
        ids.extend(outbox.write_batch(&entries).unwrap());
        let versioned = WriteOptions::new().expected_version(version);
        let m = NewMessage::new("Versioned", json!({ "n": n }));
        ids.push(outbox.write_with("ledger-1", &m, &versioned).unwrap());
    }
    ids
}

/// What the server holds is exactly the outbox: every message once, with
/// its content, in commit order per stream.
fn assert_exactly_the_outbox(kit: &Kit, server_store: &dyn MessageStore) {
    let stored = common::all_messages(server_store);
    let unique: HashSet<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(unique.len(), stored.len(), "no message twice");
    assert_eq!(
        common::ids_by_stream(server_store),
        common::outbox_ids_by_stream(kit),
        "every message, in commit order per stream"
    );
    for m in &stored {
        let row = kit.outbox().get(&m.id).unwrap();
        assert_eq!(
            (&m.message_type, &m.data, &m.metadata),
            (&row.message_type, &row.data, &row.metadata)
        );
    }
}

/// A server whose data lives in a directory of its own, so that it can be
/// stopped and started again on the same port, with the same token.
struct Restartable {
    data: tempfile::TempDir,
    port: u16,
    token: String,
}

impl Restartable {
    fn start() -> (Restartable, Server) {
        let data = tempfile::tempdir().unwrap();
        let server = Server::start(ServerConfig::new().data_dir(data.path())).unwrap();
        let (port, token) = (server.addr().port(), token(&server));
        (Restartable { data, port, token }, server)
    }

    fn restart(&self) -> Server {
        let config = ServerConfig::new()
            .port(self.port)
            .data_dir(self.data.path())
            .token(self.token.clone());
        Server::start(config).unwrap()
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(5))
        .max_delay(Duration::from_millis(50))
}

#[test]
fn every_message_arrives_once_over_http() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kit = kit(dir.path(), http_store(&server.url(), &token(&server)));
    let ids = write_workload(&kit, 8, 10);
    let sender = kit.spawn_sender(common::fast().concurrency(4)).unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();
    assert_exactly_the_outbox(&kit, server.store());

    let stale = kit
        .outbox()
        .write_with(
            "ledger-1",
            &NewMessage::new("Versioned", json!({})),
            &WriteOptions::new().expected_version(0),
        )
        .unwrap();
    match sender.wait_until_sent(&stale, common::WAIT).unwrap() {
        Delivery::DeadLettered { error } => assert!(error.contains("version conflict"), "{error}"),
        Delivery::Sent => panic!("a stale expected version must not land"),
    }
    assert_eq!(sender.stats().unwrap().sent, ids.len() as u64);
    sender.shutdown();
    server.shutdown();
}

#[test]
fn faults_on_the_wire_lose_nothing_and_double_nothing() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let proxy = Proxy::start(server.addr());
    proxy.set_fault_rate(30);
    let dir = tempfile::tempdir().unwrap();
    let kit = kit(dir.path(), http_store(&proxy.url(), &token(&server)));
    let config = common::fast().concurrency(3).retry(fast_retry());
    let sender = kit.spawn_sender(config).unwrap();
    // Write and drain through the faulty wire until every kind of fault
    // has struck and the ambiguous case (processed, then failed) happened.
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.extend(write_workload(&kit, 6, 5));
        if let Err(e) = sender.wait_until_drained(common::WAIT) {
            panic!("{e}: {:#?} {:?}", sender.stats().unwrap(), proxy.counts());
        }
        let all_kinds = proxy.counts().1.iter().all(|(_, n)| *n >= 3);
        if all_kinds && sender.stats().unwrap().already_delivered > 0 {
            break;
        }
    }
    proxy.set_fault_rate(0);
    ids.extend(write_workload(&kit, 6, 5));
    sender.wait_until_drained(common::WAIT).unwrap();

    assert_exactly_the_outbox(&kit, server.store());
    let stats = sender.stats().unwrap();
    assert_eq!(stats.sent, ids.len() as u64);
    assert_eq!(stats.dead_lettered, 0, "no fault is a reason to give up");
    assert!(
        stats.already_delivered > 0,
        "resends were recognised by their id"
    );
    let (requests, faults) = proxy.counts();
    assert!(faults.iter().all(|(_, n)| *n >= 3), "{faults:?}");
    assert!(requests > ids.len() as u64);
    sender.shutdown();
    drop(proxy);
    server.shutdown();
}

/// One busy stream through the faulty wire: its messages ride in one chain
/// per window, so every fault lands mid-chain — and still every message
/// arrives once, in order.
#[test]
fn faults_on_the_wire_keep_one_busy_stream_in_order() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let proxy = Proxy::start(server.addr());
    proxy.set_fault_rate(30);
    let dir = tempfile::tempdir().unwrap();
    let kit = kit(dir.path(), http_store(&proxy.url(), &token(&server)));
    let sender = kit
        .spawn_sender(common::fast().retry(fast_retry()))
        .unwrap();
    let mut ids = Vec::new();
    for round in 0..6 {
        let entries: Vec<OutboxEntry> = (0..50)
            .map(|n| {
                OutboxEntry::new(
                    "ledger-9",
                    NewMessage::new("Posted", json!({ "r": round, "n": n })),
                )
            })
            .collect();
        ids.extend(kit.outbox().write_batch(&entries).unwrap());
        sender.wait_until_drained(common::WAIT).unwrap();
    }
    proxy.set_fault_rate(0);
    let stats = sender.stats().unwrap();
    sender.shutdown();
    assert_eq!((stats.sent, stats.dead_lettered), (ids.len() as u64, 0));
    let stored: Vec<String> = common::all_messages(server.store())
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(stored, ids, "every message once, in commit order");
    let (_, faults) = proxy.counts();
    assert!(
        faults.iter().map(|(_, n)| n).sum::<u64>() > 10,
        "{faults:?}"
    );
    drop(proxy);
    server.shutdown();
}

#[test]
fn with_the_server_stopped_writes_succeed_and_the_backlog_drains_after_restart() {
    let (site, server) = Restartable::start();
    let dir = tempfile::tempdir().unwrap();
    let kit = kit(dir.path(), http_store(&server.url(), &site.token));
    let sender = kit
        .spawn_sender(common::fast().retry(fast_retry()).concurrency(2))
        .unwrap();
    let before = write_workload(&kit, 3, 3);
    sender.wait_until_drained(common::WAIT).unwrap();

    server.shutdown();
    let during = write_workload(&kit, 4, 6); // the outbox keeps accepting
    common::wait_for("the sender to pause", common::WAIT, || {
        sender.health().pause.is_some()
    });
    let pause = sender.health().pause.unwrap();
    assert_eq!(pause.reason, PauseReason::Unreachable);
    assert!(sender.health().last_error.is_some());
    assert!(kit.outbox().status().unwrap().unsent > 0);

    let server = site.restart();
    sender.wait_until_drained(common::WAIT).unwrap();
    assert_exactly_the_outbox(&kit, server.store());
    assert_eq!(
        sender.stats().unwrap().sent,
        (before.len() + during.len()) as u64
    );
    sender.shutdown();
    server.shutdown();
}

/// An outage is one pause, not one per message that failed in it: a sender
/// with many streams in flight when the store went away must not back off
/// as if each of them had been a separate failed probe (which, with a long
/// maximum delay, would silence it for minutes after a brief outage).
#[test]
fn a_brief_outage_pauses_the_sender_briefly() {
    let (site, server) = Restartable::start();
    let dir = tempfile::tempdir().unwrap();
    let kit = kit(dir.path(), http_store(&server.url(), &site.token));
    // From 5 ms, doubling up to two minutes: a dozen doublings reach the
    // test's deadline; probes during the outage below stay far from it.
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(5))
        .max_delay(Duration::from_secs(120));
    let sender = kit.spawn_sender(common::fast().retry(retry)).unwrap();
    common::wait_for("the lease", common::WAIT, || sender.health().active);

    server.shutdown();
    let ids = write_workload(&kit, 40, 1); // 40 streams in one claim
    common::wait_for("the sender to pause", common::WAIT, || {
        sender.stats().unwrap().pause.is_some()
    });
    let server = site.restart();
    sender.wait_until_drained(common::WAIT).unwrap();
    assert_exactly_the_outbox(&kit, server.store());
    let stats = sender.stats().unwrap();
    assert_eq!(stats.sent, ids.len() as u64);
    assert_eq!(stats.retried, 0, "an outage uses up no attempts");
    assert!(stats.pause.is_none());
    sender.shutdown();
    server.shutdown();
}
