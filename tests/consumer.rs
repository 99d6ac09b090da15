//! Consumers on the embedded store, end to end: every consumer sees every
//! event, restarts resume, consumer groups split streams as the store does,
//! failures retry / dead-letter / halt, requeue re-runs once, push wake-ups,
//! group changes are refused, threads end.

mod consumer_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::unbounded;
use eventodb_kit::consumer::{ConsumerHealth, FailurePolicy};
use eventodb_kit::dlq::{DeadLetterFilter, DeadLetterSource};
use eventodb_kit::{CategoryQuery, ConsumerGroup, EmbeddedStore, Error, Kit};
use serde_json::json;

use consumer_support::{effects, kit, quick_retry, record_effect, write, write_many, DEADLINE};

#[test]
fn two_consumers_each_see_every_event_and_a_restart_resumes() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "order", 5, 20);
    let spawn = |id: &'static str| {
        kit.consumer("order", id)
            .batch_size(7)
            .spawn(move |msg, tx| record_effect(id, msg, tx))
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    a.wait_for_position(last, DEADLINE).unwrap();
    b.wait_for_position(last, DEADLINE).unwrap();
    let all: Vec<i64> = (1..=last).collect();
    assert_eq!(effects(&kit, "a"), all);
    assert_eq!(effects(&kit, "b"), all);
    assert_eq!(a.stats().processed, 20);
    a.shutdown();
    b.shutdown();

    let more = write_many(&kit, "order", 5, 5);
    let a = spawn("a");
    a.wait_for_position(more, DEADLINE).unwrap();
    assert_eq!(
        a.stats().processed,
        5,
        "a restart handles only new messages"
    );
    assert_eq!(effects(&kit, "a"), (1..=more).collect::<Vec<_>>());
    assert_eq!(
        kit.checkpoints()
            .get("order", "a")
            .unwrap()
            .unwrap()
            .position,
        more
    );
    a.shutdown();
}

#[test]
fn a_group_of_three_covers_every_stream_once_and_agrees_with_category_get() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "account", 30, 90);
    // A stream without a cardinal id belongs to no member (EventoDB's rule).
    write(&kit, "account", "Happened", json!({}));
    let (tx, rx) = unbounded();
    let members: Vec<_> = (0..3)
        .map(|member| {
            let tx = tx.clone();
            let id = format!("projector-{member}");
            kit.consumer("account", &id)
                .consumer_group(ConsumerGroup::new(member, 3).unwrap())
                .spawn(move |msg, _tx| {
                    tx.send((member, msg.stream_name.clone(), msg.id.clone()))
                        .unwrap();
                    Ok(())
                })
                .unwrap()
        })
        .collect();
    let mut seen = Vec::new();
    while seen.len() < 90 {
        seen.push(rx.recv_timeout(DEADLINE).expect("every event is handled"));
    }
    for (member, handle) in members.iter().enumerate() {
        let share = kit
            .store()
            .get_category(
                "account",
                &CategoryQuery::new().consumer_group(ConsumerGroup::new(member as i64, 3).unwrap()),
            )
            .unwrap();
        let handled: Vec<&str> = seen
            .iter()
            .filter(|(m, _, _)| *m == member as i64)
            .map(|(_, _, id)| id.as_str())
            .collect();
        let expected: Vec<&str> = share.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            handled, expected,
            "member {member} handles what category.get assigns it"
        );
        assert!(!handled.is_empty());
        if let Some(m) = share.last() {
            handle
                .wait_for_position(m.global_position, DEADLINE)
                .unwrap();
        }
    }
    let mut owners = std::collections::HashMap::new();
    for (member, stream, _) in &seen {
        assert_eq!(
            *owners.entry(stream.clone()).or_insert(*member),
            *member,
            "{stream}"
        );
    }
    assert_eq!(owners.len(), 30, "every stream has exactly one owner");
    let mut ids: Vec<&str> = seen.iter().map(|(_, _, id)| id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 90, "no event handled twice");
    assert!(last > 0);
    for h in members {
        h.shutdown();
    }
}

