//! Logging: `log_sql` traces every statement on `eventodb_kit::sql` without
//! bound values, log targets name the kit's modules, the `LogHook` logs on
//! `eventodb_kit::hook`, the in-memory warning of `from_env`, and no record
//! ever contains a token. One test, because `log` has one global logger.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use eventodb_kit::{Kit, KitBuilder, LogHook, NewMessage};
use log::{Level, Log, Metadata, Record};
use serde_json::json;

#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    target: String,
    message: String,
}

#[derive(Default)]
struct Capture {
    records: Mutex<Vec<Captured>>,
}

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &Record<'_>) {
        self.records.lock().unwrap().push(Captured {
            level: record.level(),
            target: record.target().to_string(),
            message: record.args().to_string(),
        });
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::default());
        log::set_logger(capture).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
        capture
    })
}

fn take() -> Vec<Captured> {
    std::mem::take(&mut *capture().records.lock().unwrap())
}

#[test]
fn logging() {
    take();
    // Without log_sql: no statement is traced.
    let dir = tempfile::tempdir().unwrap();
    let quiet = Kit::builder()
        .database(dir.path().join("quiet.db"))
        .build()
        .unwrap();
    quiet
        .outbox()
        .write("order-1", &NewMessage::new("Placed", json!({})))
        .unwrap();
    assert!(take().iter().all(|r| r.target != "eventodb_kit::sql"));

    // With it: every statement, at debug, with placeholders, not values.
    let kit = Kit::builder()
        .database(dir.path().join("app.db"))
        .log_sql(true)
        .hook(Arc::new(LogHook))
        .build()
        .unwrap();
    kit.outbox()
        .write(
            "order-1",
            &NewMessage::new("Placed", json!({ "card": "4111-bound-value" })),
        )
        .unwrap();
    let records = take();
    let sql: Vec<&Captured> = records
        .iter()
        .filter(|r| r.target == "eventodb_kit::sql")
        .collect();
    assert!(
        sql.iter()
            .any(|r| r.message.starts_with("INSERT INTO evento_outbox")),
        "{sql:#?}"
    );
    assert!(sql.iter().all(|r| r.level == Level::Debug));
    assert!(
        records
            .iter()
            .all(|r| !r.message.contains("4111-bound-value")),
        "bound values are never logged"
    );

    // The LogHook on its target.
    let sender = kit.spawn_sender(common::fast()).unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();
    sender.shutdown();
    let records = take();
    let hook: Vec<&Captured> = records
        .iter()
        .filter(|r| r.target == "eventodb_kit::hook")
        .collect();
    assert!(
        hook.iter().any(|r| r.message.contains("started")),
        "{hook:#?}"
    );
    assert!(
        hook.iter().any(|r| r.message.starts_with("delivered")),
        "{hook:#?}"
    );
    // The kit's own records are on targets under `eventodb_kit`.
    assert!(
        records
            .iter()
            .all(|r| r.target.starts_with("eventodb_kit") || r.target.starts_with("r2d2")),
        "{records:#?}"
    );

    // from_env without a database file warns at build.
    KitBuilder::from_lookup(|_| None).unwrap().build().unwrap();
    let records = take();
    assert!(
        records.iter().any(|r| r.level == Level::Warn
            && r.target == "eventodb_kit::kit"
            && r.message.contains("EVENTODB_KIT_DB")),
        "{records:#?}"
    );

    #[cfg(feature = "server")]
    tokens_are_never_logged();
}

/// An HTTP round trip with everything that logs — SQL tracing, the log
/// hook, a consumer over SSE, the server stopping under a running sender
/// and consumer (errors, reconnects) — and no record contains the token.
#[cfg(feature = "server")]
fn tokens_are_never_logged() {
    use eventodb_kit::server::{Server, ServerConfig};
    use std::time::Duration;

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::new().data_dir(data.path())).unwrap();
    let token = server.default_token().unwrap().expose_secret().to_string();
    let secret = token.rsplit('_').next().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = server.url();
    let kit = KitBuilder::from_lookup(|name| match name {
        "EVENTODB_URL" => Some(url.clone()),
        "EVENTODB_TOKEN" => Some(token.clone()),
        "EVENTODB_KIT_DB" => Some(db.to_str().unwrap().to_string()),
        "EVENTODB_KIT_LOG_SQL" => Some("true".into()),
        _ => None,
    })
    .unwrap()
    .hook(Arc::new(LogHook))
    .build()
    .unwrap();
    let sender = kit.spawn_sender(common::fast()).unwrap();
    let consumer = kit
        .consumer("order", "audit")
        .poll_interval(Duration::from_millis(20))
        .spawn(|_m, _tx| Ok(()))
        .unwrap();
    let id = kit
        .outbox()
        .write("order-1", &NewMessage::new("Placed", json!({})))
        .unwrap();
    let _ = sender.wait_until_sent(&id, common::WAIT).unwrap();
    consumer.wait_for_position(1, common::WAIT).unwrap();
    let _ = kit.metrics().unwrap();
    server.shutdown();
    kit.outbox()
        .write("order-2", &NewMessage::new("Placed", json!({})))
        .unwrap();
    common::wait_for("the sender to pause", common::WAIT, || {
        sender.stats().unwrap().pause.is_some()
    });
    let _ = kit.health();
    let _ = kit.metrics().unwrap();
    sender.shutdown();
    consumer.shutdown();
    let records = take();
    assert!(records
        .iter()
        .any(|r| r.target.starts_with("eventodb_kit::outbox")));
    assert!(records.iter().any(|r| r.target == "eventodb_kit::sql"));
    for r in &records {
        assert!(
            !r.message.contains(&secret) && !r.message.contains(&token),
            "a token in a log record: {r:?}"
        );
    }
}
