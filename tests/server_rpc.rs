//! `eventodb-kit serve`'s `/rpc` on the wire: the envelope, every
//! method's argument validation (EventoDB's order, codes and messages) and
//! exact answer bodies — and the server keeps serving after bad input.
#![cfg(feature = "server")]

mod support;

use serde_json::{json, Value};
use support::{expect_error, rpc, server, still_serving};

#[test]
fn envelope_errors() {
    let (server, token) = server();
    let url = server.url();
    let t = Some(token.as_str());
    let cases: &[(&str, u16, &str, &str, Option<&str>)] = &[
        (
            "",
            400,
            "INVALID_REQUEST",
            "Malformed JSON request",
            Some("unexpected end of JSON input"),
        ),
        (
            "[\"stream.get\"",
            400,
            "INVALID_REQUEST",
            "Malformed JSON request",
            Some("unexpected end of JSON input"),
        ),
        (
            r#"{"method":"x"}"#,
            400,
            "INVALID_REQUEST",
            "Malformed JSON request",
            Some("json: cannot unmarshal object into Go value of type []interface {}"),
        ),
        (
            r#""stream.get""#,
            400,
            "INVALID_REQUEST",
            "Malformed JSON request",
            Some("json: cannot unmarshal string into Go value of type []interface {}"),
        ),
        (
            "[] []",
            400,
            "INVALID_REQUEST",
            "Malformed JSON request",
            Some("invalid character '[' after top-level value"),
        ),
        ("[]", 400, "INVALID_REQUEST", "Missing method name", None),
        ("null", 400, "INVALID_REQUEST", "Missing method name", None),
        (
            "[1]",
            400,
            "INVALID_REQUEST",
            "Method name must be a string",
            None,
        ),
        (
            r#"["nope.method", 1]"#,
            404,
            "METHOD_NOT_FOUND",
            "Unknown method: nope.method",
            None,
        ),
    ];
    for (body, status, code, message, detail) in cases {
        let a = rpc(&url, t, body);
        expect_error(&a, *status, code, message);
        match detail {
            Some(d) => assert_eq!(a.json()["error"]["details"]["error"], *d, "{body}"),
            None => assert!(a.json()["error"].get("details").is_none(), "{body}"),
        }
    }
    still_serving(&server, &token);
}

