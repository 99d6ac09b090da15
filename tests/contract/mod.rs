//! The `MessageStore` contract: EventoDB's semantics, written once and run
//! against every implementation (see `contract_tests!`).
//!
//! Each case gets a store on a fresh, empty namespace from a fixture and
//! checks what a user of the store would check.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use eventodb_kit::store::WriteItem;
use eventodb_kit::{
    CategoryQuery, ConsumerGroup, Error, Message, MessageStore, NewMessage, StreamListQuery,
    StreamQuery, SubscribeTarget, WriteOptions, WriteResult,
};
use serde_json::{json, Value};

/// Gives each contract case a store bound to a fresh, empty namespace.
pub trait Fixture {
    /// The store under test.
    fn store(&self) -> Arc<dyn MessageStore>;
}

/// Generates one `#[test]` per contract case, each with a fixture from `$make()`.
#[macro_export]
macro_rules! contract_tests {
    ($make:path) => {
        $crate::contract_tests!(@cases $make;
            write_assigns_positions,
            validation_messages,
            get_stream_rules,
            batch_size_rules,
            unlimited_batch_sizes,
            last_message_rules,
            stream_version_rules,
            expected_version_rules,
            duplicate_ids,
            custom_ids,
            data_and_metadata_round_trip,
            unicode_and_large_payloads,
            category_rules,
            correlation_rules,
            consumer_group_vectors,
            consumer_group_batch_after_filter,
            concurrent_writers_one_stream,
            list_streams_rules,
            list_categories_counts,
            subscribe_stream_replays_then_goes_live,
            subscribe_category_replay_uses_consumer_group,
            subscribe_all_is_live_only,
            watch_category_wakes_on_new_writes,
            time_is_write_time,
            data_numbers_read_back_as_float64,
            nesting_depth_limit,
            write_many_in_order,
            write_many_empty,
            write_many_duplicate_id_in_the_middle,
            write_many_conflict_in_the_middle,
            write_many_invalid_item_in_the_middle,
            write_many_chains_expected_versions,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let fixture = $make();
                $crate::contract::$case(&*$crate::contract::Fixture::store(&fixture));
            }
        )*
    };
}

fn msg(message_type: &str, data: Value) -> NewMessage {
    NewMessage::new(message_type, data)
}

fn write(store: &dyn MessageStore, stream: &str, n: i64) -> eventodb_kit::WriteResult {
    store
        .write(
            stream,
            &msg("Event", json!({ "n": n })),
            &WriteOptions::new(),
        )
        .unwrap_or_else(|e| panic!("write to {stream} failed: {e}"))
}

fn invalid(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::InvalidInput(m)) => m,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

fn streams_of(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.stream_name.as_str()).collect()
}

fn ns(messages: &[Message]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m.data["n"].as_i64().unwrap())
        .collect()
}

pub fn write_assigns_positions(store: &dyn MessageStore) {
    let a0 = write(store, "account-1", 0);
    let a1 = write(store, "account-1", 1);
    let b0 = write(store, "account-2", 2);
    assert_eq!((a0.position, a0.global_position), (0, 1));
    assert_eq!((a1.position, a1.global_position), (1, 2));
    assert_eq!((b0.position, b0.global_position), (0, 3));
    let read = store.get_stream("account-1", &StreamQuery::new()).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[1].position, 1);
    assert_eq!(read[1].global_position, 2);
    assert_eq!(read[1].stream_name, "account-1");
    assert_eq!(read[1].message_type, "Event");
    assert_eq!(read[1].id.len(), 36, "generated ids are canonical UUIDs");
}

pub fn validation_messages(store: &dyn MessageStore) {
    let w = |stream: &str, m: NewMessage| store.write(stream, &m, &WriteOptions::new());
    assert_eq!(
        invalid(w("", msg("T", json!({})))),
        "streamName must be a non-empty string"
    );
    assert_eq!(
        invalid(w("s-1", msg("", json!({})))),
        "message.type must be a non-empty string"
    );
    for data in [json!(null), json!([1]), json!("x"), json!(3)] {
        assert_eq!(
            invalid(w("s-1", msg("T", data))),
            "message.data must be an object"
        );
    }
    assert_eq!(
        invalid(w("s-1", msg("T", json!({})).with_metadata(json!(null)))),
        "message.metadata must be an object"
    );
    assert_eq!(
        invalid(store.get_stream("", &StreamQuery::new())),
        "streamName must be a non-empty string"
    );
    assert_eq!(
        store.stream_version("s-1").unwrap(),
        None,
        "nothing was written"
    );
}

