//! The sender against `EmbeddedStore`, end to end on real files: every
//! message arrives once with its id, type, data and metadata, in stream
//! order; commits wake the sender; expected versions land or dead-letter;
//! a poison message does not block other streams and is delivered once
//! after requeue; a failing store delays but loses nothing.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use eventodb_kit::dlq::{DeadLetterFilter, DeadLetterSource};
use eventodb_kit::outbox::{AfterDeadLetter, Delivery, OutboxEntry, OutboxState, SenderConfig};
use eventodb_kit::{
    DbOptions, EmbeddedStore, Error, Kit, NewMessage, RetryPolicy, StreamQuery, WriteOptions,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// Writes `streams` × `per_stream` messages, interleaved across streams,
/// through every kind of write; returns the ids in commit order.
fn write_mixed(kit: &Kit, streams: usize, per_stream: usize) -> Vec<String> {
    let outbox = kit.outbox();
    let mut ids = Vec::new();
    let message = |s: usize, n: usize| {
        NewMessage::new(format!("Event{}", n % 3), json!({ "stream": s, "n": n }))
            .correlation_stream_name(format!("flow-{s}"))
            .metadata_value("n", n)
    };
    for n in 0..per_stream {
        match n % 3 {
            0 => {
                for s in 0..streams {
                    ids.push(
                        outbox
                            .write(&format!("account-{s}"), &message(s, n))
                            .unwrap(),
                    );
                }
            }
            1 => {
                let batch: Vec<OutboxEntry> = (0..streams)
                    .map(|s| OutboxEntry::new(format!("account-{s}"), message(s, n)))
                    .collect();
                ids.extend(outbox.write_batch(&batch).unwrap());
            }
            _ => kit
                .db()
                .write(|tx| {
                    for s in 0..streams {
                        ids.push(outbox.write_in(tx, &format!("account-{s}"), &message(s, n))?);
                    }
                    Ok(())
                })
                .unwrap(),
        }
    }
    ids
}

/// The store holds exactly the outbox's messages, once each, with their
/// content, in commit order per stream.
fn assert_delivered_exactly(kit: &Kit) {
    let stored = common::all_messages(&**kit.store());
    let unique: HashSet<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(unique.len(), stored.len(), "no message twice");
    assert_eq!(
        common::ids_by_stream(&**kit.store()),
        common::outbox_ids_by_stream(kit),
        "every message, in commit order per stream"
    );
    let outbox = kit.outbox();
    for m in &stored {
        let row = outbox.get(&m.id).unwrap();
        assert_eq!(row.state(), OutboxState::Sent);
        assert_eq!((&m.message_type, &m.data), (&row.message_type, &row.data));
        assert_eq!(m.metadata, row.metadata);
    }
}

fn deliver_everything(lanes: usize) {
    let t = common::kit();
    let ids = write_mixed(&t.kit, 12, 30);
    let sender = t
        .kit
        .spawn_sender(common::fast().concurrency(lanes))
        .unwrap();
    sender.wait_until_drained(WAIT).unwrap();
    assert_delivered_exactly(&t.kit);
    // More while it runs.
    let more = write_mixed(&t.kit, 5, 6);
    assert_eq!(
        sender.wait_until_sent(more.last().unwrap(), WAIT).unwrap(),
        Delivery::Sent
    );
    sender.wait_until_drained(WAIT).unwrap();
    assert_delivered_exactly(&t.kit);

    let stats = sender.stats().unwrap();
    let total = (ids.len() + more.len()) as u64;
    assert_eq!(
        (stats.sent, stats.already_delivered, stats.backlog),
        (total, 0, 0)
    );
    assert_eq!(stats.latency.count, total);
    assert!(stats.latency.p99.is_some());
    let health = sender.health();
    assert!(health.running && health.active && health.last_success.is_some());
    assert_eq!(health.last_error, None);
    sender.shutdown();
}

#[test]
fn every_message_arrives_once_in_stream_order_one_lane() {
    deliver_everything(1);
}

#[test]
fn every_message_arrives_once_in_stream_order_four_lanes() {
    deliver_everything(4);
}

#[test]
fn commits_and_requeues_wake_the_sender_without_polling() {
    let t = common::kit();
    let hour = Duration::from_secs(3600);
    let sender = t
        .kit
        .spawn_sender(common::fast().poll_interval(hour))
        .unwrap();
    let outbox = t.kit.outbox();
    let first = outbox
        .write("a-1", &NewMessage::new("T", json!({})))
        .unwrap();
    assert_eq!(
        sender.wait_until_sent(&first, WAIT).unwrap(),
        Delivery::Sent
    );

    // The sender is idle now, and its poll is an hour away.
    let written = outbox
        .write("a-1", &NewMessage::new("T", json!({})))
        .unwrap();
    assert_eq!(
        sender.wait_until_sent(&written, WAIT).unwrap(),
        Delivery::Sent
    );
    let batch = outbox
        .write_batch(&[OutboxEntry::new("b-1", NewMessage::new("T", json!({})))])
        .unwrap();
    assert_eq!(
        sender.wait_until_sent(&batch[0], WAIT).unwrap(),
        Delivery::Sent
    );
    let joined = t
        .kit
        .db()
        .write(|tx| outbox.write_in(tx, "c-1", &NewMessage::new("T", json!({}))))
        .unwrap();
    assert_eq!(
        sender.wait_until_sent(&joined, WAIT).unwrap(),
        Delivery::Sent
    );

    // A dead letter requeued after the cause is fixed.
    let opts = WriteOptions::new().expected_version(0);
    let poison = outbox
        .write_with("d-1", &NewMessage::new("T", json!({})), &opts)
        .unwrap();
    assert!(matches!(
        sender.wait_until_sent(&poison, WAIT).unwrap(),
        Delivery::DeadLettered { .. }
    ));
    t.kit
        .store()
        .write(
            "d-1",
            &NewMessage::new("Fix", json!({})),
            &WriteOptions::new(),
        )
        .unwrap();
    assert_eq!(t.kit.dlq().requeue_all().unwrap(), 1);
    assert_eq!(
        sender.wait_until_sent(&poison, WAIT).unwrap(),
        Delivery::Sent
    );
    sender.shutdown();
}

#[test]
fn expected_versions_land_or_dead_letter() {
    let t = common::kit();
    let outbox = t.kit.outbox();
    let write = |expected: i64| {
        let opts = WriteOptions::new().expected_version(expected);
        outbox
            .write_with(
                "account-1",
                &NewMessage::new("T", json!({ "e": expected })),
                &opts,
            )
            .unwrap()
    };
    let opened = write(-1);
    let second = write(0);
    let stale = write(0); // the stream is at version 1 by then
    let third = write(1);
    let sender = t.kit.spawn_sender(common::fast()).unwrap();
    for id in [&opened, &second, &third] {
        assert_eq!(sender.wait_until_sent(id, WAIT).unwrap(), Delivery::Sent);
    }
    match sender.wait_until_sent(&stale, WAIT).unwrap() {
        Delivery::DeadLettered { error } => {
            assert!(
                error.contains("expected version 0, stream is at version 1"),
                "{error}"
            )
        }
        Delivery::Sent => panic!("a stale expected version must not land"),
    }
    let stored = t
        .kit
        .store()
        .get_stream("account-1", &StreamQuery::new())
        .unwrap();
    let ids: Vec<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [&opened, &second, &third]);
    let letters = t.kit.dlq().list(&DeadLetterFilter::new()).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].source, DeadLetterSource::Outbox);
    assert_eq!(letters[0].message_id, stale);
    assert_eq!(letters[0].attempts, 1, "permanent errors are not retried");
    assert_eq!(sender.stats().unwrap().dead_lettered, 1);
    sender.shutdown();
}

