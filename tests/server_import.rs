//! `eventodb-kit serve`'s `POST /import` on the wire (protocol §11): the
//! SSE-framed answer, a progress line per batch of 1000, the failure lines
//! with their codes and line numbers, `force=true`, and test mode's
//! unknown namespaces.
#![cfg(feature = "server")]

mod support;

use eventodb_kit::server::{Server, ServerConfig};
use support::{agent, rpc, server, still_serving, Answer};

fn record(id: usize, gpos: usize, data: &str) -> String {
    format!(
        r#"{{"id":"r-{id}","stream":"imp-{}","type":"T","pos":{},"gpos":{gpos},"data":{data},"meta":null,"time":"2026-03-01T12:34:56.5Z"}}"#,
        id % 3,
        id / 3
    )
}

fn import(url: &str, token: Option<&str>, query: &str, body: &str) -> Answer {
    let mut req = agent().post(format!("{url}/import{query}"));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    support::answer(req.send(body).unwrap())
}

/// The JSON of each `data:` line.
fn events(a: &Answer) -> Vec<serde_json::Value> {
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    assert!(a.body.ends_with("\n\n"), "{a:?}");
    a.body
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

#[test]
fn progress_per_batch_then_done() {
    let (server, token) = server();
    let url = server.url();
    let body: String = (1..=2500)
        .map(|i| record(i, i, r#"{"n":1}"#) + "\n")
        .collect();
    let a = import(&url, Some(&token), "", &body);
    for (name, value) in [
        ("cache-control", "no-cache"),
        ("connection", "keep-alive"),
        ("x-accel-buffering", "no"),
    ] {
        assert_eq!(a.header(name), Some(value), "{a:?}");
    }
    let lines = events(&a);
    assert_eq!(lines.len(), 3, "{a:?}");
    assert_eq!(
        a.body.split("\n\n").next().unwrap(),
        r#"data: {"imported":1000,"gpos":1000}"#
    );
    assert_eq!(
        lines[1],
        serde_json::json!({"imported": 2000, "gpos": 2000})
    );
    assert!(
        a.body
            .contains(r#"data: {"done":true,"imported":2500,"elapsed":""#),
        "{a:?}"
    );
    // Nothing is poked, and writes continue after the highest imported gpos.
    let next = rpc(
        &url,
        Some(&token),
        r#"["stream.write","imp-0",{"type":"T","data":{}}]"#,
    );
    assert_eq!(next.body, "{\"globalPosition\":2501,\"position\":834}\n");
    still_serving(&server, &token);
}

#[test]
fn failures_name_their_code_and_line() {
    let (server, token) = server();
    let url = server.url();
    let imp = |body: &str| events(&import(&url, Some(&token), "", body)).pop().unwrap();
    assert_eq!(
        imp(""),
        serde_json::json!({"done": true, "imported": 0, "elapsed": "0.0s"})
    );
    assert_eq!(imp(&(record(1, 7, "{}") + "\n\n"))["imported"], 1);
    let exists = imp(&format!("\n{}\n", record(2, 7, "{}")));
    assert_eq!(
        exists,
        serde_json::json!({"error": "POSITION_EXISTS", "message": "global position already exists: 7", "line": 2})
    );
    let bad_time = imp(&record(3, 8, "{}").replace("2026-03-01T12:34:56.5Z", "yesterday"));
    assert_eq!(bad_time["error"], "INVALID_RECORD");
    assert_eq!(bad_time["line"], 1);
    // data and meta are objects (or null) in EventoDB's record type.
    for data in ["5", "[]", r#""x""#] {
        let failed = imp(&record(4, 9, data));
        assert_eq!(failed["error"], "INVALID_JSON", "{data}: {failed}");
        assert!(
            failed["message"]
                .as_str()
                .unwrap()
                .starts_with("malformed JSON at line 1: "),
            "{failed}"
        );
    }
    assert_eq!(imp(&record(4, 9, "null"))["imported"], 1);
    // A line of 1 MiB is too long for EventoDB's line reader; the error
    // counts the lines read before it (and has no line when there are none).
    let long = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1024 * 1024));
    let too_long = imp(&format!("\n{}\n", record(5, 10, &long)));
    assert_eq!(
        too_long,
        serde_json::json!({"error": "READ_ERROR", "message": "error reading input: bufio.Scanner: token too long", "line": 1})
    );
    let first = import(&url, Some(&token), "", &record(5, 10, &long));
    assert_eq!(
        first.body,
        "data: {\"error\":\"READ_ERROR\",\"message\":\"error reading input: bufio.Scanner: token too long\"}\n\n"
    );
    still_serving(&server, &token);
}

#[test]
fn force_replaces_the_namespace() {
    let (server, token) = server();
    let url = server.url();
    let w = rpc(
        &url,
        Some(&token),
        r#"["stream.write","old-1",{"type":"T","data":{}}]"#,
    );
    assert_eq!(w.status, 200);
    let done = events(&import(
        &url,
        Some(&token),
        "?force=true",
        &record(1, 1, "{}"),
    ));
    assert_eq!(done[0]["imported"], 1);
    assert_eq!(
        rpc(&url, Some(&token), r#"["stream.version","old-1"]"#).body,
        "null\n"
    );
    let unauthorized = import(&url, None, "", "");
    assert_eq!(unauthorized.status, 401);
    assert_eq!(unauthorized.error().0, "AUTH_REQUIRED");
}

#[test]
fn test_mode_imports_into_an_unknown_namespace_fail() {
    let server = Server::start(ServerConfig::new().test_mode(true)).unwrap();
    let url = server.url();
    let unknown = format!("ns_dGVuYW50LWE_{}", "0".repeat(64));
    let body = format!("{}\n{}\n", record(1, 1, "{}"), record(2, 2, "{}"));
    let failed = events(&import(&url, Some(&unknown), "", &body));
    assert_eq!(
        failed,
        [
            serde_json::json!({"error": "IMPORT_FAILED", "message": "namespace not found", "line": 2})
        ]
    );
    let cleared = import(&url, Some(&unknown), "?force=true", &body);
    support::expect_error(
        &cleared,
        500,
        "CLEAR_FAILED",
        "Failed to clear namespace: namespace not found",
    );
    // Nothing landed anywhere: the namespace, once created, is empty.
    assert_eq!(rpc(&url, None, r#"["ns.create","tenant-a"]"#).status, 200);
    assert_eq!(
        rpc(&url, Some(&unknown), r#"["category.get",""]"#).body,
        "[]\n"
    );
    // Without a token, test mode imports into default.
    assert_eq!(events(&import(&url, None, "", &body))[0]["imported"], 2);
}
