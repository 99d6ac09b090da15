//! `KitBuilder::from_lookup` (what `Kit::from_env` reads) for every store
//! URL scheme, the errors a user can make, consumer and sender settings from
//! the environment, and builder settings overriding it.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use eventodb_kit::consumer::FailurePolicy;
use eventodb_kit::{
    EmbeddedStore, KitBuilder, MessageStore, NewMessage, StreamQuery, WriteOptions,
};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(20);

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn from(vars: &[(&str, &str)]) -> eventodb_kit::Result<KitBuilder> {
    KitBuilder::from_lookup(lookup(vars))
}

fn write_one(store: &dyn MessageStore, stream: &str) {
    store
        .write(
            stream,
            &NewMessage::new("Noted", json!({})),
            &WriteOptions::new(),
        )
        .unwrap();
}

/// `path` relative to the working directory (with `..` as needed).
fn relative_to_cwd(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let (a, b): (Vec<Component>, Vec<Component>) =
        (cwd.components().collect(), path.components().collect());
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c);
    }
    out
}

#[test]
fn nothing_set_is_the_embedded_default_in_memory() {
    let kit = from(&[]).unwrap().build().unwrap();
    assert_eq!(kit.db().path(), None);
    assert_eq!(kit.namespace(), "default");
    write_one(kit.store().as_ref(), "note-1");
    assert_eq!(kit.store().stream_version("note-1").unwrap(), Some(0));
}

#[test]
fn the_kit_database_alone_holds_the_embedded_store_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.db");
    let kit = from(&[("EVENTODB_KIT_DB", file.to_str().unwrap())])
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(kit.db().path(), Some(file.as_path()));
    write_one(kit.store().as_ref(), "note-1");
    let again = EmbeddedStore::open(&file).unwrap();
    assert_eq!(again.stream_version("note-1").unwrap(), Some(0));
}

#[test]
fn embedded_urls_absolute_relative_and_in_memory() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let absolute = dir.path().join("abs.db");
    let url = format!("embedded://{}", absolute.display());
    let kit = from(&[("EVENTODB_URL", &url)]).unwrap().build().unwrap();
    assert_eq!(
        kit.db().path(),
        Some(absolute.as_path()),
        "kit tables in the store's file"
    );
    write_one(kit.store().as_ref(), "note-1");
    assert!(EmbeddedStore::open(&absolute)
        .unwrap()
        .stream_version("note-1")
        .unwrap()
        .is_some());

    let relative = relative_to_cwd(&dir.path().join("rel.db"));
    assert!(relative.is_relative());
    let url = format!("embedded:{}", relative.display());
    let kit_db = dir.path().join("kit.db");
    let kit = from(&[
        ("EVENTODB_URL", &url),
        ("EVENTODB_KIT_DB", kit_db.to_str().unwrap()),
    ])
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(kit.db().path(), Some(kit_db.as_path()));
    write_one(kit.store().as_ref(), "note-2");
    let store = EmbeddedStore::open(dir.path().join("rel.db")).unwrap();
    assert_eq!(store.stream_version("note-2").unwrap(), Some(0));

    let kit = from(&[("EVENTODB_URL", "embedded::memory:")])
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(kit.db().path(), None);
    write_one(kit.store().as_ref(), "note-3");

    // With a token, an embedded store works in the token's namespace.
    let token = format!("ns_dGVuYW50LWE_{}", "0".repeat(64));
    let kit = from(&[
        ("EVENTODB_URL", "embedded::memory:"),
        ("EVENTODB_TOKEN", &token),
    ])
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(kit.namespace(), "tenant-a");
}

#[cfg(feature = "server")]
#[test]
fn an_http_url_with_a_token_talks_to_the_server() {
    use eventodb_kit::server::{Server, ServerConfig};
    let server = Server::start(ServerConfig::new()).unwrap();
    let token = server.default_token().unwrap().expose_secret().to_string();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let kit = from(&[
        ("EVENTODB_URL", &server.url()),
        ("EVENTODB_TOKEN", &token),
        ("EVENTODB_KIT_DB", db.to_str().unwrap()),
    ])
    .unwrap()
    .build()
    .unwrap();
    write_one(kit.store().as_ref(), "note-1");
    let on_server = server
        .store()
        .get_stream("note-1", &StreamQuery::new())
        .unwrap();
    assert_eq!(on_server.len(), 1);
    assert!(
        !format!("{kit:?}").contains(&token[20..]),
        "the token never shows"
    );
    // The same through code: KitBuilder::url and token.
    let kit = KitBuilder::default()
        .url(server.url())
        .token(token.as_str())
        .build()
        .unwrap();
    assert_eq!(kit.store().stream_version("note-1").unwrap(), Some(0));
    server.shutdown();
}

