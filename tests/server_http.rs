//! `eventodb-kit serve` at the HTTP level: fixed endpoints and 404s, body
//! limits, chunked and pipelined requests, `100 Continue`, and persistence
//! in a data directory.
#![cfg(feature = "server")]

mod support;

use eventodb_kit::server::{Server, ServerConfig};
use serde_json::json;
use support::{get, post_with_header, raw, rpc, server, still_serving};

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
