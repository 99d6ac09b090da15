//! Consumers on an `HttpStore` against the project's server: push wake-ups
//! over the store's shared SSE connection, polling while that connection is
//! cut and push again once it is back, consumer groups that agree with the
//! server's `category.get`, and requeued dead letters picked up by an idle
//! consumer.
//!
//! Deadlines are generous; how fast a write reaches a handler is measured in
//! `benches/` (`handler_latency_ms`), not asserted here.
#![cfg(feature = "server")]

mod consumer_support;
mod relay;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use eventodb_kit::dlq::DeadLetterFilter;
use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{
    CategoryQuery, ConnectionState, ConsumerGroup, HttpStore, MessageStore, NewMessage,
    RetryPolicy, WriteOptions, WriteResult,
};
use serde_json::json;

use consumer_support::{effects, insert_undecodable, kit_over, record_effect, DEADLINE};
use relay::Relay;

/// Long enough that only a push can deliver within any test's deadline.
const NO_POLLING: Duration = Duration::from_secs(3600);

/// An `HttpStore` on `url` (the server, or a relay in front of it) that
/// reconnects its SSE connection quickly.
fn http_store(url: &str, server: &Server) -> HttpStore {
    let token = server.default_token().unwrap().expose_secret().to_string();
    HttpStore::builder(url, &token)
        .reconnect_policy(
            RetryPolicy::new()
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(100)),
        )
        .build()
        .unwrap()
}

fn write(store: &dyn MessageStore, stream: &str, n: i64) -> WriteResult {
    store
        .write(
            stream,
            &NewMessage::new("Happened", json!({ "n": n })),
            &WriteOptions::new(),
        )
        .unwrap()
}

/// Waits for a condition no event announces (a counter of another thread).
fn wait_for(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "condition not met in {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_write_reaches_an_idle_consumer_by_push_over_sse() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let store = http_store(&server.url(), &server);
    let dir = tempfile::tempdir().unwrap();
    let kit = kit_over(dir.path(), store.clone());
    let (tx, rx) = unbounded();
    let consumer = kit
        .consumer("chat", "notifier")
        .poll_interval(NO_POLLING)
        .spawn(move |msg, db| {
            record_effect("notifier", msg, db)?;
            tx.send(msg.global_position).unwrap();
            Ok(())
        })
        .unwrap();
    assert!(store
        .watch_status()
        .wait_for_state(ConnectionState::Connected, DEADLINE));
    assert_eq!(
        store.watcher_count(),
        1,
        "the consumer watches its category"
    );
    let mut written = Vec::new();
    for round in 1..=3 {
        let w = write(&store, "chat-1", round);
        // With an hour between polls, only a poke can deliver this.
        assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), w.global_position);
        written.push(w.global_position);
    }
    consumer
        .wait_for_position(*written.last().unwrap(), DEADLINE)
        .unwrap();
    assert_eq!(effects(&kit, "notifier"), written);
    consumer.shutdown();
    assert_eq!(store.watcher_count(), 0, "shutdown ends the watch");
}

