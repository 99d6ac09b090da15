//! `eventodb-kit serve` on the wire: exact bodies, statuses, codes and
//! messages of EventoDB's protocol for good and bad input, auth and
//! namespaces, test mode — and the server keeps serving after each.
#![cfg(feature = "server")]

mod support;

use eventodb_kit::server::{Server, ServerConfig};
use serde_json::{json, Value};
use support::{get, post_with_header, raw, rpc, Answer};

fn server() -> (Server, String) {
    let server = Server::start(ServerConfig::new()).unwrap();
    let token = server.default_token().unwrap().expose_secret().to_string();
    (server, token)
}

fn still_serving(server: &Server, token: &str) {
    let a = rpc(&server.url(), Some(token), r#"["sys.health"]"#);
    assert_eq!(a.status, 200, "{a:?}");
}

/// Checks status, code and message of an error answer.
#[track_caller]
fn expect_error(a: &Answer, status: u16, code: &str, message: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.error(), (code.to_string(), message.to_string()), "{a:?}");
    assert!(
        a.body.ends_with("}\n"),
        "RPC errors end with a newline: {a:?}"
    );
    assert_eq!(a.header("content-type"), Some("application/json"));
}

#[test]
fn health_version_and_unknown_paths() {
    let (server, token) = server();
    let url = server.url();
    let h = get(&url, "/health", None);
    assert_eq!((h.status, h.body.as_str()), (200, r#"{"status":"ok"}"#));
    assert_eq!(h.header("server"), Some("EventoDB/0.7.0"));
    let v = get(&url, "/version", None);
    assert_eq!(v.body, r#"{"version":"0.7.0"}"#);
    let posted = post_with_header(&url, "/health", "x", "");
    assert_eq!(posted.status, 200, "any method works");
    for path in ["/nope", "/rpc/", "/subscribe/stream/x", "/"] {
        let a = get(&url, path, Some(&token));
        assert_eq!(a.status, 404, "{path}");
        assert_eq!(
            a.body,
            r#"{"error":{"code":"NOT_FOUND","message":"Endpoint not found"}}"#
        );
    }
    still_serving(&server, &token);
}

#[test]
fn authentication_rules() {
    let (server, token) = server();
    let url = server.url();
    let body = r#"["sys.version"]"#;
    expect_error(
        &rpc(&url, None, body),
        401,
        "AUTH_REQUIRED",
        "Authorization header required",
    );
    expect_error(
        &post_with_header(&url, "/rpc", "Basic abc", body),
        401,
        "AUTH_REQUIRED",
        "Authorization header must use Bearer scheme",
    );
    expect_error(
        &post_with_header(&url, "/rpc", "bearer abc", body),
        401,
        "AUTH_REQUIRED",
        "Authorization header must use Bearer scheme",
    );
    let malformed = rpc(&url, Some("abc"), body);
    expect_error(
        &malformed,
        401,
        "AUTH_INVALID_TOKEN",
        "Invalid token format",
    );
    assert_eq!(
        malformed.json()["error"]["details"]["error"],
        "invalid token format: missing 'ns_' prefix"
    );
    let foreign = format!("ns_dGVuYW50LWE_{}", "0".repeat(64));
    let a = rpc(&url, Some(&foreign), body);
    expect_error(
        &a,
        403,
        "AUTH_UNAUTHORIZED",
        "Token not authorized for namespace",
    );
    assert_eq!(
        a.json()["error"]["details"],
        json!({"namespace": "tenant-a"})
    );
    let wrong_secret = format!("ns_ZGVmYXVsdA_{}", "0".repeat(64));
    expect_error(
        &rpc(&url, Some(&wrong_secret), body),
        403,
        "AUTH_UNAUTHORIZED",
        "Token not authorized for namespace",
    );
    // Auth comes first: garbage or a GET without a token is a 401.
    expect_error(
        &rpc(&url, None, "{{{"),
        401,
        "AUTH_REQUIRED",
        "Authorization header required",
    );
    expect_error(
        &get(&url, "/rpc", None),
        401,
        "AUTH_REQUIRED",
        "Authorization header required",
    );
    expect_error(
        &get(&url, "/rpc", Some(&token)),
        405,
        "INVALID_REQUEST",
        "Only POST method allowed",
    );
    // The token may come in the query string instead.
    let q = support::agent()
        .post(format!("{url}/rpc?token={token}"))
        .send(body)
        .unwrap();
    assert_eq!(q.status().as_u16(), 200);
    let ok = rpc(&url, Some(&token), body);
    assert_eq!((ok.status, ok.body.as_str()), (200, "\"0.7.0\"\n"));
}

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

#[test]
fn namespaces_tokens_and_isolation() {
    let (server, token) = server();
    let url = server.url();
    let created = rpc(
        &url,
        Some(&token),
        r#"["ns.create","tenant-a",{"description":"A"}]"#,
    );
    assert_eq!(created.status, 200, "{created:?}");
    let c = created.json();
    assert_eq!(c["namespace"], "tenant-a");
    let a_token = c["token"].as_str().unwrap().to_string();
    assert!(
        a_token.starts_with("ns_dGVuYW50LWE_") && a_token.len() == "ns_dGVuYW50LWE_".len() + 64
    );
    assert!(c["createdAt"].as_str().unwrap().ends_with('Z'));
    // Any valid token may create namespaces, with a token of its choice.
    let b_token = format!("ns_dGVuYW50LWI_{}", "ab".repeat(32));
    let b = rpc(
        &url,
        Some(&a_token),
        &json!(["ns.create", "tenant-b", {"token": b_token}]).to_string(),
    );
    assert_eq!(b.json()["token"], b_token.as_str());

    let write = |t: &str, stream: &str| {
        rpc(
            &url,
            Some(t),
            &json!(["stream.write", stream, {"type": "T", "data": {}}]).to_string(),
        )
    };
    assert_eq!(write(&a_token, "x-1").json()["globalPosition"], 1);
    assert_eq!(
        write(&b_token, "x-1").json()["globalPosition"],
        1,
        "each namespace counts from 1"
    );
    assert_eq!(write(&b_token, "x-2").json()["globalPosition"], 2);
    let all_a = rpc(&url, Some(&a_token), r#"["category.get",""]"#).json();
    assert_eq!(
        all_a.as_array().unwrap().len(),
        1,
        "A sees only its own messages"
    );
    let default_sees = rpc(&url, Some(&token), r#"["stream.get","x-1"]"#).json();
    assert_eq!(default_sees, json!([]));

    let list = rpc(&url, Some(&token), r#"["ns.list"]"#).json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["namespace"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"tenant-a") && names.contains(&"default"),
        "{names:?}"
    );
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["description"].is_string() && n["messageCount"] == 0));
    let info = rpc(&url, Some(&token), r#"["ns.info","tenant-b"]"#).json();
    assert_eq!(info["messageCount"], 2);
    assert_eq!(info["streamCount"], 0);
    assert!(info["lastActivity"].is_null());

    let deleted = rpc(&url, Some(&token), r#"["ns.delete","tenant-a"]"#).json();
    assert_eq!(
        (
            deleted["namespace"].as_str(),
            deleted["messagesDeleted"].as_i64()
        ),
        (Some("tenant-a"), Some(0))
    );
    expect_error(
        &write(&a_token, "x-1"),
        403,
        "AUTH_UNAUTHORIZED",
        "Token not authorized for namespace",
    );
    // Re-created, the namespace starts again at global position 1.
    let again = rpc(&url, Some(&token), r#"["ns.create","tenant-a"]"#).json();
    let fresh = again["token"].as_str().unwrap();
    assert_ne!(fresh, a_token);
    assert_eq!(write(fresh, "y-1").json()["globalPosition"], 1);
    // A namespace may delete itself.
    assert_eq!(
        rpc(&url, Some(&b_token), r#"["ns.delete","tenant-b"]"#).status,
        200
    );
    expect_error(
        &write(&b_token, "x-3"),
        403,
        "AUTH_UNAUTHORIZED",
        "Token not authorized for namespace",
    );
    still_serving(&server, &token);
}

#[test]
fn test_mode_relaxes_authentication() {
    let server = Server::start(ServerConfig::new().test_mode(true)).unwrap();
    let url = server.url();
    let token = server.default_token().unwrap().expose_secret().to_string();
    let write = |t: Option<&str>, stream: &str| {
        rpc(
            &url,
            t,
            &json!(["stream.write", stream, {"type": "T", "data": {}}]).to_string(),
        )
    };
    assert_eq!(
        write(None, "tm-1").status,
        200,
        "no token: namespace default"
    );
    assert_eq!(
        write(Some("garbage"), "tm-1").status,
        200,
        "unparsable token: default"
    );
    let wrong_secret = format!("ns_ZGVmYXVsdA_{}", "0".repeat(64));
    assert_eq!(
        write(Some(&wrong_secret), "tm-1").status,
        200,
        "a wrong secret passes"
    );
    let seen = rpc(&url, Some(&token), r#"["stream.version","tm-1"]"#);
    assert_eq!(seen.body, "2\n", "all three landed in default");
    let unknown = format!("ns_dGVuYW50LWE_{}", "0".repeat(64));
    expect_error(
        &write(Some(&unknown), "tm-1"),
        500,
        "BACKEND_ERROR",
        "Failed to write message: namespace not found",
    );
    expect_error(
        &rpc(&url, Some(&unknown), r#"["stream.get","tm-1"]"#),
        500,
        "BACKEND_ERROR",
        "Failed to get messages: namespace not found",
    );
    // Admin calls work without a token in test mode.
    assert_eq!(rpc(&url, None, r#"["ns.create","t2"]"#).status, 200);
    assert_eq!(
        write(Some(&unknown), "tm-1").status,
        500,
        "not auto-created"
    );
}

#[test]
fn http_level_limits_and_framing() {
    let server = Server::start(ServerConfig::new().max_body(1024)).unwrap();
    let token = server.default_token().unwrap().expose_secret().to_string();
    let addr = server.addr();
    let big = format!(
        "POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 4096\r\n\r\n{}",
        "x".repeat(4096)
    );
    let a = raw(addr, big.as_bytes());
    assert_eq!(a.status, 413);
    let garbage = raw(addr, b"\x01\x02 not http\r\n\r\n");
    assert_eq!(garbage.status, 400);
    // Chunked request bodies, Expect: 100-continue, and pipelining on one connection.
    let body = r#"["stream.write","c-1",{"type":"T","data":{}}]"#;
    let (first, second) = body.split_at(10);
    let version_body = r#"["stream.version", "c-1"]"#;
    let chunked = format!(
        "POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\nPOST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{version_body}",
        first.len(),
        second.len(),
        version_body.len()
    );
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut stream, chunked.as_bytes()).unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let cont = support::read_answer(&mut reader);
    assert_eq!(cont.status, 100);
    let written = support::read_answer(&mut reader);
    assert_eq!(written.body, "{\"globalPosition\":1,\"position\":0}\n");
    let version = support::read_answer(&mut reader);
    assert_eq!(version.body, "0\n");
    assert_eq!(version.header("connection"), Some("close"));
    still_serving(&server, &token);
}

#[test]
fn data_dir_persists_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let token = format!("ns_ZGVmYXVsdA_{}", "0".repeat(64));
    let first = Server::start(ServerConfig::new().data_dir(dir.path()).token(&token)).unwrap();
    assert!(!first.generated_default_token());
    let w = rpc(
        &first.url(),
        Some(&token),
        r#"["stream.write","keep-1",{"type":"T","data":{"n":1}}]"#,
    );
    assert_eq!(w.status, 200);
    first.shutdown();
    let second = Server::start(ServerConfig::new().data_dir(dir.path())).unwrap();
    assert!(second.default_token().is_none(), "only the hash was stored");
    let got = rpc(&second.url(), Some(&token), r#"["stream.get","keep-1"]"#).json();
    assert_eq!(got[0][4], json!({"n": 1}));
}

#[test]
fn refuses_a_token_for_another_namespace() {
    let err =
        Server::start(ServerConfig::new().token(format!("ns_dGVuYW50LWE_{}", "0".repeat(64))))
            .unwrap_err();
    assert!(err.to_string().contains("default"), "{err}");
    assert!(Server::start(ServerConfig::new().token("nope")).is_err());
}
