//! Bad input at `HttpStore` (and a kit whose store is one), against the
//! project's own server on 127.0.0.1: what the kit could not read back is
//! refused before it is sent; everything else gets the typed error of the
//! server's answer; afterwards a normal write and read work and, for the
//! kit, the sender delivers everything.
#![cfg(feature = "server")]

mod bad_input_support;
mod support;

use bad_input_support::{
    invalid, msg, nested_arrays, nested_object, outbox_still_delivers, store_holds,
    store_still_works, too_deep, write, LIMIT,
};
use eventodb_kit::server::Server;
use eventodb_kit::{
    CategoryQuery, Disposition, Error, HttpStore, Kit, MessageStore, NewMessage, PauseReason,
    StreamQuery, WriteOptions,
};
use serde_json::json;

fn http() -> (HttpStore, Server) {
    let (server, token) = support::server();
    let store = HttpStore::new(&server.url(), &token).unwrap();
    (store, server)
}

#[test]
fn data_nested_too_deep_is_refused_before_sending() {
    let (store, _server) = http();
    // The server would answer "Malformed JSON request"; this is the kit's
    // own message, so nothing was sent.
    too_deep(
        write(&store, "deep-1", &msg(nested_object(LIMIT + 1))),
        "message.data",
    );
    store_holds(&store, 0);
    store_still_works(&store);
}

#[test]
fn metadata_nested_too_deep_is_refused_before_sending() {
    let (store, _server) = http();
    let m = msg(json!({})).with_metadata(nested_arrays(LIMIT + 1));
    too_deep(write(&store, "deep-1", &m), "message.metadata");
    store_still_works(&store);
}

#[test]
fn data_at_the_limit_goes_through_the_outbox_and_reads_back_over_http() {
    let (store, _server) = http();
    let dir = tempfile::tempdir().unwrap();
    let kit = Kit::builder()
        .database(dir.path().join("app.db"))
        .store(store.clone())
        .build()
        .unwrap();
    let data = nested_arrays(LIMIT);
    kit.outbox()
        .write(
            "deep-1",
            &msg(data.clone()).with_metadata(nested_object(LIMIT)),
        )
        .unwrap();
    too_deep(
        kit.outbox().write("deep-1", &msg(nested_arrays(LIMIT + 1))),
        "message.data",
    );
    outbox_still_delivers(&kit);
    let read = store.get_category("deep", &CategoryQuery::new()).unwrap();
    assert_eq!(read[0].data, data);
    store_still_works(&store);
}

#[test]
fn shape_errors_carry_eventodbs_messages() {
    let (store, _server) = http();
    let cases: Vec<(&str, NewMessage, &str)> = vec![
        ("", msg(json!({})), "streamName must be a non-empty string"),
        (
            "a-1",
            NewMessage::new("", json!({})),
            "message.type must be a non-empty string",
        ),
        ("a-1", msg(json!(null)), "message.data must be an object"),
        ("a-1", msg(json!([1, 2])), "message.data must be an object"),
        ("a-1", msg(json!("text")), "message.data must be an object"),
        (
            "a-1",
            msg(json!({})).with_metadata(json!(null)),
            "message.metadata must be an object",
        ),
        (
            "a-1",
            msg(json!({})).with_metadata(json!(3)),
            "message.metadata must be an object",
        ),
    ];
    for (stream, m, expected) in cases {
        assert_eq!(invalid(write(&store, stream, &m)), expected);
    }
    store_holds(&store, 0);
    store_still_works(&store);
}

#[test]
fn malformed_ids_are_the_servers_backend_errors() {
    let (store, _server) = http();
    for (id, detail) in [
        ("abc", "invalid UUID length: 3"),
        (
            "0190b6a4+6a3e-7c3e-9b1a-3f2d1c0b9a87",
            "invalid UUID format",
        ),
    ] {
        match store.write("id-1", &msg(json!({})), &WriteOptions::new().id(id)) {
            Err(e @ Error::Store { .. }) => {
                assert!(e.to_string().contains(detail), "{e}");
                // A 500, as EventoDB answers, but no retry can fix the id.
                assert_eq!(e.disposition(), Disposition::DeadLetter);
            }
            other => panic!("{id}: {other:?}"),
        }
    }
    store_still_works(&store);
}

