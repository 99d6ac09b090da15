//! Bad input at `EmbeddedStore` (open, write, read): each case gets
//! the typed error EventoDB's semantics promise, and afterwards a normal
//! write and read still work and nothing written before is lost.

mod bad_input_support;

use bad_input_support::{
    embedded_store, invalid, msg, nested_arrays, nested_object, store_holds, store_still_works,
    too_deep, write, LIMIT,
};
use eventodb_kit::{
    CategoryQuery, Disposition, EmbeddedStore, Error, MessageStore, NewMessage, StreamQuery,
    WriteOptions,
};
use serde_json::json;

// ----- nesting depth (defect 2a) -----

#[test]
fn data_nested_one_level_too_deep_is_refused_and_blocks_nothing() {
    let (store, _dir) = embedded_store();
    write(&store, "deep-1", &msg(json!({ "before": 1 }))).unwrap();
    too_deep(
        write(&store, "deep-1", &msg(nested_object(LIMIT + 1))),
        "message.data",
    );
    // Before the fix the row was stored and every category read failed.
    store_holds(&store, 1);
    store_still_works(&store);
}

#[test]
fn data_at_the_limit_is_accepted_and_reads_back() {
    let (store, _dir) = embedded_store();
    let data = nested_object(LIMIT);
    write(&store, "deep-1", &msg(data.clone())).unwrap();
    assert_eq!(
        store.last_message("deep-1", None).unwrap().unwrap().data,
        data
    );
    let all = store.get_category("deep", &CategoryQuery::new()).unwrap();
    assert_eq!(all[0].data, data);
    store_still_works(&store);
}

#[test]
fn arrays_count_as_levels_too() {
    let (store, _dir) = embedded_store();
    too_deep(
        write(&store, "deep-1", &msg(nested_arrays(LIMIT + 1))),
        "message.data",
    );
    write(&store, "deep-1", &msg(nested_arrays(LIMIT))).unwrap();
    store_holds(&store, 1);
    store_still_works(&store);
}

#[test]
fn metadata_nested_too_deep_is_refused() {
    let (store, _dir) = embedded_store();
    let m = msg(json!({})).with_metadata(nested_object(LIMIT + 1));
    too_deep(write(&store, "deep-1", &m), "message.metadata");
    store_holds(&store, 0);
    store_still_works(&store);
}

#[test]
fn far_too_deep_data_is_refused_without_overflowing_the_stack() {
    let (store, _dir) = embedded_store();
    too_deep(
        write(&store, "deep-1", &msg(nested_arrays(1_000))),
        "message.data",
    );
    store_still_works(&store);
}

// ----- the shape of a message (EventoDB's messages) -----

#[test]
fn empty_stream_name_is_refused() {
    let (store, _dir) = embedded_store();
    assert_eq!(
        invalid(write(&store, "", &msg(json!({})))),
        "streamName must be a non-empty string"
    );
    store_still_works(&store);
}

#[test]
fn empty_type_is_refused() {
    let (store, _dir) = embedded_store();
    let m = NewMessage::new("", json!({}));
    assert_eq!(
        invalid(write(&store, "a-1", &m)),
        "message.type must be a non-empty string"
    );
    store_still_works(&store);
}

#[test]
fn data_that_is_not_an_object_is_refused() {
    let (store, _dir) = embedded_store();
    for data in [json!(null), json!([]), json!("x"), json!(1.5), json!(true)] {
        assert_eq!(
            invalid(write(&store, "a-1", &msg(data))),
            "message.data must be an object"
        );
    }
    store_holds(&store, 0);
    store_still_works(&store);
}

#[test]
fn null_or_array_metadata_is_refused() {
    let (store, _dir) = embedded_store();
    for metadata in [json!(null), json!([]), json!("x")] {
        let m = msg(json!({})).with_metadata(metadata);
        assert_eq!(
            invalid(write(&store, "a-1", &m)),
            "message.metadata must be an object"
        );
    }
    store_still_works(&store);
}