pub fn get_stream_rules(store: &dyn MessageStore) {
    for n in 0..5 {
        write(store, "order-1", n);
        write(store, "order-2", 100 + n);
    }
    let all = store.get_stream("order-1", &StreamQuery::new()).unwrap();
    assert_eq!(ns(&all), [0, 1, 2, 3, 4]);
    let from2 = store
        .get_stream("order-1", &StreamQuery::new().position(2))
        .unwrap();
    assert_eq!(ns(&from2), [2, 3, 4], "position is inclusive");
    let batch = store
        .get_stream("order-1", &StreamQuery::new().position(1).batch_size(2))
        .unwrap();
    assert_eq!(ns(&batch), [1, 2]);
    let negative = store
        .get_stream("order-1", &StreamQuery::new().position(-1))
        .unwrap();
    assert_eq!(negative.len(), 5, "a negative position behaves like 0");
    assert!(store
        .get_stream("order-1", &StreamQuery::new().position(5))
        .unwrap()
        .is_empty());
    assert!(store
        .get_stream("order-9", &StreamQuery::new())
        .unwrap()
        .is_empty());
    // order-1's messages have global positions 1, 3, 5, 7, 9.
    let by_global = store
        .get_stream(
            "order-1",
            &StreamQuery::new().position(4).global_position(6),
        )
        .unwrap();
    assert_eq!(ns(&by_global), [3, 4], "globalPosition replaces position");
    assert!(by_global.windows(2).all(|w| w[0].position < w[1].position));
}

pub fn batch_size_rules(store: &dyn MessageStore) {
    write(store, "b-1", 0);
    let err = invalid(store.get_stream("b-1", &StreamQuery::new().batch_size(10_001)));
    assert_eq!(
        err,
        "options.batchSize must be <= 10000 or -1 for unlimited"
    );
    let err = invalid(store.get_category("b", &CategoryQuery::new().batch_size(1_000_000)));
    assert!(err.contains("batchSize"));
    assert_eq!(
        store
            .get_stream("b-1", &StreamQuery::new().batch_size(10_000))
            .unwrap()
            .len(),
        1
    );
    for unlimited in [0, -1, -5] {
        assert_eq!(
            store
                .get_stream("b-1", &StreamQuery::new().batch_size(unlimited))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store
                .get_category("b", &CategoryQuery::new().batch_size(unlimited))
                .unwrap()
                .len(),
            1
        );
    }
}

pub fn unlimited_batch_sizes(store: &dyn MessageStore) {
    for n in 0..1001 {
        write(store, "big-1", n);
    }
    assert_eq!(
        store
            .get_stream("big-1", &StreamQuery::new())
            .unwrap()
            .len(),
        1000
    );
    assert_eq!(
        store
            .get_category("big", &CategoryQuery::new())
            .unwrap()
            .len(),
        1000
    );
    for unlimited in [0, -1] {
        let q = StreamQuery::new().batch_size(unlimited);
        assert_eq!(store.get_stream("big-1", &q).unwrap().len(), 1001);
        let q = CategoryQuery::new().batch_size(unlimited);
        assert_eq!(store.get_category("big", &q).unwrap().len(), 1001);
    }
}

pub fn last_message_rules(store: &dyn MessageStore) {
    assert!(store.last_message("cart-1", None).unwrap().is_none());
    store
        .write(
            "cart-1",
            &msg("Added", json!({ "n": 0 })),
            &WriteOptions::new(),
        )
        .unwrap();
    store
        .write(
            "cart-1",
            &msg("Removed", json!({ "n": 1 })),
            &WriteOptions::new(),
        )
        .unwrap();
    store
        .write(
            "cart-1",
            &msg("Added", json!({ "n": 2 })),
            &WriteOptions::new(),
        )
        .unwrap();
    store
        .write(
            "cart-1",
            &msg("Checked", json!({ "n": 3 })),
            &WriteOptions::new(),
        )
        .unwrap();
    let last = store.last_message("cart-1", None).unwrap().unwrap();
    assert_eq!((last.position, last.message_type.as_str()), (3, "Checked"));
    let added = store
        .last_message("cart-1", Some("Added"))
        .unwrap()
        .unwrap();
    assert_eq!(added.position, 2);
    assert_eq!(added.data["n"], 2);
    assert!(store
        .last_message("cart-1", Some("Nope"))
        .unwrap()
        .is_none());
    let any = store.last_message("cart-1", Some("")).unwrap().unwrap();
    assert_eq!(any.position, 3, "an empty type means no filter");
}

pub fn stream_version_rules(store: &dyn MessageStore) {
    assert_eq!(store.stream_version("v-1").unwrap(), None);
    write(store, "v-1", 0);
    assert_eq!(store.stream_version("v-1").unwrap(), Some(0));
    write(store, "v-1", 1);
    write(store, "v-2", 0);
    assert_eq!(store.stream_version("v-1").unwrap(), Some(1));
}

