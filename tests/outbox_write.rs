//! Writing to the outbox: ids, validation before storing, idempotency keys
//! (also under concurrent writers), batches all or nothing, and joining the
//! caller's transaction with commit and rollback.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;

use eventodb_kit::outbox::{OutboxEntry, OutboxState};
use eventodb_kit::{EmbeddedStore, Error, Kit, NewMessage, WriteOptions};
use serde_json::json;
use uuid::Uuid;

fn msg(n: i64) -> NewMessage {
    NewMessage::new("Deposited", json!({ "amount": n })).trace_id("trace-1")
}

fn row_count(kit: &Kit) -> i64 {
    kit.db()
        .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM evento_outbox", [], |r| r.get(0))?))
        .unwrap()
}

#[test]
fn a_write_stores_the_message_under_a_fresh_uuid_v7() {
    let t = common::kit();
    let outbox = t.kit.outbox();
    let id = outbox.write("account-1", &msg(10)).unwrap();
    assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    let record = outbox.get(&id).unwrap();
    assert_eq!(record.stream, "account-1");
    assert_eq!(record.message_type, "Deposited");
    assert_eq!(record.data, json!({ "amount": 10 }));
    assert_eq!(record.metadata, Some(json!({ "traceId": "trace-1" })));
    assert_eq!(record.state(), OutboxState::Pending);
    assert_eq!(record.attempts, 0);
    let second = outbox.write("account-1", &msg(11)).unwrap();
    assert!(
        outbox.get(&second).unwrap().seq > record.seq,
        "commit order"
    );
    assert_eq!(outbox.status().unwrap().unsent, 2);
    assert!(matches!(outbox.get("nope"), Err(Error::NotFound(_))));
}

#[test]
fn custom_ids_are_kept_and_cannot_be_reused() {
    let t = common::kit();
    let outbox = t.kit.outbox();
    let custom = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";
    let opts = WriteOptions::new().id(custom).expected_version(-1);
    assert_eq!(
        outbox.write_with("account-1", &msg(1), &opts).unwrap(),
        custom
    );
    assert_eq!(outbox.get(custom).unwrap().expected_version, Some(-1));
    let again = outbox.write_with("account-2", &msg(2), &WriteOptions::new().id(custom));
    assert!(matches!(again, Err(Error::DuplicateId { id }) if id == custom));
    assert_eq!(row_count(&t.kit), 1);
}

#[test]
fn bad_input_is_refused_before_anything_is_stored() {
    let t = common::kit();
    let outbox = t.kit.outbox();
    let cases: Vec<(&str, NewMessage, WriteOptions, &str)> = vec![
        (
            "",
            msg(1),
            WriteOptions::new(),
            "streamName must be a non-empty string",
        ),
        (
            "a-1",
            NewMessage::new("", json!({})),
            WriteOptions::new(),
            "message.type must be a non-empty string",
        ),
        (
            "a-1",
            NewMessage::new("T", json!([1, 2])),
            WriteOptions::new(),
            "message.data must be an object",
        ),
        (
            "a-1",
            NewMessage::new("T", json!({})).with_metadata(json!("x")),
            WriteOptions::new(),
            "message.metadata must be an object",
        ),
        (
            "a-1",
            msg(1),
            WriteOptions::new().id("not-a-uuid"),
            "options.id \"not-a-uuid\" is not a valid UUID",
        ),
        (
            "a-1",
            msg(1),
            WriteOptions::new().expected_version(-7),
            "options.expectedVersion must be -1",
        ),
        (
            "a-1",
            msg(1),
            WriteOptions::new().idempotency_key(""),
            "options.idempotencyKey must not be empty",
        ),
    ];
    for (stream, message, options, expected) in cases {
        match outbox.write_with(stream, &message, &options) {
            Err(Error::InvalidInput(text)) => assert!(text.contains(expected), "{text}"),
            other => panic!("{expected}: got {other:?}"),
        }
    }
    assert_eq!(row_count(&t.kit), 0);
}

#[test]
fn payloads_over_the_limit_are_refused() {
    let t = common::kit();
    let big = NewMessage::new("T", json!({ "blob": "x".repeat(1024 * 1024) }));
    let err = t.kit.outbox().write("a-1", &big).unwrap_err().to_string();
    assert!(
        err.contains("over the outbox limit of 1048576 bytes"),
        "{err}"
    );
    let fits = NewMessage::new("T", json!({ "blob": "x".repeat(512 * 1024) }));
    t.kit.outbox().write("a-1", &fits).unwrap();

    let small = t.kit.outbox().max_payload_bytes(64);
    let meta = NewMessage::new("T", json!({})).with_metadata(json!({ "k": "y".repeat(64) }));
    let err = small.write("a-1", &meta).unwrap_err().to_string();
    assert!(
        err.contains("over the outbox limit of 64 bytes"),
        "metadata counts: {err}"
    );
    assert_eq!(row_count(&t.kit), 1);
}

#[test]
fn an_idempotency_key_written_again_returns_the_first_id() {
    let t = common::kit();
    let outbox = t.kit.outbox();
    let key = WriteOptions::new().idempotency_key("order-7-paid");
    let first = outbox.write_with("order-7", &msg(1), &key).unwrap();
    let second = outbox.write_with("order-7", &msg(2), &key).unwrap();
    assert_eq!(first, second);
    assert_eq!(outbox.get(&first).unwrap().data, json!({ "amount": 1 }));
    assert_eq!(row_count(&t.kit), 1);

    // Keys are per namespace.
    let other = Kit::builder()
        .db(t.kit.db().clone())
        .store(
            EmbeddedStore::open(t.path())
                .unwrap()
                .with_namespace("tenant-b"),
        )
        .build()
        .unwrap();
    let theirs = other.outbox().write_with("order-7", &msg(3), &key).unwrap();
    assert_ne!(theirs, first);
    assert_eq!(row_count(&t.kit), 2);
}