#[test]
fn a_failing_message_is_retried_dead_lettered_and_requeue_runs_it_once() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "task", 3, 6);
    let poison = 3; // global position of the message that fails
    let healed = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicUsize::new(0));
    let (h, a) = (Arc::clone(&healed), Arc::clone(&attempts));
    let consumer = kit
        .consumer("task", "worker")
        .retry_policy(quick_retry(3))
        .poll_interval(Duration::from_millis(10))
        .spawn_typed(move |msg, tx| {
            // The effect is written first, so a failure must roll it back.
            record_effect("worker", msg, tx)?;
            if msg.global_position == poison {
                a.fetch_add(1, Ordering::SeqCst);
                if !h.load(Ordering::SeqCst) {
                    return Err(format!("cannot handle {}", msg.global_position).into());
                }
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })
        .unwrap();
    consumer.wait_for_position(last, DEADLINE).unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(
        effects(&kit, "worker"),
        [1, 2, 4, 5, 6],
        "later messages go on"
    );
    let stats = consumer.stats();
    assert_eq!(
        (stats.failed_attempts, stats.dead_lettered, stats.processed),
        (3, 1, 5)
    );

    let dlq = kit.dlq();
    let letters = dlq
        .list(&DeadLetterFilter::new().source(DeadLetterSource::Consumer))
        .unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.consumer_id.as_deref(), Some("worker"));
    assert_eq!(letter.category.as_deref(), Some("task"));
    assert!(letter.error.contains("cannot handle 3"), "{}", letter.error);
    assert_eq!(letter.read_message().unwrap().global_position, poison);

    healed.store(true, Ordering::SeqCst);
    dlq.requeue(letter.id).unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    // No event to wait on: the consumer picks requeues up on its poll tick
    // and counts them once committed.
    while consumer.stats().requeued_processed == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "requeued letter is handled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        dlq.count(&DeadLetterFilter::new()).unwrap(),
        0,
        "the letter is gone"
    );
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        4,
        "requeue ran the handler once"
    );
    assert_eq!(effects(&kit, "worker"), [1, 2, 3, 4, 5, 6]);
    assert_eq!(consumer.stats().requeued_processed, 1);
    consumer.shutdown();
}

#[test]
fn a_requeued_message_that_fails_again_stays_dead_lettered() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "task", 1, 2);
    let consumer = kit
        .consumer("task", "w")
        .retry_policy(quick_retry(1))
        .poll_interval(Duration::from_millis(10))
        .spawn(|msg, _tx| {
            if msg.global_position == 1 {
                panic!("boom at {}", msg.global_position);
            }
            Ok(())
        })
        .unwrap();
    consumer.wait_for_position(last, DEADLINE).unwrap();
    let dlq = kit.dlq();
    let letter = dlq.list(&DeadLetterFilter::new()).unwrap().remove(0);
    assert!(
        letter.error.contains("handler panicked: boom at 1"),
        "{}",
        letter.error
    );
    assert_eq!(letter.attempts, 1);
    dlq.requeue(letter.id).unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let now = dlq.get(letter.id).unwrap();
        if now.requeued_at.is_none() {
            assert_eq!(now.attempts, 2, "the re-run counts as an attempt");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "requeue is picked up");
        std::thread::sleep(Duration::from_millis(5));
    }
    consumer.shutdown();
}

#[test]
fn the_stop_policy_halts_at_the_failing_message() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "task", 2, 5);
    let consumer = kit
        .consumer("task", "strict")
        .retry_policy(quick_retry(2))
        .failure_policy(FailurePolicy::Stop)
        .spawn(|msg, tx| {
            record_effect("strict", msg, tx)?;
            if msg.global_position == 3 {
                return Err(Error::InvalidInput("no".into()));
            }
            Ok(())
        })
        .unwrap();
    match consumer.wait_for_position(last, DEADLINE) {
        Err(Error::Handler {
            global_position,
            message,
            ..
        }) => {
            assert_eq!(global_position, 3);
            assert!(message.contains("no"), "{message}");
        }
        other => panic!("expected a halt, got {other:?}"),
    }
    assert_eq!(
        consumer.position(),
        2,
        "the position stays before the message"
    );
    assert!(matches!(
        consumer.health(),
        ConsumerHealth::Halted {
            global_position: 3,
            attempts: 2,
            ..
        }
    ));
    assert_eq!(effects(&kit, "strict"), [1, 2]);
    assert_eq!(kit.dlq().count(&DeadLetterFilter::new()).unwrap(), 0);
    let deadline = std::time::Instant::now() + DEADLINE;
    while !consumer.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "a halted consumer's thread ends"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    consumer.shutdown();
    assert_eq!(
        kit.checkpoints()
            .get("task", "strict")
            .unwrap()
            .unwrap()
            .position,
        2
    );
}

#[test]
fn permanent_errors_skip_retries_when_asked() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "task", 1, 2);
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    let consumer = kit
        .consumer("task", "w")
        .retry_policy(quick_retry(5))
        .retry_permanent_errors(false)
        .spawn(move |msg, _tx| {
            if msg.global_position == 1 {
                r.fetch_add(1, Ordering::SeqCst);
                return Err(Error::InvalidInput("never valid".into()));
            }
            Ok(())
        })
        .unwrap();
    consumer.wait_for_position(last, DEADLINE).unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "a permanent error is not retried"
    );
    assert_eq!(
        kit.dlq().list(&DeadLetterFilter::new()).unwrap()[0].attempts,
        1
    );
    consumer.shutdown();
}

#[test]
fn a_write_wakes_an_idle_consumer_without_polling() {
    let (kit, _dir) = kit();
    let (tx, rx) = unbounded();
    let consumer = kit
        .consumer("chat", "notifier")
        .poll_interval(Duration::from_secs(3600))
        .spawn(move |msg, _tx| {
            tx.send(msg.global_position).unwrap();
            Ok(())
        })
        .unwrap();
    for round in 1..=3 {
        let written = write(&kit, "chat-1", "Said", json!({ "round": round }));
        // With an hour between polls, only a poke can deliver this in time.
        assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), written.global_position);
    }
    consumer.shutdown();
}

