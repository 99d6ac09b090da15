//! What the whole sender pauses for, and how it comes back: an outage with
//! default settings, a link that breaks every connection (reads that would
//! settle the writes too), a token the store stops accepting (nothing is
//! dead-lettered for it), a server that does not answer pipelined requests,
//! and a handle dropped while the store never answers (the lease is still
//! released).

mod common;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::proxy::Proxy;
use common::{entries, ids_in, kit_with_store};
use eventodb_kit::outbox::SenderConfig;
use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{HttpStore, PauseReason, RetryPolicy};

#[test]
fn after_an_outage_a_sender_with_default_settings_delivers_again() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::new().data_dir(data.path())).unwrap();
    let (port, token) = (
        server.addr().port(),
        server.default_token().unwrap().expose_secret().to_string(),
    );
    let dir = tempfile::tempdir().unwrap();
    let kit = kit_with_store(dir.path(), HttpStore::new(&server.url(), &token).unwrap());
    let sender = kit.spawn_sender(SenderConfig::new()).unwrap();
    let mut ids = kit
        .outbox()
        .write_batch(&entries("meter-1", 0, 10))
        .unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();

    server.shutdown();
    ids.extend(
        kit.outbox()
            .write_batch(&entries("meter-1", 10, 10))
            .unwrap(),
    );
    common::wait_for("the sender to pause", common::WAIT, || {
        sender.stats().unwrap().pause.is_some()
    });
    let pause = sender.stats().unwrap().pause.unwrap();
    assert_eq!(pause.reason, PauseReason::Unreachable);
    ids.extend(
        kit.outbox()
            .write_batch(&entries("meter-1", 20, 10))
            .unwrap(),
    );

    let server = Server::start(
        ServerConfig::new()
            .port(port)
            .data_dir(data.path())
            .token(token),
    )
    .unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();
    let stats = sender.stats().unwrap();
    sender.shutdown();
    assert!(stats.pause.is_none());
    assert_eq!(
        (stats.dead_lettered, stats.retried),
        (0, 0),
        "an outage uses up nothing"
    );
    assert_eq!(ids_in(server.store(), "meter-1"), ids);
    server.shutdown();
}

#[test]
fn a_link_that_breaks_every_connection_pauses_the_sender_until_it_heals() {
    // A load balancer whose store is gone: it takes every connection and
    // drops it. Reads that would settle the writes break too; the sender
    // must pause (and probe) rather than back each stream off for longer
    // and longer.
    let server = Server::start(ServerConfig::new()).unwrap();
    let proxy = Proxy::start(server.addr());
    proxy.only(&[common::proxy::Fault::DropBefore]);
    let token = server.default_token().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kit = kit_with_store(
        dir.path(),
        HttpStore::new(&proxy.url(), token.expose_secret()).unwrap(),
    );
    let sender = kit.spawn_sender(SenderConfig::new()).unwrap();
    let mut ids = kit.outbox().write_batch(&entries("meter-1", 0, 5)).unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();

    proxy.set_fault_rate(100);
    ids.extend(
        kit.outbox()
            .write_batch(&entries("meter-1", 5, 20))
            .unwrap(),
    );
    common::wait_for("the sender to pause", common::WAIT, || {
        sender.stats().unwrap().pause.is_some()
    });
    assert_eq!(
        sender.stats().unwrap().pause.unwrap().reason,
        PauseReason::Unreachable
    );
    proxy.set_fault_rate(0);
    sender.wait_until_drained(common::WAIT).unwrap();
    let stats = sender.stats().unwrap();
    sender.shutdown();
    assert!(stats.pause.is_none());
    assert_eq!(stats.dead_lettered, 0);
    assert_eq!(ids_in(server.store(), "meter-1"), ids);
    drop(proxy);
    server.shutdown();
}

