//! Order and exactly-once with many writes in flight: another writer on the
//! same stream, application-set expected versions mixed with the sender's
//! chains, a message refused in the middle of a window (the stream goes on,
//! or holds), and an id already taken by another message.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use eventodb_kit::outbox::{AfterDeadLetter, Delivery};
use eventodb_kit::{EmbeddedStore, Kit, MessageStore, NewMessage, StreamQuery, WriteOptions};
use serde_json::json;

use common::entries;

fn kit_and_store() -> (tempfile::TempDir, Kit, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("store.db")).unwrap();
    let kit = common::kit_with_store(dir.path(), store.clone());
    (dir, kit, store)
}

/// Our ids in `stream`, in the store's order.
fn ours_in_store(store: &EmbeddedStore, stream: &str) -> Vec<String> {
    let q = StreamQuery::new().batch_size(-1);
    store
        .get_stream(stream, &q)
        .unwrap()
        .into_iter()
        .filter(|m| m.message_type == "Counted")
        .map(|m| m.id)
        .collect()
}

/// Pairs of our messages that are in the store in the wrong order.
fn inversions(order: &[String], expected: &[String]) -> usize {
    let rank: std::collections::HashMap<&str, usize> = expected
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    order
        .windows(2)
        .filter(|w| rank[w[0].as_str()] > rank[w[1].as_str()])
        .count()
}

/// Runs a sender over 600 messages of one stream while another writer
/// appends to it; returns our ids in commit order, the store's order, and
/// the sender's stats.
fn drain_beside_another_writer(exclusive: bool) -> (Vec<String>, Vec<String>, u64, u64) {
    let (_dir, kit, store) = kit_and_store();
    let mut ids = Vec::new();
    for chunk in 0..3 {
        ids.extend(
            kit.outbox()
                .write_batch(&entries("tally-1", chunk * 200, 200))
                .unwrap(),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let foreign = {
        let (store, stop) = (store.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Acquire) || n < 20 {
                let m = NewMessage::new("Foreign", json!({ "n": n }));
                store.write("tally-1", &m, &WriteOptions::new()).unwrap();
                n += 1;
                thread::yield_now();
            }
            n
        })
    };
    let sender = kit
        .spawn_sender(common::fast().exclusive_streams(exclusive))
        .unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();
    stop.store(true, Ordering::Release);
    let foreign_written = foreign.join().unwrap();
    assert!(foreign_written >= 20);
    let stats = sender.stats().unwrap();
    sender.shutdown();
    assert_eq!(
        stats.dead_lettered, 0,
        "another writer is no reason to give up"
    );
    assert_eq!(stats.sent, ids.len() as u64);
    let stored = ours_in_store(&store, "tally-1");
    assert_eq!(stored.len(), ids.len(), "every message once");
    (ids, stored, stats.reordered, stats.already_delivered)
}

#[test]
fn another_writer_on_a_stream_declared_shared_changes_nothing() {
    let (ids, stored, reordered, _) = drain_beside_another_writer(false);
    assert_eq!(stored, ids, "our messages in commit order");
    assert_eq!(reordered, 0);
}

#[test]
fn another_writer_on_an_exclusive_stream_loses_and_doubles_nothing_and_every_reorder_is_reported() {
    let (ids, stored, reordered, _) = drain_beside_another_writer(true);
    let out_of_order = inversions(&stored, &ids) as u64;
    assert!(
        out_of_order <= reordered,
        "{out_of_order} messages out of order, {reordered} reported"
    );
}

#[test]
fn application_versions_mixed_with_chained_messages_land_where_they_said() {
    let (_dir, kit, store) = kit_and_store();
    let outbox = kit.outbox();
    let mut ids = Vec::new();
    for round in 0..20i64 {
        ids.extend(
            outbox
                .write_batch(&entries("ledger-1", round as usize * 3, 3))
                .unwrap(),
        );
        // Each round adds four messages before this one: 0..=3, then 4 more.
        let expected = round * 4 + 2;
        let m = NewMessage::new("Counted", json!({ "versioned": round }));
        ids.push(
            outbox
                .write_with(
                    "ledger-1",
                    &m,
                    &WriteOptions::new().expected_version(expected),
                )
                .unwrap(),
        );
    }
    let stale = outbox
        .write_with(
            "ledger-1",
            &NewMessage::new("Counted", json!({ "stale": true })),
            &WriteOptions::new().expected_version(3),
        )
        .unwrap();
    ids.extend(outbox.write_batch(&entries("ledger-1", 100, 5)).unwrap());
    let sender = kit.spawn_sender(common::fast()).unwrap();
    match sender.wait_until_sent(&stale, common::WAIT).unwrap() {
        Delivery::DeadLettered { error } => assert!(error.contains("version conflict"), "{error}"),
        Delivery::Sent => panic!("a stale expected version must not land"),
    }
    sender.wait_until_drained(common::WAIT).unwrap();
    sender.shutdown();
    assert_eq!(
        ours_in_store(&store, "ledger-1"),
        ids,
        "the rest in commit order"
    );
    let stored = store
        .get_stream("ledger-1", &StreamQuery::new().batch_size(-1))
        .unwrap();
    for m in stored.iter().filter(|m| m.data.get("versioned").is_some()) {
        let round = m.data["versioned"].as_i64().unwrap();
        assert_eq!(
            m.position,
            round * 4 + 3,
            "at the position the application expected"
        );
    }
}

