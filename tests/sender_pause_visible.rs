//! A paused sender seen from outside its process: the pause is stored with
//! the sender's lease, so a second kit on the same database file (as
//! another process, or `eventodb-kit status`, opens it) sees why and since
//! when — in `Kit::metrics`, the Prometheus text, `Kit::health` and the
//! command-line tool — and sees it end.

mod common;

#[cfg(feature = "cli")]
mod cli_support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use eventodb_kit::health::HealthStatus;
use eventodb_kit::outbox::{OutboxEntry, PauseState};
use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{render_prometheus, HttpStore, Kit, NewMessage, PauseReason, RetryPolicy};
use serde_json::json;

const NAMESPACE: &str = "tenant-a";

fn entries(from: usize, n: usize) -> Vec<OutboxEntry> {
    (from..from + n)
        .map(|i| OutboxEntry::new("order-1", NewMessage::new("Counted", json!({ "i": i }))))
        .collect()
}

/// The sender's pause as another kit on the file sees it.
fn stored_pause(observer: &Kit) -> Option<PauseState> {
    observer.metrics().unwrap().outbox.sender_pause().cloned()
}

#[test]
fn a_refused_token_is_seen_from_another_kit_and_its_end_too() {
    let server = Server::start(ServerConfig::new()).unwrap();
    let token = format!("ns_dGVuYW50LWE_{}", "7".repeat(64));
    server
        .store()
        .create_namespace(NAMESPACE, "", Some(&token))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db"); // the file kit_with_store opens
    let app = common::kit_with_store(dir.path(), HttpStore::new(&server.url(), &token).unwrap());
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(100));
    let sender = app.spawn_sender(common::fast().retry(retry)).unwrap();
    app.outbox().write_batch(&entries(0, 5)).unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();

    // Another process's view: a kit of its own on the same file, with
    // nothing spawned.
    let observer =
        common::kit_with_store(dir.path(), HttpStore::new(&server.url(), &token).unwrap());
    let m = observer.metrics().unwrap();
    assert!(m.outbox.sender.is_none(), "the observer runs no sender");
    assert!(m.outbox.lease.as_ref().unwrap().held);
    assert!(m.outbox.sender_pause().is_none());
    assert_eq!(observer.health().status, HealthStatus::Ok);

    // The namespace is deleted (its token with it): the sender pauses.
    let started = SystemTime::now();
    server.store().delete_namespace(NAMESPACE).unwrap();
    app.outbox().write_batch(&entries(5, 10)).unwrap();
    common::wait_for("the pause in the lease row", common::WAIT, || {
        stored_pause(&observer).is_some()
    });
    let pause = stored_pause(&observer).unwrap();
    assert_eq!(pause.reason, PauseReason::AuthRefused);
    assert!(pause.since >= started - Duration::from_secs(1), "{pause:?}");
    assert!(!pause.error.is_empty());
    let lease = observer.outbox().sender_lease().unwrap().unwrap();
    assert_eq!(lease.pause.as_ref().map(|p| p.reason), Some(pause.reason));
    assert!(!lease.pause.unwrap().error.contains(&token[15..]));

    let text = render_prometheus(&observer.metrics().unwrap());
    for (reason, value) in [("unreachable", 0), ("auth_refused", 1), ("tls_refused", 0)] {
        let line = format!(
            "eventodb_kit_outbox_sender_paused{{namespace=\"{NAMESPACE}\",reason=\"{reason}\"}} {value}\n"
        );
        assert!(text.contains(&line), "{line} in:\n{text}");
    }
    assert!(text.contains("eventodb_kit_outbox_sender_paused_seconds{namespace=\"tenant-a\"}"));

    let health = observer.health();
    assert_eq!(health.status, HealthStatus::Down, "{:?}", health.reasons);
    assert!(
        health
            .reasons
            .iter()
            .any(|r| r.contains("outbox sender") && r.contains("token refused")),
        "{:?}",
        health.reasons
    );
    // The app's own kit says the same from its live sender.
    let own = app.health();
    assert_eq!(own.status, HealthStatus::Down, "{:?}", own.reasons);
    assert_eq!(
        own.senders[0].pause.as_ref().map(|p| p.reason),
        Some(PauseReason::AuthRefused)
    );
    assert_eq!(
        app.metrics()
            .unwrap()
            .outbox
            .sender
            .unwrap()
            .pause
            .map(|p| p.reason),
        Some(PauseReason::AuthRefused)
    );

    #[cfg(feature = "cli")]
    status_shows_the_pause(&db, &server.url(), &token);

    // The namespace comes back with the same token: the pause ends, and
    // the row says so.
    server
        .store()
        .create_namespace(NAMESPACE, "", Some(&token))
        .unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();
    common::wait_for("the pause's end in the lease row", common::WAIT, || {
        stored_pause(&observer).is_none()
    });
    let m = observer.metrics().unwrap();
    assert!(m.outbox.lease.as_ref().unwrap().held);
    assert_eq!(m.outbox.backlog, 0);
    assert_eq!(m.outbox.dead_letters, 0);
    assert_eq!(observer.health().status, HealthStatus::Ok);

    // Released on shutdown: nothing stays behind in the row.
    sender.shutdown();
    let lease = observer.outbox().sender_lease().unwrap().unwrap();
    assert!(!lease.is_held_at(SystemTime::now()));
    assert!(lease.pause.is_none());
    server.shutdown();
}

/// `eventodb-kit status` (with nothing running in its own process) shows
/// the pause on its screen and in `--json`.
#[cfg(feature = "cli")]
fn status_shows_the_pause(db: &Path, url: &str, token: &str) {
    use cli_support::{cli, s};
    let args = |json: bool| {
        let mut a = vec![
            "status",
            "--db",
            s(db),
            "--url",
            url,
            "--token",
            token,
            "--namespace",
            NAMESPACE,
        ];
        if json {
            a.push("--json");
        }
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |json: bool| {
        let args = args(json);
        cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // The store refuses the token, so the tool also fails (and says why);
    // the status is printed all the same.
    let text = run(false);
    assert_ne!(text.code, 0, "{text:?}");
    assert!(
        text.stdout
            .contains("sender paused  (token refused) since "),
        "{text:?}"
    );
    assert!(!text.stdout.contains(token) && !text.stderr.contains(token));
    let json = run(true);
    let pause = &json.json()["outbox"]["lease"]["pause"];
    assert_eq!(pause["reason"], "auth_refused", "{json:?}");
    assert!(pause["since"].as_str().unwrap().ends_with('Z'), "{pause}");
    assert!(!pause["error"].as_str().unwrap().is_empty());
}
