//! Writes kept in flight over TLS, against `serve` over HTTPS with a private
//! CA and client certificates: `HttpStore::write_many` and an outbox
//! sender pipelining through the store's one TLS configuration, with
//! `serve` committing the pipelined writes together; a sender whose client
//! certificate the store refuses pauses (never dead-letters) and drains in
//! order once the store accepts it; and `serve`'s limits (head deadline,
//! slots for new clients) hold over TLS.
#![cfg(feature = "server")]

mod common;
mod pki;

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::store::http::Pipelining;
use eventodb_kit::store::WriteItem;
use eventodb_kit::{Kit, MessageStore, NewMessage, PauseReason, TlsSettings, WriteOptions};
use serde_json::json;

use common::WAIT;
use pki::{store, tls_server, trusting, Ca, Pair};

fn token(server: &Server) -> String {
    server.default_token().unwrap().expose_secret().to_string()
}

/// The fleet's trust and `device`'s identity.
fn device_tls(ca: &Ca, device: &Pair) -> TlsSettings {
    trusting(ca)
        .client_certificate_pem(&device.cert, &device.key)
        .unwrap()
}

/// A value of `serve`'s `/metrics`, read over mutual TLS (a plain ureq
/// agent: what an operator's scraper would do).
fn metric(server: &Server, ca: &Ca, device: &Pair, name: &str) -> f64 {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let root = Certificate::from_pem(ca.pem().as_bytes())
        .unwrap()
        .to_owned();
    let cert = Certificate::from_pem(device.cert.as_bytes())
        .unwrap()
        .to_owned();
    let key = PrivateKey::from_pem(device.key.as_bytes())
        .unwrap()
        .to_owned();
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(vec![root])))
        .client_cert(Some(ClientCert::new_with_certs(&[cert], key)))
        .build();
    let agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .build()
        .new_agent();
    let text = agent
        .get(format!("{}/metrics", server.url()))
        .header("Authorization", format!("Bearer {}", token(server)))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// `count` messages for each of `streams`, interleaved, ids set.
fn items(prefix: &str, streams: usize, count: usize) -> Vec<WriteItem> {
    (0..count * streams)
        .map(|n| {
            WriteItem::new(
                format!("{prefix}-{}", n % streams),
                NewMessage::new("Measured", json!({ "n": n })),
                WriteOptions::new().id(uuid::Uuid::now_v7().to_string()),
            )
        })
        .collect()
}

/// Writes `per_stream` messages to each of `streams` through the outbox.
fn outbox_workload(kit: &Kit, prefix: &str, streams: usize, per_stream: usize) {
    for n in 0..per_stream {
        for s in 0..streams {
            kit.outbox()
                .write(
                    &format!("{prefix}-{s}"),
                    &NewMessage::new("Reported", json!({ "n": n })),
                )
                .unwrap();
        }
    }
}

#[test]
fn pipelined_writes_and_a_sender_over_mutual_tls_are_batched_by_serve() {
    let ca = Ca::new("fleet CA");
    let devices = Ca::new("device CA");
    let server = tls_server(&ca.server(), Some(&devices));
    let device = devices.client("device-5");
    let store = store(&server.url(), &token(&server), device_tls(&ca, &device));

    let writes = items("meter", 3, 100);
    let results = store.write_many(&writes);
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.as_ref().unwrap().position, (n / 3) as i64);
    }
    assert_eq!(store.pipelining(), Pipelining::On);
    for s in 0..3 {
        let stored = common::ids_in(&store, &format!("meter-{s}"));
        let sent: Vec<String> = writes
            .iter()
            .filter(|w| w.stream == format!("meter-{s}"))
            .map(|w| w.options.id.clone().unwrap())
            .collect();
        assert_eq!(stored, sent);
    }
    // serve read them through the TLS session and committed those waiting
    // together.
    let batched = metric(
        &server,
        &ca,
        &device,
        "eventodb_kit_server_pipelined_writes_total",
    );
    assert!(batched >= 2.0, "{batched}");

    // An outbox sender drains through the same store's pipelines.
    let dir = tempfile::tempdir().unwrap();
    let kit = common::kit_with_store(dir.path(), store.clone());
    outbox_workload(&kit, "report", 4, 50);
    let sender = kit.spawn_sender(common::fast().pipeline_depth(64)).unwrap();
    sender.wait_until_drained(WAIT).unwrap();
    let stats = sender.stats().unwrap();
    assert_eq!(
        (stats.sent, stats.dead_lettered, stats.pipelining_fallback),
        (200, 0, None)
    );
    let stored = common::ids_by_stream(server.store());
    for (stream, ids) in common::outbox_ids_by_stream(&kit) {
        assert_eq!(stored[&stream], ids, "{stream}: every message, in order");
    }
    sender.shutdown();
}

