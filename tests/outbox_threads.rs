//! The sender's threads end when it is shut down or its handle dropped, and
//! the lease is released. (A file of its own, so no other test's threads
//! are counted.)

mod common;

use std::time::SystemTime;

fn sender_threads() -> usize {
    common::thread_names()
        .iter()
        .filter(|n| n.starts_with("outbox-"))
        .count()
}

#[test]
fn threads_end_on_shutdown_and_on_drop() {
    if !std::path::Path::new("/proc/self/task").exists() {
        return; // thread names are read from Linux's /proc
    }
    let t = common::kit();
    let sender = t.kit.spawn_sender(common::fast().concurrency(3)).unwrap();
    let names = common::thread_names();
    for name in [
        "outbox-sender",
        "outbox-lane-0",
        "outbox-lane-1",
        "outbox-lane-2",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    common::wait_for("the lease", common::WAIT, || sender.health().active);
    sender.shutdown();
    assert_eq!(sender_threads(), 0, "shutdown joins every thread");
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
    assert_eq!(sender_threads(), 5);
    drop(standby);
    assert_eq!(sender_threads(), 2);
    drop(active);
    assert_eq!(sender_threads(), 0);
}
