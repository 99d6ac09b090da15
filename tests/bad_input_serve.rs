//! Bad input at `eventodb-kit serve`'s `/rpc` `stream.write`, as raw HTTP:
//! each answer is EventoDB's status, code and message (with the kit's
//! nesting limit where EventoDB has none), the server never panics or
//! overflows its stack, and afterwards a normal write and read work.
#![cfg(feature = "server")]

mod bad_input_support;
mod support;

use bad_input_support::{nested_object_text, store_holds, store_still_works, LIMIT};
use eventodb_kit::server::Server;
use eventodb_kit::HttpStore;
use serde_json::{json, Value};
use support::{agent, expect_error, rpc, server, still_serving, Answer};

/// A normal write and read work through an `HttpStore`, and the namespace
/// holds `expected` messages besides.
#[track_caller]
fn afterwards(server: &Server, token: &str, expected: usize) {
    still_serving(server, token);
    let store = HttpStore::new(&server.url(), token).unwrap();
    store_holds(&store, expected);
    store_still_works(&store);
}

fn write_body(data: &str, metadata: Option<&str>, options: &str) -> String {
    let metadata = metadata.map_or(String::new(), |m| format!(r#","metadata":{m}"#));
    format!(r#"["stream.write","bad-1",{{"type":"T","data":{data}{metadata}}},{options}]"#)
}

#[track_caller]
fn too_deep(a: &Answer) {
    expect_error(a, 400, "INVALID_REQUEST", "Malformed JSON request");
    let detail = a.json()["error"]["details"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.starts_with("exceeded max depth"), "{detail}");
    assert!(
        detail.contains(&format!("{LIMIT} within message.data")),
        "{detail}"
    );
}

/// `POST /rpc` with raw bytes (not necessarily UTF-8).
fn rpc_bytes(url: &str, token: &str, body: &[u8]) -> Answer {
    support::answer(
        agent()
            .post(format!("{url}/rpc"))
            .header("Authorization", format!("Bearer {token}"))
            .send(body)
            .unwrap(),
    )
}

#[test]
fn data_nested_one_level_too_deep_gets_a_400_with_the_limit() {
    let (server, token) = server();
    let body = write_body(&nested_object_text(LIMIT + 1), None, "{}");
    too_deep(&rpc(&server.url(), Some(&token), &body));
    afterwards(&server, &token, 0);
}

#[test]
fn metadata_nested_one_level_too_deep_gets_a_400_with_the_limit() {
    let (server, token) = server();
    let body = write_body("{}", Some(&nested_object_text(LIMIT + 1)), "{}");
    too_deep(&rpc(&server.url(), Some(&token), &body));
    afterwards(&server, &token, 0);
}

#[test]
fn data_at_the_limit_is_written_and_read_back() {
    let (server, token) = server();
    let url = server.url();
    let data = nested_object_text(LIMIT);
    let a = rpc(&url, Some(&token), &write_body(&data, Some(&data), "{}"));
    assert_eq!(a.status, 200, "{a:?}");
    let a = rpc(&url, Some(&token), r#"["stream.get","bad-1"]"#);
    assert_eq!(a.status, 200);
    let read = a.json();
    let expected: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(read[0][4], expected);
    assert_eq!(read[0][5], expected);
    afterwards(&server, &token, 1);
}

#[test]
fn a_megabyte_of_brackets_gets_a_400_not_a_crash() {
    let (server, token) = server();
    let url = server.url();
    for body in [
        "[".repeat(1 << 20),
        format!(
            r#"["stream.write","bad-1",{{"type":"T","data":{}"#,
            "{\"a\":".repeat(200_000)
        ),
        format!(r#"["stream.get","bad-1",{}]"#, "[".repeat(100_000)),
    ] {
        too_deep(&rpc(&url, Some(&token), &body));
    }
    afterwards(&server, &token, 0);
}

#[test]
fn invalid_utf8_becomes_the_replacement_character() {
    // Go's decoder replaces invalid UTF-8 with U+FFFD; so does serve.
    let (server, token) = server();
    let url = server.url();
    let mut body = br#"["stream.write","utf-?",{"type":"T?","data":{"name":"caf?"}}]"#.to_vec();
    for b in body.iter_mut().filter(|b| **b == b'?') {
        *b = 0xff;
    }
    let a = rpc_bytes(&url, &token, &body);
    assert_eq!(a.status, 200, "{a:?}");
    let a = rpc(&url, Some(&token), r#"["stream.last","utf-\ufffd"]"#);
    let read = a.json();
    assert_eq!(read[1], "T\u{fffd}");
    assert_eq!(read[4], json!({ "name": "caf\u{fffd}" }));
    afterwards(&server, &token, 1);
}

#[test]
fn lone_surrogates_become_the_replacement_character() {
    let (server, token) = server();
    let url = server.url();
    let a = rpc(
        &url,
        Some(&token),
        &write_body(r#"{"s":"\ud800x"}"#, None, "{}"),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let read = rpc(&url, Some(&token), r#"["stream.last","bad-1"]"#).json();
    assert_eq!(read[4], json!({ "s": "\u{fffd}x" }));
    afterwards(&server, &token, 1);
}

#[test]
fn shapes_get_eventodbs_400s() {
    let (server, token) = server();
    let url = server.url();
    let cases: &[(&str, &str)] = &[
        (
            r#"["stream.write","bad-1"]"#,
            "stream.write requires at least 2 arguments: streamName and message",
        ),
        (
            r#"["stream.write","",{"type":"T","data":{}}]"#,
            "streamName must be a non-empty string",
        ),
        (
            r#"["stream.write",7,{"type":"T","data":{}}]"#,
            "streamName must be a non-empty string",
        ),
        (
            r#"["stream.write","bad-1",[]]"#,
            "message must be an object",
        ),
        (
            r#"["stream.write","bad-1",{"data":{}}]"#,
            "message.type must be a non-empty string",
        ),
        (
            r#"["stream.write","bad-1",{"type":"","data":{}}]"#,
            "message.type must be a non-empty string",
        ),
        (
            r#"["stream.write","bad-1",{"type":1,"data":{}}]"#,
            "message.type must be a non-empty string",
        ),
        (
            r#"["stream.write","bad-1",{"type":"T"}]"#,
            "message.data must be an object",
        ),
        (
            r#"["stream.write","bad-1",{"type":"T","data":null}]"#,
            "message.data must be an object",
        ),
        (
            r#"["stream.write","bad-1",{"type":"T","data":[1]}]"#,
            "message.data must be an object",
        ),
        (
            r#"["stream.write","bad-1",{"type":"T","data":{},"metadata":null}]"#,
            "message.metadata must be an object",
        ),
        (
            r#"["stream.write","bad-1",{"type":"T","data":{},"metadata":"m"}]"#,
            "message.metadata must be an object",
        ),
        (
            r#"["stream.write","bad-1",{"type":"T","data":{}},null]"#,
            "options must be an object",
        ),
        (
            r#"["stream.write","bad-1",{"type":"T","data":{}},{"id":5}]"#,
            "options.id must be a string",
        ),
        (
            r#"["stream.write","bad-1",{"type":"T","data":{}},{"expectedVersion":"0"}]"#,
            "options.expectedVersion must be a number",
        ),
        (
            r#"["stream.write","bad-1",{"type":"T","data":{}},{"expectedVersion":null}]"#,
            "options.expectedVersion must be a number",
        ),
    ];
    for (body, message) in cases {
        expect_error(
            &rpc(&url, Some(&token), body),
            400,
            "INVALID_REQUEST",
            message,
        );
    }
    afterwards(&server, &token, 0);
}

#[test]
fn non_json_numbers_get_the_go_decoders_400s() {
    let (server, token) = server();
    let url = server.url();
    for (data, detail) in [
        (
            r#"{"x":NaN}"#,
            "invalid character 'N' looking for beginning of value",
        ),
        (
            r#"{"x":Infinity}"#,
            "invalid character 'I' looking for beginning of value",
        ),
        (
            r#"{"x":1e400}"#,
            "json: cannot unmarshal number 1e400 into Go value of type float64",
        ),
        (r#"{"x":-}"#, "invalid character '}' in numeric literal"),
        (
            r#"{"x":01}"#,
            "invalid character '1' after object key:value pair",
        ),
    ] {
        let a = rpc(&url, Some(&token), &write_body(data, None, "{}"));
        expect_error(&a, 400, "INVALID_REQUEST", "Malformed JSON request");
        assert_eq!(a.json()["error"]["details"]["error"], detail, "{data}");
    }
    afterwards(&server, &token, 0);
}

#[test]
fn integers_beyond_2_to_the_53_are_float64_as_in_eventodb() {
    let (server, token) = server();
    let url = server.url();
    let a = rpc(
        &url,
        Some(&token),
        &write_body(r#"{"id":9007199254740993,"f":5.0}"#, None, "{}"),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = rpc(&url, Some(&token), r#"["stream.last","bad-1"]"#);
    assert!(
        a.body.contains(r#"{"f":5,"id":9007199254740992}"#),
        "{}",
        a.body
    );
    afterwards(&server, &token, 1);
}

#[test]
fn expected_versions_below_minus_one_and_fractions_conflict_as_in_eventodb() {
    let (server, token) = server();
    let url = server.url();
    for (version, expected) in [("-2", -2), ("-9223372036854775808", i64::MIN), ("1.9", 1)] {
        let a = rpc(
            &url,
            Some(&token),
            &write_body("{}", None, &format!(r#"{{"expectedVersion":{version}}}"#)),
        );
        expect_error(
            &a,
            409,
            "STREAM_VERSION_CONFLICT",
            &format!("Expected version {expected}, stream is at version -1"),
        );
    }
    afterwards(&server, &token, 0);
}

#[test]
fn malformed_and_taken_ids_get_eventodbs_500s() {
    let (server, token) = server();
    let url = server.url();
    for (id, cause) in [
        ("abc", "invalid UUID length: 3"),
        ("", ""),
        (
            "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a8Z",
            "invalid UUID format",
        ),
    ] {
        let a = rpc(
            &url,
            Some(&token),
            &write_body("{}", None, &format!(r#"{{"id":"{id}"}}"#)),
        );
        if id.is_empty() {
            assert_eq!(a.status, 200, "an empty id means generate one: {a:?}");
            continue;
        }
        expect_error(
            &a,
            500,
            "BACKEND_ERROR",
            &format!("Failed to write message: invalid UUID format: {cause}"),
        );
    }
    let id = r#"{"id":"0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87"}"#;
    assert_eq!(
        rpc(&url, Some(&token), &write_body("{}", None, id)).status,
        200
    );
    expect_error(
        &rpc(&url, Some(&token), &write_body("{}", None, id)),
        500,
        "BACKEND_ERROR",
        "Failed to write message: failed to insert message: constraint failed: UNIQUE constraint failed: messages.id (2067)",
    );
    // Differing only in case: another id, as in EventoDB's SQLite backend.
    let upper = r#"{"id":"0190B6A4-6A3E-7C3E-9B1A-3F2D1C0B9A87"}"#;
    assert_eq!(
        rpc(&url, Some(&token), &write_body("{}", None, upper)).status,
        200
    );
    afterwards(&server, &token, 3);
}