#[test]
fn argument_validation_messages() {
    let (server, token) = server();
    let url = server.url();
    let bad = |body: Value, message: &str| {
        let a = rpc(&url, Some(&token), &body.to_string());
        expect_error(&a, 400, "INVALID_REQUEST", message);
    };
    bad(
        json!(["stream.write", "s-1"]),
        "stream.write requires at least 2 arguments: streamName and message",
    );
    bad(
        json!(["stream.write", "", {}]),
        "streamName must be a non-empty string",
    );
    bad(
        json!(["stream.write", 7, {}]),
        "streamName must be a non-empty string",
    );
    bad(
        json!(["stream.write", "s-1", []]),
        "message must be an object",
    );
    bad(
        json!(["stream.write", "s-1", {"data": {}}]),
        "message.type must be a non-empty string",
    );
    bad(
        json!(["stream.write", "s-1", {"type": "T"}]),
        "message.data must be an object",
    );
    bad(
        json!(["stream.write", "s-1", {"type": "T", "data": null}]),
        "message.data must be an object",
    );
    bad(
        json!(["stream.write", "s-1", {"type": "T", "data": {}, "metadata": null}]),
        "message.metadata must be an object",
    );
    bad(
        json!(["stream.write", "s-1", {"type": "T", "data": {}}, null]),
        "options must be an object",
    );
    bad(
        json!(["stream.write", "s-1", {"type": "T", "data": {}}, {"id": 5}]),
        "options.id must be a string",
    );
    bad(
        json!(["stream.write", "s-1", {"type": "T", "data": {}}, {"expectedVersion": "1"}]),
        "options.expectedVersion must be a number",
    );
    bad(
        json!(["stream.get"]),
        "stream.get requires at least 1 argument: streamName",
    );
    bad(
        json!(["stream.get", "s-1", null]),
        "options must be an object",
    );
    bad(
        json!(["stream.get", "s-1", {"position": "0"}]),
        "options.position must be a number",
    );
    bad(
        json!(["stream.get", "s-1", {"globalPosition": true}]),
        "options.globalPosition must be a number",
    );
    bad(
        json!(["stream.get", "s-1", {"batchSize": null}]),
        "options.batchSize must be a number",
    );
    bad(
        json!(["stream.get", "s-1", {"batchSize": 1_000_000}]),
        "options.batchSize must be <= 10000 or -1 for unlimited",
    );
    bad(
        json!(["stream.get", "s-1", {"batchSize": 10001}]),
        "options.batchSize must be <= 10000 or -1 for unlimited",
    );
    bad(
        json!(["stream.last"]),
        "stream.last requires at least 1 argument: streamName",
    );
    bad(
        json!(["stream.last", "s-1", {"type": 1}]),
        "options.type must be a string",
    );
    bad(
        json!(["stream.version"]),
        "stream.version requires 1 argument: streamName",
    );
    bad(
        json!(["stream.version", ""]),
        "streamName must be a non-empty string",
    );
    bad(
        json!(["category.get"]),
        "category.get requires at least 1 argument: categoryName",
    );
    bad(json!(["category.get", 1]), "categoryName must be a string");
    bad(
        json!(["category.get", "c", {"batchSize": 20000}]),
        "options.batchSize must be <= 10000 or -1 for unlimited",
    );
    bad(
        json!(["category.get", "c", {"correlation": 1}]),
        "options.correlation must be a string",
    );
    bad(
        json!(["category.get", "c", {"consumerGroup": 1}]),
        "options.consumerGroup must be an object",
    );
    bad(
        json!(["category.get", "c", {"consumerGroup": {"member": "0", "size": 2}}]),
        "options.consumerGroup.member must be a number",
    );
    bad(
        json!(["category.get", "c", {"consumerGroup": {"member": 0, "size": "2"}}]),
        "options.consumerGroup.size must be a number",
    );
    bad(
        json!(["category.get", "c", {"consumerGroup": {"member": 0}}]),
        "options.consumerGroup requires both member and size",
    );
    bad(
        json!(["category.get", "c", {"consumerGroup": {"member": -1, "size": 2}}]),
        "options.consumerGroup.member must be non-negative",
    );
    bad(
        json!(["category.get", "c", {"consumerGroup": {"member": 0, "size": 0}}]),
        "options.consumerGroup.size must be positive",
    );
    bad(
        json!(["category.get", "c", {"consumerGroup": {"member": 2, "size": 2}}]),
        "options.consumerGroup.member must be < size",
    );
    bad(
        json!(["ns.create"]),
        "ns.create requires at least 1 argument: namespace ID",
    );
    bad(
        json!(["ns.create", ""]),
        "namespace ID must be a non-empty string",
    );
    bad(
        json!(["ns.create", "a", {"description": 1}]),
        "options.description must be a string",
    );
    bad(
        json!(["ns.create", "a", {"token": "x"}]),
        "Invalid token format: invalid token format: missing 'ns_' prefix",
    );
    bad(
        json!(["ns.create", "a", {"token": format!("ns_ZGVmYXVsdA_{}", "0".repeat(64))}]),
        "Token is for namespace 'default', not 'a'",
    );
    bad(
        json!(["ns.create", "a", {"metadata": []}]),
        "options.metadata must be an object",
    );
    bad(
        json!(["ns.delete"]),
        "ns.delete requires 1 argument: namespace ID",
    );
    bad(
        json!(["ns.info", ""]),
        "namespace ID must be a non-empty string",
    );
    bad(json!(["ns.streams", null]), "options must be an object");
    bad(
        json!(["ns.streams", {"prefix": 1}]),
        "prefix must be a string",
    );
    bad(
        json!(["ns.streams", {"cursor": 1}]),
        "cursor must be a string",
    );
    bad(
        json!(["ns.streams", {"limit": "1"}]),
        "limit must be a number",
    );
    bad(
        json!(["ns.streams", {"limit": 0}]),
        "limit must be between 1 and 1000",
    );
    let nf = rpc(&url, Some(&token), r#"["ns.delete", "ghost"]"#);
    expect_error(
        &nf,
        404,
        "NAMESPACE_NOT_FOUND",
        "Namespace 'ghost' not found",
    );
    let nf = rpc(&url, Some(&token), r#"["ns.info", "ghost"]"#);
    expect_error(
        &nf,
        404,
        "NAMESPACE_NOT_FOUND",
        "Namespace 'ghost' not found",
    );
    let exists = rpc(&url, Some(&token), r#"["ns.create", "default"]"#);
    expect_error(
        &exists,
        409,
        "NAMESPACE_EXISTS",
        "Namespace 'default' already exists",
    );
    // Nothing above was written; the server still answers.
    let v = rpc(&url, Some(&token), r#"["stream.version", "s-1"]"#);
    assert_eq!(v.body, "null\n");
    still_serving(&server, &token);
}

#[test]
fn exact_success_and_failure_bodies() {
    let (server, token) = server();
    let url = server.url();
    let call = |body: &str| rpc(&url, Some(&token), body);
    let w = call(
        r#"["stream.write","acct-1",{"type":"T","data":{"b":2,"a":"<&>","f":1.0,"big":1e21,"tiny":1e-7}}]"#,
    );
    assert_eq!(
        (w.status, w.body.as_str()),
        (200, "{\"globalPosition\":1,\"position\":0}\n")
    );
    let got = call(r#"["stream.get","acct-1"]"#);
    let v = got.json();
    assert!(
        got.body
            .contains(r#"{"a":"\u003c\u0026\u003e","b":2,"big":1e+21,"f":1,"tiny":1e-7}"#),
        "{}",
        got.body
    );
    let row = &v[0];
    assert_eq!(row.as_array().unwrap().len(), 7);
    assert_eq!(
        (row[1].as_str(), row[2].as_i64(), row[3].as_i64()),
        (Some("T"), Some(0), Some(1))
    );
    assert!(row[5].is_null());
    let time = row[6].as_str().unwrap();
    assert!(
        time.len() == 20 && time.ends_with('Z'),
        "whole seconds: {time}"
    );
    let cat = call(r#"["category.get","acct"]"#).json();
    assert_eq!(cat[0].as_array().unwrap().len(), 8);
    assert_eq!(cat[0][1], "acct-1");
    let conflict =
        call(r#"["stream.write","acct-1",{"type":"T","data":{}},{"expectedVersion":5}]"#);
    assert_eq!(conflict.status, 409);
    assert_eq!(
        conflict.body,
        "{\"error\":{\"code\":\"STREAM_VERSION_CONFLICT\",\"message\":\"Expected version 5, stream is at version 0\",\"details\":{\"actual\":0,\"expected\":5}}}\n"
    );
    let id = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";
    let first = call(&format!(
        r#"["stream.write","acct-2",{{"type":"T","data":{{}}}},{{"id":"{id}"}}]"#
    ));
    assert_eq!(first.status, 200);
    let dup = call(&format!(
        r#"["stream.write","acct-3",{{"type":"T","data":{{}}}},{{"id":"{id}"}}]"#
    ));
    assert_eq!(dup.status, 500);
    assert_eq!(
        dup.body,
        "{\"error\":{\"code\":\"BACKEND_ERROR\",\"message\":\"Failed to write message: failed to insert message: constraint failed: UNIQUE constraint failed: messages.id (2067)\"}}\n"
    );
    let bad_id = call(r#"["stream.write","acct-3",{"type":"T","data":{}},{"id":"abc"}]"#);
    expect_error(
        &bad_id,
        500,
        "BACKEND_ERROR",
        "Failed to write message: invalid UUID format: invalid UUID length: 3",
    );
    assert_eq!(
        call(r#"["sys.health"]"#).body,
        "{\"backend\":\"unknown\",\"connections\":0,\"status\":\"ok\"}\n"
    );
    assert_eq!(call(r#"["stream.last","nobody-1"]"#).body, "null\n");
    assert_eq!(call(r#"["stream.version","acct-1"]"#).body, "0\n");
    let streams = call(r#"["ns.streams",{"prefix":"acct"}]"#).json();
    assert_eq!(streams[0]["stream"], "acct-1");
    assert_eq!(streams[0]["version"], 0);
    assert_eq!(
        call(r#"["ns.categories"]"#).body,
        "[{\"category\":\"acct\",\"messageCount\":2,\"streamCount\":2}]\n"
    );
    // batchSize 0 and position -1 are fine (unlimited / from the start).
    assert_eq!(
        call(r#"["stream.get","acct-1",{"batchSize":0,"position":-1}]"#).status,
        200
    );
}