fn poison_then_others(kit: &Kit) -> (String, Vec<String>, Vec<String>) {
    let outbox = kit.outbox();
    let opts = WriteOptions::new().expected_version(4); // the stream is new
    let poison = outbox
        .write_with("order-1", &NewMessage::new("Shipped", json!({})), &opts)
        .unwrap();
    let mut same_stream = Vec::new();
    let mut others = Vec::new();
    for n in 0..20 {
        others.push(
            outbox
                .write(
                    &format!("order-{}", n + 2),
                    &NewMessage::new("T", json!({})),
                )
                .unwrap(),
        );
        if n % 5 == 0 {
            same_stream.push(
                outbox
                    .write("order-1", &NewMessage::new("Later", json!({ "n": n })))
                    .unwrap(),
            );
        }
    }
    (poison, same_stream, others)
}

/// Writes messages 0..=4 of `order-1` directly, so `expected_version(4)`
/// can land.
fn fix_order_1(kit: &Kit, already: usize) {
    for n in already..5 {
        kit.store()
            .write(
                "order-1",
                &NewMessage::new("Direct", json!({ "n": n })),
                &WriteOptions::new(),
            )
            .unwrap();
    }
}

fn stream_ids(kit: &Kit, stream: &str) -> Vec<String> {
    kit.store()
        .get_stream(stream, &StreamQuery::new())
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect()
}

