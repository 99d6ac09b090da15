//! Helpers shared by the `bad_input_*` tests: a store in a temporary file,
//! messages and writes, deeply nested JSON, and the check every case ends
//! with — a normal write and read still work, the
//! sender still delivers, nothing written before was lost.

#![allow(dead_code)]

use std::time::Duration;

use eventodb_kit::outbox::{OutboxFilter, OutboxState};
use eventodb_kit::{
    CategoryQuery, EmbeddedStore, Error, Kit, MessageStore, NewMessage, StreamQuery, WriteOptions,
};
use serde_json::{json, Value};

/// The deepest nesting of `data` / `metadata` the kit accepts.
pub const LIMIT: usize = eventodb_kit::message::MAX_JSON_DEPTH;

/// How long a test waits for a delivery.
pub const WAIT: Duration = Duration::from_secs(20);

/// An embedded store in a file of its own temporary directory.
pub fn embedded_store() -> (EmbeddedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("events.db")).unwrap();
    (store, dir)
}

/// A message of type `T` with `data`.
pub fn msg(data: Value) -> NewMessage {
    NewMessage::new("T", data)
}

/// Writes `m` to `stream` with no options; its global position.
pub fn write(store: &dyn MessageStore, stream: &str, m: &NewMessage) -> eventodb_kit::Result<i64> {
    store
        .write(stream, m, &WriteOptions::new())
        .map(|w| w.global_position)
}

/// An object `depth` levels deep: `{}` is 1, `{"a":{}}` is 2.
pub fn nested_object(depth: usize) -> Value {
    let mut v = json!({});
    for _ in 1..depth {
        v = json!({ "a": v });
    }
    v
}

/// An object whose one key holds arrays, `depth` levels in all:
/// `{"a":[]}` is 2.
pub fn nested_arrays(depth: usize) -> Value {
    let mut v = json!([]);
    for _ in 2..depth {
        v = json!([v]);
    }
    json!({ "a": v })
}

/// The text of [`nested_object`] (for raw request bodies).
pub fn nested_object_text(depth: usize) -> String {
    format!(
        "{}{{}}{}",
        "{\"a\":".repeat(depth - 1),
        "}".repeat(depth - 1)
    )
}

/// The `InvalidInput` message of `result`; panics on anything else.
#[track_caller]
pub fn invalid<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::InvalidInput(m)) => m,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

/// Asserts an `InvalidInput` that says the nesting limit.
#[track_caller]
pub fn too_deep<T: std::fmt::Debug>(result: Result<T, Error>, field: &str) {
    let m = invalid(result);
    assert!(
        m.contains(field) && m.contains(&format!("{LIMIT} levels")),
        "the error names {field} and the limit: {m}"
    );
}

/// A normal write and read on `store` work: the message lands at the end of
/// a fresh stream and reads back through `stream.get` and `category.get`.
#[track_caller]
pub fn store_still_works(store: &dyn MessageStore) {
    let stream = format!("afterwards-{}", uuid::Uuid::new_v4().simple());
    let data = json!({ "ok": true, "n": 1 });
    let written = store
        .write(
            &stream,
            &NewMessage::new("StillWorks", data.clone()),
            &WriteOptions::new(),
        )
        .expect("a normal write works after bad input");
    assert_eq!(written.position, 0);
    let read = store.get_stream(&stream, &StreamQuery::new()).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].data, data);
    let in_category = store
        .get_category(
            "afterwards",
            &CategoryQuery::new().position(written.global_position),
        )
        .unwrap();
    assert_eq!(in_category[0].stream_name, stream);
}

/// Every message of the namespace can be read (nothing written blocks a
/// reader) and there are `expected` of them.
#[track_caller]
pub fn store_holds(store: &dyn MessageStore, expected: usize) {
    let all = store
        .get_category("", &CategoryQuery::new().batch_size(-1))
        .expect("the whole namespace reads");
    assert_eq!(all.len(), expected, "{all:?}");
}

/// The outbox still takes a normal write and a sender on `kit` delivers it
/// and every row written before (nothing lost, nothing dead-lettered):
/// afterwards the store holds exactly the outbox's rows.
#[track_caller]
pub fn outbox_still_delivers(kit: &Kit) {
    let outbox = kit.outbox();
    let id = outbox
        .write(
            "afterwards-1",
            &NewMessage::new("StillWorks", json!({ "ok": true })),
        )
        .expect("a normal outbox write works after bad input");
    let sender = kit.spawn_sender(fast_sender()).unwrap();
    assert_eq!(
        sender.wait_until_sent(&id, WAIT).unwrap(),
        eventodb_kit::outbox::Delivery::Sent
    );
    sender.wait_until_drained(WAIT).unwrap();
    sender.shutdown();
    let rows = outbox.list(&OutboxFilter::new()).unwrap();
    assert!(
        rows.iter().all(|r| r.state() == OutboxState::Sent),
        "every outbox row was delivered: {rows:?}"
    );
    let stored = kit
        .store()
        .get_category("", &CategoryQuery::new().batch_size(-1))
        .unwrap();
    let mut stored_ids: Vec<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    let mut row_ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    stored_ids.sort_unstable();
    row_ids.sort_unstable();
    assert_eq!(
        stored_ids, row_ids,
        "the store holds exactly the outbox's rows"
    );
}

/// Sender settings for these tests: quick retries and polls.
pub fn fast_sender() -> eventodb_kit::SenderConfig {
    eventodb_kit::SenderConfig::new()
        .retry(
            eventodb_kit::RetryPolicy::new()
                .initial_delay(Duration::from_millis(5))
                .max_delay(Duration::from_millis(100)),
        )
        .poll_interval(Duration::from_millis(200))
}
