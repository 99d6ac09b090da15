//! HTTP/1.1 pipelining of `HttpStore` writes against a real `serve`: order
//! and ids over a thousand writes, answers identical to `write`'s, and what
//! happens with servers that do not pipeline (close after each answer,
//! answer one and go silent, HTTP/1.0), a connection dropped mid-window, a
//! server that closes every connection at once, and a store that refuses
//! connections.
#![cfg(feature = "server")]

mod common;
mod pipeline_support;

use std::sync::Arc;
use std::time::Duration;

use common::ids_in;
use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::store::http::Pipelining;
use eventodb_kit::store::{PipelinedAnswer, WriteItem, WritePipeline};
use eventodb_kit::{
    Error, HttpStore, MessageStore, NewMessage, Result, TransportErrorKind, WriteOptions,
    WriteResult,
};
use pipeline_support::{Behaviour, Front};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn item(stream: &str, n: u64) -> WriteItem {
    WriteItem::new(
        stream,
        NewMessage::new("Counted", json!({ "n": n })),
        WriteOptions::new().id(uuid::Uuid::now_v7().to_string()),
    )
}

fn items(stream: &str, count: u64) -> Vec<WriteItem> {
    (0..count).map(|n| item(stream, n)).collect()
}

/// Sends `items` tagged by index and collects one answer per write, in
/// order; fails if an answer is missing, out of order, or extra.
fn through(pipeline: &WritePipeline, items: &[WriteItem]) -> Vec<Result<WriteResult>> {
    for (tag, item) in (0u64..).zip(items) {
        pipeline.send(tag, item.clone()).unwrap();
    }
    let answers: Vec<PipelinedAnswer> = (0..items.len())
        .map(|_| pipeline.answers().recv_timeout(WAIT).expect("an answer"))
        .collect();
    let tags: Vec<u64> = answers.iter().map(|a| a.tag).collect();
    assert_eq!(tags, (0..items.len() as u64).collect::<Vec<_>>());
    assert!(pipeline.answers().is_empty(), "one answer per write");
    answers.into_iter().map(|a| a.result).collect()
}

fn ids(items: &[WriteItem]) -> Vec<String> {
    items
        .iter()
        .map(|i| i.options.id.clone().unwrap())
        .collect()
}

fn store_at(server: &Server, url: &str) -> HttpStore {
    HttpStore::new(url, server.default_token().unwrap().expose_secret()).unwrap()
}

fn kind(result: &Result<WriteResult>) -> Option<TransportErrorKind> {
    match result {
        Err(Error::Transport { kind, .. }) => Some(*kind),
        _ => None,
    }
}

#[test]
fn a_thousand_pipelined_writes_keep_order_and_ids() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let store = server.http_store().unwrap();

    let first = items("counter-1", 1000);
    let pipeline = WritePipeline::open(Arc::new(store.clone())).unwrap();
    let results = through(&pipeline, &first);
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.as_ref().unwrap().position, n as i64);
    }
    assert_eq!(ids_in(&store, "counter-1"), ids(&first));

    let second = items("counter-2", 1000);
    let results = store.write_many(&second);
    assert_eq!(results.len(), 1000);
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.as_ref().unwrap().position, n as i64);
    }
    assert_eq!(ids_in(&store, "counter-2"), ids(&second));
    // The pipeline kept by the store serves the next call too.
    let third = items("counter-2", 10);
    assert!(store.write_many(&third).iter().all(|r| r.is_ok()));
    assert_eq!(store.pipelining(), Pipelining::On);
    assert_eq!(pipeline.fallback(), None);
}