#[test]
fn consumers_poll_while_sse_is_cut_and_return_to_push_after_reconnect() {
    let server = Server::start(ServerConfig::new()).unwrap();
    // The consumers reach the server through a relay that can cut SSE;
    // the test writes directly.
    let relay = Relay::start(server.addr());
    let store = http_store(&relay.url(), &server);
    let writer = http_store(&server.url(), &server);
    let dir = tempfile::tempdir().unwrap();
    let kit = kit_over(dir.path(), store.clone());
    let spawn = |id: &'static str, poll: Duration| {
        kit.consumer("job", id)
            .poll_interval(poll)
            .spawn(move |msg, tx| record_effect(id, msg, tx))
            .unwrap()
    };
    // Both share the store's one SSE connection. `poller` falls back to
    // polling quickly; `pushed` practically never polls.
    let poller = spawn("poller", Duration::from_millis(20));
    let pushed = spawn("pushed", NO_POLLING);
    let hub = store.watch_status();
    assert!(hub.wait_for_state(ConnectionState::Connected, DEADLINE));
    // `pushed` read the empty category once and waits for a poke.
    wait_for(|| pushed.stats().fetches >= 1);
    let first = write(&writer, "job-1", 1).global_position;
    pushed.wait_for_position(first, DEADLINE).unwrap();
    // The poke, a read with `first`, a read that came back empty: idle again.
    wait_for(|| pushed.stats().fetches >= 3);
    poller.wait_for_position(first, DEADLINE).unwrap();

    relay.cut_sse();
    assert!(hub.wait_until(DEADLINE, |s| s.disconnects >= 1));
    // The break wakes every watcher once, so `pushed` reads at once.
    wait_for(|| pushed.stats().fetches >= 4);
    let mut during = Vec::new();
    for n in 2..=4 {
        during.push(write(&writer, &format!("job-{n}"), n).global_position);
        // No pokes now: this is polling.
        poller
            .wait_for_position(*during.last().unwrap(), DEADLINE)
            .unwrap();
    }
    assert_eq!(
        effects(&kit, "poller"),
        [vec![first], during.clone()].concat()
    );
    let idle = pushed.stats();
    assert_eq!(
        (idle.fetches, idle.position),
        (4, first),
        "after that read, without pokes, a consumer that does not poll stays idle"
    );
    assert_ne!(hub.state(), ConnectionState::Connected);

    relay.restore_sse();
    assert!(hub.wait_until(DEADLINE, |s| s.connects >= 2
        && s.state == ConnectionState::Connected));
    // Only a poke can wake `pushed`; it then catches up on everything.
    let after = write(&writer, "job-5", 5).global_position;
    pushed.wait_for_position(after, DEADLINE).unwrap();
    poller.wait_for_position(after, DEADLINE).unwrap();
    let all = [vec![first], during, vec![after]].concat();
    assert_eq!(effects(&kit, "pushed"), all);
    assert_eq!(effects(&kit, "poller"), all);
    poller.shutdown();
    pushed.shutdown();
}

#[test]
fn a_group_of_three_over_http_agrees_with_the_servers_category_get() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let store = http_store(&server.url(), &server);
    let dir = tempfile::tempdir().unwrap();
    let kit = kit_over(dir.path(), store.clone());
    let mut last = 0;
    for i in 0..60 {
        last = write(&store, &format!("account-{}", i % 20), i).global_position;
    }
    let (tx, rx) = unbounded();
    let members: Vec<_> = (0..3)
        .map(|member| {
            let tx = tx.clone();
            kit.consumer("account", &format!("projector-{member}"))
                .consumer_group(ConsumerGroup::new(member, 3).unwrap())
                .batch_size(7)
                .spawn(move |msg, _db| {
                    tx.send((member, msg.stream_name.clone(), msg.id.clone()))
                        .unwrap();
                    Ok(())
                })
                .unwrap()
        })
        .collect();
    let mut seen = Vec::new();
    while seen.len() < 60 {
        seen.push(rx.recv_timeout(DEADLINE).expect("every event is handled"));
    }
    let mut owners = std::collections::HashMap::new();
    for (member, handle) in members.iter().enumerate() {
        let group = ConsumerGroup::new(member as i64, 3).unwrap();
        let share = store
            .get_category("account", &CategoryQuery::new().consumer_group(group))
            .unwrap();
        let expected: Vec<&str> = share.iter().map(|m| m.id.as_str()).collect();
        let handled: Vec<&str> = seen
            .iter()
            .filter(|(m, _, _)| *m == member as i64)
            .map(|(_, _, id)| id.as_str())
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(handled, expected, "member {member} handles its share");
        handle
            .wait_for_position(share.last().unwrap().global_position, DEADLINE)
            .unwrap();
        for m in &share {
            assert_eq!(
                *owners.entry(m.stream_name.clone()).or_insert(member),
                member
            );
        }
    }
    assert_eq!(owners.len(), 20, "every stream has exactly one owner");
    assert!(last > 0);
    for h in members {
        h.shutdown();
    }
}