/// A message the store refuses for good (an expected version that does
/// not hold), in the middle of a stream's window; a sender with `policy`.
struct Refused {
    _dir: tempfile::TempDir,
    kit: Kit,
    store: EmbeddedStore,
    sender: eventodb_kit::SenderHandle,
    /// The other messages of the stream, in commit order.
    ids: Vec<String>,
    refused: String,
}

fn refused_in_the_middle(policy: AfterDeadLetter) -> Refused {
    let (dir, kit, store) = kit_and_store();
    let outbox = kit.outbox();
    let mut ids = outbox.write_batch(&entries("order-1", 0, 50)).unwrap();
    let refused = outbox
        .write_with(
            "order-1",
            &NewMessage::new("Counted", json!({ "refused": true })),
            &WriteOptions::new().expected_version(999),
        )
        .unwrap();
    ids.extend(outbox.write_batch(&entries("order-1", 50, 50)).unwrap());
    outbox.write_batch(&entries("other-1", 0, 20)).unwrap();
    let sender = kit
        .spawn_sender(common::fast().after_dead_letter(policy))
        .unwrap();
    match sender.wait_until_sent(&refused, common::WAIT).unwrap() {
        Delivery::DeadLettered { error } => assert!(error.contains("version conflict"), "{error}"),
        Delivery::Sent => panic!("an expected version that does not hold must not land"),
    }
    Refused {
        _dir: dir,
        kit,
        store,
        sender,
        ids,
        refused,
    }
}

#[test]
fn a_refused_message_mid_window_is_dead_lettered_and_its_stream_goes_on() {
    let r = refused_in_the_middle(AfterDeadLetter::Continue);
    r.sender.wait_until_drained(common::WAIT).unwrap();
    r.sender.shutdown();
    assert_eq!(ours_in_store(&r.store, "order-1"), r.ids);
    assert_eq!(ours_in_store(&r.store, "other-1").len(), 20);
    assert_eq!(r.kit.dlq().count(&Default::default()).unwrap(), 1);
}

#[test]
fn a_refused_message_mid_window_holds_its_stream_only() {
    let r = refused_in_the_middle(AfterDeadLetter::HoldStream);
    common::wait_for("the other stream", common::WAIT, || {
        ours_in_store(&r.store, "other-1").len() == 20
    });
    assert_eq!(
        ours_in_store(&r.store, "order-1"),
        r.ids[..50],
        "only what came before the dead letter"
    );
    // The operator purges the dead letter: the stream goes on, in order.
    let dead = r.kit.dlq().list(&Default::default()).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, r.refused);
    r.kit.dlq().purge_all().unwrap();
    r.sender.wait_until_drained(common::WAIT).unwrap();
    r.sender.shutdown();
    assert_eq!(ours_in_store(&r.store, "order-1"), r.ids);
}

#[test]
fn an_id_taken_by_another_message_is_dead_lettered_never_reported_sent() {
    let (_dir, kit, store) = kit_and_store();
    let id = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";
    store
        .write(
            "s-1",
            &NewMessage::new("Theirs", json!({})),
            &WriteOptions::new().id(id),
        )
        .unwrap();
    let mine = kit
        .outbox()
        .write_with(
            "s-1",
            &NewMessage::new("Mine", json!({})),
            &WriteOptions::new().id(id),
        )
        .unwrap();
    let after = kit
        .outbox()
        .write("s-1", &NewMessage::new("After", json!({})))
        .unwrap();
    let sender = kit.spawn_sender(common::fast()).unwrap();
    match sender.wait_until_sent(&mine, common::WAIT).unwrap() {
        Delivery::DeadLettered { error } => {
            assert!(error.contains("already used by another message"), "{error}")
        }
        Delivery::Sent => panic!("\"Mine\" is not in the store: it must not count as sent"),
    }
    assert_eq!(
        sender.wait_until_sent(&after, common::WAIT).unwrap(),
        Delivery::Sent
    );
    let stats = sender.stats().unwrap();
    sender.shutdown();
    assert_eq!((stats.sent, stats.already_delivered), (1, 0));
    let types: Vec<String> = store
        .get_stream("s-1", &StreamQuery::new())
        .unwrap()
        .into_iter()
        .map(|m| m.message_type)
        .collect();
    assert_eq!(types, ["Theirs", "After"]);
}

#[test]
fn a_resend_of_a_message_already_stored_counts_as_already_delivered() {
    let (_dir, kit, store) = kit_and_store();
    let id = kit
        .outbox()
        .write("s-1", &NewMessage::new("Mine", json!({})))
        .unwrap();
    // As if an earlier attempt got through and its answer was lost.
    store
        .write(
            "s-1",
            &NewMessage::new("Mine", json!({})),
            &WriteOptions::new().id(id.clone()),
        )
        .unwrap();
    let sender = kit.spawn_sender(common::fast()).unwrap();
    assert_eq!(
        sender.wait_until_sent(&id, common::WAIT).unwrap(),
        Delivery::Sent
    );
    let stats = sender.stats().unwrap();
    sender.shutdown();
    assert_eq!((stats.sent, stats.already_delivered), (1, 1));
    assert_eq!(ours_in_store_typed(&store, "s-1", "Mine"), 1);
}

fn ours_in_store_typed(store: &EmbeddedStore, stream: &str, ty: &str) -> usize {
    store
        .get_stream(stream, &StreamQuery::new())
        .unwrap()
        .iter()
        .filter(|m| m.message_type == ty)
        .count()
}