#[test]
fn a_changed_group_size_is_refused_until_the_checkpoint_is_reset() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "account", 4, 8);
    let ok = |_: &eventodb_kit::Message, _: &rusqlite::Transaction<'_>| Ok(());
    let c = kit
        .consumer("account", "m0")
        .consumer_group(ConsumerGroup::new(0, 2).unwrap())
        .spawn(ok)
        .unwrap();
    c.shutdown();
    let err = kit
        .consumer("account", "m0")
        .consumer_group(ConsumerGroup::new(0, 3).unwrap())
        .spawn(ok)
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::InvalidInput(_)));
    assert!(
        text.contains("member 0 of a group of 2") && text.contains("member 0 of a group of 3"),
        "{text}"
    );
    assert!(
        kit.consumer("account", "m0").spawn(ok).is_err(),
        "dropping the group too"
    );

    kit.checkpoints().set("account", "m0", 0).unwrap();
    let c = kit
        .consumer("account", "m0")
        .consumer_group(ConsumerGroup::new(0, 3).unwrap())
        .spawn(ok)
        .unwrap();
    c.shutdown();
    let saved = kit.checkpoints().get("account", "m0").unwrap().unwrap();
    assert_eq!(
        saved.consumer_group,
        Some(ConsumerGroup::new(0, 3).unwrap())
    );
    assert!(last > 0);
}

#[test]
fn messages_already_processed_are_skipped_without_the_handler() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "order", 2, 10);
    let spawn = || {
        kit.consumer("order", "once")
            .spawn(|msg, tx| record_effect("once", msg, tx))
            .unwrap()
    };
    let c = spawn();
    c.wait_for_position(last, DEADLINE).unwrap();
    c.shutdown();
    // Move the position back as if the kit had lost it: processed records
    // still say which events were handled.
    kit.checkpoints().set("order", "once", 0).unwrap();
    let c = spawn();
    c.wait_for_position(last, DEADLINE).unwrap();
    let stats = c.stats();
    assert_eq!((stats.processed, stats.duplicates_skipped), (0, 10));
    assert_eq!(effects(&kit, "once"), (1..=last).collect::<Vec<_>>());
    c.shutdown();
}

#[test]
fn threads_end_when_the_handle_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("store.db")).unwrap();
    let kit = Kit::builder()
        .database(dir.path().join("app.db"))
        .store(store.clone())
        .build()
        .unwrap();
    let (alive_tx, alive_rx) = unbounded::<()>();
    let handle = kit
        .consumer("order", "dropped")
        .spawn(move |_msg, _tx| {
            let _owned = &alive_tx; // dropped with the handler, i.e. with the thread
            Ok(())
        })
        .unwrap();
    assert_eq!(
        store.subscriber_count(),
        1,
        "the consumer watches the category"
    );
    drop(handle);
    assert_eq!(
        alive_rx.recv_timeout(DEADLINE),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected),
        "the worker thread ended and dropped the handler"
    );
    // The worker joins its fetcher before it ends.
    assert_eq!(store.subscriber_count(), 0, "the fetcher ended too");

    let sub = kit.subscribe("order", 1).unwrap();
    assert_eq!(store.subscriber_count(), 1);
    sub.shutdown();
    assert_eq!(
        store.subscriber_count(),
        0,
        "shutdown joins the subscription's thread"
    );
}

#[test]
fn waiting_for_a_position_without_a_time_limit_is_allowed() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "order", 2, 3);
    let consumer = kit
        .consumer("order", "a")
        .spawn(|msg, tx| record_effect("a", msg, tx))
        .unwrap();
    // `Duration::MAX` is how a caller says "no time limit".
    consumer.wait_for_position(last, Duration::MAX).unwrap();
    consumer.shutdown();
}

#[test]
fn a_slow_batch_commits_as_it_goes() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "order", 1, 3);
    // The handler holds message 2 until the test says so.
    let (reached_tx, reached_rx) = unbounded();
    let (go_tx, go_rx) = unbounded::<()>();
    let consumer = kit
        .consumer("order", "slow")
        .max_transaction_time(Duration::ZERO)
        .spawn(move |msg, tx| {
            if msg.global_position == 2 {
                reached_tx.send(()).unwrap();
                go_rx.recv_timeout(DEADLINE).unwrap();
            }
            record_effect("slow", msg, tx)
        })
        .unwrap();
    reached_rx.recv_timeout(DEADLINE).unwrap();
    // Message 1 was committed although its batch is not finished: the write
    // lock is not held across the whole batch.
    let saved = kit.checkpoints().get("order", "slow").unwrap().unwrap();
    assert_eq!(saved.position, 1);
    assert_eq!(effects(&kit, "slow"), [1]);
    go_tx.send(()).unwrap();
    consumer.wait_for_position(last, DEADLINE).unwrap();
    assert_eq!(effects(&kit, "slow"), [1, 2, 3]);
    consumer.shutdown();
}
