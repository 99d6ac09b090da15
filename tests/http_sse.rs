//! SSE both ways: the server's `/subscribe` on the wire, and `HttpStore`'s
//! subscriptions and shared watch hub — pokes after writes, consumer groups,
//! reconnection after a server restart, and refusals.
//!
//! Waits have generous deadlines; how fast a poke arrives is measured in
//! `benches/` (`http_poke_latency_ms`), not asserted here.
#![cfg(feature = "server")]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{
    ConnectionState, ConsumerGroup, Error, HttpStore, MessageStore, NewMessage, RetryPolicy,
    SubscribeTarget, WriteOptions,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn fast_reconnect() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(100))
}

fn client(server: &Server) -> HttpStore {
    let token = server.default_token().unwrap().expose_secret().to_string();
    HttpStore::builder(&server.url(), &token)
        .reconnect_policy(fast_reconnect())
        .build()
        .unwrap()
}

fn write(store: &dyn MessageStore, stream: &str) -> eventodb_kit::WriteResult {
    store
        .write(
            stream,
            &NewMessage::new("T", json!({})),
            &WriteOptions::new(),
        )
        .unwrap()
}

#[test]
fn pokes_follow_writes_for_every_kind_of_subscription() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let store = client(&server);
    let group = ConsumerGroup::new(0, 2).unwrap();
    let targets = [
        (SubscribeTarget::stream("order-1", 0), "order-1"),
        (SubscribeTarget::category_group("cart", 0, group), "cart-3"),
        (SubscribeTarget::all(0), "other-9"),
    ];
    for (target, stream) in targets {
        let sub = store.subscribe_sse(&target).unwrap();
        assert!(sub
            .status()
            .wait_for_state(ConnectionState::Connected, WAIT));
        let written = write(&store, stream);
        let poke = sub.subscription().recv_timeout(WAIT).unwrap();
        assert_eq!(poke.stream, stream, "{target:?}");
        assert_eq!(poke.global_position, written.global_position);
    }
}

#[test]
fn live_consumer_group_pokes_use_the_md5_rule() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let store = client(&server);
    let member0 = ConsumerGroup::new(0, 2).unwrap();
    let sub = store
        .subscribe_sse(&SubscribeTarget::category_group("account", 0, member0))
        .unwrap();
    assert!(sub
        .status()
        .wait_for_state(ConnectionState::Connected, WAIT));
    // MD5: account-123 belongs to member 1 (EventoDB's live hash would give 0).
    write(&store, "account-123");
    write(&store, "account");
    write(&store, "account-1");
    let poke = sub.subscription().recv_timeout(WAIT).unwrap();
    assert_eq!(poke.stream, "account-1");
}

/// Reads one chunk of a chunked body.
fn read_chunk(reader: &mut impl BufRead) -> Vec<u8> {
    let mut size = String::new();
    reader.read_line(&mut size).unwrap();
    let n = usize::from_str_radix(size.trim(), 16).unwrap_or_else(|_| panic!("{size:?}"));
    let mut data = vec![0; n + 2];
    reader.read_exact(&mut data).unwrap();
    data.truncate(n);
    data
}

fn open_sse(server: &Server, query: &str) -> (BufReader<TcpStream>, Vec<String>) {
    let token = server.default_token().unwrap().expose_secret();
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET /subscribe?{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim_end().is_empty() {
            return (reader, head);
        }
        head.push(line.trim_end().to_string());
    }
}

#[test]
fn server_stream_format_on_the_wire() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let store = client(&server);
    // Headers come at once, even with nothing to replay.
    let (mut stream_sub, head) = open_sse(&server, "stream=acct-1");
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    for expected in [
        "Content-Type: text/event-stream",
        "Cache-Control: no-cache",
        "Access-Control-Allow-Origin: *",
        "Transfer-Encoding: chunked",
    ] {
        assert!(head.iter().any(|h| h == expected), "{expected} in {head:?}");
    }
    let (mut all_sub, _) = open_sse(&server, "all=true");
    assert_eq!(read_chunk(&mut all_sub), b": ready\n\n");
    write(&store, "acct-1");
    let expected =
        b"event: poke\ndata: {\"stream\":\"acct-1\",\"position\":0,\"globalPosition\":1}\n\n";
    assert_eq!(read_chunk(&mut stream_sub), expected);
    assert_eq!(read_chunk(&mut all_sub), expected);
    // A category subscription replays from its position.
    let (mut replay, _) = open_sse(&server, "category=acct&position=1");
    assert_eq!(read_chunk(&mut replay), expected);
    // Shutdown ends every stream with the last chunk.
    server.shutdown();
    for reader in [&mut stream_sub, &mut all_sub, &mut replay] {
        assert_eq!(read_chunk(reader), b"");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
    }
}