#[test]
fn a_token_the_store_stops_accepting_pauses_the_sender_and_nothing_is_dead_lettered() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let token = format!("ns_dGVuYW50LWE_{}", "7".repeat(64));
    server
        .store()
        .create_namespace("tenant-a", "", Some(&token))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kit = kit_with_store(dir.path(), HttpStore::new(&server.url(), &token).unwrap());
    // Probes of a refused token follow the retry policy (it takes a person
    // to fix a token): a short one here.
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(100));
    let sender = kit.spawn_sender(common::fast().retry(retry)).unwrap();
    let before = kit
        .outbox()
        .write_batch(&entries("order-1", 0, 20))
        .unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();

    // The namespace is deleted (its token with it): every write is refused.
    server.store().delete_namespace("tenant-a").unwrap();
    let after = kit
        .outbox()
        .write_batch(&entries("order-1", 20, 30))
        .unwrap();
    common::wait_for("the sender to pause", common::WAIT, || {
        sender
            .stats()
            .unwrap()
            .pause
            .is_some_and(|p| p.reason == PauseReason::AuthRefused)
    });
    let health = sender.health();
    assert!(health.last_error.unwrap().contains("token refused"));
    let stats = sender.stats().unwrap();
    assert_eq!((stats.dead_lettered, stats.dead_letters), (0, 0));
    assert_eq!(stats.backlog, after.len() as u64);
    assert!(
        kit.outbox().get(&after[0]).unwrap().attempts <= 1,
        "a refused token uses up no attempts"
    );

    // The namespace comes back with the same token: the backlog drains in order.
    server
        .store()
        .create_namespace("tenant-a", "", Some(&token))
        .unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();
    let stats = sender.stats().unwrap();
    sender.shutdown();
    assert!(stats.pause.is_none());
    assert_eq!(stats.dead_lettered, 0);
    let tenant = server.store().with_namespace("tenant-a");
    assert_eq!(
        ids_in(&tenant, "order-1"),
        after,
        "what came after, in commit order"
    );
    assert_eq!(stats.sent, (before.len() + after.len()) as u64);
    server.shutdown();
}

#[test]
fn a_server_that_answers_one_request_per_connection_still_gets_everything() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let proxy = Proxy::start(server.addr());
    proxy.one_request_per_connection();
    let token = server.default_token().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = HttpStore::new(&proxy.url(), token.expose_secret()).unwrap();
    let kit = kit_with_store(dir.path(), store.clone());
    let mut ids = Vec::new();
    for stream in ["a-1", "b-1"] {
        ids.push(kit.outbox().write_batch(&entries(stream, 0, 40)).unwrap());
    }
    let sender = kit.spawn_sender(common::fast()).unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();
    let stats = sender.stats().unwrap();
    sender.shutdown();
    assert_eq!((stats.sent, stats.dead_lettered), (80, 0));
    assert!(
        stats.pipelining_fallback.is_some(),
        "the fallback is reported: {stats:?}"
    );
    assert!(matches!(
        store.pipelining(),
        eventodb_kit::store::http::Pipelining::OneAtATime { .. }
    ));
    assert_eq!(ids_in(server.store(), "a-1"), ids[0]);
    assert_eq!(ids_in(server.store(), "b-1"), ids[1]);
    drop(proxy);
    server.shutdown();
}

#[test]
fn dropping_a_sender_whose_store_never_answers_releases_the_lease_in_bounded_time() {
    // A store that accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let acceptor = {
        let held = Arc::clone(&held);
        thread::spawn(move || {
            for conn in listener.incoming().take(8) {
                match conn {
                    Ok(conn) => held.lock().unwrap().push(conn),
                    Err(_) => return,
                }
            }
        })
    };
    let token = format!("ns_ZGVmYXVsdA_{}", "0".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    let kit = kit_with_store(
        dir.path(),
        HttpStore::new(&format!("http://{addr}"), &token).unwrap(),
    );
    let sender = kit.spawn_sender(common::fast()).unwrap();
    kit.outbox().write_batch(&entries("a-1", 0, 5)).unwrap();
    common::wait_for("a connection to the silent store", common::WAIT, || {
        !held.lock().unwrap().is_empty()
    });
    let started = Instant::now();
    drop(sender);
    let lease = kit.outbox().sender_lease().unwrap().unwrap();
    assert!(
        !lease.is_held_at(SystemTime::now()),
        "the dropped sender released its lease (after {:?})",
        started.elapsed()
    );
    assert_eq!(kit.outbox().status().unwrap().unsent, 5, "nothing lost");
    // Let the acceptor go.
    for _ in 0..8 {
        let _ = std::net::TcpStream::connect(addr);
    }
    acceptor.join().unwrap();
}
