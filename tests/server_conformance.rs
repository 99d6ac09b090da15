//! `eventodb-kit serve` against fine points of EventoDB's wire format that a
//! line-by-line review of the protocol found: how numbers come out (int64
//! fields exact, user data as float64) and the decoder texts of malformed
//! requests.
#![cfg(feature = "server")]

mod support;

use support::{expect_error, rpc, server, still_serving};

#[test]
fn int64_fields_are_exact_and_data_numbers_are_float64() {
    let (server, token) = server();
    let url = server.url();
    let call = |body: &str| rpc(&url, Some(&token), body);
    // 2^60 + 1: data numbers go through float64 (2^60, printed in its
    // shortest form); the expected version of a conflict is an int64.
    let w = call(r#"["stream.write","big-1",{"type":"T","data":{"n":1152921504606846977}}]"#);
    assert_eq!(w.status, 200, "{w:?}");
    let got = call(r#"["stream.get","big-1"]"#);
    assert!(
        got.body.contains(r#"{"n":1152921504606847000}"#),
        "{}",
        got.body
    );
    let conflict = call(
        r#"["stream.write","big-1",{"type":"T","data":{}},{"expectedVersion":1152921504606846976}]"#,
    );
    assert_eq!(
        conflict.body,
        "{\"error\":{\"code\":\"STREAM_VERSION_CONFLICT\",\"message\":\"Expected version 1152921504606846976, stream is at version 0\",\"details\":{\"actual\":0,\"expected\":1152921504606846976}}}\n"
    );
    still_serving(&server, &token);
}

#[test]
fn malformed_json_details_use_go_decoder_texts() {
    let (server, token) = server();
    let url = server.url();
    let cases = [
        (r#"{"a" 1}"#, "invalid character '1' after object key"),
        (
            r#"{"a":1 "b":2}"#,
            "invalid character '\"' after object key:value pair",
        ),
        (r#"["a" "b"]"#, "invalid character '\"' after array element"),
        (
            r#"{1:2}"#,
            "invalid character '1' looking for beginning of object key string",
        ),
        (
            r#"{"a":1,}"#,
            "invalid character '}' looking for beginning of object key string",
        ),
        (
            "[1,]",
            "invalid character ']' looking for beginning of value",
        ),
        (
            "[tru]",
            "invalid character ']' in literal true (expecting 'e')",
        ),
        (
            "[nul]",
            "invalid character ']' in literal null (expecting 'l')",
        ),
        (
            "[fx]",
            "invalid character 'x' in literal false (expecting 'a')",
        ),
        ("[-x]", "invalid character 'x' in numeric literal"),
        (
            "[1.]",
            "invalid character ']' after decimal point in numeric literal",
        ),
        (
            "[1e]",
            "invalid character ']' in exponent of numeric literal",
        ),
        (
            "[\"a\u{1}\"]",
            "invalid character '\\x01' in string literal",
        ),
        ("[\"\\x\"]", "invalid character 'x' in string escape code"),
        (
            r#"["stream.get","s-1",{"batchSize":1e400}]"#,
            "json: cannot unmarshal number 1e400 into Go value of type float64",
        ),
        ("[1] [2]", "invalid character '[' after top-level value"),
        // Go scans bytes: a multi-byte character shows as its first byte.
        (
            "[é]",
            "invalid character 'Ã' looking for beginning of value",
        ),
    ];
    for (body, detail) in cases {
        let a = rpc(&url, Some(&token), body);
        expect_error(&a, 400, "INVALID_REQUEST", "Malformed JSON request");
        assert_eq!(a.json()["error"]["details"]["error"], detail, "{body}");
    }
    still_serving(&server, &token);
}

#[test]
fn lone_surrogate_escapes_are_read_as_replacement_characters() {
    let (server, token) = server();
    let url = server.url();
    let w = rpc(
        &url,
        Some(&token),
        r#"["stream.write","sur-1",{"type":"T","data":{"s":"a\ud800b","pair":"\ud83d\ude00"}}]"#,
    );
    assert_eq!(w.status, 200, "{w:?}");
    let got = rpc(&url, Some(&token), r#"["stream.get","sur-1"]"#);
    assert!(
        got.body.contains("{\"pair\":\"😀\",\"s\":\"a\u{fffd}b\"}"),
        "{}",
        got.body
    );
}

#[test]
fn paths_are_normalized_as_fasthttp_does_before_routing() {
    let (server, token) = server();
    let addr = server.addr();
    let get = |target: &str| {
        support::raw(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    // A base URL with a trailing slash gives `//rpc`: EventoDB serves it.
    for target in [
        "//health",
        "/x/../health",
        "/./health",
        "/heal%74h",
        "http://127.0.0.1/health?x=1",
    ] {
        let a = get(target);
        assert_eq!(
            (a.status, a.body.as_str()),
            (200, r#"{"status":"ok"}"#),
            "{target}"
        );
    }
    for target in ["/health/", "/health/.", "/health%2F", "/rpc/"] {
        assert_eq!(get(target).status, 404, "{target}");
    }
    let body = r#"["sys.version"]"#;
    let a = support::raw(
        addr,
        format!(
            "POST //rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!((a.status, a.body.as_str()), (200, "\"0.7.0\"\n"));
}

/// Reads SSE chunks until `n` poke events arrived; returns their data.
fn pokes(reader: &mut impl std::io::BufRead, n: usize) -> Vec<serde_json::Value> {
    let mut text = String::new();
    loop {
        let events: Vec<serde_json::Value> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("event: poke\ndata: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        if events.len() >= n && text.ends_with("\n\n") {
            return events;
        }
        let mut size = String::new();
        reader.read_line(&mut size).unwrap();
        let len = usize::from_str_radix(size.trim(), 16).unwrap();
        assert!(len > 0, "the stream ended after {} pokes", events.len());
        let mut chunk = vec![0; len + 2];
        std::io::Read::read_exact(reader, &mut chunk).unwrap();
        text.push_str(std::str::from_utf8(&chunk[..len]).unwrap());
    }
}

#[test]
fn subscriptions_replay_at_most_1000_then_follow_live_writes() {
    use eventodb_kit::{MessageStore, NewMessage, WriteOptions};
    use std::io::{BufRead, Write};
    let (server, token) = server();
    let store = server.store();
    let m = NewMessage::new("T", serde_json::json!({}));
    for _ in 0..1002 {
        store.write("rep-1", &m, &WriteOptions::new()).unwrap();
    }
    let open = |query: &str| {
        let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        write!(
            s,
            "GET /subscribe?{query}&token={token} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        let mut r = std::io::BufReader::new(s);
        let mut line = String::new();
        while line != "\r\n" {
            line.clear();
            r.read_line(&mut line).unwrap();
        }
        r
    };
    // rep-1 holds positions 0..=1001, global positions 1..=1002.
    let mut by_stream = open("stream=rep-1&position=0");
    let mut by_category = open("category=rep&position=1");
    let replayed = pokes(&mut by_stream, 1000);
    assert_eq!(
        (replayed.len(), &replayed[999]["position"]),
        (1000, &serde_json::json!(999))
    );
    let replayed = pokes(&mut by_category, 1000);
    assert_eq!(
        (replayed.len(), &replayed[999]["globalPosition"]),
        (1000, &serde_json::json!(1000))
    );
    // The rest is not replayed; the next poke is the next write.
    store.write("rep-1", &m, &WriteOptions::new()).unwrap();
    let live = serde_json::json!({"stream": "rep-1", "position": 1002, "globalPosition": 1003});
    for reader in [&mut by_stream, &mut by_category] {
        assert_eq!(pokes(reader, 1), std::slice::from_ref(&live));
    }
}

#[test]
fn number_options_truncate_toward_zero() {
    let (server, token) = server();
    let url = server.url();
    let call = |body: &str| rpc(&url, Some(&token), body);
    for _ in 0..3 {
        assert_eq!(
            call(r#"["stream.write","tr-1",{"type":"T","data":{}}]"#).status,
            200
        );
    }
    let positions = |body: &str| -> Vec<i64> {
        let v = call(body).json();
        v.as_array()
            .unwrap_or_else(|| panic!("{body}: {v}"))
            .iter()
            .map(|m| m[2].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        positions(r#"["stream.get","tr-1",{"position":1.9}]"#),
        [1, 2]
    );
    assert_eq!(positions(r#"["stream.get","tr-1",{"batchSize":1.9}]"#), [0]);
    // 0.5 truncates to 0, which means unlimited; -1.5 to -1 (unlimited too).
    assert_eq!(
        positions(r#"["stream.get","tr-1",{"batchSize":0.5}]"#),
        [0, 1, 2]
    );
    assert_eq!(
        positions(r#"["stream.get","tr-1",{"batchSize":-1.5}]"#),
        [0, 1, 2]
    );
    assert_eq!(
        call(r#"["stream.get","tr-1",{"batchSize":10000.9}]"#).status,
        200
    );
    // -0.5 truncates to 0: a conflict on a stream at version 2.
    let conflict =
        call(r#"["stream.write","tr-1",{"type":"T","data":{}},{"expectedVersion":-0.5}]"#);
    assert_eq!(
        conflict.error().1,
        "Expected version 0, stream is at version 2"
    );
    let streams = call(r#"["ns.streams",{"limit":1000.9}]"#);
    assert_eq!(streams.status, 200, "{streams:?}");
    expect_error(
        &call(r#"["ns.streams",{"limit":0.9}]"#),
        400,
        "INVALID_REQUEST",
        "limit must be between 1 and 1000",
    );
}
