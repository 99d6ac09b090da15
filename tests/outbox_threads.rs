//! The sender's threads end when it is shut down or its handle dropped, and
//! the lease is released. (A file of its own, so no other test's threads
//! are counted.)

mod common;

use std::time::{Duration, SystemTime};

fn sender_threads() -> usize {
    common::thread_names()
        .iter()
        .filter(|n| n.starts_with("outbox-") || n.starts_with("eventodb-writes"))
        .count()
}

/// A joined thread can linger in /proc for a moment after `join` returns.
fn wait_for_threads(n: usize, what: &str) {
    common::wait_for(what, Duration::from_secs(5), || sender_threads() == n);
}

#[test]
fn threads_end_on_shutdown_and_on_drop() {
    if !std::path::Path::new("/proc/self/task").exists() {
        return; // thread names are read from Linux's /proc
    }
    let t = common::kit();
    let sender = t.kit.spawn_sender(common::fast().concurrency(3)).unwrap();
    // A new thread names itself once it runs.
    common::wait_for("the named threads", Duration::from_secs(5), || {
        let names = common::thread_names();
        let lanes = names.iter().filter(|n| *n == "eventodb-writes").count();
        ["outbox-sender", "outbox-checker"]
            .iter()
            .all(|name| names.iter().any(|n| n == name))
            && lanes == 3
    });
    common::wait_for("the lease", common::WAIT, || sender.health().active);
    sender.shutdown();
    wait_for_threads(0, "shutdown to end every thread");
    let lease = t.kit.outbox().sender_lease().unwrap().unwrap();
    assert!(
        !lease.is_held_at(SystemTime::now()),
        "and releases the lease"
    );

    // Dropping a handle, active or standing by, stops its threads too.
    let active = t.kit.spawn_sender(common::fast()).unwrap();
    common::wait_for("the lease", common::WAIT, || active.health().active);
    let standby = t
        .reopen()
        .spawn_sender(common::fast().concurrency(2))
        .unwrap();
    // Dispatcher, checker and a pipeline thread per lane: 3 + 4.
    wait_for_threads(7, "seven sender threads");
    drop(standby);
    wait_for_threads(3, "the standby's threads to end");
    drop(active);
    wait_for_threads(0, "the active sender's threads to end");
}