#[test]
fn ids_differing_only_in_case_are_two_ids_on_serve() {
    // serve keeps EventoDB's SQLite behaviour (protocol §9, §12).
    let (store, _server) = http();
    let lower = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";
    let upper = lower.to_uppercase();
    for id in [lower, upper.as_str()] {
        store
            .write("case-1", &msg(json!({})), &WriteOptions::new().id(id))
            .unwrap();
    }
    match store.write("case-2", &msg(json!({})), &WriteOptions::new().id(&upper)) {
        Err(Error::DuplicateId { id }) => assert_eq!(id, upper),
        other => panic!("{other:?}"),
    }
    let read = store.get_stream("case-1", &StreamQuery::new()).unwrap();
    assert_eq!(read.len(), 2);
    store_still_works(&store);
}

#[test]
fn a_kit_over_http_sends_one_canonical_id_whatever_the_case() {
    let (store, _server) = http();
    let dir = tempfile::tempdir().unwrap();
    let kit = Kit::builder()
        .database(dir.path().join("app.db"))
        .store(store.clone())
        .build()
        .unwrap();
    let upper = "0190B6A4-6A3E-7C3E-9B1A-3F2D1C0B9A87";
    let id = kit
        .outbox()
        .write_with("case-1", &msg(json!({})), &WriteOptions::new().id(upper))
        .unwrap();
    let again = kit.outbox().write_with(
        "case-1",
        &msg(json!({})),
        &WriteOptions::new().id(upper.to_lowercase()),
    );
    assert!(matches!(again, Err(Error::DuplicateId { .. })), "{again:?}");
    outbox_still_delivers(&kit);
    let read = store.get_stream("case-1", &StreamQuery::new()).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].id, id);
    assert_eq!(id, upper.to_lowercase());
}

#[test]
fn expected_versions_below_minus_one_conflict() {
    let (store, _server) = http();
    let opts = WriteOptions::new().expected_version(-5);
    match store.write("ev-1", &msg(json!({})), &opts) {
        Err(Error::Conflict {
            expected: -5,
            actual: Some(-1),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    store_still_works(&store);
}

#[test]
fn batch_sizes_over_the_limit_are_refused_by_the_server() {
    let (store, _server) = http();
    let m = invalid(store.get_stream("a-1", &StreamQuery::new().batch_size(10_001)));
    assert_eq!(m, "options.batchSize must be <= 10000 or -1 for unlimited");
    let m = invalid(store.get_category("a", &CategoryQuery::new().batch_size(1_000_000)));
    assert!(m.contains("batchSize"), "{m}");
    store_still_works(&store);
}

#[test]
fn odd_names_round_trip_over_http() {
    let (store, _server) = http();
    let long = format!("long-{}", "z".repeat(100_000));
    for stream in [
        long.as_str(),
        "nul-\0",
        "quote-\"<&>\\",
        "ünï-🚀",
        "line-\n",
    ] {
        write(
            &store,
            stream,
            &NewMessage::new("T\u{2028}\0", json!({ "s": stream })),
        )
        .unwrap_or_else(|e| panic!("{stream:?}: {e}"));
        let read = store.last_message(stream, None).unwrap().unwrap();
        assert_eq!(
            (read.stream_name.as_str(), read.message_type.as_str()),
            (stream, "T\u{2028}\0")
        );
        assert_eq!(read.data["s"], stream);
    }
    store_still_works(&store);
}

#[test]
fn unusable_urls_and_tokens_are_refused_without_showing_the_token() {
    let (store, server) = http();
    let token = "ns_ZGVmYXVsdA_0000";
    for (url, tok) in [
        (
            "ftp://127.0.0.1",
            "ns_ZGVmYXVsdA_".to_string() + &"0".repeat(64),
        ),
        (
            "127.0.0.1:8080",
            "ns_ZGVmYXVsdA_".to_string() + &"0".repeat(64),
        ),
        (server.url().as_str(), token.to_string()),
        (server.url().as_str(), String::new()),
    ] {
        let m = invalid(HttpStore::new(url, &tok));
        assert!(!m.contains("0000"), "no token in errors: {m}");
    }
    store_still_works(&store);
}

#[test]
fn a_token_of_an_unknown_namespace_pauses_never_dead_letters() {
    let (store, server) = http();
    let stranger = eventodb_kit::Token::generate("stranger").unwrap();
    let other = HttpStore::new(&server.url(), stranger.expose_secret()).unwrap();
    let err = write(&other, "a-1", &msg(json!({}))).unwrap_err();
    assert!(matches!(err, Error::Auth { status: 403, .. }), "{err}");
    assert_eq!(
        err.disposition(),
        Disposition::Pause(PauseReason::AuthRefused)
    );
    assert!(!err.to_string().contains(stranger.expose_secret()));
    store_still_works(&store);
}