pub fn expected_version_rules(store: &dyn MessageStore) {
    let ev = |stream: &str, v: i64| {
        store.write(
            stream,
            &msg("T", json!({})),
            &WriteOptions::new().expected_version(v),
        )
    };
    assert_eq!(
        ev("acct-1", -1).unwrap().position,
        0,
        "-1: stream must be new"
    );
    match ev("acct-1", -1) {
        Err(Error::Conflict {
            stream,
            expected,
            actual,
        }) => {
            assert_eq!((stream.as_str(), expected), ("acct-1", -1));
            assert!(actual.is_none() || actual == Some(0), "{actual:?}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    match ev("acct-2", 0) {
        Err(Error::Conflict {
            expected: 0,
            actual,
            ..
        }) => {
            assert!(actual.is_none() || actual == Some(-1))
        }
        other => panic!("0 on a new stream must conflict, got {other:?}"),
    }
    assert!(matches!(ev("acct-1", -2), Err(Error::Conflict { .. })));
    assert!(matches!(ev("acct-1", 5), Err(Error::Conflict { .. })));
    assert_eq!(ev("acct-1", 0).unwrap().position, 1);
    assert_eq!(store.stream_version("acct-1").unwrap(), Some(1));
    assert_eq!(store.stream_version("acct-2").unwrap(), None);
}

pub fn duplicate_ids(store: &dyn MessageStore) {
    let id = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";
    let first = store
        .write(
            "dup-1",
            &msg("T", json!({ "n": 1 })),
            &WriteOptions::new().id(id),
        )
        .unwrap();
    for stream in ["dup-1", "dup-2"] {
        match store.write(
            stream,
            &msg("T", json!({ "n": 2 })),
            &WriteOptions::new().id(id),
        ) {
            Err(Error::DuplicateId { id: dup }) => assert_eq!(dup, id),
            other => panic!("expected DuplicateId on {stream}, got {other:?}"),
        }
    }
    // Nothing was written and no global position was consumed.
    assert_eq!(store.stream_version("dup-2").unwrap(), None);
    let next = write(store, "dup-3", 0);
    assert_eq!(next.global_position, first.global_position + 1);
    // A retry whose expectedVersion the first attempt already satisfied is a conflict.
    let id2 = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a88";
    let opts = WriteOptions::new().id(id2).expected_version(-1);
    store.write("dup-4", &msg("T", json!({})), &opts).unwrap();
    assert!(matches!(
        store.write("dup-4", &msg("T", json!({})), &opts),
        Err(Error::Conflict { .. })
    ));
    assert!(!Error::DuplicateId { id: id.into() }.is_transient());
}

pub fn custom_ids(store: &dyn MessageStore) {
    let id = "0190B6A4-6A3E-7C3E-9B1A-3F2D1C0B9A87";
    store
        .write("ids-1", &msg("T", json!({})), &WriteOptions::new().id(id))
        .unwrap();
    let read = store.get_stream("ids-1", &StreamQuery::new()).unwrap();
    assert_eq!(read[0].id, id, "custom ids are kept");
    let generated = store
        .write("ids-1", &msg("T", json!({})), &WriteOptions::new().id(""))
        .unwrap();
    assert_eq!(generated.position, 1, "an empty id means generate one");
    match store.write(
        "ids-1",
        &msg("T", json!({})),
        &WriteOptions::new().id("abc"),
    ) {
        Err(Error::Store {
            status,
            code,
            message,
        }) => {
            assert_eq!((status, code.as_str()), (500, "BACKEND_ERROR"));
            assert!(message.contains("invalid UUID"), "{message}");
        }
        other => panic!("an invalid id is a backend error, got {other:?}"),
    }
}

pub fn data_and_metadata_round_trip(store: &dyn MessageStore) {
    let data = json!({
        "nested": { "null": null, "t": true, "f": false, "empty": "", "list": [1, "two", null, {}] },
        "float": 1.5,
        "negative": -42,
        "zero": {},
    });
    store
        .write("rt-1", &msg("Full", data.clone()), &WriteOptions::new())
        .unwrap();
    store
        .write(
            "rt-1",
            &msg("EmptyMeta", json!({})).with_metadata(json!({})),
            &WriteOptions::new(),
        )
        .unwrap();
    store
        .write(
            "rt-1",
            &msg("Meta", json!({})).with_metadata(json!({ "b": 1, "a": [true] })),
            &WriteOptions::new(),
        )
        .unwrap();
    let read = store.get_stream("rt-1", &StreamQuery::new()).unwrap();
    assert_eq!(read[0].data, data);
    assert_eq!(read[0].metadata, None, "omitted metadata reads as null");
    assert_eq!(read[1].data, json!({}), "{{}} stays {{}}");
    assert_eq!(read[1].metadata, Some(json!({})));
    assert_eq!(read[2].metadata, Some(json!({ "a": [true], "b": 1 })));
    let via_category = store.get_category("rt", &CategoryQuery::new()).unwrap();
    assert_eq!(via_category[0].data, data);
}

pub fn unicode_and_large_payloads(store: &dyn MessageStore) {
    let stream = "café-ünï cödé 🚀";
    let data = json!({ "text": "héllo wörld — 你好 — 🎉", "quote": "\"<&>\"", "ctl": "\u{1}\n\t" });
    store
        .write(stream, &msg("Ünicode", data.clone()), &WriteOptions::new())
        .unwrap();
    let read = store.get_stream(stream, &StreamQuery::new()).unwrap();
    assert_eq!(read[0].data, data);
    assert_eq!(read[0].message_type, "Ünicode");
    let in_cat = store.get_category("café", &CategoryQuery::new()).unwrap();
    assert_eq!(streams_of(&in_cat), [stream]);

    let big = "x".repeat(512 * 1024);
    store
        .write(
            "large-1",
            &msg("Big", json!({ "blob": big })),
            &WriteOptions::new(),
        )
        .unwrap();
    let read = store.last_message("large-1", None).unwrap().unwrap();
    assert_eq!(read.data["blob"].as_str().map(str::len), Some(512 * 1024));
}

pub fn category_rules(store: &dyn MessageStore) {
    for (n, stream) in [
        "account-1",
        "account",
        "accounts-1",
        "account:command-1",
        "account-2+x",
        "other-1",
    ]
    .iter()
    .enumerate()
    {
        write(store, stream, n as i64);
    }
    let account = store
        .get_category("account", &CategoryQuery::new())
        .unwrap();
    assert_eq!(
        streams_of(&account),
        ["account-1", "account", "account-2+x"]
    );
    assert!(account
        .windows(2)
        .all(|w| w[0].global_position < w[1].global_position));
    let cmd = store
        .get_category("account:command", &CategoryQuery::new())
        .unwrap();
    assert_eq!(streams_of(&cmd), ["account:command-1"]);
    assert!(store
        .get_category("account-1", &CategoryQuery::new())
        .unwrap()
        .is_empty());
    assert!(store
        .get_category("ACCOUNT", &CategoryQuery::new())
        .unwrap()
        .is_empty());
    assert_eq!(
        store.get_category("", &CategoryQuery::new()).unwrap().len(),
        6
    );
    // position is a global position, inclusive; default 1.
    let from3 = store
        .get_category("account", &CategoryQuery::new().position(3))
        .unwrap();
    assert_eq!(streams_of(&from3), ["account-2+x"]);
    let from0 = store
        .get_category("account", &CategoryQuery::new().position(0))
        .unwrap();
    assert_eq!(from0.len(), 3);
    let one = store
        .get_category("account", &CategoryQuery::new().batch_size(1))
        .unwrap();
    assert_eq!(streams_of(&one), ["account-1"]);
}

pub fn correlation_rules(store: &dyn MessageStore) {
    let with_corr = |stream: &str, corr: Option<&str>| {
        let mut m = msg("T", json!({}));
        if let Some(c) = corr {
            m = m.correlation_stream_name(c);
        }
        store.write(stream, &m, &WriteOptions::new()).unwrap();
    };
    with_corr("task-1", Some("workflow-123"));
    with_corr("task-2", Some("other-456"));
    with_corr("task-3", Some("workflow"));
    with_corr("task-4", None);
    with_corr("task-5", Some("WORKFLOW-9"));
    with_corr("task-6", Some("workflows-1"));
    let q = CategoryQuery::new().correlation("workflow");
    let got = store.get_category("task", &q).unwrap();
    assert_eq!(streams_of(&got), ["task-1", "task-5"]);
    let all = store
        .get_category("task", &CategoryQuery::new().correlation(""))
        .unwrap();
    assert_eq!(all.len(), 6, "an empty correlation means no filter");
    let limited = store
        .get_category(
            "task",
            &CategoryQuery::new().correlation("workflow").batch_size(1),
        )
        .unwrap();
    assert_eq!(streams_of(&limited), ["task-1"]);
}

pub fn consumer_group_vectors(store: &dyn MessageStore) {
    let streams = [
        "account-123",
        "account-123+retry",
        "account-456",
        "account-1",
        "account-2",
        "account-3",
        "account-4",
        "account",
    ];
    for (n, s) in streams.iter().enumerate() {
        write(store, s, n as i64);
    }
    // Expected members from the protocol's worked examples.
    let expected: &[(&str, [i64; 3])] = &[
        ("account-123", [1, 1, 3]),
        ("account-123+retry", [1, 1, 3]),
        ("account-456", [1, 1, 3]),
        ("account-1", [0, 0, 2]),
        ("account-2", [1, 1, 1]),
        ("account-3", [0, 2, 2]),
        ("account-4", [1, 0, 3]),
    ];
    for (i, size) in [2i64, 3, 4].iter().enumerate() {
        let mut seen = BTreeSet::new();
        for member in 0..*size {
            let q = CategoryQuery::new().consumer_group(ConsumerGroup::new(member, *size).unwrap());
            let got = store.get_category("account", &q).unwrap();
            for m in &got {
                let want = expected
                    .iter()
                    .find(|(s, _)| *s == m.stream_name)
                    .unwrap_or_else(|| panic!("{} belongs to no member", m.stream_name));
                assert_eq!(want.1[i], member, "{} with size {size}", m.stream_name);
                assert!(
                    seen.insert(m.stream_name.clone()),
                    "{} twice",
                    m.stream_name
                );
            }
        }
        assert_eq!(
            seen.len(),
            expected.len(),
            "size {size} covers every stream once"
        );
        assert!(!seen.contains("account"));
    }
}

pub fn consumer_group_batch_after_filter(store: &dyn MessageStore) {
    for s in ["testcat5-1", "testcat5-2", "testcat5-3", "testcat5-4"] {
        write(store, s, 0);
    }
    let g = ConsumerGroup::new(0, 2).unwrap();
    let got = store
        .get_category("testcat5", &CategoryQuery::new().consumer_group(g))
        .unwrap();
    assert_eq!(streams_of(&got), ["testcat5-1", "testcat5-3"]);
    let one = store
        .get_category(
            "testcat5",
            &CategoryQuery::new()
                .consumer_group(g)
                .batch_size(1)
                .position(2),
        )
        .unwrap();
    assert_eq!(
        streams_of(&one),
        ["testcat5-3"],
        "the limit applies after filtering"
    );
}

pub fn concurrent_writers_one_stream(store: &dyn MessageStore) {
    const THREADS: i64 = 8;
    const EACH: i64 = 25;
    thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..EACH {
                    write(store, "hot-1", t * 1000 + i);
                }
            });
        }
    });
    let read = store
        .get_stream("hot-1", &StreamQuery::new().batch_size(-1))
        .unwrap();
    let positions: Vec<i64> = read.iter().map(|m| m.position).collect();
    assert_eq!(
        positions,
        (0..THREADS * EACH).collect::<Vec<_>>(),
        "gapless"
    );
    let mut globals: Vec<i64> = read.iter().map(|m| m.global_position).collect();
    globals.sort_unstable();
    assert_eq!(globals, (1..=THREADS * EACH).collect::<Vec<_>>());
    // Each writer's own messages keep their order.
    for t in 0..THREADS {
        let mine: Vec<i64> = ns(&read).into_iter().filter(|n| n / 1000 == t).collect();
        assert_eq!(mine, (0..EACH).map(|i| t * 1000 + i).collect::<Vec<_>>());
    }
}