#[test]
fn a_poison_message_does_not_block_other_streams_and_requeue_delivers_it_once() {
    let t = common::kit();
    let (poison, same_stream, others) = poison_then_others(&t.kit);
    let sender = t.kit.spawn_sender(common::fast().concurrency(2)).unwrap();
    for id in others.iter().chain(&same_stream) {
        assert_eq!(sender.wait_until_sent(id, WAIT).unwrap(), Delivery::Sent);
    }
    assert!(matches!(
        sender.wait_until_sent(&poison, WAIT).unwrap(),
        Delivery::DeadLettered { .. }
    ));
    assert_eq!(
        stream_ids(&t.kit, "order-1"),
        same_stream,
        "continue: the stream went on"
    );

    let dlq = t.kit.dlq();
    let letter = &dlq
        .list(&DeadLetterFilter::new().stream("order-1"))
        .unwrap()[0];
    fix_order_1(&t.kit, same_stream.len());
    dlq.requeue(letter.id).unwrap();
    assert_eq!(
        sender.wait_until_sent(&poison, WAIT).unwrap(),
        Delivery::Sent
    );
    sender.wait_until_drained(WAIT).unwrap();
    let ids = stream_ids(&t.kit, "order-1");
    assert_eq!(
        ids.iter().filter(|id| **id == poison).count(),
        1,
        "delivered once"
    );
    assert_eq!(ids.last(), Some(&poison));
    assert_eq!(dlq.count(&DeadLetterFilter::new()).unwrap(), 0);
    let stats = sender.stats().unwrap();
    assert_eq!((stats.dead_lettered, stats.already_delivered), (1, 0));
    sender.shutdown();
}

#[test]
fn holding_a_stream_keeps_its_later_messages_until_the_dead_letter_is_requeued() {
    let t = common::kit();
    let (poison, same_stream, others) = poison_then_others(&t.kit);
    let config = common::fast().after_dead_letter(AfterDeadLetter::HoldStream);
    let sender = t.kit.spawn_sender(config).unwrap();
    for id in &others {
        assert_eq!(sender.wait_until_sent(id, WAIT).unwrap(), Delivery::Sent);
    }
    assert!(matches!(
        sender.wait_until_sent(&poison, WAIT).unwrap(),
        Delivery::DeadLettered { .. }
    ));
    // A later message of the held stream, written after the dead letter.
    let late = t
        .kit
        .outbox()
        .write("order-1", &NewMessage::new("Late", json!({})))
        .unwrap();
    let other_late = t
        .kit
        .outbox()
        .write("order-99", &NewMessage::new("T", json!({})))
        .unwrap();
    assert_eq!(
        sender.wait_until_sent(&other_late, WAIT).unwrap(),
        Delivery::Sent
    );
    assert!(
        stream_ids(&t.kit, "order-1").is_empty(),
        "order-1 waits behind its dead letter"
    );
    assert!(matches!(
        sender.wait_until_sent(&late, Duration::from_millis(300)),
        Err(Error::Timeout(_))
    ));

    fix_order_1(&t.kit, 0);
    t.kit.dlq().requeue_all().unwrap();
    sender.wait_until_drained(WAIT).unwrap();
    let mut expected = vec![poison];
    expected.extend(same_stream);
    expected.push(late);
    assert_eq!(
        stream_ids(&t.kit, "order-1")[5..],
        expected[..],
        "in commit order"
    );
    sender.shutdown();
}