#[test]
fn odd_stream_and_type_names_round_trip() {
    // EventoDB puts no limit on names: they are stored as given.
    let (store, _dir) = embedded_store();
    let long = format!("long-{}", "x".repeat(100_000));
    for stream in [
        long.as_str(),
        "nul-\0byte",
        "white space-1",
        "-",
        "a-b-c",
        "ünï-🚀",
    ] {
        let m = NewMessage::new("Type\0With\nOddities ✓", json!({}));
        write(&store, stream, &m).unwrap_or_else(|e| panic!("{stream:?}: {e}"));
        let read = store.get_stream(stream, &StreamQuery::new()).unwrap();
        assert_eq!(read[0].stream_name, stream);
        assert_eq!(read[0].message_type, "Type\0With\nOddities ✓");
    }
    // The category is the text before the first `-`, even an empty one.
    assert_eq!(
        store.get_category("", &CategoryQuery::new()).unwrap().len(),
        6
    );
    assert_eq!(
        store
            .get_category("nul", &CategoryQuery::new())
            .unwrap()
            .len(),
        1
    );
    store_still_works(&store);
}

#[test]
fn non_finite_numbers_become_null() {
    // serde_json has no NaN or infinity: a serialized one is `null`.
    #[derive(serde::Serialize)]
    struct Reading {
        value: f64,
        other: f64,
    }
    let (store, _dir) = embedded_store();
    let m = NewMessage::from_serialize(
        "Read",
        &Reading {
            value: f64::NAN,
            other: f64::INFINITY,
        },
    )
    .unwrap();
    write(&store, "sensor-1", &m).unwrap();
    let read = store.last_message("sensor-1", None).unwrap().unwrap();
    assert_eq!(read.data, json!({ "value": null, "other": null }));
    store_still_works(&store);
}

// ----- expected versions and ids (protocol §8, §9) -----

#[test]
fn expected_versions_below_minus_one_always_conflict() {
    let (store, _dir) = embedded_store();
    for expected in [-2, i64::MIN] {
        let opts = WriteOptions::new().expected_version(expected);
        match store.write("ev-1", &msg(json!({})), &opts) {
            Err(Error::Conflict {
                expected: e,
                actual: Some(-1),
                ..
            }) => assert_eq!(e, expected),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    store_holds(&store, 0);
    store_still_works(&store);
}

#[test]
fn malformed_ids_are_backend_errors_as_in_eventodb() {
    let (store, _dir) = embedded_store();
    let cases = [
        ("abc", "invalid UUID length: 3"),
        (
            "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a8",
            "invalid UUID length: 35",
        ),
        (
            "0190b6a4x6a3e-7c3e-9b1a-3f2d1c0b9a87",
            "invalid UUID format",
        ),
        (
            "g190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87",
            "invalid UUID format",
        ),
        (
            " 0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87",
            "invalid UUID length: 37",
        ),
        ("0190b6a46a3e7c3e9b1a3f2d1c0b9a8z", "invalid UUID format"),
        (
            "urn:uuix:0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87",
            "invalid urn prefix",
        ),
    ];
    for (id, detail) in cases {
        let result = store.write("id-1", &msg(json!({})), &WriteOptions::new().id(id));
        if let Err(e) = &result {
            assert_eq!(
                e.disposition(),
                Disposition::DeadLetter,
                "no retry fixes {id:?}"
            );
        }
        match result {
            Err(Error::Store {
                status: 500,
                code,
                message,
            }) => {
                assert_eq!(code, "BACKEND_ERROR");
                assert!(
                    message.starts_with("Failed to write message: invalid UUID format: ")
                        && message.contains(detail),
                    "{id:?}: {message}"
                );
            }
            other => panic!("{id:?}: expected a backend error, got {other:?}"),
        }
    }
    store_holds(&store, 0);
    store_still_works(&store);
}

#[test]
fn ids_differing_only_in_case_are_two_ids_as_in_eventodbs_sqlite() {
    let (store, _dir) = embedded_store();
    let lower = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";
    let upper = lower.to_uppercase();
    for id in [lower, upper.as_str()] {
        store
            .write("case-1", &msg(json!({})), &WriteOptions::new().id(id))
            .unwrap();
    }
    let read = store.get_stream("case-1", &StreamQuery::new()).unwrap();
    let ids: Vec<&str> = read.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [lower, upper.as_str()], "kept verbatim");
    store_still_works(&store);
}

#[test]
fn every_uuid_form_go_accepts_is_kept_verbatim() {
    let (store, _dir) = embedded_store();
    let forms = [
        "{0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87}",
        "urn:uuid:0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a88",
        "0190b6a46a3e7c3e9b1a3f2d1c0b9a89",
    ];
    for id in forms {
        store
            .write("forms-1", &msg(json!({})), &WriteOptions::new().id(id))
            .unwrap();
    }
    let read = store.get_stream("forms-1", &StreamQuery::new()).unwrap();
    let ids: Vec<&str> = read.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, forms);
    store_still_works(&store);
}