pub fn list_streams_rules(store: &dyn MessageStore) {
    for s in ["b-2", "a-1", "b-1", "a-1", "c-1", "B-3"] {
        write(store, s, 0);
    }
    let all = store.list_streams(&StreamListQuery::new()).unwrap();
    let names: Vec<&str> = all.iter().map(|s| s.stream.as_str()).collect();
    assert_eq!(names, ["B-3", "a-1", "b-1", "b-2", "c-1"], "byte order");
    assert_eq!(all[1].version, 1);
    let since = SystemTime::now() - Duration::from_secs(120);
    assert!(all.iter().all(|s| s.last_activity > since));
    let b = store
        .list_streams(&StreamListQuery::new().prefix("b"))
        .unwrap();
    let names: Vec<&str> = b.iter().map(|s| s.stream.as_str()).collect();
    assert_eq!(names, ["B-3", "b-1", "b-2"], "prefix is case-insensitive");
    let page = store
        .list_streams(&StreamListQuery::new().cursor("a-1").limit(2))
        .unwrap();
    let names: Vec<&str> = page.iter().map(|s| s.stream.as_str()).collect();
    assert_eq!(names, ["b-1", "b-2"]);
    assert_eq!(
        invalid(store.list_streams(&StreamListQuery::new().limit(0))),
        "limit must be between 1 and 1000"
    );
}

