//! Bad input at import — `POST /import` of `serve`,
//! `EmbeddedStore::import_ndjson`, `HttpStore::import` and
//! `HttpStore::import_ndjson`: a record the kit could not read back is
//! refused with EventoDB's `INVALID_RECORD` failure (the batches of 1000
//! ahead of it stay imported, its own batch does not), malformed lines are
//! named, and afterwards normal writes and reads work.
#![cfg(feature = "server")]

mod bad_input_support;
mod support;

use bad_input_support::{
    embedded_store, invalid, nested_object, store_holds, store_still_works, LIMIT,
};
use eventodb_kit::{HttpStore, MessageStore, NewMessage, WriteOptions};
use serde_json::{json, Value};
use support::{agent, server, still_serving, Answer};

fn record(gpos: usize, data: &str, meta: &str) -> String {
    format!(
        r#"{{"id":"0190b6a4-6a3e-7c3e-9b1a-{gpos:012}","stream":"imp-{}","type":"T","pos":{},"gpos":{gpos},"data":{data},"meta":{meta},"time":"2026-03-01T12:34:56Z"}}"#,
        gpos % 7,
        gpos / 7
    )
}

/// `n` good records from global position 1, one per line.
fn good(n: usize) -> String {
    (1..=n)
        .map(|g| record(g, r#"{"n":1}"#, "null") + "\n")
        .collect()
}

fn deep(depth: usize) -> String {
    serde_json::to_string(&nested_object(depth)).unwrap()
}

fn post_import(url: &str, token: &str, query: &str, body: &str) -> Answer {
    support::answer(
        agent()
            .post(format!("{url}/import{query}"))
            .header("Authorization", format!("Bearer {token}"))
            .send(body)
            .unwrap(),
    )
}

/// The JSON of each `data:` line of an `/import` answer.
fn events(a: &Answer) -> Vec<Value> {
    assert_eq!(a.status, 200, "{a:?}");
    a.body
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

#[track_caller]
fn deep_record_failure(event: &Value, line: u64) {
    assert_eq!(event["error"], "INVALID_RECORD", "{event}");
    assert_eq!(event["line"], line, "{event}");
    let m = event["message"].as_str().unwrap();
    assert!(
        m.starts_with(&format!("invalid record at line {line}: "))
            && m.contains(&format!("{LIMIT} levels")),
        "{m}"
    );
}

// ----- EmbeddedStore::import_ndjson -----

#[test]
fn embedded_import_refuses_data_nested_too_deep() {
    let (store, _dir) = embedded_store();
    let input = format!(
        "{}\n{}\n",
        record(1, "{}", "null"),
        record(2, &deep(LIMIT + 1), "null")
    );
    let m = invalid(store.import_ndjson(&mut input.as_bytes(), false, &mut |_| {}));
    assert!(
        m.starts_with("invalid record at line 2: data is nested"),
        "{m}"
    );
    assert!(m.contains(&format!("{LIMIT} levels")), "{m}");
    // The failing batch is rolled back, as EventoDB does.
    store_holds(&store, 0);
    store_still_works(&store);
}

#[test]
fn embedded_import_refuses_meta_nested_too_deep() {
    let (store, _dir) = embedded_store();
    let input = record(1, "{}", &deep(LIMIT + 1));
    let m = invalid(store.import_ndjson(&mut input.as_bytes(), false, &mut |_| {}));
    assert!(
        m.starts_with("invalid record at line 1: meta is nested"),
        "{m}"
    );
    store_still_works(&store);
}

#[test]
fn embedded_import_refuses_a_line_too_deep_for_the_json_reader() {
    let (store, _dir) = embedded_store();
    let input = record(1, &deep(LIMIT + 50), "null");
    let m = invalid(store.import_ndjson(&mut input.as_bytes(), false, &mut |_| {}));
    assert!(
        m.starts_with("invalid record at line 1: data or meta"),
        "{m}"
    );
    assert!(m.contains(&format!("{LIMIT} levels")), "{m}");
    store_still_works(&store);
}

#[test]
fn embedded_import_keeps_the_batches_before_a_deep_record() {
    let (store, _dir) = embedded_store();
    let input = format!(
        "{}{}\n",
        good(1_500),
        record(1_501, &deep(LIMIT + 1), "null")
    );
    let m = invalid(store.import_ndjson(&mut input.as_bytes(), false, &mut |_| {}));
    assert!(m.starts_with("invalid record at line 1501"), "{m}");
    store_holds(&store, 1_000);
    store_still_works(&store);
}

#[test]
fn embedded_import_accepts_data_at_the_limit() {
    let (store, _dir) = embedded_store();
    let data = nested_object(LIMIT);
    let input = record(1, &serde_json::to_string(&data).unwrap(), &deep(LIMIT));
    store
        .import_ndjson(&mut input.as_bytes(), false, &mut |_| {})
        .unwrap();
    let read = store.last_message("imp-1", None).unwrap().unwrap();
    assert_eq!(read.data, data);
    store_still_works(&store);
}

#[test]
fn embedded_import_names_malformed_lines() {
    let (store, _dir) = embedded_store();
    let cases = [
        ("{not json", "malformed JSON at line 1"),
        (r#"{"data":[1]}"#, "cannot unmarshal array"),
        (r#"{"meta":"x"}"#, "cannot unmarshal string"),
        (r#"{"pos":"0"}"#, "malformed JSON at line 1"),
        (r#"{"time":"yesterday"}"#, "invalid time format"),
    ];
    for (line, expected) in cases {
        let m = invalid(store.import_ndjson(&mut line.as_bytes(), false, &mut |_| {}));
        assert!(m.contains(expected), "{line}: {m}");
    }
    store_holds(&store, 0);
    store_still_works(&store);
}

// ----- serve's POST /import -----

#[test]
fn serve_import_answers_invalid_record_for_deep_data() {
    let (server, token) = server();
    let body = format!(
        "{}\n{}\n",
        record(1, "{}", "null"),
        record(2, &deep(LIMIT + 1), "null")
    );
    let answer = post_import(&server.url(), &token, "", &body);
    let lines = events(&answer);
    assert_eq!(lines.len(), 1, "{answer:?}");
    deep_record_failure(&lines[0], 2);
    let http = HttpStore::new(&server.url(), &token).unwrap();
    store_holds(&http, 0);
    still_serving(&server, &token);
    store_still_works(&http);
}

#[test]
fn serve_import_answers_invalid_record_for_a_line_too_deep_to_read() {
    let (server, token) = server();
    let body = record(1, "{}", &deep(LIMIT + 1_000));
    let lines = events(&post_import(&server.url(), &token, "", &body));
    deep_record_failure(&lines[0], 1);
    let http = HttpStore::new(&server.url(), &token).unwrap();
    store_still_works(&http);
}

#[test]
fn serve_import_keeps_the_batches_before_a_deep_record() {
    let (server, token) = server();
    let body = format!(
        "{}{}\n",
        good(1_500),
        record(1_501, &deep(LIMIT + 1), "null")
    );
    let lines = events(&post_import(&server.url(), &token, "", &body));
    assert_eq!(lines[0], json!({ "imported": 1000, "gpos": 1000 }));
    deep_record_failure(&lines[1], 1_501);
    let http = HttpStore::new(&server.url(), &token).unwrap();
    store_holds(&http, 1_000);
    store_still_works(&http);
}

#[test]
fn serve_import_replaces_invalid_utf8() {
    let (server, token) = server();
    let mut body = record(1, r#"{"text":"caf?"}"#, "null").into_bytes();
    let at = body.iter().position(|b| *b == b'?').unwrap();
    body[at] = 0xff;
    let answer = support::answer(
        agent()
            .post(format!("{}/import", server.url()))
            .header("Authorization", format!("Bearer {token}"))
            .send(&body[..])
            .unwrap(),
    );
    assert_eq!(events(&answer).last().unwrap()["done"], true, "{answer:?}");
    let http = HttpStore::new(&server.url(), &token).unwrap();
    let read = http.last_message("imp-1", None).unwrap().unwrap();
    assert_eq!(read.data["text"], "caf\u{fffd}");
    store_still_works(&http);
}

// ----- HttpStore::import and import_ndjson -----

#[test]
fn http_import_ndjson_refuses_a_deep_record_before_sending_it() {
    let (server, token) = server();
    let http = HttpStore::new(&server.url(), &token).unwrap();
    let input = format!(
        "{}{}\n{}",
        good(1_500),
        record(1_501, &deep(LIMIT + 1), "null"),
        good(1)
    );
    let m = invalid(http.import_ndjson(&mut input.as_bytes(), false, &mut |_| {}));
    // Refused by the kit before sending (EventoDB itself would take it;
    // serve would say "data is nested …").
    assert!(
        m.starts_with("invalid record at line 1501: data or meta"),
        "{m}"
    );
    assert!(m.contains(&format!("{LIMIT} levels")), "{m}");
    // As the server's own import: the full batch before it is kept.
    store_holds(&http, 1_000);
    store_still_works(&http);
}

#[test]
fn http_import_refuses_a_deep_record_in_one_request() {
    let (server, token) = server();
    let http = HttpStore::new(&server.url(), &token).unwrap();
    let body = format!(
        "{}\n{}\n",
        record(1, "{}", "null"),
        record(2, "{}", &deep(LIMIT + 1))
    );
    let m = invalid(http.import(body.as_bytes(), false));
    assert!(
        m.starts_with("invalid record at line 2: data or meta"),
        "{m}"
    );
    store_holds(&http, 0);
    store_still_works(&http);
}

#[test]
fn http_import_with_force_clears_then_refuses() {
    let (server, token) = server();
    let http = HttpStore::new(&server.url(), &token).unwrap();
    http.write(
        "old-1",
        &NewMessage::new("T", json!({})),
        &WriteOptions::new(),
    )
    .unwrap();
    let body = record(1, &deep(LIMIT + 1), "null");
    let m = invalid(http.import_ndjson(&mut body.as_bytes(), true, &mut |_| {}));
    assert!(m.starts_with("invalid record at line 1: "), "{m}");
    // What serve's /import?force=true does with the same body.
    store_holds(&http, 0);
    store_still_works(&http);
}

#[test]
fn http_import_ndjson_takes_data_at_the_limit_and_reads_it_back() {
    let (server, token) = server();
    let http = HttpStore::new(&server.url(), &token).unwrap();
    let data = nested_object(LIMIT);
    let input = record(1, &serde_json::to_string(&data).unwrap(), &deep(LIMIT));
    http.import_ndjson(&mut input.as_bytes(), false, &mut |_| {})
        .unwrap();
    let read = http.last_message("imp-1", None).unwrap().unwrap();
    assert_eq!(read.data, data);
    assert_eq!(read.metadata, Some(nested_object(LIMIT)));
    store_still_works(&http);
}
