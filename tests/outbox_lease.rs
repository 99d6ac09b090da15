//! Several senders on one database file: only the lease holder sends, no
//! message is sent twice, and a standby takes over when the holder stops —
//! in one process (separate kits) and across processes (the holder killed
//! with SIGKILL).

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use eventodb_kit::outbox::{Delivery, OutboxEntry};
use eventodb_kit::{Kit, NewMessage};
use serde_json::json;

const ENTRY: &str = "child_process_entry";

fn write_many(kit: &Kit, from: usize, n: usize) -> Vec<String> {
    let entries: Vec<OutboxEntry> = (from..from + n)
        .map(|i| {
            OutboxEntry::new(
                format!("item-{}", i % 7),
                NewMessage::new("T", json!({ "i": i })),
            )
        })
        .collect();
    kit.outbox().write_batch(&entries).unwrap()
}

fn assert_exactly_once(kit: &Kit) {
    let stored = common::all_messages(&**kit.store());
    let unique: HashSet<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(unique.len(), stored.len());
    assert_eq!(
        common::ids_by_stream(&**kit.store()),
        common::outbox_ids_by_stream(kit)
    );
}

#[test]
fn two_senders_in_one_process_never_both_send() {
    let t = common::kit();
    let kit_b = t.reopen();
    let a = t.kit.spawn_sender(common::fast()).unwrap();
    let b = kit_b.spawn_sender(common::fast()).unwrap();
    common::wait_for("a holder", common::WAIT, || {
        a.health().active || b.health().active
    });
    let mut ids = write_many(&t.kit, 0, 150);
    ids.extend(write_many(&kit_b, 150, 150));
    a.wait_until_drained(common::WAIT).unwrap();
    assert_exactly_once(&t.kit);
    let (sa, sb) = (a.stats().unwrap(), b.stats().unwrap());
    assert_eq!(sa.sent + sb.sent, 300, "each message sent by one of them");
    assert_eq!(
        sa.already_delivered + sb.already_delivered,
        0,
        "and only once"
    );
    assert!(
        a.health().active ^ b.health().active,
        "exactly one is active"
    );

    // The active one stops; the standby takes over.
    let (active, standby) = if a.health().active { (a, b) } else { (b, a) };
    let old_holder = active.holder_id().to_string();
    active.shutdown();
    let more = write_many(&t.kit, 300, 50);
    assert_eq!(
        standby
            .wait_until_sent(more.last().unwrap(), common::WAIT)
            .unwrap(),
        Delivery::Sent
    );
    standby.wait_until_drained(common::WAIT).unwrap();
    assert!(standby.health().active);
    let lease = t.kit.outbox().sender_lease().unwrap().unwrap();
    assert_eq!(lease.holder, standby.holder_id());
    assert_ne!(lease.holder, old_holder);
    assert_eq!(lease.fencing_token, 2, "one change of holder");
    assert_exactly_once(&t.kit);
    assert_eq!(standby.stats().unwrap().already_delivered, 0);
    standby.shutdown();
}

#[test]
fn a_standby_takes_over_from_a_killed_process() {
    let t = common::kit();
    let mut child = common::spawn_child(ENTRY, "sender", &t.path());
    let child_holder = format!("pid {} ", child.id());
    let outbox = t.kit.outbox();
    common::wait_for("the child to hold the lease", common::WAIT, || {
        outbox
            .sender_lease()
            .unwrap()
            .is_some_and(|l| l.holder.starts_with(&child_holder) && l.is_held_at(SystemTime::now()))
    });
    let standby = t.kit.spawn_sender(common::fast()).unwrap();
    let first = write_many(&t.kit, 0, 100);
    // The child delivers them (it finds them by its poll); we stand by.
    common::wait_for("the child to deliver", common::WAIT, || {
        outbox.status().unwrap().unsent == 0
    });
    assert_eq!(standby.stats().unwrap().sent, 0, "the standby sent nothing");
    assert!(!standby.health().active);

    child.kill().unwrap(); // SIGKILL: no shutdown, the lease is left to expire
    child.wait().unwrap();
    let second = write_many(&t.kit, 100, 100);
    for id in [first.last().unwrap(), second.last().unwrap()] {
        assert_eq!(
            standby.wait_until_sent(id, common::WAIT).unwrap(),
            Delivery::Sent
        );
    }
    standby.wait_until_drained(common::WAIT).unwrap();
    assert!(standby.health().active);
    assert_eq!(
        t.kit.outbox().sender_lease().unwrap().unwrap().holder,
        standby.holder_id()
    );
    assert_exactly_once(&t.kit);
    assert_eq!(standby.stats().unwrap().already_delivered, 0);
    standby.shutdown();
}

/// Not a test: the body of the child processes above (runs only when the
/// test binary is started by `common::spawn_child`).
#[test]
fn child_process_entry() {
    let Some((role, db)) = common::child_role() else {
        return;
    };
    assert_eq!(role, "sender");
    let kit = common::kit_on(&db);
    let _sender = kit
        .spawn_sender(common::fast().poll_interval(Duration::from_millis(20)))
        .unwrap();
    loop {
        std::thread::park(); // until killed
    }
}