pub fn list_categories_counts(store: &dyn MessageStore) {
    for s in ["a-1", "a-1", "a-2", "b-1", "b"] {
        write(store, s, 0);
    }
    let cats = store.list_categories().unwrap();
    let got: Vec<(&str, i64, i64)> = cats
        .iter()
        .map(|c| (c.category.as_str(), c.message_count, c.stream_count))
        .collect();
    assert_eq!(got, [("a", 3, 2), ("b", 2, 2)]);
}

const WAIT: Duration = Duration::from_secs(10);

pub fn subscribe_stream_replays_then_goes_live(store: &dyn MessageStore) {
    for n in 0..3 {
        write(store, "sub-1", n);
    }
    write(store, "sub-2", 0);
    let sub = store
        .subscribe(&SubscribeTarget::stream("sub-1", 1))
        .unwrap();
    let replayed: Vec<i64> = (0..2)
        .map(|_| sub.recv_timeout(WAIT).unwrap().position)
        .collect();
    assert_eq!(replayed, [1, 2]);
    write(store, "sub-2", 1);
    let live = write(store, "sub-1", 3);
    let poke = sub.recv_timeout(WAIT).unwrap();
    assert_eq!(poke.stream, "sub-1");
    assert_eq!(
        (poke.position, poke.global_position),
        (3, live.global_position)
    );
}

