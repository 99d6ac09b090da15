//! `HttpStore` beyond the `MessageStore` contract: namespaces, system calls,
//! `/health`, `/version`, NDJSON import/export, and how failures reach the
//! caller (auth, not found, transport) — against the project's server.
#![cfg(feature = "server")]

#[path = "common/closed_port.rs"]
mod closed_port;
mod support;

use closed_port::ClosedPort;

use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{
    CategoryQuery, Error, HttpStore, MessageStore, NewMessage, StreamQuery, TransportErrorKind,
    WriteOptions,
};
use serde_json::json;

fn started() -> (Server, HttpStore) {
    let server = Server::start(ServerConfig::new()).unwrap();
    let admin = server.http_store().unwrap();
    (server, admin)
}

#[test]
fn namespace_administration() {
    let (_server, admin) = started();
    let created = admin.create_namespace("tenant-x", "X", None).unwrap();
    assert_eq!(created.namespace, "tenant-x");
    assert_eq!(created.token.namespace(), "tenant-x");
    let tenant = admin.with_token(&created.token);
    assert_eq!(tenant.namespace(), "tenant-x");
    tenant
        .write(
            "a-1",
            &NewMessage::new("T", json!({})),
            &WriteOptions::new(),
        )
        .unwrap();
    let info = admin.namespace_info("tenant-x").unwrap();
    assert_eq!((info.description.as_str(), info.message_count), ("X", 1));
    let names: Vec<String> = admin
        .list_namespaces()
        .unwrap()
        .into_iter()
        .map(|n| n.namespace)
        .collect();
    assert!(names.contains(&"tenant-x".to_string()));
    match admin.create_namespace("tenant-x", "", None) {
        Err(Error::Store { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (409, "NAMESPACE_EXISTS"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        admin.delete_namespace("tenant-x").unwrap().namespace,
        "tenant-x"
    );
    assert!(matches!(
        admin.namespace_info("tenant-x"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        admin.delete_namespace("tenant-x"),
        Err(Error::NotFound(_))
    ));
    match tenant.stream_version("a-1") {
        Err(e @ Error::Auth { status: 403, .. }) => {
            assert_eq!(
                e.disposition(),
                eventodb_kit::Disposition::Pause(eventodb_kit::PauseReason::AuthRefused),
                "a refused token pauses, it does not dead-letter"
            );
            assert!(!e.to_string().contains(&created.token.expose_secret()[20..]));
        }
        other => panic!("a deleted namespace's token is refused, got {other:?}"),
    }
    let chosen = format!("ns_dGVuYW50LXk_{}", "1".repeat(64));
    let y = admin
        .create_namespace("tenant-y", "", Some(&chosen))
        .unwrap();
    assert_eq!(y.token.expose_secret(), chosen);
    // EventoDB mints a token it cannot accept when the base64url form of the
    // id holds '_' (protocol §2.1): a clear, permanent error, not a
    // transient "unexpected answer" that a retry would turn into
    // NAMESPACE_EXISTS.
    match admin.create_namespace("ab?", "", None) {
        Err(e @ Error::InvalidInput(_)) => {
            assert!(!e.is_transient());
            assert!(e.to_string().contains("\"ab?\" was created"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn system_calls_health_and_version() {
    let (_server, admin) = started();
    assert_eq!(admin.system_version().unwrap(), "0.7.0");
    let health = admin.system_health().unwrap();
    assert_eq!(
        (health.status.as_str(), health.backend.as_str()),
        ("ok", "unknown")
    );
    admin.health().unwrap();
    assert_eq!(admin.server_version().unwrap(), "0.7.0");
    let raw = admin.call("ns.categories", vec![]).unwrap();
    assert_eq!(raw, json!([]));
    match admin.call("no.such", vec![]) {
        Err(Error::Store {
            status: 404,
            code,
            message,
        }) => {
            assert_eq!(
                (code.as_str(), message.as_str()),
                ("METHOD_NOT_FOUND", "Unknown method: no.such")
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn export_then_import_into_another_namespace() {
    let (_server, admin) = started();
    for n in 0..2500 {
        let msg = NewMessage::new("Counted", json!({ "n": n, "html": "<b>" }))
            .with_metadata(json!({ "k": n % 3 }));
        admin
            .write(&format!("counter-{}", n % 7), &msg, &WriteOptions::new())
            .unwrap();
    }
    let mut ndjson = Vec::new();
    assert_eq!(admin.export(&mut ndjson).unwrap(), 2500);
    let first_line = ndjson.split(|b| *b == b'\n').next().unwrap();
    let first: serde_json::Value = serde_json::from_slice(first_line).unwrap();
    assert_eq!(first["gpos"], 1);
    assert!(String::from_utf8_lossy(first_line).starts_with("{\"id\":"));

    let copy = admin.create_namespace("copy", "", None).unwrap();
    let copy = admin.with_token(&copy.token);
    let summary = copy.import(&ndjson, false).unwrap();
    assert_eq!(summary.imported, 2500);
    let original = admin
        .get_category("", &CategoryQuery::new().batch_size(-1))
        .unwrap();
    let imported = copy
        .get_category("", &CategoryQuery::new().batch_size(-1))
        .unwrap();
    assert_eq!(
        original, imported,
        "ids, positions, data, metadata and times are kept"
    );
    // Writes continue after the imported positions.
    let next = copy
        .write(
            "counter-0",
            &NewMessage::new("T", json!({})),
            &WriteOptions::new(),
        )
        .unwrap();
    assert_eq!(next.global_position, 2501);
    assert_eq!(
        next.position,
        original
            .iter()
            .filter(|m| m.stream_name == "counter-0")
            .count() as i64
    );

    // Importing the same records again collides; force=true replaces everything.
    match copy.import(&ndjson, false) {
        Err(Error::Store {
            status: 409,
            code,
            message,
        }) => {
            assert_eq!(code, "POSITION_EXISTS");
            assert!(
                message.contains("global position already exists: 1"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(copy.import(&ndjson, true).unwrap().imported, 2500);
    assert_eq!(
        copy.stream_version("counter-0").unwrap(),
        admin.stream_version("counter-0").unwrap()
    );

    let bad = b"{\"id\":\"a\",\"stream\":\"s-1\",\"type\":\"T\",\"pos\":0,\"gpos\":9000,\"data\":{},\"meta\":null,\"time\":\"2026-03-01T12:34:56Z\"}\nnot json\n";
    match copy.import(bad, false) {
        Err(Error::InvalidInput(m)) => assert!(m.starts_with("malformed JSON at line 2: "), "{m}"),
        other => panic!("{other:?}"),
    }
    let bad_time = b"{\"id\":\"b\",\"stream\":\"s-1\",\"type\":\"T\",\"pos\":0,\"gpos\":9001,\"data\":{},\"meta\":null,\"time\":\"yesterday\"}\n";
    match copy.import(bad_time, false) {
        Err(Error::InvalidInput(m)) => assert!(
            m.starts_with("invalid record at line 1: invalid time format"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        copy.get_stream("s-1", &StreamQuery::new())
            .unwrap()
            .is_empty(),
        "failed batches roll back"
    );
    assert_eq!(copy.import(b"", false).unwrap().imported, 0);
}

#[test]
fn transport_failures_are_transient_and_classified() {
    let closed = ClosedPort::new();
    let token = format!("ns_ZGVmYXVsdA_{}", "0".repeat(64));
    let store = HttpStore::new(&closed.url(), &token).unwrap();
    match store.stream_version("a-1") {
        Err(
            e @ Error::Transport {
                kind: TransportErrorKind::ConnectionRefused,
                ..
            },
        ) => {
            assert!(e.is_transient());
            assert!(!format!("{e} {e:?}").contains(&"0".repeat(64)));
        }
        other => panic!("{other:?}"),
    }
    // TLS to a plain-HTTP server fails the handshake.
    let server = Server::start(ServerConfig::new()).unwrap();
    let tls = HttpStore::new(&format!("https://{}", server.addr()), &token).unwrap();
    assert!(matches!(
        tls.health(),
        Err(Error::Transport {
            kind: TransportErrorKind::Tls,
            ..
        })
    ));
    assert!(matches!(
        HttpStore::new("ftp://x", &token),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        HttpStore::new("http://127.0.0.1:1", "nope"),
        Err(Error::InvalidInput(_))
    ));
    let wrong = HttpStore::new(&Server::start(ServerConfig::new()).unwrap().url(), &token);
    // (That server is already gone: dropping it shut it down.)
    assert!(matches!(
        wrong.unwrap().health(),
        Err(Error::Transport { .. })
    ));
}