#[test]
fn an_idle_consumer_picks_up_a_requeued_dead_letter() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let store = http_store(&server.url(), &server);
    let dir = tempfile::tempdir().unwrap();
    let kit = kit_over(dir.path(), store.clone());
    let healed = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let (ran_tx, ran_rx) = unbounded();
    let (h, r) = (Arc::clone(&healed), Arc::clone(&runs));
    let consumer = kit
        .consumer("task", "worker")
        .retry_policy(RetryPolicy::new().max_attempts(1))
        .poll_interval(Duration::from_millis(50))
        .spawn_typed(move |msg, tx| {
            record_effect("worker", msg, tx)?;
            if msg.data["n"] == 1 {
                r.fetch_add(1, Ordering::SeqCst);
                ran_tx.send(()).unwrap();
                if !h.load(Ordering::SeqCst) {
                    return Err("not yet".into());
                }
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })
        .unwrap();
    let poison = write(&store, "task-1", 1).global_position;
    let last = write(&store, "task-1", 2).global_position;
    consumer.wait_for_position(last, DEADLINE).unwrap();
    ran_rx.recv_timeout(DEADLINE).unwrap();
    let dlq = kit.dlq();
    let letter = dlq.list(&DeadLetterFilter::new()).unwrap().remove(0);
    assert_eq!(letter.read_message().unwrap().global_position, poison);
    assert_eq!(effects(&kit, "worker"), [last]);

    // Nothing more is written: the consumer idles, blocked on its wake-ups,
    // and still finds the requeued letter on its poll tick.
    healed.store(true, Ordering::SeqCst);
    dlq.requeue(letter.id).unwrap();
    ran_rx
        .recv_timeout(DEADLINE)
        .expect("the requeued letter runs");
    // The run's commit has no event to wait on: poll it with a deadline.
    wait_for(|| consumer.stats().requeued_processed == 1);
    assert_eq!(dlq.count(&DeadLetterFilter::new()).unwrap(), 0);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "requeue ran it once more");
    assert_eq!(effects(&kit, "worker"), [poison, last]);
    assert_eq!(consumer.position(), last, "the position did not move back");
    consumer.shutdown();
}

/// Puts a message of `stream` that cannot be decoded straight into the
/// server's database file `db`; returns its global position.
fn write_undecodable(db: &std::path::Path, stream: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    insert_undecodable(&conn, stream).unwrap()
}

#[test]
fn a_message_that_cannot_be_decoded_fails_alone_over_http_and_the_category_flows() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::new().data_dir(data.path())).unwrap();
    let store = http_store(&server.url(), &server);
    let dir = tempfile::tempdir().unwrap();
    let kit = kit_over(dir.path(), store.clone());
    let before: Vec<i64> = (1..=3)
        .map(|n| write(&store, "order-1", n).global_position)
        .collect();
    let poison = write_undecodable(&data.path().join("eventodb-kit.sqlite"), "order-9");
    let after: Vec<i64> = (4..=6)
        .map(|n| write(&store, "order-2", n).global_position)
        .collect();

    // A plain read returns what comes before it, then names it.
    let read = store.get_category("order", &CategoryQuery::new()).unwrap();
    assert_eq!(
        read.iter().map(|m| m.global_position).collect::<Vec<_>>(),
        before
    );
    let err = store
        .get_category("order", &CategoryQuery::new().position(poison))
        .unwrap_err();
    assert!(
        matches!(&err, eventodb_kit::Error::Undecodable { global_position, stream, .. }
            if *global_position == poison && stream == "order-9"),
        "{err}"
    );

    // A consumer dead-letters it and goes on.
    let consumer = kit
        .consumer("order", "ledger")
        .retry_policy(
            RetryPolicy::new()
                .max_attempts(2)
                .initial_delay(Duration::from_millis(5)),
        )
        .spawn(|msg, tx| record_effect("ledger", msg, tx))
        .unwrap();
    consumer
        .wait_for_position(*after.last().unwrap(), DEADLINE)
        .unwrap();
    assert_eq!(consumer.stats().dead_lettered, 1);
    consumer.shutdown();
    let done = effects(&kit, "ledger");
    assert_eq!(done, [before, after].concat());
    let letters = kit.dlq().list(&DeadLetterFilter::new()).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].message["globalPosition"], poison);
    assert!(
        letters[0].error.contains("cannot be decoded"),
        "{}",
        letters[0].error
    );
}
