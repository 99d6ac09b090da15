//! What a handler meets: closures without type annotations; writing from a
//! handler (consume-then-emit through its transaction works, a second
//! transaction on the file fails at once instead of stalling); the
//! application's own commit hook left alone; store-wide errors pausing the
//! consumer instead of dead-lettering; a stored message that cannot be
//! decoded failing alone; and waiting until caught up.

mod consumer_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventodb_kit::consumer::FailurePolicy;
use eventodb_kit::dlq::DeadLetterFilter;
use eventodb_kit::{
    ConsumerHealth, DbOptions, Error, Kit, MessageStore, NewMessage, TransportErrorKind,
    WriteOptions,
};
use serde_json::json;

use consumer_support::{
    effects, insert_undecodable, kit, kit_over, quick_retry, record_effect, write_many, DEADLINE,
};

#[test]
fn handlers_need_no_type_annotations_and_typed_errors_stay_possible() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "order", 2, 4);
    #[derive(serde::Deserialize)]
    struct Happened {
        n: i64,
    }
    let consumer = kit
        .consumer("order", "typed")
        .spawn(|msg, tx| {
            let event: Happened = serde_json::from_value(msg.data.clone())?;
            tx.execute(
                "INSERT INTO effects (consumer, event_id, stream, global_position) VALUES ('typed', ?1, ?2, ?3)",
                (&msg.id, &msg.stream_name, event.n + 1),
            )?;
            Ok(())
        })
        .unwrap();
    consumer.wait_for_position(last, DEADLINE).unwrap();
    consumer.shutdown();
    assert_eq!(effects(&kit, "typed"), [1, 2, 3, 4]);

    #[derive(Debug)]
    struct Declined;
    impl std::fmt::Display for Declined {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("card declined")
        }
    }
    let consumer = kit
        .consumer("order", "billing")
        .retry_policy(quick_retry(1))
        .spawn_typed(|msg, _tx| {
            if msg.global_position == 2 {
                Err(Declined)
            } else {
                Ok(())
            }
        })
        .unwrap();
    consumer.wait_for_position(last, DEADLINE).unwrap();
    consumer.shutdown();
    let letters = kit.dlq().list(&DeadLetterFilter::new()).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].error, "card declined");
}

#[test]
fn consume_then_emit_goes_through_the_handlers_transaction() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "order", 2, 10);
    let outbox = kit.outbox();
    let consumer = kit
        .consumer("order", "invoicer")
        .spawn(move |msg, tx| {
            let invoice = NewMessage::new("InvoiceRequested", json!({ "order": msg.stream_name }));
            outbox.write_in(tx, &format!("invoice-{}", msg.global_position), &invoice)?;
            Ok(())
        })
        .unwrap();
    consumer.wait_for_position(last, DEADLINE).unwrap();
    consumer.shutdown();
    assert_eq!(kit.outbox().status().unwrap().unsent, 10);
    // The commit woke the sender, which delivers them.
    let sender = kit.spawn_sender(eventodb_kit::SenderConfig::new()).unwrap();
    sender.wait_until_drained(DEADLINE).unwrap();
    sender.shutdown();
    let invoices = kit
        .store()
        .get_category("invoice", &Default::default())
        .unwrap();
    assert_eq!(invoices.len(), 10);
}

/// A handler that makes one call, once, and reports the error it got.
fn first_error_of(
    kit: &Kit,
    consumer_id: &str,
    call: impl Fn() -> eventodb_kit::Result<()> + Send + 'static,
) -> String {
    let (tx, rx) = crossbeam_channel::unbounded();
    let consumer = kit
        .consumer("order", consumer_id)
        .retry_policy(quick_retry(1))
        .spawn(move |_msg, _tx| {
            let result = call();
            let _ = tx.send(result.as_ref().map_err(|e| e.to_string()).err());
            result
        })
        .unwrap();
    let error = rx.recv_timeout(DEADLINE).unwrap();
    consumer.shutdown();
    error.expect("the call failed")
}