#[test]
fn mixed_outcomes_are_answered_as_write_answers_them() {
    // Two servers in the same state: one gets the window pipelined, the
    // other the same calls one by one with `write`.
    let taken = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";
    let window = vec![
        WriteItem::new(
            "mix-1",
            NewMessage::new("A", json!({})),
            WriteOptions::new(),
        ),
        WriteItem::new(
            "mix-1",
            NewMessage::new("B", json!({})),
            WriteOptions::new().expected_version(7),
        ),
        WriteItem::new(
            "mix-2",
            NewMessage::new("C", json!({})),
            WriteOptions::new().id(taken),
        ),
        WriteItem::new("mix-1", NewMessage::new("D", json!(5)), WriteOptions::new()),
        WriteItem::new(
            "mix-1",
            NewMessage::new("E", json!({})),
            WriteOptions::new().expected_version(1),
        ),
        WriteItem::new(
            "mix-2",
            NewMessage::new("F", json!({})),
            WriteOptions::new(),
        ),
    ];
    let outcome = |pipelined: bool| -> Vec<String> {
        let server = Server::start(ServerConfig::new()).unwrap();
        let store = server.http_store().unwrap();
        let seed = NewMessage::new("Seed", json!({}));
        store
            .write("mix-1", &seed, &WriteOptions::new().id(taken))
            .unwrap();
        let results = if pipelined {
            let pipeline = store.open_pipeline().unwrap().expect("HttpStore pipelines");
            through(&pipeline, &window)
        } else {
            window
                .iter()
                .map(|i| store.write(&i.stream, &i.message, &i.options))
                .collect()
        };
        results.iter().map(|r| format!("{r:?}")).collect()
    };
    let pipelined = outcome(true);
    assert_eq!(pipelined, outcome(false));
    assert!(pipelined[1].contains("Conflict"), "{pipelined:?}");
    assert!(pipelined[2].contains("DuplicateId"), "{pipelined:?}");
    assert!(pipelined[3].contains("InvalidInput"), "{pipelined:?}");
    assert!(pipelined[4].starts_with("Ok"), "{pipelined:?}");
}