/// A store in its own file whose writes fail fast while someone else holds
/// its write lock.
fn lockable_store(dir: &std::path::Path) -> EmbeddedStore {
    let options = DbOptions::new().busy_timeout(Duration::from_millis(20));
    EmbeddedStore::open_with(dir.join("store.db"), options).unwrap()
}

fn lock(dir: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("store.db")).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    conn
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_failing_store_delays_delivery_but_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kit = common::kit_with_store(dir.path(), lockable_store(dir.path()));
    let sender = kit.spawn_sender(common::fast().concurrency(2)).unwrap();
    let first = write_mixed(&kit, 4, 3);
    sender.wait_until_drained(WAIT).unwrap();

    let lock = lock(dir.path());
    let during = write_mixed(&kit, 6, 6); // writes keep succeeding
    assert!(matches!(
        sender.wait_until_sent(&during[0], Duration::from_millis(200)),
        Err(Error::Timeout(_))
    ));
    wait_for("retries", || sender.stats().unwrap().retried >= 3);
    let health = sender.health();
    assert!(
        health.last_error.unwrap().contains("locked"),
        "the error is reported"
    );
    assert!(kit.outbox().get(&during[0]).unwrap().attempts >= 1);
    lock.execute_batch("ROLLBACK").unwrap();

    sender.wait_until_drained(WAIT).unwrap();
    assert_delivered_exactly(&kit);
    assert_eq!(
        sender.stats().unwrap().sent,
        (first.len() + during.len()) as u64
    );
    sender.shutdown();
}

#[test]
fn out_of_retries_means_dead_letter_and_requeue_delivers_once() {
    let dir = tempfile::tempdir().unwrap();
    let kit = common::kit_with_store(dir.path(), lockable_store(dir.path()));
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(5))
        .max_delay(Duration::from_millis(20))
        .max_attempts(3);
    let sender = kit.spawn_sender(common::fast().retry(retry)).unwrap();
    let lock = lock(dir.path());
    let id = kit
        .outbox()
        .write("a-1", &NewMessage::new("T", json!({})))
        .unwrap();
    match sender.wait_until_sent(&id, WAIT).unwrap() {
        Delivery::DeadLettered { error } => {
            assert!(error.starts_with("gave up after 3 attempts"), "{error}")
        }
        Delivery::Sent => panic!("the store was locked"),
    }
    let letter = &kit.dlq().list(&DeadLetterFilter::new()).unwrap()[0];
    assert_eq!(letter.attempts, 3);
    drop(lock);
    kit.dlq().requeue(letter.id).unwrap();
    assert_eq!(sender.wait_until_sent(&id, WAIT).unwrap(), Delivery::Sent);
    assert_eq!(stream_ids(&kit, "a-1"), [id]);
    sender.shutdown();
}

#[test]
fn sent_rows_are_pruned_by_age() {
    let t = common::kit();
    let ids = write_mixed(&t.kit, 3, 3);
    let sender = t.kit.spawn_sender(SenderConfig::new()).unwrap();
    sender.wait_until_drained(WAIT).unwrap();
    sender.shutdown();
    let unsent = t
        .kit
        .outbox()
        .write("a-1", &NewMessage::new("T", json!({})))
        .unwrap();
    let outbox = t.kit.outbox();
    assert_eq!(
        outbox.prune_sent(Duration::from_secs(3600)).unwrap(),
        0,
        "too young"
    );
    assert_eq!(outbox.prune_sent(Duration::ZERO).unwrap(), ids.len() as u64);
    assert!(matches!(outbox.get(&ids[0]), Err(Error::NotFound(_))));
    assert_eq!(outbox.get(&unsent).unwrap().state(), OutboxState::Pending);
}

