//! The cleanup thread applies the outbox's and the consumers' retention,
//! runs again every interval, and ends on shutdown and on drop (as does the
//! metrics reporter). A file of its own, so no other test's threads are
//! counted.

mod common;

use std::time::Duration;

use eventodb_kit::{CleanupConfig, Kit, NewMessage};
use serde_json::json;

fn count(kit: &Kit, sql: &str) -> i64 {
    kit.db()
        .read(|c| Ok(c.query_row(sql, [], |r| r.get(0))?))
        .unwrap()
}

fn sent_rows(kit: &Kit) -> i64 {
    count(
        kit,
        "SELECT COUNT(*) FROM evento_outbox WHERE sent_at IS NOT NULL",
    )
}

fn processed_records(kit: &Kit) -> i64 {
    count(
        kit,
        "SELECT coalesce(sum(messages), 0) FROM evento_processed_events",
    )
}

/// Delivers `n` outbox messages of category `order` and lets a consumer
/// handle them, with both components' own retention off.
fn traffic(kit: &Kit, n: usize) {
    let sender = kit.spawn_sender(common::fast().retention(None)).unwrap();
    for i in 0..n {
        kit.outbox()
            .write(&format!("order-{i}"), &NewMessage::new("Placed", json!({})))
            .unwrap();
    }
    sender.wait_until_drained(common::WAIT).unwrap();
    sender.shutdown();
    let head = kit
        .store()
        .get_category("order", &Default::default())
        .unwrap();
    let consumer = kit
        .consumer("order", "audit")
        .processed_retention(None)
        .spawn(|_m, _tx| Ok(()))
        .unwrap();
    consumer
        .wait_for_position(head.last().unwrap().global_position, common::WAIT)
        .unwrap();
    consumer.shutdown();
}

fn everything_old() -> CleanupConfig {
    CleanupConfig::new()
        .outbox_retention(Some(Duration::ZERO))
        .processed_retention(Some(Duration::ZERO))
}

#[test]
fn cleanup_prunes_now_and_at_every_interval() {
    let t = common::kit();
    let kit = &t.kit;
    traffic(kit, 12);
    assert_eq!((sent_rows(kit), processed_records(kit)), (12, 12));

    let cleanup = kit
        .spawn_cleanup(everything_old().interval(Duration::from_millis(20)))
        .unwrap();
    let first = cleanup.wait_for_runs(1, common::WAIT).unwrap();
    assert_eq!(
        (first.outbox_rows_deleted, first.processed_records_deleted),
        (12, 12)
    );
    assert!(first.errors.is_empty());
    assert_eq!((sent_rows(kit), processed_records(kit)), (0, 0));

    // New traffic is pruned by a later pass.
    traffic(kit, 3);
    let runs = cleanup.runs();
    cleanup.wait_for_runs(runs + 2, common::WAIT).unwrap();
    assert_eq!((sent_rows(kit), processed_records(kit)), (0, 0));
    cleanup.shutdown();

    // Retention off keeps everything; a young age keeps young rows.
    traffic(kit, 2);
    let report = kit.run_cleanup(&CleanupConfig::new().outbox_retention(None));
    assert_eq!(
        (report.outbox_rows_deleted, report.processed_records_deleted),
        (0, 0)
    );
    assert_eq!(sent_rows(kit), 2);
    let report = kit.run_cleanup(&everything_old().processed_retention(None));
    assert_eq!(report.outbox_rows_deleted, 2);
    assert_eq!(processed_records(kit), 2);
    // Rows waiting to be sent are never touched.
    kit.outbox()
        .write("order-x", &NewMessage::new("Placed", json!({})))
        .unwrap();
    kit.run_cleanup(&everything_old());
    assert_eq!(kit.outbox().status().unwrap().unsent, 1);
}

fn threads_named(name: &str) -> usize {
    common::thread_names().iter().filter(|n| *n == name).count()
}

#[test]
fn background_threads_end_on_shutdown_and_on_drop() {
    if !std::path::Path::new("/proc/self/task").exists() {
        return; // thread names are read from Linux's /proc
    }
    let t = common::kit();
    let wait = |name: &str, n: usize| {
        common::wait_for(
            &format!("{n} {name} threads"),
            Duration::from_secs(5),
            || threads_named(name) == n,
        )
    };
    let hour = Duration::from_secs(3600);
    let cleanup = t
        .kit
        .spawn_cleanup(CleanupConfig::new().interval(hour))
        .unwrap();
    // `Duration::MAX` is how a caller says "no time limit".
    cleanup.wait_for_runs(1, Duration::MAX).unwrap();
    wait("evento-cleanup", 1);
    cleanup.shutdown();
    wait("evento-cleanup", 0);

    let cleanup = t
        .kit
        .spawn_cleanup(CleanupConfig::new().interval(hour))
        .unwrap();
    let reporter = t.kit.spawn_metrics_reporter(hour).unwrap();
    wait("evento-cleanup", 1);
    wait("evento-metrics", 1);
    drop(cleanup);
    drop(reporter);
    wait("evento-cleanup", 0);
    wait("evento-metrics", 0);
}