#[test]
fn a_refused_client_certificate_pauses_the_sender_until_the_store_accepts_it() {
    let ca = Ca::new("fleet CA");
    let retired = Ca::new("retired device CA");
    let devices = Ca::new("device CA");
    let device = devices.client("device-8");
    let pair = ca.server();
    let data = tempfile::tempdir().unwrap();
    let config = || {
        ServerConfig::new()
            .data_dir(data.path())
            .tls_pem(pair.cert.clone(), pair.key.clone())
    };
    // The store still trusts only the retired device CA.
    let server = Server::start(config().client_ca_pem(retired.pem())).unwrap();
    let (port, token) = (server.addr().port(), token(&server));
    let store = store(&server.url(), &token, device_tls(&ca, &device));
    let dir = tempfile::tempdir().unwrap();
    let kit = common::kit_with_store(dir.path(), store);
    outbox_workload(&kit, "alarm", 3, 10);
    let sender = kit.spawn_sender(common::fast()).unwrap();
    common::wait_for("the sender to pause on the certificate", WAIT, || {
        sender
            .stats()
            .unwrap()
            .pause
            .is_some_and(|p| p.reason == PauseReason::TlsRefused)
    });
    let stats = sender.stats().unwrap();
    let pause = stats.pause.unwrap();
    assert!(
        pause.error.contains("client certificate"),
        "{}",
        pause.error
    );
    assert_eq!(
        (stats.sent, stats.dead_lettered, stats.dead_letters),
        (0, 0, 0)
    );
    assert_eq!(stats.backlog, 30);

    // The store now trusts the devices' CA: the same sender drains.
    server.shutdown();
    let server = Server::start(
        config()
            .port(port)
            .token(token)
            .client_ca_pem(devices.pem()),
    )
    .unwrap();
    sender.wait_until_drained(WAIT).unwrap();
    let stats = sender.stats().unwrap();
    assert_eq!((stats.sent, stats.dead_letters), (30, 0));
    assert!(stats.pause.is_none());
    let stored = common::ids_by_stream(server.store());
    assert_eq!(stored, common::outbox_ids_by_stream(&kit), "in order");
    sender.shutdown();
}

#[test]
fn serve_keeps_its_limits_over_tls() {
    let ca = Ca::new("fleet CA");
    let pair = ca.server();
    let server = Server::start(
        ServerConfig::new()
            .tls_pem(pair.cert, pair.key)
            .head_timeout(Duration::from_secs(1))
            .max_connections(2),
    )
    .unwrap();
    // A client that connects and never starts the handshake is closed at
    // the head deadline, as one that never sends a request head is.
    let mut silent = TcpStream::connect(server.addr()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 64];
    match silent.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
    // Two idle keep-alive TLS connections hold both slots; a new client
    // takes the slot of the one that has waited longest.
    let write = |store: &eventodb_kit::HttpStore| {
        store.write(
            "slot-1",
            &NewMessage::new("Took", json!({})),
            &WriteOptions::new(),
        )
    };
    let first = store(&server.url(), &token(&server), trusting(&ca));
    let second = store(&server.url(), &token(&server), trusting(&ca));
    write(&first).unwrap();
    write(&second).unwrap();
    let third = store(&server.url(), &token(&server), trusting(&ca));
    write(&third).unwrap();
    assert_eq!(server.store().stream_version("slot-1").unwrap(), Some(2));
}
