//! A lease holder killed with SIGKILL is replaced at once by another process
//! on the same machine — well before its lease would expire — because the
//! OS releases its lock file: for the outbox sender and for a consumer
//! (where the other process stood by meanwhile, and `eventodb-kit status`
//! shows who runs the consumer).
//!
//! The children are this test binary again (see `common::spawn_child`).

mod common;
mod consumer_support;

use std::process::Child;
use std::time::Duration;

use eventodb_kit::outbox::{Delivery, SenderConfig};
use eventodb_kit::{ConsumerHealth, Kit, NewMessage};
use serde_json::json;

/// Both roles hold their lease this long: a takeover that waited for the
/// expiry would fail the waits below.
const LEASE: Duration = Duration::from_secs(60);
/// Shorter than [`LEASE`].
const WAIT: Duration = Duration::from_secs(30);
const ENTRY: &str = "child_process_entry";

/// Kills the child when dropped, so a failing test leaves nothing behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl KillOnDrop {
    fn holder_prefix(&self) -> String {
        format!("pid {} ", self.0.id())
    }

    fn sigkill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

#[test]
fn a_killed_senders_lease_is_taken_over_before_it_expires() {
    let t = common::kit();
    let outbox = t.kit.outbox();
    let mut child = KillOnDrop(common::spawn_child(ENTRY, "sender", &t.path()));
    let holder = child.holder_prefix();
    common::wait_for("the child to hold the sender lease", WAIT, || {
        outbox.sender_lease().unwrap().is_some_and(|l| {
            l.holder.starts_with(&holder) && l.is_held_at(std::time::SystemTime::now())
        })
    });
    child.sigkill();
    let lease = outbox.sender_lease().unwrap().unwrap();
    assert!(
        lease.is_held_at(std::time::SystemTime::now()),
        "the dead child's lease has not expired"
    );

    // A sender started now (the app restarted, say) takes over at once.
    let id = outbox
        .write("account-1", &NewMessage::new("Opened", json!({})))
        .unwrap();
    let sender = t
        .kit
        .spawn_sender(SenderConfig::new().lease_duration(LEASE))
        .unwrap();
    assert_eq!(sender.wait_until_sent(&id, WAIT).unwrap(), Delivery::Sent);
    let lease = outbox.sender_lease().unwrap().unwrap();
    assert_eq!(lease.holder, sender.holder_id());
    assert_eq!(lease.fencing_token, 2);
    sender.shutdown();
}

#[test]
fn a_standby_consumer_takes_over_from_a_killed_process_before_its_lease_expires() {
    let t = common::kit();
    let kit = &t.kit;
    consumer_support::create_effects(kit);
    let last = consumer_support::write_many(kit, "order", 4, 50);
    let mut child = KillOnDrop(common::spawn_child(ENTRY, "consumer", &t.path()));
    let holder = child.holder_prefix();
    let position = || {
        kit.checkpoints()
            .get("order", "ledger")
            .unwrap()
            .map_or(0, |c| c.position)
    };
    common::wait_for("the child to consume", WAIT, || position() == last);

    // This process's instance stands by while the child works.
    let standby = consumer(kit);
    let last = consumer_support::write_many(kit, "order", 4, 50);
    common::wait_for("the child to consume the new messages", WAIT, || {
        position() == last
    });
    assert_eq!(standby.health(), ConsumerHealth::Standby);
    assert_eq!(standby.stats().processed, 0);
    let lease = kit.metrics().unwrap();
    let lease = lease
        .consumer("order", "ledger")
        .unwrap()
        .lease
        .clone()
        .unwrap();
    assert!(lease.held && lease.holder.starts_with(&holder), "{lease:?}");
    #[cfg(feature = "cli")]
    status_shows_the_holder(&t.path(), child.0.id());

    child.sigkill();
    let last = consumer_support::write_many(kit, "order", 4, 50);
    standby.wait_for_position(last, WAIT).unwrap();
    assert_eq!(standby.health(), ConsumerHealth::Running);
    assert_eq!(
        standby.stats().processed,
        50,
        "only what came after the kill"
    );
    standby.shutdown();
    assert_eq!(
        consumer_support::effects(kit, "ledger"),
        (1..=last).collect::<Vec<i64>>(),
        "every message exactly once"
    );
}

fn consumer(kit: &Kit) -> eventodb_kit::ConsumerHandle {
    kit.consumer("order", "ledger")
        .lease_duration(LEASE)
        .poll_interval(Duration::from_millis(20))
        .spawn(|msg, tx| consumer_support::record_effect("ledger", msg, tx))
        .unwrap()
}

/// `eventodb-kit status` names the process that runs the consumer.
#[cfg(feature = "cli")]
fn status_shows_the_holder(db: &std::path::Path, pid: u32) {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_eventodb-kit"))
        .args(["status", "--db", db.to_str().unwrap()])
        .env_remove("EVENTODB_URL")
        .env_remove("EVENTODB_TOKEN")
        .env_remove("EVENTODB_KIT_DB")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("RUN BY"), "{text}");
    let row = text
        .lines()
        .find(|l| l.contains("ledger"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.trim_end().ends_with(&format!("pid {pid}")), "{text}");
}

/// Not a test: the body of the child processes above (runs only when the
/// test binary is started by `common::spawn_child`).
#[test]
fn child_process_entry() {
    let Some((role, db)) = common::child_role() else {
        return;
    };
    let kit = common::kit_on(&db);
    match role.as_str() {
        "sender" => {
            let _sender = kit
                .spawn_sender(SenderConfig::new().lease_duration(LEASE))
                .unwrap();
            loop {
                std::thread::park();
            }
        }
        "consumer" => {
            let _consumer = consumer(&kit);
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown role {other}"),
    }
}
