//! TLS as deployments use it, against `serve` over HTTPS with certificates
//! made in the test: a private CA, mutual TLS accepted and refused, the
//! refusals a user meets (unknown CA, wrong host name, expired certificate)
//! with errors that say which, settings from the environment, and the
//! outbox → serve → consumer pipeline with SSE pokes over TLS.
#![cfg(feature = "server")]

mod consumer_support;
mod pki;

use std::time::Duration;

use eventodb_kit::outbox::Delivery;
use eventodb_kit::{
    ConnectionState, Disposition, Error, HttpStore, KitBuilder, MessageStore, NewMessage,
    PauseReason, SubscribeTarget, TlsSettings, TransportErrorKind, WriteOptions,
};
use serde_json::json;

use consumer_support::{effects, kit_over, record_effect, DEADLINE};
use pki::{store, tls_server, trusting, Ca};

fn token(server: &eventodb_kit::server::Server) -> String {
    server.default_token().unwrap().expose_secret().to_string()
}

fn write(store: &dyn MessageStore, stream: &str) -> Result<i64, Error> {
    store
        .write(
            stream,
            &NewMessage::new("Happened", json!({})),
            &WriteOptions::new(),
        )
        .map(|w| w.global_position)
}

/// The TLS error's message, after checking it is one and that a sender
/// would pause on it.
fn tls_refusal(result: Result<i64, Error>) -> String {
    match result {
        Err(
            e @ Error::Transport {
                kind: TransportErrorKind::Tls,
                ..
            },
        ) => {
            assert_eq!(e.disposition(), Disposition::Pause(PauseReason::TlsRefused));
            e.to_string()
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[test]
fn a_private_ca_carries_rpc_and_sse() {
    let ca = Ca::new("fleet CA");
    let server = tls_server(&ca.server(), None);
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let store = store(&server.url(), &token(&server), trusting(&ca));
    let sub = store
        .subscribe_sse(&SubscribeTarget::stream("order-1", 0))
        .unwrap();
    assert!(sub
        .status()
        .wait_for_state(ConnectionState::Connected, DEADLINE));
    let at = write(&store, "order-1").unwrap();
    let poke = sub.subscription().recv_timeout(DEADLINE).unwrap();
    assert_eq!(poke.global_position, at);
    // The private CA on top of the built-in roots works as well.
    let on_top = TlsSettings::new()
        .add_root_certificates_pem(ca.pem())
        .unwrap();
    let both = pki::store(&server.url(), &token(&server), on_top);
    assert_eq!(both.stream_version("order-1").unwrap(), Some(0));
}

#[test]
fn mutual_tls_accepts_the_fleets_devices_and_refuses_others() {
    let ca = Ca::new("fleet CA");
    let devices = Ca::new("device CA");
    let server = tls_server(&ca.server(), Some(&devices));
    let device = devices.client("device-17");
    let with_cert = trusting(&ca)
        .client_certificate_pem(&device.cert, &device.key)
        .unwrap();
    assert!(with_cert.has_client_certificate());
    let good = store(&server.url(), &token(&server), with_cert);
    write(&good, "telemetry-1").unwrap();
    let sub = good.subscribe_sse(&SubscribeTarget::all(0)).unwrap();
    assert!(sub
        .status()
        .wait_for_state(ConnectionState::Connected, DEADLINE));

    let without = store(&server.url(), &token(&server), trusting(&ca));
    let message = tls_refusal(write(&without, "telemetry-1"));
    assert!(
        message.contains("requires a client certificate"),
        "{message}"
    );

    let stranger = Ca::new("someone else's CA").client("device-17");
    let foreign = trusting(&ca)
        .client_certificate_pem(&stranger.cert, &stranger.key)
        .unwrap();
    let refused = store(&server.url(), &token(&server), foreign);
    let message = tls_refusal(write(&refused, "telemetry-1"));
    assert!(
        message.contains("refused the client certificate"),
        "{message}"
    );
    // The event stream is refused the same way, and says so.
    let sub = refused.subscribe_sse(&SubscribeTarget::all(0)).unwrap();
    assert!(sub.status().wait_until(DEADLINE, |s| s.disconnects > 0));
    let last = sub.status().snapshot().last_error.unwrap();
    assert!(last.contains("client certificate"), "{last}");
}

#[test]
fn refusals_say_which_certificate_is_wrong() {
    let ca = Ca::new("fleet CA");
    // A CA the client does not know.
    let server = tls_server(&ca.server(), None);
    let unknown = store(&server.url(), &token(&server), TlsSettings::new());
    let message = tls_refusal(write(&unknown, "a-1"));
    assert!(message.contains("unknown CA"), "{message}");
    drop(server);
    // A certificate for another host.
    let server = tls_server(&ca.server_for("events.example.com"), None);
    let elsewhere = store(&server.url(), &token(&server), trusting(&ca));
    let message = tls_refusal(write(&elsewhere, "a-1"));
    assert!(message.contains("hostname mismatch"), "{message}");
    drop(server);
    // An expired certificate.
    let server = tls_server(&ca.expired_server(), None);
    let expired = store(&server.url(), &token(&server), trusting(&ca));
    let message = tls_refusal(write(&expired, "a-1"));
    assert!(message.contains("expired"), "{message}");
    // A plain-HTTP client of a TLS server gets no answer it could mistake.
    let plain = HttpStore::new(
        &server.url().replace("https://", "http://"),
        &token(&server),
    )
    .unwrap();
    assert!(write(&plain, "a-1").is_err());
}

#[test]
fn settings_from_the_environment_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("fleet CA");
    let devices = Ca::new("device CA");
    let device = devices.client("device-1");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (ca_file, cert_file, key_file) = (
        file("ca.pem", &ca.pem()),
        file("device.pem", &device.cert),
        file("device.key", &device.key),
    );
    let server = tls_server(&ca.server(), Some(&devices));
    let url = server.url();
    let token = token(&server);
    let vars = |overrides: Vec<(&'static str, String)>| {
        let mut all = vec![
            ("EVENTODB_URL", url.clone()),
            ("EVENTODB_TOKEN", token.clone()),
            ("EVENTODB_CA_CERT", ca_file.clone()),
            ("EVENTODB_CLIENT_CERT", cert_file.clone()),
            ("EVENTODB_CLIENT_KEY", key_file.clone()),
        ];
        for (k, v) in overrides {
            all.retain(|(name, _)| *name != k);
            if !v.is_empty() {
                all.push((k, v));
            }
        }
        move |name: &str| all.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    };
    let kit = KitBuilder::from_lookup(vars(vec![]))
        .unwrap()
        .build()
        .unwrap();
    write(kit.store().as_ref(), "env-1").unwrap();

    let not_pem = file("garbage.pem", "hello");
    for (overrides, names) in [
        (
            vec![("EVENTODB_CA_CERT", "/nonexistent/ca.pem".to_string())],
            "EVENTODB_CA_CERT",
        ),
        (
            vec![("EVENTODB_CA_CERT", not_pem.clone())],
            "EVENTODB_CA_CERT",
        ),
        (
            vec![("EVENTODB_CLIENT_CERT", not_pem.clone())],
            "EVENTODB_CLIENT_CERT",
        ),
        (
            vec![("EVENTODB_CLIENT_KEY", not_pem.clone())],
            "EVENTODB_CLIENT_KEY",
        ),
        // A key that belongs to another certificate.
        (
            vec![(
                "EVENTODB_CLIENT_KEY",
                file("other.key", &devices.client("x").key),
            )],
            "EVENTODB_CLIENT_KEY",
        ),
        (
            vec![("EVENTODB_CLIENT_KEY", String::new())],
            "EVENTODB_CLIENT_KEY",
        ),
    ] {
        match KitBuilder::from_lookup(vars(overrides)) {
            Err(Error::InvalidInput(m)) => assert!(m.contains(names), "{names}: {m}"),
            other => panic!("{names}: {other:?}"),
        }
    }
}

#[test]
fn outbox_to_serve_to_consumer_over_mutual_tls_with_pokes() {
    let ca = Ca::new("fleet CA");
    let devices = Ca::new("device CA");
    let server = tls_server(&ca.server(), Some(&devices));
    let device = devices.client("device-9");
    let tls = trusting(&ca)
        .client_certificate_pem(&device.cert, &device.key)
        .unwrap();
    let store = store(&server.url(), &token(&server), tls);
    let dir = tempfile::tempdir().unwrap();
    let kit = kit_over(dir.path(), store.clone());
    // Polling practically never: only a poke over TLS can wake it in time.
    let consumer = kit
        .consumer("reading", "dashboard")
        .poll_interval(Duration::from_secs(3600))
        .spawn(|msg, tx| record_effect("dashboard", msg, tx))
        .unwrap();
    assert!(store
        .watch_status()
        .wait_for_state(ConnectionState::Connected, DEADLINE));
    let sender = kit.spawn_sender(kit.sender_config().clone()).unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = kit
            .outbox()
            .write(
                &format!("reading-{n}"),
                &NewMessage::new("Read", json!({ "n": n })),
            )
            .unwrap();
        ids.push(id);
    }
    for id in &ids {
        assert!(matches!(
            sender.wait_until_sent(id, DEADLINE).unwrap(),
            Delivery::Sent
        ));
    }
    let last = store
        .get_category("reading", &Default::default())
        .unwrap()
        .last()
        .unwrap()
        .global_position;
    consumer.wait_for_position(last, DEADLINE).unwrap();
    assert_eq!(effects(&kit, "dashboard").len(), 5);
    assert_eq!(store.watch_status().snapshot().connects, 1);
    sender.shutdown();
    consumer.shutdown();
}
