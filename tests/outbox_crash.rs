//! Crash safety: a child process writes (business rows and their events
//! together) and sends in a loop and is killed with SIGKILL at random
//! moments, round after round; a final run drains the outbox, and then the
//! store holds every committed message exactly once, in commit order per
//! stream, and every business row has its event. Once with the embedded
//! store, once over HTTP to `serve` (in this process), where the child's
//! sender keeps many writes in flight on each connection — the kills land
//! mid-window.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use eventodb_kit::outbox::OutboxEntry;
use eventodb_kit::{Kit, NewMessage, WriteOptions};
use serde_json::json;

const ENTRY: &str = "child_process_entry";
const ROUNDS: usize = 12;
const STREAMS: u64 = 8;

fn outbox_rows(kit: &Kit) -> i64 {
    count(kit, "SELECT COUNT(*) FROM evento_outbox")
}

fn sent_rows(kit: &Kit) -> i64 {
    count(
        kit,
        "SELECT COUNT(*) FROM evento_outbox WHERE sent_at IS NOT NULL",
    )
}

fn count(kit: &Kit, sql: &str) -> i64 {
    kit.db()
        .read(|c| Ok(c.query_row(sql, [], |r| r.get(0))?))
        .unwrap()
}

#[test]
fn killed_mid_flight_round_after_round_nothing_is_lost_or_doubled() {
    let t = common::kit();
    crash_rounds(&t, &t.kit, &[]);
}

#[test]
fn killed_mid_window_over_http_round_after_round_nothing_is_lost_or_doubled() {
    use eventodb_kit::server::{Server, ServerConfig};
    let server = Server::start(ServerConfig::new()).unwrap();
    let token = server.default_token().unwrap().expose_secret().to_string();
    let url = server.url();
    let t = common::kit();
    let kit = Kit::builder()
        .database(t.path())
        .url(url.clone())
        .token(token.as_str())
        .build()
        .unwrap();
    crash_rounds(&t, &kit, &[(STORE_URL, &url), (STORE_TOKEN, &token)]);
    drop(kit);
    server.shutdown();
}

/// Child environment: the store the child delivers to (else the embedded one).
const STORE_URL: &str = "CRASH_TEST_STORE_URL";
const STORE_TOKEN: &str = "CRASH_TEST_STORE_TOKEN";

/// Rounds of a writing, sending child killed at random moments, then a
/// drain through `kit` (on the same file), then the checks.
fn crash_rounds(t: &common::TestKit, kit: &Kit, vars: &[(&str, &str)]) {
    t.kit
        .db()
        .write(|tx| {
            tx.execute_batch(
                "CREATE TABLE orders (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE)",
            )?;
            Ok(())
        })
        .unwrap();
    let outbox = t.kit.outbox();
    for _ in 0..ROUNDS {
        let (written, sent) = (outbox_rows(&t.kit), sent_rows(&t.kit));
        let mut child = common::spawn_child_with(ENTRY, "writer", &t.path(), vars);
        let holder = format!("pid {} ", child.id());
        // Once it writes and sends (it takes the lease over from the
        // previous child when that expires), kill it at a random moment.
        common::wait_for("the child to write and send", common::WAIT, || {
            let leading = outbox
                .sender_lease()
                .unwrap()
                .is_some_and(|l| l.holder.starts_with(&holder));
            leading && outbox_rows(&t.kit) >= written + 10 && sent_rows(&t.kit) >= sent + 10
        });
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..100)));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    let sender = kit.spawn_sender(common::fast().concurrency(2)).unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();
    sender.shutdown();

    let stored = common::all_messages(&**kit.store());
    let unique: HashSet<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(unique.len(), stored.len(), "no message twice");
    assert_eq!(
        stored.len() as i64,
        outbox_rows(&t.kit),
        "every committed message"
    );
    assert_eq!(
        common::ids_by_stream(&**kit.store()),
        common::outbox_ids_by_stream(&t.kit),
        "in commit order per stream"
    );
    let orphans: i64 = t
        .kit
        .db()
        .read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM orders WHERE event_id NOT IN (SELECT id FROM evento_outbox)",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(orphans, 0, "every business row committed with its event");
    assert!(stored.len() >= ROUNDS * 10);
}

/// Not a test: the body of the child processes above (runs only when the
/// test binary is started by `common::spawn_child`).
#[test]
fn child_process_entry() {
    let Some((role, db)) = common::child_role() else {
        return;
    };
    assert_eq!(role, "writer");
    let kit = match (std::env::var(STORE_URL), std::env::var(STORE_TOKEN)) {
        (Ok(url), Ok(token)) => Kit::builder()
            .database(&db)
            .url(url)
            .token(token.as_str())
            .build()
            .unwrap(),
        _ => common::kit_on(&db),
    };
    let config = common::fast()
        .concurrency(2)
        .lease_duration(Duration::from_millis(150));
    let _sender = kit.spawn_sender(config).unwrap();
    let outbox = kit.outbox();
    for n in 0u64.. {
        let stream = format!("account-{}", fastrand::u64(0..STREAMS));
        let message = NewMessage::new("Deposited", json!({ "n": n, "pid": std::process::id() }));
        match n % 4 {
            0 => {
                outbox.write(&stream, &message).unwrap();
            }
            1 => {
                let key =
                    WriteOptions::new().idempotency_key(format!("{}-{n}", std::process::id()));
                outbox.write_with(&stream, &message, &key).unwrap();
            }
            2 => {
                let entries: Vec<OutboxEntry> = (0..3)
                    .map(|i| {
                        OutboxEntry::new(format!("account-{}", (n + i) % STREAMS), message.clone())
                    })
                    .collect();
                outbox.write_batch(&entries).unwrap();
            }
            _ => {
                kit.db()
                    .write(|tx| {
                        let id = outbox.write_in(tx, &stream, &message)?;
                        tx.execute("INSERT INTO orders (event_id) VALUES (?1)", [&id])?;
                        Ok(())
                    })
                    .unwrap();
            }
        }
        // Pace the writes so the sender keeps up (the kill should find
        // sends in flight, not only a backlog).
        std::thread::sleep(Duration::from_micros(500));
    }
}