#[test]
fn subscribe_parameter_errors() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let token = server.default_token().unwrap().expose_secret().to_string();
    let url = server.url();
    let cases = [
        (
            "",
            "Either 'stream', 'category', or 'all=true' parameter required",
        ),
        (
            "?all=true&category=a",
            "Cannot combine 'all' with 'stream' or 'category'",
        ),
        (
            "?stream=a-1&category=a",
            "Cannot specify both 'stream' and 'category'",
        ),
        ("?stream=a-1&position=x", "Invalid position parameter"),
        ("?category=a&consumer=x", "Invalid consumer parameter"),
        ("?category=a&consumer=0&size=x", "Invalid size parameter"),
        (
            "?category=a&consumer=3&size=2",
            "Invalid consumer group: member must be < size",
        ),
    ];
    for (query, message) in cases {
        let a = support::get(&url, &format!("/subscribe{query}"), Some(&token));
        assert_eq!((a.status, a.body.as_str()), (400, message), "{query}");
        assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    }
    let denied = support::get(&url, "/subscribe?all=true", None);
    assert_eq!(denied.status, 401);
    assert_eq!(denied.error().0, "AUTH_REQUIRED");
    // Through HttpStore, a refusal ends the subscription with the reason.
    let foreign = format!("ns_dGVuYW50LWE_{}", "0".repeat(64));
    let stranger = HttpStore::new(&url, &foreign).unwrap();
    let sub = stranger.subscribe_sse(&SubscribeTarget::all(0)).unwrap();
    assert!(matches!(
        sub.subscription().recv_timeout(WAIT),
        Err(Error::Shutdown)
    ));
    let snap = sub.status().snapshot();
    assert_eq!(snap.state, ConnectionState::Stopped);
    assert!(snap.last_error.unwrap().contains("AUTH_UNAUTHORIZED"));
    assert_eq!(
        support::rpc(&url, Some(&token), r#"["sys.health"]"#).status,
        200
    );
}

#[test]
fn subscription_reconnects_after_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let token = format!("ns_ZGVmYXVsdA_{}", "5".repeat(64));
    let config = ServerConfig::new().data_dir(dir.path()).token(&token);
    let server = Server::start(config.clone()).unwrap();
    let port = server.addr().port();
    let store = HttpStore::builder(&server.url(), &token)
        .reconnect_policy(fast_reconnect())
        .build()
        .unwrap();
    let sub = store
        .subscribe_sse(&SubscribeTarget::stream("job-1", 0))
        .unwrap();
    let status = sub.status().clone();
    assert!(status.wait_for_state(ConnectionState::Connected, WAIT));
    write(&store, "job-1");
    assert_eq!(sub.subscription().recv_timeout(WAIT).unwrap().position, 0);

    server.shutdown();
    assert!(status.wait_until(WAIT, |s| s.disconnects >= 1));
    // Written while the subscription is down, replayed when it is back.
    let restarted = Server::start(config.port(port)).unwrap();
    write(&store, "job-1");
    assert!(status.wait_until(WAIT, |s| s.connects >= 2));
    let poke = sub.subscription().recv_timeout(WAIT).unwrap();
    assert_eq!(poke.position, 1, "resumes after the last poke seen");
    write(&store, "job-1");
    assert_eq!(sub.subscription().recv_timeout(WAIT).unwrap().position, 2);
    drop(restarted);
}

#[test]
fn watchers_keep_their_channel_while_the_hub_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let token = format!("ns_ZGVmYXVsdA_{}", "7".repeat(64));
    let config = ServerConfig::new().data_dir(dir.path()).token(&token);
    let server = Server::start(config.clone()).unwrap();
    let port = server.addr().port();
    let store = HttpStore::builder(&server.url(), &token)
        .reconnect_policy(fast_reconnect())
        .build()
        .unwrap();
    let orders = store.watch_category("order").unwrap();
    let everything = store.watch_category("").unwrap();
    assert_eq!(store.watcher_count(), 2);
    let hub = store.watch_status();
    assert!(hub.wait_for_state(ConnectionState::Connected, WAIT));
    write(&store, "invoice-1");
    write(&store, "order-1");
    assert_eq!(orders.recv_timeout(WAIT).unwrap().stream, "order-1");
    assert_eq!(everything.recv_timeout(WAIT).unwrap().stream, "invoice-1");
    assert_eq!(everything.recv_timeout(WAIT).unwrap().stream, "order-1");

    server.shutdown();
    assert!(hub.wait_until(WAIT, |s| s.disconnects >= 1));
    // The break wakes every watcher once (read now: pokes have stopped).
    assert!(orders.recv_timeout(WAIT).unwrap().is_wake_up());
    assert!(
        matches!(
            orders.recv_timeout(Duration::from_millis(50)),
            Err(Error::Timeout(_))
        ),
        "the channel stays open while the hub is down"
    );
    let restarted = Server::start(config.port(port)).unwrap();
    assert!(hub.wait_until(WAIT, |s| s.connects >= 2
        && s.state == ConnectionState::Connected));
    // And again once it is back (writes made meanwhile were not poked).
    assert!(orders.recv_timeout(WAIT).unwrap().is_wake_up());
    write(&store, "order-2");
    assert_eq!(orders.recv_timeout(WAIT).unwrap().stream, "order-2");
    drop(orders);
    assert_eq!(store.watcher_count(), 1);
    drop(restarted);
}

#[test]
fn the_server_ends_a_stream_whose_client_left() {
    let server =
        Server::start(ServerConfig::new().sse_liveness_interval(Duration::from_millis(20)))
            .unwrap();
    let store = client(&server);
    let sub = store.subscribe_sse(&SubscribeTarget::all(0)).unwrap();
    assert!(sub
        .status()
        .wait_for_state(ConnectionState::Connected, WAIT));
    assert_eq!(server.store().subscriber_count(), 1);
    drop(sub);
    // No event tells the test when the server noticed: poll with a deadline.
    let deadline = Instant::now() + WAIT;
    while server.store().subscriber_count() > 0 {
        assert!(Instant::now() < deadline, "the server kept a dead stream");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn stream_names_survive_the_query_string() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let store = client(&server);
    for stream in ["account-123+retry", "café-1 & co=2", "a-b?c#d%20"] {
        let sub = store
            .subscribe_sse(&SubscribeTarget::stream(stream, 0))
            .unwrap();
        let written = write(&store, stream);
        let poke = sub.subscription().recv_timeout(WAIT).unwrap();
        assert_eq!(
            (poke.stream.as_str(), poke.global_position),
            (stream, written.global_position)
        );
    }
}
