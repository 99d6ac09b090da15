//! Half-open SSE connections: a relay whose event streams go silent without
//! closing (the server's pokes are dropped, both sockets stay open) is found
//! dead once a write goes unreported — the state goes `Disconnected`,
//! consumers read at once, the connection comes back and pushes again — and
//! an idle, healthy connection that is silent for many timeouts is checked,
//! never reconnected.
//!
//! The silence timeout is shortened to milliseconds; deadlines are generous
//! and nothing here asserts how fast (that is for benches).
#![cfg(feature = "server")]

mod consumer_support;
mod relay;

use std::time::Duration;

use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{
    ConnectionState, HttpStore, MessageStore, NewMessage, RetryPolicy, SubscribeTarget,
    WriteOptions,
};
use serde_json::json;

use consumer_support::{effects, kit_over, record_effect, DEADLINE};
use relay::Relay;

const SILENCE: Duration = Duration::from_millis(150);

/// A store on `url` that checks its event streams after `SILENCE`.
fn store(url: &str, server: &Server) -> HttpStore {
    let token = server.default_token().unwrap().expose_secret().to_string();
    HttpStore::builder(url, &token)
        .silence_timeout(SILENCE)
        .reconnect_policy(
            RetryPolicy::new()
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(100)),
        )
        .build()
        .unwrap()
}

fn write(store: &dyn MessageStore, stream: &str) -> i64 {
    store
        .write(
            stream,
            &NewMessage::new("Happened", json!({})),
            &WriteOptions::new(),
        )
        .unwrap()
        .global_position
}

#[test]
fn a_silent_hub_is_found_dead_consumers_read_at_once_and_push_resumes() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let relay = Relay::start(server.addr());
    let store = store(&relay.url(), &server);
    let writer = store_direct(&server);
    let dir = tempfile::tempdir().unwrap();
    let kit = kit_over(dir.path(), store.clone());
    // Polls practically never: only a poke or a wake-up moves it in time.
    let consumer = kit
        .consumer("job", "worker")
        .poll_interval(Duration::from_secs(3600))
        .spawn(|msg, tx| record_effect("worker", msg, tx))
        .unwrap();
    let hub = store.watch_status();
    assert!(hub.wait_for_state(ConnectionState::Connected, DEADLINE));
    let first = write(&writer, "job-1");
    consumer.wait_for_position(first, DEADLINE).unwrap();

    // The stream goes half-open: the server's pokes no longer arrive.
    relay.silence_sse();
    let missed = write(&writer, "job-2");
    // Found dead after a silence, once the probe finds the unreported write.
    assert!(hub.wait_until(DEADLINE, |s| s.disconnects >= 1));
    let snap = hub.snapshot();
    assert!(snap.liveness_checks >= 1);
    assert!(
        snap.last_error.as_deref().unwrap().contains("dead"),
        "{snap:?}"
    );
    // The break woke the consumer: it read the write no poke announced.
    consumer.wait_for_position(missed, DEADLINE).unwrap();
    // Reconnected at once, and pokes flow again.
    assert!(hub.wait_until(DEADLINE, |s| s.connects >= 2
        && s.state == ConnectionState::Connected));
    let after = write(&writer, "job-3");
    consumer.wait_for_position(after, DEADLINE).unwrap();
    assert_eq!(effects(&kit, "worker"), [first, missed, after]);
    consumer.shutdown();
}

#[test]
fn a_silent_subscription_reconnects_and_replays_what_it_missed() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let relay = Relay::start(server.addr());
    let store = store(&relay.url(), &server);
    let sub = store
        .subscribe_sse(&SubscribeTarget::stream("order-7", 0))
        .unwrap();
    assert!(sub
        .status()
        .wait_for_state(ConnectionState::Connected, DEADLINE));
    write(&store, "order-7");
    assert_eq!(
        sub.subscription().recv_timeout(DEADLINE).unwrap().position,
        0
    );
    relay.silence_sse();
    write(&store, "order-7");
    // Dead, reconnected, and the missed poke replayed from where it stopped.
    let poke = sub.subscription().recv_timeout(DEADLINE).unwrap();
    assert_eq!(poke.position, 1);
    let snap = sub.status().snapshot();
    assert!(snap.disconnects >= 1 && snap.connects >= 2, "{snap:?}");
}

#[test]
fn the_first_reconnect_after_a_break_goes_at_once() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let relay = Relay::start(server.addr());
    let token = server.default_token().unwrap().expose_secret().to_string();
    // An hour of backoff: only an immediate attempt is back within the deadline.
    let store = HttpStore::builder(&relay.url(), &token)
        .silence_timeout(SILENCE)
        .reconnect_policy(
            RetryPolicy::new()
                .initial_delay(Duration::from_secs(3600))
                .max_delay(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    let sub = store
        .subscribe_sse(&SubscribeTarget::category("order", 1))
        .unwrap();
    let hub = store.watch_status();
    for status in [&hub, sub.status()] {
        assert!(status.wait_for_state(ConnectionState::Connected, DEADLINE));
    }
    relay.silence_sse();
    write(&store, "order-1");
    for status in [&hub, sub.status()] {
        assert!(
            status.wait_until(DEADLINE, |s| s.disconnects == 1
                && s.connects == 2
                && s.state == ConnectionState::Connected),
            "{status:?}"
        );
    }
    let poke = sub.subscription().recv_timeout(DEADLINE).unwrap();
    assert_eq!(poke.stream, "order-1");
}

/// A store straight to the server (for writes that must not go through
/// the relay).
fn store_direct(server: &Server) -> HttpStore {
    store(&server.url(), server)
}

#[test]
fn an_idle_healthy_connection_is_checked_and_kept() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let relay = Relay::start(server.addr());
    let store = store(&relay.url(), &server);
    // History before the hub connects: its first check looks up the head.
    for n in 0..3 {
        write(&store, &format!("old-{n}"));
    }
    let watch = store.watch_category("order").unwrap();
    let sub = store
        .subscribe_sse(&SubscribeTarget::category("order", 1))
        .unwrap();
    let hub = store.watch_status();
    assert!(hub.wait_for_state(ConnectionState::Connected, DEADLINE));
    assert!(sub
        .status()
        .wait_for_state(ConnectionState::Connected, DEADLINE));
    // Many silence periods pass, each checked with the store.
    for status in [&hub, sub.status()] {
        assert!(status.wait_until(DEADLINE, |s| s.liveness_checks >= 5));
    }
    for status in [&hub, sub.status()] {
        let snap = status.snapshot();
        assert_eq!(
            (snap.connects, snap.disconnects, snap.state),
            (1, 0, ConnectionState::Connected),
            "no reconnect storm: {snap:?}"
        );
    }
    assert_eq!(
        relay.sse_streams(),
        2,
        "one connection each, never replaced"
    );
    assert!(watch.drain().is_empty(), "and no wake-ups");
    // Still live.
    write(&store, "order-1");
    assert_eq!(watch.recv_timeout(DEADLINE).unwrap().stream, "order-1");
    assert_eq!(
        sub.subscription().recv_timeout(DEADLINE).unwrap().stream,
        "order-1"
    );
}
