//! A store (or a rate-limiting proxy in front of it) that answers 429 with
//! `Retry-After`: the sender pauses — nothing dead-lettered, no attempt
//! used up — and does not ask again before the time it was given.

mod common;

use std::time::Duration;

use common::proxy::Proxy;
use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{HttpStore, MessageStore, NewMessage, StreamQuery};
use serde_json::json;

#[test]
fn a_429_with_retry_after_pauses_the_sender_and_nothing_is_sent_before_that_time() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let proxy = Proxy::start(server.addr());
    let token = server.default_token().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kit = common::kit_with_store(
        dir.path(),
        HttpStore::new(&proxy.url(), token.expose_secret()).unwrap(),
    );
    // Probes after 5 ms, 10 ms, 20 ms, …: without the Retry-After, several
    // would come while the proxy still limits.
    let sender = kit.spawn_sender(common::fast()).unwrap();
    // "Retry-After: 1", and 429s for a little less than that (so that a
    // probe right on time is not one of them).
    proxy.throttle("1", Duration::from_millis(900));
    let id = kit
        .outbox()
        .write("order-1", &NewMessage::new("Placed", json!({ "n": 1 })))
        .unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();
    let stats = sender.stats().unwrap();
    let health = sender.health();
    sender.shutdown();

    assert_eq!(
        proxy.throttled(),
        1,
        "the write that got the 429 and nothing else before the Retry-After"
    );
    let error = health.last_error.unwrap_or_default();
    assert!(
        error.contains("paused (store unreachable)") && error.contains("HTTP 429, retry after 1s"),
        "{error}"
    );
    assert_eq!((stats.sent, stats.dead_lettered, stats.retried), (1, 0, 0));
    assert!(stats.pause.is_none());
    assert!(
        kit.outbox().get(&id).unwrap().attempts <= 1,
        "a pause uses up no attempt"
    );
    let stored: Vec<String> = server
        .store()
        .get_stream("order-1", &StreamQuery::new())
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(stored, [id]);
    drop(proxy);
    server.shutdown();
}
