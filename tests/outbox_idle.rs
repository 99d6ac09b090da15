//! An idle sender, and one backing off from a failing store, sleeps: its
//! threads use next to no CPU (a busy loop would burn a whole core). Reads
//! per-thread CPU time from Linux's /proc; a file of its own so only this
//! test's sender threads are measured.

mod common;

use std::time::Duration;

use eventodb_kit::{DbOptions, EmbeddedStore, NewMessage, RetryPolicy};
use serde_json::json;

/// CPU time (user + system) used so far by this process's `outbox-*` threads.
fn sender_cpu() -> Duration {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("outbox-") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the ")" that ends the thread name: state is 3rd, utime 14th, stime 15th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace()
            .collect();
        if fields.len() > 12 {
            ticks +=
                fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
        }
    }
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

fn cpu_over(window: Duration) -> Duration {
    let before = sender_cpu();
    std::thread::sleep(window); // measuring over a fixed window is the point here
    sender_cpu() - before
}

#[test]
fn idle_and_backing_off_senders_do_not_spin() {
    if !std::path::Path::new("/proc/self/task").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(
        dir.path().join("store.db"),
        DbOptions::new().busy_timeout(Duration::from_millis(5)),
    )
    .unwrap();
    let kit = common::kit_with_store(dir.path(), store);
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .max_delay(Duration::from_millis(200));
    let sender = kit
        .spawn_sender(common::fast().retry(retry).concurrency(2))
        .unwrap();
    let id = kit
        .outbox()
        .write("a-1", &NewMessage::new("T", json!({})))
        .unwrap();
    let _ = sender.wait_until_sent(&id, common::WAIT).unwrap();

    let idle = cpu_over(Duration::from_millis(500));
    assert!(
        idle < Duration::from_millis(100),
        "idle sender used {idle:?} of CPU"
    );

    // The store refuses writes; several streams wait for their retries.
    let lock = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for s in 0..5 {
        for _ in 0..3 {
            let message = NewMessage::new("T", json!({}));
            kit.outbox().write(&format!("b-{s}"), &message).unwrap();
        }
    }
    common::wait_for("retries", common::WAIT, || {
        sender.stats().unwrap().retried >= 5
    });
    let backing_off = cpu_over(Duration::from_millis(500));
    assert!(
        backing_off < Duration::from_millis(150),
        "a sender backing off used {backing_off:?} of CPU"
    );
    lock.execute_batch("ROLLBACK").unwrap();
    sender.wait_until_drained(common::WAIT).unwrap();
    sender.shutdown();
}
