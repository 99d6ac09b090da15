//! Bad input at the outbox (`write`, `write_with`, `write_batch`,
//! `write_in`, `write_batch_in`): each case is refused with the typed error
//! before anything is stored — so the sender never meets a row it cannot
//! send — and afterwards a normal write is delivered with every row before
//! it, nothing lost.

mod bad_input_support;

use bad_input_support::{
    invalid, msg, nested_arrays, nested_object, outbox_still_delivers, too_deep, LIMIT,
};
use eventodb_kit::outbox::{OutboxEntry, OutboxFilter};
use eventodb_kit::{Error, Kit, NewMessage, StreamQuery, WriteOptions};
use serde_json::json;

fn kit() -> (Kit, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let kit = Kit::builder()
        .database(dir.path().join("app.db"))
        .build()
        .unwrap();
    (kit, dir)
}

fn rows(kit: &Kit) -> u64 {
    kit.outbox().count(&OutboxFilter::new()).unwrap()
}

// ----- nesting depth (defect 6) -----

#[test]
fn data_nested_too_deep_is_refused_at_write() {
    let (kit, _dir) = kit();
    kit.outbox().write("a-1", &msg(json!({ "n": 1 }))).unwrap();
    // Before the fix it was stored, then dead-lettered by its own sender.
    too_deep(
        kit.outbox().write("a-1", &msg(nested_object(LIMIT + 1))),
        "message.data",
    );
    assert_eq!(rows(&kit), 1);
    outbox_still_delivers(&kit);
}

#[test]
fn data_at_the_limit_is_written_and_delivered_intact() {
    let (kit, _dir) = kit();
    let data = nested_arrays(LIMIT);
    kit.outbox().write("deep-1", &msg(data.clone())).unwrap();
    outbox_still_delivers(&kit);
    let read = kit.store().last_message("deep-1", None).unwrap().unwrap();
    assert_eq!(read.data, data);
}

#[test]
fn metadata_nested_too_deep_is_refused_by_write_with() {
    let (kit, _dir) = kit();
    let m = msg(json!({})).with_metadata(nested_arrays(LIMIT + 1));
    too_deep(
        kit.outbox().write_with("a-1", &m, &WriteOptions::new()),
        "message.metadata",
    );
    assert_eq!(rows(&kit), 0);
    outbox_still_delivers(&kit);
}

#[test]
fn a_batch_with_one_entry_too_deep_stores_nothing() {
    let (kit, _dir) = kit();
    let good = OutboxEntry::new("a-1", msg(json!({})));
    let bad = OutboxEntry::new("a-1", msg(nested_object(LIMIT + 1)));
    let m = invalid(kit.outbox().write_batch(&[good.clone(), bad, good]));
    assert!(m.starts_with("entry 1: message.data"), "{m}");
    assert_eq!(rows(&kit), 0);
    outbox_still_delivers(&kit);
}

#[test]
fn write_in_refuses_deep_data_and_the_callers_transaction_goes_on() {
    let (kit, _dir) = kit();
    let outbox = kit.outbox();
    kit.db()
        .write(|tx| {
            tx.execute_batch("CREATE TABLE orders (id TEXT PRIMARY KEY)")?;
            tx.execute("INSERT INTO orders VALUES ('o-1')", [])?;
            too_deep(
                outbox.write_in(tx, "order-1", &msg(nested_object(LIMIT + 1))),
                "message.data",
            );
            outbox.write_in(tx, "order-1", &msg(json!({ "id": "o-1" })))?;
            Ok(())
        })
        .unwrap();
    let orders: i64 = kit
        .db()
        .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!((orders, rows(&kit)), (1, 1));
    outbox_still_delivers(&kit);
}

// ----- the shape of a message -----

#[test]
fn empty_stream_name_is_refused() {
    let (kit, _dir) = kit();
    assert_eq!(
        invalid(kit.outbox().write("", &msg(json!({})))),
        "streamName must be a non-empty string"
    );
    outbox_still_delivers(&kit);
}

#[test]
fn empty_type_is_refused() {
    let (kit, _dir) = kit();
    assert_eq!(
        invalid(kit.outbox().write("a-1", &NewMessage::new("", json!({})))),
        "message.type must be a non-empty string"
    );
    outbox_still_delivers(&kit);
}

#[test]
fn data_that_is_not_an_object_is_refused() {
    let (kit, _dir) = kit();
    for data in [json!(null), json!([1]), json!("x"), json!(7), json!(false)] {
        assert_eq!(
            invalid(kit.outbox().write("a-1", &msg(data))),
            "message.data must be an object"
        );
    }
    assert_eq!(rows(&kit), 0);
    outbox_still_delivers(&kit);
}