#[test]
fn a_second_transaction_on_the_file_from_a_handler_fails_at_once() {
    // Each of these used to wait out the 5 s busy timeout (or the pool's
    // 30 s) for the handler's own transaction, then fail with "database is
    // locked", be retried, and be dead-lettered.
    let (kit, _dir) = kit();
    write_many(&kit, "order", 1, 1);
    let outbox = kit.outbox();
    let error = first_error_of(&kit, "outbox", move || {
        outbox
            .write("invoice-1", &NewMessage::new("Requested", json!({})))
            .map(drop)
    });
    assert!(error.contains("write_in"), "{error}");

    let db = kit.db().clone();
    let error = first_error_of(&kit, "db", move || db.write(|_tx| Ok(())));
    assert!(
        error.contains("invalid input") && error.contains("write_in"),
        "{error}"
    );

    let store = Arc::clone(kit.store());
    let error = first_error_of(&kit, "store", move || {
        store
            .write(
                "invoice-1",
                &NewMessage::new("Requested", json!({})),
                &WriteOptions::new(),
            )
            .map(drop)
    });
    assert!(error.contains("embedded store"), "{error}");

    // An in-memory kit has one connection, which the handler's transaction holds.
    let memory = Kit::builder().build().unwrap();
    write_many(&memory, "order", 1, 1);
    let db = memory.db().clone();
    let error = first_error_of(&memory, "memory", move || db.read(|_c| Ok(())));
    assert!(error.contains("in-memory"), "{error}");

    // Reads of a file database are fine: they do not wait for the writer.
    let db = kit.db().clone();
    let (tx, rx) = crossbeam_channel::unbounded();
    let consumer = kit
        .consumer("order", "reader")
        .spawn(move |_msg, _tx| {
            let n: i64 =
                db.read(|c| Ok(c.query_row("SELECT COUNT(*) FROM effects", [], |r| r.get(0))?))?;
            tx.send(n).unwrap();
            Ok(())
        })
        .unwrap();
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), 0);
    consumer.shutdown();
}

#[test]
fn the_applications_commit_hook_survives_a_handler_that_emits() {
    let dir = tempfile::tempdir().unwrap();
    // One pooled connection: the app's hook and the consumer share it.
    let kit = Kit::builder()
        .database(dir.path().join("app.db"))
        .db_options(DbOptions::new().pool_size(1))
        .build()
        .unwrap();
    let commits = Arc::new(AtomicUsize::new(0));
    {
        let conn = kit.db().connection().unwrap();
        let counter = Arc::clone(&commits);
        conn.commit_hook(Some(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            false
        }))
        .unwrap();
    }
    let last = write_many(&kit, "order", 1, 3);
    let outbox = kit.outbox();
    let consumer = kit
        .consumer("order", "invoicer")
        .spawn(move |msg, tx| {
            outbox.write_in(
                tx,
                &format!("invoice-{}", msg.global_position),
                &NewMessage::new("Requested", json!({})),
            )?;
            Ok(())
        })
        .unwrap();
    consumer.wait_for_position(last, DEADLINE).unwrap();
    consumer.shutdown();
    let before = commits.load(Ordering::SeqCst);
    assert!(before > 0, "the consumer's commits ran the app's hook");
    kit.db()
        .write(|tx| {
            tx.execute_batch("CREATE TABLE t (x)")?;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        commits.load(Ordering::SeqCst),
        before + 1,
        "still installed"
    );
}

#[test]
fn an_unreachable_store_pauses_the_consumer_without_using_up_attempts() {
    let (kit, _dir) = kit();
    let last = write_many(&kit, "order", 1, 3);
    let down = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let (d, c) = (Arc::clone(&down), Arc::clone(&calls));
    let consumer = kit
        .consumer("order", "forwarder")
        // One attempt: a failure counted as the message's would dead-letter it.
        .retry_policy(quick_retry(1))
        .spawn(move |msg, tx| {
            c.fetch_add(1, Ordering::SeqCst);
            if d.load(Ordering::SeqCst) {
                return Err(Error::Transport {
                    kind: TransportErrorKind::ConnectionRefused,
                    message: "connection refused".into(),
                });
            }
            record_effect("forwarder", msg, tx)
        })
        .unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while calls.load(Ordering::SeqCst) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the handler was tried again"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        matches!(consumer.health(), ConsumerHealth::StoreUnavailable { .. }),
        "{:?}",
        consumer.health()
    );
    assert_eq!(consumer.position(), 0);
    assert_eq!(consumer.stats().dead_lettered, 0);
    assert_eq!(consumer.stats().failed_attempts, 0, "no attempt used up");
    down.store(false, Ordering::SeqCst);
    consumer.wait_for_position(last, DEADLINE).unwrap();
    assert_eq!(consumer.health(), ConsumerHealth::Running);
    consumer.shutdown();
    assert_eq!(effects(&kit, "forwarder"), [1, 2, 3]);
    assert_eq!(kit.dlq().count(&DeadLetterFilter::new()).unwrap(), 0);
}