pub fn subscribe_category_replay_uses_consumer_group(store: &dyn MessageStore) {
    for s in ["grp-1", "grp-2", "grp-3", "grp-4", "other-1"] {
        write(store, s, 0);
    }
    let g = ConsumerGroup::new(0, 2).unwrap();
    let sub = store
        .subscribe(&SubscribeTarget::category_group("grp", 0, g))
        .unwrap();
    let replayed: Vec<String> = (0..2)
        .map(|_| sub.recv_timeout(WAIT).unwrap().stream)
        .collect();
    assert_eq!(replayed, ["grp-1", "grp-3"]);
    drop(sub);
    // Live pokes of a plain category subscription.
    let sub = store
        .subscribe(&SubscribeTarget::category("grp", 6))
        .unwrap();
    write(store, "other-2", 0);
    let live = write(store, "grp-9", 0);
    let poke = sub.recv_timeout(WAIT).unwrap();
    assert_eq!(
        (poke.stream.as_str(), poke.global_position),
        ("grp-9", live.global_position)
    );
}

pub fn subscribe_all_is_live_only(store: &dyn MessageStore) {
    write(store, "all-1", 0);
    let sub = store.subscribe(&SubscribeTarget::all(0)).unwrap();
    let live = write(store, "zzz-1", 0);
    let poke = sub.recv_timeout(WAIT).unwrap();
    assert_eq!(poke.stream, "zzz-1", "no replay for all=true");
    assert_eq!(poke.global_position, live.global_position);
}

pub fn watch_category_wakes_on_new_writes(store: &dyn MessageStore) {
    write(store, "watched-1", 0);
    let watch = store.watch_category("watched").unwrap();
    let everything = store.watch_category("").unwrap();
    // A poke for an earlier write may be replayed by some implementations;
    // what counts is that the next write wakes the watcher.
    write(store, "other-1", 0);
    let live = write(store, "watched-2", 0);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let poke = watch.recv_timeout(left).expect("a poke for the new write");
        assert!(poke.stream.starts_with("watched-"), "{poke:?}");
        if poke.global_position == live.global_position {
            break;
        }
    }
    let mut streams = BTreeSet::new();
    while !(streams.contains("other-1") && streams.contains("watched-2")) {
        streams.insert(everything.recv_timeout(WAIT).unwrap().stream);
    }
}

pub fn time_is_write_time(store: &dyn MessageStore) {
    let before = SystemTime::now() - Duration::from_secs(2);
    write(store, "clock-1", 0);
    let after = SystemTime::now() + Duration::from_secs(2);
    let m = store.last_message("clock-1", None).unwrap().unwrap();
    assert!(m.time >= before && m.time <= after, "{:?}", m.time);
}