#[test]
fn null_metadata_is_refused() {
    let (kit, _dir) = kit();
    let m = msg(json!({})).with_metadata(json!(null));
    assert_eq!(
        invalid(kit.outbox().write("a-1", &m)),
        "message.metadata must be an object"
    );
    outbox_still_delivers(&kit);
}

#[test]
fn a_payload_over_the_limit_is_refused() {
    let (kit, _dir) = kit();
    let outbox = kit.outbox().max_payload_bytes(1000);
    let m = msg(json!({ "blob": "x".repeat(1000) }));
    assert!(invalid(outbox.write("a-1", &m)).contains("over the outbox limit of 1000 bytes"));
    outbox_still_delivers(&kit);
}

#[test]
fn odd_stream_and_type_names_are_delivered_as_given() {
    let (kit, _dir) = kit();
    let long = format!("long-{}", "y".repeat(50_000));
    for stream in [long.as_str(), "nul-\0byte", "ünï-🚀", "-"] {
        kit.outbox()
            .write(stream, &NewMessage::new("Odd\0Type ✓", json!({})))
            .unwrap();
    }
    outbox_still_delivers(&kit);
    let read = kit
        .store()
        .get_stream("nul-\0byte", &StreamQuery::new())
        .unwrap();
    assert_eq!(read[0].message_type, "Odd\0Type ✓");
}

// ----- options -----

#[test]
fn expected_versions_below_minus_one_are_refused() {
    let (kit, _dir) = kit();
    for v in [-2, i64::MIN] {
        let opts = WriteOptions::new().expected_version(v);
        let m = invalid(kit.outbox().write_with("a-1", &msg(json!({})), &opts));
        assert!(m.contains(&format!("not {v}")), "{m}");
    }
    outbox_still_delivers(&kit);
}

#[test]
fn malformed_ids_of_every_shape_are_refused() {
    let (kit, _dir) = kit();
    let shapes = [
        "abc",
        "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a8",
        "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a877",
        "0190b6a4_6a3e_7c3e_9b1a_3f2d1c0b9a87",
        "g190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87",
        "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a8 ",
        "0190b6a46a3e7c3e9b1a3f2d1c0b9a8g",
        "urn:uuix:0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87",
        "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a8é",
        "\u{0}190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87",
    ];
    for id in shapes {
        let m = invalid(kit.outbox().write_with(
            "a-1",
            &msg(json!({})),
            &WriteOptions::new().id(id),
        ));
        assert!(m.contains("is not a valid UUID"), "{id:?}: {m}");
    }
    assert_eq!(rows(&kit), 0);
    outbox_still_delivers(&kit);
}

#[test]
fn ids_differing_only_in_case_are_one_id() {
    // Defect 7: they were two rows, then two messages in the embedded
    // store, while EventoDB on Postgres (production) has one id.
    let (kit, _dir) = kit();
    let lower = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";
    let upper = lower.to_uppercase();
    let outbox = kit.outbox();
    let written = outbox
        .write_with("case-1", &msg(json!({})), &WriteOptions::new().id(&upper))
        .unwrap();
    assert_eq!(written, lower, "stored in canonical lowercase form");
    match outbox.write_with("case-1", &msg(json!({})), &WriteOptions::new().id(lower)) {
        Err(Error::DuplicateId { id }) => assert_eq!(id, lower),
        other => panic!("expected DuplicateId, got {other:?}"),
    }
    assert_eq!(rows(&kit), 1);
    outbox_still_delivers(&kit);
    let read = kit
        .store()
        .get_stream("case-1", &StreamQuery::new())
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].id, lower, "the store got the canonical id");
}

#[test]
fn every_uuid_form_is_stored_and_sent_canonical() {
    let (kit, _dir) = kit();
    let forms = [
        (
            "{0190B6A4-6A3E-7C3E-9B1A-3F2D1C0B9A81}",
            "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a81",
        ),
        (
            "urn:uuid:0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a82",
            "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a82",
        ),
        (
            "0190B6A46A3E7C3E9B1A3F2D1C0B9A83",
            "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a83",
        ),
    ];
    for (given, canonical) in forms {
        let id = kit
            .outbox()
            .write_with("forms-1", &msg(json!({})), &WriteOptions::new().id(given))
            .unwrap();
        assert_eq!(id, canonical);
        assert_eq!(kit.outbox().get(canonical).unwrap().id, canonical);
    }
    outbox_still_delivers(&kit);
    let read = kit
        .store()
        .get_stream("forms-1", &StreamQuery::new())
        .unwrap();
    let ids: Vec<&str> = read.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, forms.map(|(_, c)| c));
}

