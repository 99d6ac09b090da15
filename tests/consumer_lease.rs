//! One working instance per consumer id: a second instance (in this process
//! here; see `lease_takeover.rs` for other processes) stands by and takes
//! over when the first stops; a handle dropped and spawned again never runs
//! two workers, and the position never goes back.

mod consumer_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventodb_kit::ConsumerHealth;

use consumer_support::{effects, kit, record_effect, write_many, DEADLINE};

/// Polls `condition` until it holds (for states no event announces).
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_second_instance_stands_by_and_takes_over_when_the_first_stops() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "order", 3, 20);
    let first = kit
        .consumer("order", "ledger")
        .spawn(|msg, tx| record_effect("ledger", msg, tx))
        .unwrap();
    first.wait_for_position(last, DEADLINE).unwrap();
    let second = kit
        .consumer("order", "ledger")
        .poll_interval(Duration::from_millis(10))
        .spawn(|msg, tx| record_effect("ledger", msg, tx))
        .unwrap();
    assert_eq!(second.health(), ConsumerHealth::Standby);

    // New messages go to the working instance only.
    let last = write_many(&kit, "order", 3, 10);
    first.wait_for_position(last, DEADLINE).unwrap();
    assert_eq!(first.stats().processed, 30);
    // The standby's position follows the working one's.
    second.wait_for_position(last, DEADLINE).unwrap();
    assert_eq!(second.stats().processed, 0);
    assert_eq!(
        second.stats().fetches,
        0,
        "a standby does not read the store"
    );

    // The first stops: the second takes over (its lease was released).
    first.shutdown();
    wait_until("the standby to take over", || {
        second.health() == ConsumerHealth::Running
    });
    let last = write_many(&kit, "order", 3, 10);
    second.wait_for_position(last, DEADLINE).unwrap();
    assert_eq!(second.stats().processed, 10);
    second.shutdown();

    let done = effects(&kit, "ledger");
    assert_eq!(done.len(), 40, "every message once");
    assert_eq!(done, (1..=40).collect::<Vec<i64>>());

    // `kit.metrics()` says who holds the lease (nobody now: released).
    let m = kit.metrics().unwrap();
    let lease = m
        .consumer("order", "ledger")
        .unwrap()
        .lease
        .as_ref()
        .unwrap();
    assert!(!lease.held);
    assert!(lease
        .holder
        .starts_with(&format!("pid {} consumer ", std::process::id())));
    assert_eq!(lease.fencing_token, 2, "one change of holder");
}

#[test]
fn a_dropped_handle_and_a_new_spawn_never_run_two_workers() {
    // Dropping a handle only signals its threads; spawning the same consumer
    // again at once used to run two workers side by side for a moment.
    let (kit, _dir) = kit();
    let last = write_many(&kit, "order", 4, 400);
    let running = Arc::new(AtomicUsize::new(0));
    let overlap = Arc::new(AtomicUsize::new(0));
    let spawn = || {
        let (running, overlap) = (Arc::clone(&running), Arc::clone(&overlap));
        kit.consumer("order", "ledger")
            .batch_size(7)
            .poll_interval(Duration::from_millis(5))
            .spawn(move |msg, tx| {
                if running.fetch_add(1, Ordering::SeqCst) > 0 {
                    overlap.fetch_add(1, Ordering::SeqCst);
                }
                let result = record_effect("ledger", msg, tx);
                running.fetch_sub(1, Ordering::SeqCst);
                result
            })
            .unwrap()
    };
    let mut handle = spawn();
    let mut positions = Vec::new();
    for _ in 0..20 {
        drop(handle);
        handle = spawn();
        positions.push(
            kit.checkpoints()
                .get("order", "ledger")
                .unwrap()
                .unwrap()
                .position,
        );
    }
    handle.wait_for_position(last, DEADLINE).unwrap();
    handle.shutdown();
    assert_eq!(
        overlap.load(Ordering::SeqCst),
        0,
        "never two handlers at once"
    );
    assert!(
        positions.windows(2).all(|w| w[0] <= w[1]),
        "the position never went back: {positions:?}"
    );
    let done = effects(&kit, "ledger");
    assert_eq!(done, (1..=last).collect::<Vec<i64>>(), "every message once");
}

#[test]
fn different_consumer_ids_each_work() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "order", 2, 10);
    let a = kit
        .consumer("order", "a")
        .spawn(|msg, tx| record_effect("a", msg, tx))
        .unwrap();
    let b = kit
        .consumer("order", "b")
        .spawn(|msg, tx| record_effect("b", msg, tx))
        .unwrap();
    a.wait_for_position(last, DEADLINE).unwrap();
    b.wait_for_position(last, DEADLINE).unwrap();
    assert_eq!(
        (a.health(), b.health()),
        (ConsumerHealth::Running, ConsumerHealth::Running)
    );
    a.shutdown();
    b.shutdown();
    assert_eq!(effects(&kit, "a").len(), 10);
    assert_eq!(effects(&kit, "b").len(), 10);
}