/// Numbers in data and metadata read back as EventoDB gives them: its
/// server decodes them into float64s, so integers beyond 2^53 are rounded
/// and `5.0` is `5` — from the embedded store in-process as over HTTP.
pub fn data_numbers_read_back_as_float64(store: &dyn MessageStore) {
    let data = json!({
        "small": 42,
        "limit": 9_007_199_254_740_992u64,
        "beyond": 9_007_199_254_740_993u64,
        "negative": -9_007_199_254_740_993i64,
        "huge": 12_345_678_901_234_567_890u64,
        "max": u64::MAX,
        "whole_float": 5.0,
        "fraction": 0.1,
        "tiny": 1e-7,
        "large_float": 1e21,
        "nested": [{ "id": 1_234_567_890_123_456_789u64 }],
    });
    let metadata = json!({ "sequence": 9_007_199_254_740_993u64 });
    store
        .write(
            "numbers-1",
            &msg("Numbers", data).with_metadata(metadata),
            &WriteOptions::new(),
        )
        .unwrap();
    let expected = json!({
        "small": 42,
        "limit": 9_007_199_254_740_992u64,
        "beyond": 9_007_199_254_740_992u64,
        "negative": -9_007_199_254_740_992i64,
        "huge": 12_345_678_901_234_567_000u64,
        "max": 18_446_744_073_709_552_000.0,
        "whole_float": 5,
        "fraction": 0.1,
        "tiny": 1e-7,
        "large_float": 1e21,
        "nested": [{ "id": 1_234_567_890_123_456_800u64 }],
    });
    let read = store.get_stream("numbers-1", &StreamQuery::new()).unwrap();
    assert_eq!(read[0].data, expected);
    assert_eq!(
        read[0].metadata,
        Some(json!({ "sequence": 9_007_199_254_740_992u64 }))
    );
    let last = store.last_message("numbers-1", None).unwrap().unwrap();
    assert_eq!(last.data, expected);
    let in_category = store
        .get_category("numbers", &CategoryQuery::new())
        .unwrap();
    assert_eq!(in_category[0].data, expected);
}

/// Data and metadata nested up to `MAX_JSON_DEPTH` levels are written and
/// read back; one level more is refused with `InvalidInput` saying the
/// limit, and nothing is stored.
pub fn nesting_depth_limit(store: &dyn MessageStore) {
    let limit = eventodb_kit::message::MAX_JSON_DEPTH;
    let nested = |depth: usize| (1..depth).fold(json!({}), |v, _| json!({ "a": v }));
    let deepest = nested(limit);
    store
        .write(
            "nesting-1",
            &msg("Deep", deepest.clone()).with_metadata(deepest.clone()),
            &WriteOptions::new(),
        )
        .unwrap();
    for m in [
        msg("Deeper", nested(limit + 1)),
        msg("Deeper", json!({})).with_metadata(nested(limit + 1)),
    ] {
        let e = invalid(store.write("nesting-1", &m, &WriteOptions::new()));
        assert!(e.contains(&format!("{limit} levels")), "{e}");
    }
    let read = store.get_stream("nesting-1", &StreamQuery::new()).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].data, deepest);
    assert_eq!(read[0].metadata.as_ref(), Some(&deepest));
    let in_category = store
        .get_category("nesting", &CategoryQuery::new())
        .unwrap();
    assert_eq!(in_category[0].data, deepest);
    assert_eq!(
        store.last_message("nesting-1", None).unwrap().unwrap().data,
        deepest
    );
}

// ----- write_many -----

fn item(stream: &str, n: i64, options: WriteOptions) -> WriteItem {
    WriteItem::new(stream, msg("Event", json!({ "n": n })), options)
}

/// The results that succeeded, as (position, global position).
fn written(results: &[Result<WriteResult, Error>]) -> Vec<Option<(i64, i64)>> {
    results
        .iter()
        .map(|r| r.as_ref().ok().map(|w| (w.position, w.global_position)))
        .collect()
}

/// The global position the next write to the namespace gets.
fn next_global(store: &dyn MessageStore) -> i64 {
    store
        .get_category("", &CategoryQuery::new().batch_size(-1))
        .unwrap()
        .last()
        .map_or(1, |m| m.global_position + 1)
}

pub fn write_many_in_order(store: &dyn MessageStore) {
    write(store, "many-1", 0);
    let g = next_global(store);
    let results = store.write_many(&[
        item("many-1", 1, WriteOptions::new()),
        item("many-2", 2, WriteOptions::new()),
        item("many-1", 3, WriteOptions::new()),
        item("many-3", 4, WriteOptions::new()),
        item("many-1", 5, WriteOptions::new()),
    ]);
    assert_eq!(
        written(&results),
        [
            Some((1, g)),
            Some((0, g + 1)),
            Some((2, g + 2)),
            Some((0, g + 3)),
            Some((3, g + 4)),
        ],
        "one result per item, in order"
    );
    let one = store.get_stream("many-1", &StreamQuery::new()).unwrap();
    assert_eq!(ns(&one), [0, 1, 3, 5]);
    let all = store.get_category("many", &CategoryQuery::new()).unwrap();
    assert_eq!(ns(&all), [0, 1, 2, 3, 4, 5], "stored in the order given");
}