#[test]
fn an_id_already_in_the_outbox_is_refused_in_any_stream() {
    let (kit, _dir) = kit();
    let id = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";
    kit.outbox()
        .write_with("a-1", &msg(json!({})), &WriteOptions::new().id(id))
        .unwrap();
    let again = kit
        .outbox()
        .write_with("b-1", &msg(json!({})), &WriteOptions::new().id(id));
    assert!(matches!(again, Err(Error::DuplicateId { .. })), "{again:?}");
    outbox_still_delivers(&kit);
}

#[test]
fn a_repeated_idempotency_key_stores_one_row() {
    let (kit, _dir) = kit();
    let opts = WriteOptions::new().idempotency_key("order-9-paid");
    let first = kit
        .outbox()
        .write_with("order-9", &msg(json!({ "n": 1 })), &opts)
        .unwrap();
    // Another message under the same key: the key wins, nothing is stored.
    let second = kit
        .outbox()
        .write_with("order-10", &msg(json!({ "n": 2 })), &opts)
        .unwrap();
    assert_eq!(first, second);
    let in_batch = kit
        .outbox()
        .write_batch(&[
            OutboxEntry::new("order-9", msg(json!({}))).options(opts.clone()),
            OutboxEntry::new("order-9", msg(json!({}))).options(opts),
        ])
        .unwrap();
    assert_eq!(in_batch, [first.clone(), first]);
    assert_eq!(rows(&kit), 1);
    outbox_still_delivers(&kit);
}

#[test]
fn an_empty_idempotency_key_is_refused() {
    let (kit, _dir) = kit();
    let opts = WriteOptions::new().idempotency_key("");
    assert!(invalid(kit.outbox().write_with("a-1", &msg(json!({})), &opts)).contains("empty"));
    outbox_still_delivers(&kit);
}

#[test]
fn a_huge_batch_with_a_bad_last_entry_stores_nothing() {
    let (kit, _dir) = kit();
    let mut entries: Vec<OutboxEntry> = (0..5_000)
        .map(|n| OutboxEntry::new(format!("bulk-{}", n % 50), msg(json!({ "n": n }))))
        .collect();
    entries.push(OutboxEntry::new("bulk-1", NewMessage::new("", json!({}))));
    let m = invalid(kit.outbox().write_batch(&entries));
    assert!(m.starts_with("entry 5000: message.type"), "{m}");
    assert_eq!(rows(&kit), 0);
    entries.pop();
    assert_eq!(kit.outbox().write_batch(&entries).unwrap().len(), 5_000);
    outbox_still_delivers(&kit);
    assert_eq!(
        kit.store()
            .get_category("bulk", &eventodb_kit::CategoryQuery::new().batch_size(-1))
            .unwrap()
            .len(),
        5_000
    );
}

#[test]
fn write_in_without_a_transaction_is_refused() {
    let (kit, _dir) = kit();
    let conn = kit.db().connection().unwrap();
    let m = invalid(kit.outbox().write_in(&conn, "a-1", &msg(json!({}))));
    assert!(m.contains("open transaction"), "{m}");
    drop(conn);
    outbox_still_delivers(&kit);
}

#[test]
fn write_in_on_another_database_is_refused() {
    let (kit, dir) = kit();
    let mut other = rusqlite::Connection::open(dir.path().join("other.db")).unwrap();
    let tx = other.transaction().unwrap();
    let m = invalid(kit.outbox().write_in(&tx, "a-1", &msg(json!({}))));
    assert!(m.contains("other.db"), "{m}");
    drop(tx);
    outbox_still_delivers(&kit);
}

#[test]
fn write_batch_in_refuses_a_bad_entry_and_keeps_the_callers_rows() {
    let (kit, _dir) = kit();
    let outbox = kit.outbox();
    kit.db()
        .write(|tx| {
            outbox.write_in(tx, "a-1", &msg(json!({ "n": 1 })))?;
            let bad = [
                OutboxEntry::new("a-1", msg(json!({}))),
                OutboxEntry::new("a-1", msg(json!({}))).options(WriteOptions::new().id("nope")),
            ];
            let m = invalid(outbox.write_batch_in(tx, &bad));
            assert!(m.starts_with("entry 1: options.id"), "{m}");
            Ok(())
        })
        .unwrap();
    assert_eq!(rows(&kit), 1);
    outbox_still_delivers(&kit);
}