#[test]
fn a_message_that_cannot_be_decoded_fails_alone_and_the_category_flows() {
    let (kit, _dir) = kit();
    write_many(&kit, "order", 2, 3);
    let poison = kit
        .db()
        .write(|tx| Ok(insert_undecodable(tx, "order-9")?))
        .unwrap();
    let last = write_many(&kit, "order", 2, 3);
    // A plain read returns what comes before it, then names it.
    let before = kit
        .store()
        .get_category("order", &Default::default())
        .unwrap();
    assert_eq!(before.len(), 3);
    let err = kit
        .store()
        .get_category(
            "order",
            &eventodb_kit::CategoryQuery::new().position(poison),
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Undecodable { global_position, .. } if global_position == poison),
        "{err}"
    );

    let consumer = kit
        .consumer("order", "ledger")
        .retry_policy(quick_retry(2))
        .spawn(|msg, tx| record_effect("ledger", msg, tx))
        .unwrap();
    consumer.wait_for_position(last, DEADLINE).unwrap();
    assert_eq!(consumer.stats().dead_lettered, 1);
    consumer.shutdown();
    let done = effects(&kit, "ledger");
    assert_eq!(done, [1, 2, 3, 5, 6, 7]);
    let letters = kit.dlq().list(&DeadLetterFilter::new()).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].message["globalPosition"], poison);
    assert!(
        letters[0].error.contains("cannot be decoded"),
        "{}",
        letters[0].error
    );

    // The stop policy halts at it instead.
    let strict = kit
        .consumer("order", "strict")
        .retry_policy(quick_retry(1))
        .failure_policy(FailurePolicy::Stop)
        .spawn(|_msg, _tx| Ok(()))
        .unwrap();
    let err = strict.wait_for_position(last, DEADLINE).unwrap_err();
    assert!(matches!(err, Error::Handler { global_position, .. } if global_position == poison));
    assert_eq!(strict.position(), poison - 1);
    strict.shutdown();
}

#[test]
fn wait_until_caught_up_waits_for_the_head_at_the_call() {
    let (kit, _dir) = kit();
    write_many(&kit, "order", 3, 25);
    write_many(&kit, "other", 1, 5);
    let consumer = kit
        .consumer("order", "ledger")
        .batch_size(4)
        .spawn(|msg, tx| record_effect("ledger", msg, tx))
        .unwrap();
    consumer.wait_until_caught_up(DEADLINE).unwrap();
    assert_eq!(consumer.stats().processed, 25);
    // Nothing new: returns at once.
    consumer.wait_until_caught_up(DEADLINE).unwrap();
    consumer.shutdown();
}

#[test]
fn wait_until_caught_up_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        eventodb_kit::server::Server::start(eventodb_kit::server::ServerConfig::new()).unwrap();
    let store = server.http_store().unwrap();
    let kit = kit_over(dir.path(), store.clone());
    for n in 0..30 {
        store
            .write(
                &format!("order-{}", n % 3),
                &NewMessage::new("Placed", json!({ "n": n })),
                &WriteOptions::new(),
            )
            .unwrap();
    }
    let consumer = kit
        .consumer("order", "ledger")
        .batch_size(7)
        .consumer_group(eventodb_kit::ConsumerGroup::new(0, 2).unwrap())
        .spawn(|msg, tx| record_effect("ledger", msg, tx))
        .unwrap();
    consumer.wait_until_caught_up(DEADLINE).unwrap();
    let mine = store
        .get_category(
            "order",
            &eventodb_kit::CategoryQuery::new()
                .batch_size(-1)
                .consumer_group(eventodb_kit::ConsumerGroup::new(0, 2).unwrap()),
        )
        .unwrap();
    assert_eq!(effects(&kit, "ledger").len(), mine.len());
    consumer.shutdown();
    drop(kit);
    server.shutdown();
}
