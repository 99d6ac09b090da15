//! The limits `eventodb-kit serve` keeps against clients that send too much,
//! too slowly, or ambiguously: one `Content-Length` (no request smuggling),
//! the 64 KiB head limit to the byte, the deadline for a request head, and
//! connection slots that go to new clients rather than to ones that only
//! trickle heads.
#![cfg(feature = "server")]

mod support;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use eventodb_kit::server::{Server, ServerConfig};
use support::{get, read_answer, still_serving};

fn start(config: ServerConfig) -> (Server, String) {
    let server = Server::start(config).unwrap();
    let token = server.default_token().unwrap().expose_secret().to_string();
    (server, token)
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Everything the server sends until it closes the connection.
fn until_closed(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    match stream.read_to_end(&mut all) {
        Ok(_) => {}
        // A reset after the answer also means closed.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection did not close: {e}"),
    }
    String::from_utf8_lossy(&all).into_owned()
}

fn metric(server: &Server, token: &str, line_start: &str) -> f64 {
    let text = get(&server.url(), "/metrics", Some(token)).body;
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
}

#[test]
fn two_content_lengths_get_one_400_and_a_close() {
    let (server, token) = start(ServerConfig::new());
    let smuggled = r#"["stream.write","s-1",{"type":"T","data":{}}]"#;
    let mut stream = connect(&server);
    let request = format!(
        "POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    assert_eq!(smuggled.len(), 45);
    stream.write_all(request.as_bytes()).unwrap();
    let everything = until_closed(&mut stream);
    assert!(
        everything.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{everything}"
    );
    assert_eq!(
        everything.matches("HTTP/1.1").count(),
        1,
        "one response, then the connection closed: {everything}"
    );
    assert!(everything.contains("Connection: close"));
    assert!(everything.ends_with("more than one Content-Length header"));
    // Equal values are refused too; nothing was written either time.
    let mut stream = connect(&server);
    let twice = format!(
        "POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 45\r\ncontent-length: 45\r\n\r\n{smuggled}"
    );
    stream.write_all(twice.as_bytes()).unwrap();
    assert_eq!(until_closed(&mut stream).matches("HTTP/1.1 400").count(), 1);
    use eventodb_kit::MessageStore;
    assert_eq!(server.store().stream_version("s-1").unwrap(), None);
    still_serving(&server, &token);
}

#[test]
fn the_head_limit_is_64_kib_exactly() {
    let (server, token) = start(ServerConfig::new());
    // The head: request line, headers, the blank line.
    let head = |total: usize| {
        let fixed = format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Padding: \r\n\r\n"
        );
        format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Padding: {}\r\n\r\n",
            "p".repeat(total - fixed.len())
        )
    };
    let mut stream = connect(&server);
    stream.write_all(head(70_000).as_bytes()).unwrap();
    let refused = until_closed(&mut stream);
    assert!(
        refused.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{refused}"
    );
    for total in [64 * 1024 - 200, 64 * 1024] {
        let mut stream = connect(&server);
        let raw = head(total);
        assert_eq!(raw.len(), total);
        // In two pieces, as a head that size often arrives.
        stream.write_all(&raw.as_bytes()[..30_000]).unwrap();
        stream.write_all(&raw.as_bytes()[30_000..]).unwrap();
        let answer = read_answer(&mut BufReader::new(stream));
        assert_eq!(answer.status, 200, "a {total}-byte head");
    }
    let mut stream = connect(&server);
    stream.write_all(head(64 * 1024 + 1).as_bytes()).unwrap();
    assert!(until_closed(&mut stream).starts_with("HTTP/1.1 431"));
    still_serving(&server, &token);
}

#[test]
fn a_head_not_sent_in_time_ends_the_connection() {
    let config = ServerConfig::new().head_timeout(Duration::from_millis(300));
    let (server, token) = start(config);
    // Part of a head, then nothing: 408, and the connection closes.
    let mut slow = connect(&server);
    slow.write_all(b"POST /rpc HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let answer = until_closed(&mut slow);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    // Nothing at all: closed without an answer.
    let mut silent = connect(&server);
    assert_eq!(until_closed(&mut silent), "");
    // A client that keeps its connection between requests is not cut: the
    // wait between requests is the idle timeout's.
    let mut kept = connect(&server);
    let request = format!("GET /health HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n");
    kept.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(kept.try_clone().unwrap());
    assert_eq!(read_answer(&mut reader).status, 200);
    let _ = until_closed(&mut connect(&server)); // another head timeout passes
    kept.write_all(request.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut reader).status, 200);
    let timeouts = metric(
        &server,
        &token,
        "eventodb_kit_server_connections_closed_total{reason=\"head_timeout\"}",
    );
    assert!(timeouts >= 3.0, "{timeouts}");
}

#[test]
fn new_clients_take_the_slots_of_slow_ones() {
    let (server, token) = start(ServerConfig::new().max_connections(8));
    // More clients trickling heads than there are slots.
    let mut slow: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut s = connect(&server);
            s.write_all(b"POST /rpc HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    // A normal client still gets in, again and again.
    for _ in 0..3 {
        still_serving(&server, &token);
    }
    assert_eq!(
        metric(
            &server,
            &token,
            "eventodb_kit_server_connections_closed_total{reason=\"refused\"}"
        ),
        0.0
    );
    let evicted = metric(
        &server,
        &token,
        "eventodb_kit_server_connections_closed_total{reason=\"evicted\"}",
    );
    // Four slow clients made way for the last four, and at least one for
    // the first normal client (later ones may find a slot freed by the one
    // before).
    assert!(evicted >= 5.0, "{evicted}");
    // The oldest slow clients were the ones closed.
    assert_eq!(until_closed(&mut slow[0]), "");
    drop(slow);
}

#[test]
fn a_client_is_refused_only_when_every_slot_is_inside_a_request() {
    let (server, token) = start(ServerConfig::new().max_connections(4));
    // SSE streams are inside their request for as long as they last.
    let streams: Vec<BufReader<TcpStream>> = (0..4)
        .map(|_| {
            let mut s = connect(&server);
            let request = format!(
                "GET /subscribe?all=true HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n"
            );
            s.write_all(request.as_bytes()).unwrap();
            let mut reader = BufReader::new(s);
            let mut line = String::new();
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            assert!(line.starts_with("HTTP/1.1 200"), "{line}");
            reader
        })
        .collect();
    let mut refused = connect(&server);
    refused.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
    let answer = until_closed(&mut refused);
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{answer}"
    );
    drop(streams);
}
