//! The tools around consumers: channel subscriptions with back pressure,
//! replay over ranges, checkpoint get/set/reset (to a position and to a
//! time), and retention of processed records.

mod consumer_support;

use std::time::{Duration, Instant, SystemTime};

use eventodb_kit::consumer::SubscribeOptions;
use eventodb_kit::{CategoryQuery, Error, Message};
use serde_json::json;

use consumer_support::{effects, kit, record_effect, write, write_many, DEADLINE};

/// Polls `condition` until it holds (for states no event announces).
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_subscription_delivers_in_order_and_a_slow_reader_holds_it_back() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "metric", 3, 100);
    let sub = kit
        .subscribe_with(
            "metric",
            SubscribeOptions::new()
                .from_position(11)
                .capacity(4)
                .batch_size(30),
        )
        .unwrap();
    // Capacity 4: four messages in, and the thread waits for the reader.
    eventually("a full channel", || {
        sub.receiver().len() == 4 && sub.delivered() == 4
    });
    let first = sub.recv_timeout(DEADLINE).unwrap();
    assert_eq!(first.global_position, 11);
    // One read lets exactly one more in.
    eventually("the freed slot to be refilled", || {
        sub.receiver().len() == 4 && sub.delivered() == 5
    });

    let mut positions = vec![first.global_position];
    while positions.len() < 90 {
        positions.push(sub.recv_timeout(DEADLINE).unwrap().global_position);
    }
    assert_eq!(positions, (11..=last).collect::<Vec<_>>());
    // Live: a new write arrives too.
    let next = write(&kit, "metric-1", "Measured", json!({})).global_position;
    assert_eq!(sub.recv_timeout(DEADLINE).unwrap().global_position, next);
    assert!(matches!(
        sub.recv_timeout(Duration::from_millis(1)),
        Err(Error::Timeout(_))
    ));

    let receiver = sub.receiver().clone();
    drop(sub);
    assert!(
        matches!(
            receiver.recv_timeout(DEADLINE),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        ),
        "dropping the subscription ends its thread"
    );
}

#[test]
fn replay_runs_over_position_time_and_type_ranges_without_moving_positions() {
    let (kit, _dir) = kit();
    for n in 1..=12 {
        let t = if n % 3 == 0 { "Audited" } else { "Posted" };
        write(&kit, &format!("ledger-{}", n % 2), t, json!({ "n": n }));
    }
    let c = kit
        .consumer("ledger", "live")
        .spawn(|msg, tx| record_effect("live", msg, tx))
        .unwrap();
    c.wait_for_position(12, DEADLINE).unwrap();
    c.shutdown();

    let replay = |r: eventodb_kit::consumer::Replay| {
        let mut seen = Vec::new();
        let report = r
            .run(|m: &Message, tx: &rusqlite::Transaction<'_>| {
                seen.push(m.global_position);
                record_effect("replay", m, tx)
            })
            .unwrap();
        (seen, report)
    };
    let (seen, report) = replay(kit.replay("ledger").from_position(4).to_position(9));
    assert_eq!(seen, [4, 5, 6, 7, 8, 9]);
    assert_eq!((report.handled, report.last_position), (6, Some(9)));

    let (seen, report) = replay(kit.replay("ledger").types(["Audited"]).batch_size(5));
    assert_eq!(seen, [3, 6, 9, 12]);
    assert_eq!(report.skipped, 8);

    let all = kit
        .store()
        .get_category("ledger", &CategoryQuery::new())
        .unwrap();
    let (from, to) = (all[4].time, all[8].time);
    let expected: Vec<i64> = all
        .iter()
        .filter(|m| m.time >= from && m.time <= to)
        .map(|m| m.global_position)
        .collect();
    let (seen, _) = replay(kit.replay("ledger").from_time(from).to_time(to));
    assert_eq!(seen, expected);
    assert!(seen.contains(&5) && seen.contains(&9));

    assert_eq!(
        kit.checkpoints()
            .get("ledger", "live")
            .unwrap()
            .unwrap()
            .position,
        12,
        "replay leaves the live position alone"
    );
    assert_eq!(effects(&kit, "live"), (1..=12).collect::<Vec<_>>());

    // A failing handler stops the replay with the message it failed on.
    let err = kit
        .replay("ledger")
        .run(|m, _tx| {
            if m.global_position == 7 {
                Err(eventodb_kit::Error::InvalidInput("bad row".into()))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Handler {
                global_position: 7,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn resets_move_a_consumer_back_to_a_position_or_a_time() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "order", 2, 10);
    let run = |expect: i64| {
        let c = kit
            .consumer("order", "proj")
            .spawn(|msg, tx| record_effect("proj", msg, tx))
            .unwrap();
        c.wait_for_position(expect, DEADLINE).unwrap();
        let processed = c.stats().processed;
        c.shutdown();
        processed
    };
    assert_eq!(run(last), 10);

    kit.checkpoints()
        .reset_to_position("order", "proj", 6)
        .unwrap();
    assert_eq!(run(last), 4, "messages after the position run again");
    let mut expected: Vec<i64> = (1..=10).collect();
    expected.extend(7..=10);
    expected.sort();
    assert_eq!(effects(&kit, "proj"), expected);

    let all = kit
        .store()
        .get_category("order", &CategoryQuery::new())
        .unwrap();
    let at = all[7].time; // the 8th message's time (others may share it)
    let position = kit
        .checkpoints()
        .reset_to_time("order", "proj", at)
        .unwrap();
    let first_at = all.iter().find(|m| m.time >= at).unwrap().global_position;
    assert_eq!(position, first_at - 1);
    assert_eq!(run(last), (last - position) as u64);

    let future = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(
        kit.checkpoints()
            .reset_to_time("order", "proj", future)
            .unwrap(),
        last,
        "a time after every message resets to the end"
    );
    assert_eq!(
        kit.checkpoints()
            .reset_to_time("order", "proj", SystemTime::UNIX_EPOCH)
            .unwrap(),
        0
    );

    kit.checkpoints().reset("order", "proj").unwrap();
    assert!(kit.checkpoints().get("order", "proj").unwrap().is_none());
    assert_eq!(run(last), 10, "after a full reset every message runs again");
    let listed = kit.checkpoints().list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].consumer_id.as_str(), listed[0].position),
        ("proj", last)
    );
}

#[test]
fn retention_deletes_old_processed_records() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "order", 2, 6);
    let count = || -> i64 {
        kit.db()
            .read(|c| {
                Ok(c.query_row(
                    "SELECT coalesce(sum(messages), 0) FROM evento_processed_events",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap()
    };
    let spawn = |id: &str, retention: Option<Duration>| {
        let c = kit
            .consumer("order", id)
            .processed_retention(retention)
            .spawn(|_m, _tx| Ok(()))
            .unwrap();
        c.wait_for_position(last, DEADLINE).unwrap();
        c.shutdown();
    };
    spawn("a", None);
    spawn("b", None);
    assert_eq!(count(), 12);
    assert_eq!(
        kit.checkpoints()
            .delete_processed_older_than(Duration::from_secs(3600))
            .unwrap(),
        0,
        "young records stay"
    );
    // A consumer prunes its own records when it starts.
    spawn("a", Some(Duration::ZERO));
    assert_eq!(count(), 6, "b's records are not a's to prune");
    assert_eq!(
        kit.checkpoints()
            .delete_processed_older_than(Duration::ZERO)
            .unwrap(),
        6
    );
    assert_eq!(count(), 0);
    assert_eq!(
        kit.checkpoints()
            .get("order", "b")
            .unwrap()
            .unwrap()
            .position,
        last
    );
}