pub fn write_many_empty(store: &dyn MessageStore) {
    assert!(store.write_many(&[]).is_empty());
    assert_eq!(write(store, "empty-1", 0).global_position, 1);
}

pub fn write_many_duplicate_id_in_the_middle(store: &dyn MessageStore) {
    let id = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a90";
    let g = next_global(store);
    let results = store.write_many(&[
        item("dupm-1", 0, WriteOptions::new().id(id)),
        item("dupm-2", 1, WriteOptions::new().id(id)),
        item("dupm-2", 2, WriteOptions::new()),
    ]);
    assert_eq!(written(&results), [Some((0, g)), None, Some((0, g + 1))]);
    match &results[1] {
        Err(Error::DuplicateId { id: dup }) => assert_eq!(dup, id),
        other => panic!("expected DuplicateId, got {other:?}"),
    }
    let two = store.get_stream("dupm-2", &StreamQuery::new()).unwrap();
    assert_eq!(ns(&two), [2], "the duplicate left nothing behind");
}

pub fn write_many_conflict_in_the_middle(store: &dyn MessageStore) {
    write(store, "conm-1", 0);
    let g = next_global(store);
    let results = store.write_many(&[
        item("conm-2", 1, WriteOptions::new()),
        item("conm-1", 2, WriteOptions::new().expected_version(7)),
        item("conm-1", 3, WriteOptions::new()),
    ]);
    assert_eq!(written(&results), [Some((0, g)), None, Some((1, g + 1))]);
    match &results[1] {
        Err(Error::Conflict {
            stream, expected, ..
        }) => assert_eq!((stream.as_str(), *expected), ("conm-1", 7)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let one = store.get_stream("conm-1", &StreamQuery::new()).unwrap();
    assert_eq!(ns(&one), [0, 3]);
}

pub fn write_many_invalid_item_in_the_middle(store: &dyn MessageStore) {
    let g = next_global(store);
    let results = store.write_many(&[
        item("badm-1", 0, WriteOptions::new()),
        WriteItem::new("badm-1", msg("Event", json!([1])), WriteOptions::new()),
        item("", 2, WriteOptions::new()),
        item("badm-1", 3, WriteOptions::new()),
    ]);
    assert_eq!(
        written(&results),
        [Some((0, g)), None, None, Some((1, g + 1))]
    );
    let message = |r: &Result<WriteResult, Error>| match r {
        Err(Error::InvalidInput(m)) => m.clone(),
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    assert_eq!(message(&results[1]), "message.data must be an object");
    assert_eq!(
        message(&results[2]),
        "streamName must be a non-empty string"
    );
    let one = store.get_stream("badm-1", &StreamQuery::new()).unwrap();
    assert_eq!(ns(&one), [0, 3]);
}

pub fn write_many_chains_expected_versions(store: &dyn MessageStore) {
    write(store, "chain-1", 0);
    // v, v + 1 in one call: both succeed.
    let results = store.write_many(&[
        item("chain-1", 1, WriteOptions::new().expected_version(0)),
        item("chain-1", 2, WriteOptions::new().expected_version(1)),
    ]);
    let positions: Vec<_> = written(&results)
        .into_iter()
        .map(|w| w.map(|(p, _)| p))
        .collect();
    assert_eq!(positions, [Some(1), Some(2)]);
    // The first fails (a conflict): the second, chained to it, conflicts too.
    let results = store.write_many(&[
        item("chain-1", 3, WriteOptions::new().expected_version(5)),
        item("chain-1", 4, WriteOptions::new().expected_version(6)),
    ]);
    assert!(matches!(
        results[0],
        Err(Error::Conflict { expected: 5, .. })
    ));
    assert!(matches!(
        results[1],
        Err(Error::Conflict { expected: 6, .. })
    ));
    // The first fails otherwise (a taken id): the second conflicts.
    let taken = store
        .get_stream("chain-1", &StreamQuery::new())
        .unwrap()
        .remove(0)
        .id;
    let results = store.write_many(&[
        item(
            "chain-1",
            5,
            WriteOptions::new().id(&taken).expected_version(2),
        ),
        item("chain-1", 6, WriteOptions::new().expected_version(3)),
    ]);
    assert!(matches!(results[0], Err(Error::DuplicateId { .. })));
    assert!(matches!(
        results[1],
        Err(Error::Conflict { expected: 3, .. })
    ));
    let all = store.get_stream("chain-1", &StreamQuery::new()).unwrap();
    assert_eq!(
        ns(&all),
        [0, 1, 2],
        "nothing of the failed chains was stored"
    );
}