#[test]
fn configuration_mistakes_are_explained_without_the_token() {
    let err = |vars: &[(&str, &str)]| from(vars).unwrap_err().to_string();
    let e = err(&[("EVENTODB_URL", "ftp://example.com")]);
    assert!(e.contains("EVENTODB_URL") && e.contains("\"ftp\""), "{e}");
    assert!(
        e.contains("http://") && e.contains("embedded:"),
        "says what works: {e}"
    );
    let e = err(&[("EVENTODB_URL", "http://127.0.0.1:8080")]);
    assert!(e.contains("EVENTODB_TOKEN"), "{e}");
    let secret = format!("ns_ZGVmYXVsdA_{}zz", "ab".repeat(31));
    let e = err(&[
        ("EVENTODB_URL", "http://127.0.0.1:8080"),
        ("EVENTODB_TOKEN", &secret),
    ]);
    assert!(
        e.contains("EVENTODB_TOKEN") && e.contains("does not parse"),
        "{e}"
    );
    assert!(
        !e.contains(&"ab".repeat(31)),
        "the token text is not repeated: {e}"
    );
    let e = err(&[("EVENTODB_URL", "embedded:")]);
    assert!(
        e.contains("EVENTODB_URL") && e.contains("names no file"),
        "{e}"
    );
    let e = err(&[("CONSUMER_STALLED_AFTER", "later")]);
    assert!(e.contains("CONSUMER_STALLED_AFTER"), "{e}");
    let e = err(&[("OUTBOX_CONCURRENCY", "many")]);
    assert!(e.contains("OUTBOX_CONCURRENCY"), "{e}");
    let e = err(&[("EVENTODB_KIT_LOG_SQL", "sometimes")]);
    assert!(e.contains("EVENTODB_KIT_LOG_SQL"), "{e}");
    // A token set in code for an HTTP URL set in code is checked at build.
    let e = KitBuilder::default()
        .url("http://127.0.0.1:8080")
        .token("not-a-token-but-a-secret")
        .build()
        .unwrap_err()
        .to_string();
    assert!(!e.contains("not-a-token-but-a-secret"), "{e}");
}

#[test]
fn consumer_and_sender_settings_apply_and_the_builder_overrides_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let builder = from(&[
        ("EVENTODB_KIT_DB", db.to_str().unwrap()),
        ("CONSUMER_BATCH_SIZE", "1"),
        ("CONSUMER_FAILURE_POLICY", "stop"),
        ("CONSUMER_RETRY_MAX_ATTEMPTS", "1"),
        ("CONSUMER_STALLED_AFTER", "5m"),
        ("OUTBOX_BATCH_SIZE", "7"),
        ("EVENTODB_KIT_LOG_SQL", "false"),
    ])
    .unwrap();
    let kit = builder.build().unwrap();
    assert_eq!(kit.stalled_after(), Duration::from_secs(300));
    assert_eq!(kit.sender_config().batch_size_value(), 7);
    assert_eq!(
        kit.consumer_defaults().failure_policy_value(),
        FailurePolicy::Stop
    );

    for i in 0..3 {
        write_one(kit.store().as_ref(), &format!("task-{i}"));
    }
    // Batch size 1 from the environment: three batches for three messages.
    let c = kit
        .consumer("task", "worker")
        .spawn(|_m, _tx| Ok(()))
        .unwrap();
    c.wait_for_position(3, DEADLINE).unwrap();
    assert_eq!(c.stats().batches_fetched, 3);
    c.shutdown();
    // The stop policy from the environment halts a failing consumer.
    let failing = kit
        .consumer("task", "failing")
        .spawn_typed(|_m, _tx| Err::<(), _>("no"))
        .unwrap();
    assert!(failing.wait_for_position(1, DEADLINE).is_err());
    assert!(matches!(
        failing.health(),
        eventodb_kit::ConsumerHealth::Halted { .. }
    ));
    // A builder setting wins over the environment.
    let c = kit
        .consumer("task", "batched")
        .batch_size(100)
        .spawn(|_m, _tx| Ok(()))
        .unwrap();
    c.wait_for_position(3, DEADLINE).unwrap();
    assert_eq!(c.stats().batches_fetched, 1);
    c.shutdown();

    let other = dir.path().join("other.db");
    let kit = from(&[
        ("EVENTODB_KIT_DB", db.to_str().unwrap()),
        ("CONSUMER_STALLED_AFTER", "5m"),
    ])
    .unwrap()
    .database(&other)
    .stalled_after(Duration::from_secs(1))
    .build()
    .unwrap();
    assert_eq!(kit.db().path(), Some(other.as_path()));
    assert_eq!(kit.stalled_after(), Duration::from_secs(1));
}
