//! A pipeline's threads end with it: dropping a `WritePipeline` of an
//! `HttpStore` with writes in flight — on a server that answers, and on one
//! that never does — joins its writer and reader threads, and the pipeline
//! `write_many` keeps goes with the last clone of its store. (One test in
//! its own binary, so that no other test's threads are counted.)
#![cfg(all(feature = "server", target_os = "linux"))]

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::thread;

use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::store::WriteItem;
use eventodb_kit::{HttpStore, MessageStore, NewMessage, WriteOptions};
use serde_json::json;

use common::WAIT;

/// Threads of this process whose name starts with `prefix`.
fn threads(prefix: &str) -> usize {
    common::thread_names()
        .iter()
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// A joined thread can linger in /proc for a moment after `join` returns.
fn wait_for_no_threads(prefix: &str, what: &str) {
    common::wait_for(what, WAIT, || threads(prefix) == 0);
}

fn item(n: u64) -> WriteItem {
    WriteItem::new(
        "threads-1",
        NewMessage::new("T", json!({ "n": n })),
        WriteOptions::new(),
    )
}

#[test]
fn pipeline_threads_end_with_their_owners() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let store = server.http_store().unwrap();
    assert_eq!(threads("eventodb-pipe"), 0);

    // Writes in flight to a server that answers.
    let pipeline = store.open_pipeline().unwrap().unwrap();
    pipeline.send(0, item(0)).unwrap();
    assert!(pipeline
        .answers()
        .recv_timeout(WAIT)
        .unwrap()
        .result
        .is_ok());
    assert_eq!(threads("eventodb-pipe"), 2, "a writer and a reader");
    for n in 1..2000 {
        pipeline.send(n, item(n)).unwrap();
    }
    drop(pipeline);
    wait_for_no_threads("eventodb-pipe", "the dropped pipeline's threads to end");

    // Writes in flight to a server that reads them and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let (got_bytes, requests_came) = crossbeam_channel::bounded(1);
    let holder = thread::spawn(move || {
        let (mut socket, _) = silent.accept().unwrap();
        let mut sink = [0u8; 4096];
        while matches!(socket.read(&mut sink), Ok(n) if n > 0) {
            let _ = got_bytes.try_send(());
        }
    });
    let token = server.default_token().unwrap().expose_secret().to_string();
    let silent_store = HttpStore::new(&url, &token).unwrap();
    let pipeline = silent_store.open_pipeline().unwrap().unwrap();
    for n in 0..100 {
        pipeline.send(n, item(n)).unwrap();
    }
    requests_came.recv_timeout(WAIT).unwrap();
    assert!(threads("eventodb-pipe") >= 1);
    drop(pipeline);
    wait_for_no_threads(
        "eventodb-pipe",
        "the threads of a pipeline nobody answers to end",
    );
    holder.join().unwrap();

    // The pipeline `write_many` keeps lives as long as the store.
    let results = store.write_many(&[item(1), item(2), item(3)]);
    assert!(results.iter().all(|r| r.is_ok()));
    assert_eq!(threads("eventodb-pipe"), 2);
    let clone = store.clone();
    drop(store);
    assert_eq!(threads("eventodb-pipe"), 2, "a clone still holds it");
    drop(clone);
    wait_for_no_threads(
        "eventodb-pipe",
        "write_many's pipeline to end with the last clone",
    );

    server.shutdown();
}
