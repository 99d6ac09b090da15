//! Exactly-once local effects across crashes: a child process consumes a
//! category with a handler that inserts an effect row and is killed with
//! SIGKILL at random moments, round after round, while new events keep
//! arriving. After a final run every event has exactly one effect row.
//!
//! The child is this test binary again, run with `CRASH_CHILD_DB` set.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eventodb_kit::{CategoryQuery, Kit, NewMessage, WriteOptions};
use serde_json::json;

const CHILD_ENV: &str = "CRASH_CHILD_DB";
const TEST_NAME: &str = "sigkill_at_random_moments_never_loses_or_repeats_an_effect";
const ROUNDS: usize = 12;
const READY: &str = "crash-child-ready";

/// Kills the child when dropped, so a failing parent leaves nothing behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn open(path: &str) -> Kit {
    Kit::builder().database(path).build().unwrap()
}

fn write_events(kit: &Kit, from: usize, n: usize) {
    for i in from..from + n {
        let msg = NewMessage::new("Paid", json!({ "n": i }));
        kit.store()
            .write(&format!("invoice-{}", i % 40), &msg, &WriteOptions::new())
            .unwrap();
    }
}

fn spawn_consumer(kit: &Kit) -> eventodb_kit::ConsumerHandle {
    kit.consumer("invoice", "ledger")
        .batch_size(5)
        .poll_interval(Duration::from_millis(5))
        .spawn(|msg, tx| {
            tx.execute("INSERT INTO effects (event_id) VALUES (?1)", [&msg.id])?;
            Ok(())
        })
        .unwrap()
}

/// The child: consume until killed.
fn child(path: &str) -> ! {
    let kit = open(path);
    let _consumer = spawn_consumer(&kit);
    // The harness prints "test <name> ... " first, on the same line.
    println!("{READY}");
    loop {
        std::thread::park();
    }
}

#[test]
fn sigkill_at_random_moments_never_loses_or_repeats_an_effect() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db").to_str().unwrap().to_string();
    let kit = open(&path);
    kit.db()
        .write(|tx| {
            // No unique key: a repeated effect would show as a second row.
            tx.execute_batch("CREATE TABLE effects (event_id TEXT NOT NULL)")?;
            Ok(())
        })
        .unwrap();
    write_events(&kit, 0, 300);
    let mut written = 300;
    let mut killed_mid_way = 0;
    let position = || {
        kit.checkpoints()
            .get("invoice", "ledger")
            .unwrap()
            .map_or(0, |c| c.position)
    };
    for _ in 0..ROUNDS {
        write_events(&kit, written, 300);
        written += 300;
        let mut child = KillOnDrop(
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, &path)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.ends_with(READY));
        assert!(ready, "the child started consuming");
        // More events arrive while the child works (it polls for them:
        // pokes do not cross processes).
        write_events(&kit, written, 50);
        written += 50;
        // The random moment of the crash.
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..10_000)));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        eprintln!("crash round: position {} of {written}", position());
        if position() < written as i64 {
            killed_mid_way += 1;
        }
    }
    assert!(killed_mid_way > 0, "at least one kill landed mid-way");

    // The final run finishes the work in-process.
    let consumer = spawn_consumer(&kit);
    consumer
        .wait_for_position(written as i64, Duration::from_secs(60))
        .unwrap();
    consumer.shutdown();

    let events = kit
        .store()
        .get_category("invoice", &CategoryQuery::new().batch_size(-1))
        .unwrap();
    assert_eq!(events.len(), written);
    let effects: Vec<String> = kit
        .db()
        .read(|c| {
            let mut stmt = c.prepare("SELECT event_id FROM effects ORDER BY event_id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .unwrap();
    let mut ids: Vec<String> = events.into_iter().map(|m| m.id).collect();
    ids.sort();
    let repeated: Vec<&String> = effects
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    assert!(
        repeated.is_empty(),
        "events with two effect rows: {repeated:?}"
    );
    assert_eq!(effects, ids, "every event has exactly one effect row");
}
