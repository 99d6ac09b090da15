//! Every thread of the HTTP pieces ends with its owner: a subscription's
//! thread when the subscription is dropped, the watch hub's thread with the
//! last clone of its store, and the server's threads at shutdown. (One test
//! in its own binary, so that no other test's threads are counted.)
#![cfg(all(feature = "server", target_os = "linux"))]

mod common;

use std::time::Duration;

use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{ConnectionState, MessageStore, NewMessage, SubscribeTarget, WriteOptions};

const WAIT: Duration = Duration::from_secs(10);

/// Threads of this process whose name starts with `prefix` (Linux keeps
/// the first 15 bytes of a name).
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

#[test]
fn threads_end_with_their_owners() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let store = server.http_store().unwrap();
    // Once a request was answered, the acceptor and a connection thread run.
    store.health().unwrap();
    assert!(threads("eventodb-serve") >= 2);

    let sub = store.subscribe_sse(&SubscribeTarget::all(0)).unwrap();
    assert!(sub
        .status()
        .wait_for_state(ConnectionState::Connected, WAIT));
    assert_eq!(threads("eventodb-subscr"), 1);
    drop(sub); // joins
    wait_for_no_threads("eventodb-subscr", "the subscription's thread to end");

    let watcher = store.watch_category("order").unwrap();
    let clone = store.clone();
    assert_eq!(threads("eventodb-watch"), 1);
    drop(store);
    assert_eq!(threads("eventodb-watch"), 1, "a clone still holds the hub");
    clone
        .write(
            "order-1",
            &NewMessage::new("T", serde_json::json!({})),
            &WriteOptions::new(),
        )
        .unwrap();
    assert_eq!(watcher.recv_timeout(WAIT).unwrap().stream, "order-1");
    drop(clone); // the last handle: the hub's thread is joined
    wait_for_no_threads("eventodb-watch", "the watch hub's thread to end");
    assert!(
        matches!(
            watcher.recv_timeout(WAIT),
            Err(eventodb_kit::Error::Shutdown)
        ),
        "the watcher learns that its source is gone"
    );

    server.shutdown();
    wait_for_no_threads("eventodb-serve", "the server's threads to end");
}