#[test]
fn a_resend_of_a_message_the_store_already_has_is_marked_sent() {
    // As after a crash between the store's answer and the "mark sent".
    let t = common::kit();
    let outbox = t.kit.outbox();
    let plain = outbox
        .write("a-1", &NewMessage::new("T", json!({ "n": 1 })))
        .unwrap();
    let opts = WriteOptions::new().expected_version(0);
    let versioned = outbox
        .write_with("a-1", &NewMessage::new("T", json!({ "n": 2 })), &opts)
        .unwrap();
    for (id, n) in [(&plain, 1), (&versioned, 2)] {
        let direct = WriteOptions::new().id(id.clone());
        t.kit
            .store()
            .write("a-1", &NewMessage::new("T", json!({ "n": n })), &direct)
            .unwrap();
    }
    let sender = t.kit.spawn_sender(common::fast()).unwrap();
    sender.wait_until_drained(WAIT).unwrap();
    let stats = sender.stats().unwrap();
    assert_eq!(
        (stats.sent, stats.already_delivered, stats.dead_lettered),
        (2, 2, 0)
    );
    assert_eq!(stream_ids(&t.kit, "a-1"), [plain, versioned]);
    sender.shutdown();
}

#[test]
fn messages_stored_long_before_the_sender_sees_them_are_found_however_far_back() {
    // An earlier process stopped with more writes in flight than a read of
    // a stream's tail covers, all of them stored, their attempts given
    // back: nothing in the outbox says they were ever sent.
    let t = common::kit();
    let entries = common::entries("a-1", 0, 1_500);
    let ids = t.kit.outbox().write_batch(&entries).unwrap();
    for (entry, id) in entries.iter().zip(&ids) {
        t.kit
            .store()
            .write("a-1", entry.message(), &WriteOptions::new().id(id.clone()))
            .unwrap();
    }
    let sender = t.kit.spawn_sender(common::fast()).unwrap();
    sender.wait_until_drained(WAIT).unwrap();
    let stats = sender.stats().unwrap();
    sender.shutdown();
    assert_eq!(
        (stats.sent, stats.already_delivered, stats.dead_lettered),
        (1_500, 1_500, 0)
    );
    assert_eq!(
        t.kit.store().stream_version("a-1").unwrap(),
        Some(1_499),
        "nothing written twice"
    );
}

#[test]
fn messages_of_another_namespace_are_left_alone() {
    let t = common::kit();
    let other = Kit::builder()
        .db(t.kit.db().clone())
        .store(
            EmbeddedStore::open(t.path())
                .unwrap()
                .with_namespace("tenant-b"),
        )
        .build()
        .unwrap();
    let theirs = other
        .outbox()
        .write("a-1", &NewMessage::new("T", json!({})))
        .unwrap();
    let ours = t
        .kit
        .outbox()
        .write("a-1", &NewMessage::new("T", json!({})))
        .unwrap();
    let sender = t.kit.spawn_sender(common::fast()).unwrap();
    assert_eq!(sender.wait_until_sent(&ours, WAIT).unwrap(), Delivery::Sent);
    assert_eq!(
        other.outbox().get(&theirs).unwrap().state(),
        OutboxState::Pending
    );
    let mut by_ns = BTreeMap::new();
    by_ns.insert("default", common::all_messages(&**t.kit.store()).len());
    by_ns.insert("tenant-b", common::all_messages(&**other.store()).len());
    assert_eq!(by_ns, BTreeMap::from([("default", 1), ("tenant-b", 0)]));
    sender.shutdown();
}

#[test]
fn an_in_memory_kit_delivers_too() {
    let kit = Kit::builder().build().unwrap();
    let sender = kit.spawn_sender(common::fast()).unwrap();
    let ids = write_mixed(&kit, 3, 4);
    sender.wait_until_drained(WAIT).unwrap();
    assert_delivered_exactly(&kit);
    assert_eq!(sender.stats().unwrap().sent, ids.len() as u64);
    sender.shutdown();
}

#[test]
fn waiting_without_a_time_limit_is_allowed() {
    let t = common::kit();
    let sender = t.kit.spawn_sender(common::fast()).unwrap();
    let id = t
        .kit
        .outbox()
        .write("a-1", &NewMessage::new("T", json!({})))
        .unwrap();
    // `Duration::MAX` is how a caller says "no time limit".
    assert_eq!(
        sender.wait_until_sent(&id, Duration::MAX).unwrap(),
        Delivery::Sent
    );
    sender.wait_until_drained(Duration::MAX).unwrap();
    sender.shutdown();
}