#[test]
fn a_server_that_closes_after_each_answer_still_gets_everything() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let front = Front::start(server.addr(), Behaviour::CloseEach);
    let store = store_at(&server, &front.url());
    let writes = items("closing-1", 20);
    let pipeline = store.open_pipeline().unwrap().unwrap();
    let results = through(&pipeline, &writes);
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.as_ref().unwrap().position, n as i64, "{result:?}");
    }
    assert_eq!(ids_in(server.store(), "closing-1"), ids(&writes));
    assert_eq!(front.forwarded(), 20, "each write reached the server once");
    match store.pipelining() {
        Pipelining::OneAtATime { reason } => assert!(reason.contains("times in a row"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(pipeline.fallback().is_some());
    // Clones share what was learned.
    assert_ne!(store.clone().pipelining(), Pipelining::On);
}

#[test]
fn an_http10_server_gets_everything_one_write_at_a_time() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let front = Front::start(server.addr(), Behaviour::Http10);
    let store = store_at(&server, &front.url());
    let writes = items("old-1", 10);
    let results = store.write_many(&writes);
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.as_ref().unwrap().position, n as i64, "{result:?}");
    }
    assert_eq!(ids_in(server.store(), "old-1"), ids(&writes));
    assert_eq!(front.forwarded(), 10);
    match store.pipelining() {
        Pipelining::OneAtATime { reason } => assert!(reason.contains("HTTP/1.0"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_server_that_answers_one_then_stalls_makes_the_store_write_one_at_a_time() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let front = Front::start(server.addr(), Behaviour::FirstThenSilent);
    // A read timeout far beyond `through`'s deadline for each answer: only
    // the stall detection (1 s here, the round trip being well under
    // 100 ms) can end the silent connection in time.
    let store = HttpStore::builder(
        &front.url(),
        server.default_token().unwrap().expose_secret(),
    )
    .read_timeout(Duration::from_secs(3600))
    .build()
    .unwrap();
    let pipeline = store.open_pipeline().unwrap().unwrap();
    let writes = items("stalled-1", 5);
    let results = through(&pipeline, &writes);
    assert_eq!(results[0].as_ref().unwrap().position, 0);
    for result in &results[1..] {
        assert_eq!(
            kind(result),
            Some(TransportErrorKind::Timeout),
            "{result:?}"
        );
        let message = result.as_ref().unwrap_err().to_string();
        assert!(
            message.contains("may or may not have been stored"),
            "{message}"
        );
    }
    match store.pipelining() {
        Pipelining::OneAtATime { reason } => assert!(reason.contains("first"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let later = items("stalled-1", 5);
    let results = through(&pipeline, &later);
    for (n, result) in results.iter().enumerate() {
        assert_eq!(
            result.as_ref().unwrap().position,
            n as i64 + 1,
            "{result:?}"
        );
    }
    let mut expected = ids(&writes[..1]);
    expected.extend(ids(&later));
    assert_eq!(ids_in(server.store(), "stalled-1"), expected);
}

#[test]
fn a_connection_dropped_mid_window_leaves_the_rest_unknown_and_goes_on() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let front = Front::start(server.addr(), Behaviour::DropAfter { read: 6, answer: 2 });
    let store = store_at(&server, &front.url());
    let pipeline = store.open_pipeline().unwrap().unwrap();
    let writes = items("dropped-1", 6);
    let results = through(&pipeline, &writes);
    assert_eq!(results[0].as_ref().unwrap().position, 0);
    assert_eq!(results[1].as_ref().unwrap().position, 1);
    for result in &results[2..] {
        assert_eq!(
            kind(result),
            Some(TransportErrorKind::ConnectionReset),
            "{result:?}"
        );
        assert!(result.as_ref().unwrap_err().is_transient());
    }
    let later = items("dropped-1", 4);
    let results = through(&pipeline, &later);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(front.connections(), 2, "one new connection");
    let mut expected = ids(&writes[..2]);
    expected.extend(ids(&later));
    assert_eq!(ids_in(server.store(), "dropped-1"), expected);
    assert_eq!(
        store.pipelining(),
        Pipelining::On,
        "a break is not a fallback"
    );
}

#[test]
fn a_refused_connection_fails_every_queued_write_at_once() {
    let closed = common::closed_port::ClosedPort::new();
    let token = format!("ns_ZGVmYXVsdA_{}", "0".repeat(64));
    let store = HttpStore::new(&closed.url(), &token).unwrap();
    let pipeline = store.open_pipeline().unwrap().unwrap();
    let results = through(&pipeline, &items("refused-1", 50));
    for result in &results {
        assert_eq!(kind(result), Some(TransportErrorKind::ConnectionRefused));
    }
    let results = store.write_many(&items("refused-1", 50));
    assert_eq!(results.len(), 50);
    for result in &results {
        assert_eq!(kind(result), Some(TransportErrorKind::ConnectionRefused));
    }
    assert_eq!(store.pipelining(), Pipelining::On);
}

#[test]
fn a_server_that_closes_every_connection_at_once_fails_the_writes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let closer = std::thread::spawn(move || {
        let mut accepted = 0;
        for socket in listener.incoming() {
            if stopped.try_recv() != Err(crossbeam_channel::TryRecvError::Empty) {
                break;
            }
            drop(socket);
            accepted += 1;
        }
        accepted
    });
    let token = format!("ns_ZGVmYXVsdA_{}", "0".repeat(64));
    let store = HttpStore::new(&url, &token).unwrap();
    let pipeline = store.open_pipeline().unwrap().unwrap();
    let results = through(&pipeline, &items("closed-1", 30));
    for result in &results {
        assert_eq!(
            kind(result),
            Some(TransportErrorKind::ConnectionReset),
            "{result:?}"
        );
    }
    drop(pipeline);
    drop(stop);
    let _ = std::net::TcpStream::connect(url.trim_start_matches("http://"));
    let accepted = closer.join().unwrap();
    assert!(
        accepted <= 31,
        "one connection per batch at most, got {accepted}"
    );
}
