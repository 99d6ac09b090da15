//! The sender after the wall clock went back (an edge device's clock
//! corrected by NTP, say): times stored before the jump — a message's next
//! attempt, the lease's expiry — now lie far in the future, and must hold
//! neither a message nor the lease for the size of the jump.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use eventodb_kit::outbox::Delivery;
use eventodb_kit::NewMessage;
use rusqlite::params;
use serde_json::json;

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn a_retry_time_set_before_the_clock_went_back_does_not_hold_the_message() {
    let t = common::kit();
    let outbox = t.kit.outbox();
    let first = outbox
        .write("account-1", &NewMessage::new("Opened", json!({})))
        .unwrap();
    let second = outbox
        .write("account-1", &NewMessage::new("Closed", json!({})))
        .unwrap();
    // A sender tried the first message and was told to retry in a moment;
    // then the clock was set back an hour.
    t.kit
        .db()
        .write(|tx| {
            tx.execute(
                "UPDATE evento_outbox SET attempts = 1, next_attempt_at = ?1, first_failed_at = ?2
                  WHERE id = ?3",
                params![now_ms() + HOUR_MS + 50, now_ms() + HOUR_MS, first],
            )?;
            Ok(())
        })
        .unwrap();
    // Retries wait at most 100 ms with these settings.
    let sender = t.kit.spawn_sender(common::fast()).unwrap();
    assert_eq!(
        sender.wait_until_sent(&second, common::WAIT).unwrap(),
        Delivery::Sent
    );
    assert_eq!(
        common::ids_by_stream(&**t.kit.store()),
        common::outbox_ids_by_stream(&t.kit),
        "both, in order"
    );
    sender.shutdown();
}

#[test]
fn a_lease_renewed_before_the_clock_went_back_is_taken_over_once_its_holder_is_silent() {
    let t = common::kit();
    // A sender (lease 600 ms) renewed its lease just before the clock was
    // set back an hour, and died.
    let renewed = now_ms() + HOUR_MS;
    t.kit
        .db()
        .write(|tx| {
            tx.execute(
                "INSERT INTO evento_leases
                   (name, holder, fencing_token, expires_at, acquired_at, renewed_at)
                 VALUES ('outbox-sender:default', 'pid 1 sender gone', 4, ?1, ?2, ?2)",
                params![renewed + 600, renewed],
            )?;
            Ok(())
        })
        .unwrap();
    let sender = t.kit.spawn_sender(common::fast()).unwrap();
    let id = t
        .kit
        .outbox()
        .write("account-1", &NewMessage::new("Opened", json!({})))
        .unwrap();
    assert_eq!(
        sender.wait_until_sent(&id, common::WAIT).unwrap(),
        Delivery::Sent
    );
    let lease = t.kit.outbox().sender_lease().unwrap().unwrap();
    assert_eq!(lease.holder, sender.holder_id());
    assert_eq!(lease.fencing_token, 5, "taken over, fenced");
    sender.shutdown();
}