#[test]
fn a_taken_id_is_refused_in_any_stream_and_consumes_nothing() {
    let (store, _dir) = embedded_store();
    let id = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";
    let first = store
        .write("dup-1", &msg(json!({})), &WriteOptions::new().id(id))
        .unwrap();
    for stream in ["dup-1", "other-1"] {
        match store.write(stream, &msg(json!({})), &WriteOptions::new().id(id)) {
            Err(Error::DuplicateId { id: taken }) => assert_eq!(taken, id),
            other => panic!("expected DuplicateId, got {other:?}"),
        }
    }
    let next = write(&store, "dup-1", &msg(json!({}))).unwrap();
    assert_eq!(next, first.global_position + 1, "no position consumed");
    store_still_works(&store);
}

#[test]
fn batch_sizes_over_the_limit_are_refused() {
    let (store, _dir) = embedded_store();
    let q = StreamQuery::new().batch_size(10_001);
    assert_eq!(
        invalid(store.get_stream("a-1", &q)),
        "options.batchSize must be <= 10000 or -1 for unlimited"
    );
    let q = CategoryQuery::new().batch_size(i64::MAX);
    assert!(invalid(store.get_category("a", &q)).contains("batchSize"));
    assert_eq!(
        invalid(store.get_stream("", &StreamQuery::new())),
        "streamName must be a non-empty string"
    );
    store_still_works(&store);
}

// ----- opening (defects 4 and 5) -----

#[test]
fn an_empty_path_is_refused() {
    let err = EmbeddedStore::open("").unwrap_err();
    assert!(invalid::<()>(Err(err)).contains("empty"));
}

#[test]
fn memory_spelled_as_a_path_is_refused() {
    // Each pooled reader would get its own private database.
    let err = EmbeddedStore::open(":memory:").unwrap_err();
    assert!(invalid::<()>(Err(err)).contains("open_in_memory"));
}

#[test]
fn a_path_in_a_missing_directory_fails_at_once_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("events.db");
    let err = EmbeddedStore::open(&path).unwrap_err();
    assert_eq!(err.disposition(), Disposition::DeadLetter, "{err}");
    assert!(!err.is_transient());
    let m = invalid::<()>(Err(err));
    assert!(m.contains(&path.display().to_string()), "{m}");
    assert!(m.contains("No such file or directory"), "{m}");
}

#[test]
fn a_directory_as_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(!err.is_transient(), "{err}");
    let m = invalid::<()>(Err(err));
    assert!(m.contains(&dir.path().display().to_string()), "{m}");
    assert!(m.to_lowercase().contains("directory"), "{m}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "these are not the pages of an SQLite database\n".repeat(100),
    )
    .unwrap();
    let err = EmbeddedStore::open(&path).unwrap_err();
    assert!(!err.is_transient(), "{err}");
    let m = invalid::<()>(Err(err));
    assert!(m.contains(&path.display().to_string()), "{m}");
    assert!(m.contains("not an SQLite database"), "{m}");
    assert!(std::fs::read_to_string(&path).unwrap().starts_with("these"));
}