#[test]
fn idempotency_keys_hold_under_concurrent_writers() {
    let t = common::kit();
    const WRITERS: usize = 6;
    const KEYS: usize = 40;
    let barrier = Arc::new(Barrier::new(WRITERS));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let kit = t.reopen(); // its own connection pool
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let mut ids = vec![String::new(); KEYS];
                // Each writer walks the keys from another start, half of
                // them backwards.
                for i in 0..KEYS {
                    let k = (i + w * 7) % KEYS;
                    let k = if w % 2 == 0 { k } else { KEYS - 1 - k };
                    let opts = WriteOptions::new().idempotency_key(format!("key-{k}"));
                    let message = NewMessage::new("Paid", json!({ "writer": w, "key": k }));
                    ids[k] = kit
                        .outbox()
                        .write_with(&format!("order-{k}"), &message, &opts)
                        .unwrap();
                }
                ids
            })
        })
        .collect();
    let results: Vec<Vec<String>> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    for r in &results[1..] {
        assert_eq!(
            r, &results[0],
            "every writer got the first row's id for every key"
        );
    }
    assert_eq!(row_count(&t.kit), KEYS as i64);
}

#[test]
fn a_batch_is_all_or_nothing() {
    let t = common::kit();
    let outbox = t.kit.outbox();
    let good = |s: &str, n| OutboxEntry::new(s, msg(n));
    let bad = OutboxEntry::new("a-1", NewMessage::new("T", json!(null)));
    let err = outbox
        .write_batch(&[good("a-1", 1), good("b-1", 2), bad])
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.starts_with("entry 2: message.data")),
        "{err}"
    );
    assert_eq!(row_count(&t.kit), 0);

    // A failure inside the transaction (a reused id) undoes the earlier rows.
    let id = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a88";
    let with_id = |n| good("c-1", n).options(WriteOptions::new().id(id));
    let err = outbox
        .write_batch(&[with_id(1), good("c-1", 2), with_id(3)])
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateId { .. }), "{err}");
    assert_eq!(row_count(&t.kit), 0);

    let ids = outbox
        .write_batch(&[good("a-1", 1), good("b-1", 2), good("a-1", 3)])
        .unwrap();
    assert_eq!(ids.len(), 3);
    let seqs: Vec<i64> = ids.iter().map(|id| outbox.get(id).unwrap().seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in the given order");
}

fn business_table(kit: &Kit) {
    kit.db()
        .write(|tx| {
            tx.execute_batch("CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER NOT NULL)")?;
            Ok(())
        })
        .unwrap();
}

fn orders(kit: &Kit) -> i64 {
    kit.db()
        .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))?))
        .unwrap()
}

#[test]
fn write_in_commits_and_rolls_back_with_the_callers_transaction() {
    let t = common::kit();
    business_table(&t.kit);
    let outbox = t.kit.outbox();

    let id = t
        .kit
        .db()
        .write(|tx| {
            tx.execute("INSERT INTO orders VALUES ('o-1', 30)", [])?;
            outbox.write_in(
                tx,
                "order-o1",
                &NewMessage::new("Placed", json!({ "total": 30 })),
            )
        })
        .unwrap();
    assert_eq!(orders(&t.kit), 1);
    assert_eq!(outbox.get(&id).unwrap().stream, "order-o1");

    let mut conn = t.kit.db().connection().unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute("INSERT INTO orders VALUES ('o-2', 40)", [])
        .unwrap();
    let rolled_back = outbox
        .write_in(
            &tx,
            "order-o2",
            &NewMessage::new("Placed", json!({ "total": 40 })),
        )
        .unwrap();
    tx.rollback().unwrap();
    assert_eq!(orders(&t.kit), 1, "neither the order…");
    assert!(
        matches!(outbox.get(&rolled_back), Err(Error::NotFound(_))),
        "…nor the event"
    );
}

#[test]
fn write_batch_in_fails_alone_inside_the_callers_transaction() {
    let t = common::kit();
    business_table(&t.kit);
    let outbox = t.kit.outbox();
    let id = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a89";
    let entry = |n| OutboxEntry::new("order-o3", msg(n)).options(WriteOptions::new().id(id));
    t.kit
        .db()
        .write(|tx| {
            tx.execute("INSERT INTO orders VALUES ('o-3', 50)", [])?;
            let err = outbox
                .write_batch_in(tx, &[entry(1), entry(2)])
                .unwrap_err();
            assert!(matches!(err, Error::DuplicateId { .. }));
            Ok(())
        })
        .unwrap();
    assert_eq!(orders(&t.kit), 1, "the caller's work is intact");
    assert_eq!(row_count(&t.kit), 0, "no row of the failed batch");
}

#[test]
fn write_in_needs_an_open_transaction_on_the_kits_database() {
    let t = common::kit();
    let outbox = t.kit.outbox();
    let conn = t.kit.db().connection().unwrap();
    let err = outbox
        .write_in(&conn, "a-1", &msg(1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("needs a connection with an open transaction"),
        "{err}"
    );

    let other_dir = tempfile::tempdir().unwrap();
    let other = common::kit_on(&other_dir.path().join("other.db"));
    let mut foreign = other.db().connection().unwrap();
    let tx = foreign.transaction().unwrap();
    let err = outbox
        .write_in(&tx, "a-1", &msg(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("but the kit's outbox is in"), "{err}");
    assert_eq!(row_count(&t.kit) + row_count(&other), 0);
}
