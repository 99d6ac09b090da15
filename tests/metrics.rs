//! `Kit::metrics`, `render_prometheus` and `Kit::health` on real files: live
//! senders and consumers, a database with nothing running (what a
//! command-line tool sees), stalled and healthy consumers, dead letters by
//! source.

mod common;
mod prometheus_support;

use std::time::Duration;

use eventodb_kit::consumer::FailurePolicy;
use eventodb_kit::health::HealthStatus;
use eventodb_kit::outbox::Delivery;
use eventodb_kit::{render_prometheus, Kit, NewMessage, RetryPolicy, WriteOptions};
use serde_json::json;

use prometheus_support::value;

fn kit_on(path: &std::path::Path) -> eventodb_kit::KitBuilder {
    Kit::builder().database(path)
}

fn write_outbox(kit: &Kit, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            kit.outbox()
                .write(
                    &format!("order-{}", i % 5),
                    &NewMessage::new("Placed", json!({ "n": i })),
                )
                .unwrap()
        })
        .collect()
}

fn once(attempts: u32) -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
        .max_attempts(attempts)
}

#[test]
fn a_live_sender_and_consumer_report_what_a_user_checks() {
    let t = common::kit();
    let kit = &t.kit;
    write_outbox(kit, 50);

    let m = kit.metrics().unwrap();
    assert_eq!(m.namespace, "default");
    assert_eq!(m.outbox.backlog, 50);
    assert!(m.outbox.oldest_unsent_age.is_some());
    assert!(m.outbox.sender.is_none(), "no sender runs yet");
    assert!(m.outbox.lease.is_none());

    let sender = kit.spawn_sender(common::fast()).unwrap();
    assert_ne!(
        kit.health().status,
        HealthStatus::Down,
        "a new sender counts as running"
    );
    sender.wait_until_drained(common::WAIT).unwrap();
    let m = kit.metrics().unwrap();
    assert_eq!(m.outbox.backlog, 0, "the backlog drained");
    assert_eq!(m.outbox.oldest_unsent_age, None);
    let s = m.outbox.sender.as_ref().unwrap();
    assert_eq!((s.senders, s.sent, s.dead_lettered), (1, 50, 0));
    assert!(s.running && s.active);
    assert_eq!(s.latency.count, 50);
    assert!(s.latency.p50.is_some() && s.latency.p95.is_some() && s.latency.p99.is_some());
    assert!(s.last_success.is_some());
    assert!(m.outbox.lease.as_ref().unwrap().held);

    // A consumer that has a position but is not running: lag from the store.
    kit.checkpoints().set("order", "audit", 0).unwrap();
    let m = kit.metrics().unwrap();
    let audit = m.consumer("order", "audit").unwrap();
    let lag = audit.lag.as_ref().unwrap();
    assert_eq!((lag.messages, lag.at_least), (50, false));
    assert_eq!(lag.head_position, Some(50));
    assert!(lag.oldest_unprocessed_at.is_some());
    assert!(audit.live.is_none());
    // Counting stops at the limit.
    let capped = kit_on(&t.path()).lag_count_limit(20).build().unwrap();
    let lag = capped.metrics().unwrap().consumers[0].lag.clone().unwrap();
    assert_eq!((lag.messages, lag.at_least), (20, true));
    // A limit beyond the largest read (10 000) is clamped, not an error.
    let huge = kit_on(&t.path()).lag_count_limit(50_000).build().unwrap();
    let m = huge.metrics().unwrap();
    assert_eq!(m.store_error, None);
    assert_eq!(m.consumers[0].lag.as_ref().unwrap().messages, 50);

    // Running it: the lag goes to 0, handler figures appear.
    let consumer = kit
        .consumer("order", "audit")
        .spawn(|_msg, _tx| Ok(()))
        .unwrap();
    consumer.wait_for_position(50, common::WAIT).unwrap();
    let m = kit.metrics().unwrap();
    let audit = m.consumer("order", "audit").unwrap();
    assert_eq!(audit.position, 50);
    let lag = audit.lag.as_ref().unwrap();
    assert_eq!((lag.messages, lag.seconds), (0, Duration::ZERO));
    assert!(!audit.stalled);
    assert!(audit.last_progress_at.is_some());
    let live = audit.live.as_ref().unwrap();
    assert_eq!(live.processed, 50);
    assert_eq!(live.handler_time.count, 50);
    assert!(live.handler_time.p99.is_some());
    assert_eq!(live.success_rate, Some(1.0));
    assert_eq!(live.retry_rate, Some(0.0));

    // What `--json` prints: seconds as numbers, times as RFC 3339.
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(v["outbox"]["backlog"], 0);
    assert!(v["outbox"]["sender"]["latency"]["p50"].is_f64());
    assert!(v["consumers"][0]["last_progress_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(v["consumers"][0]["live"]["health"]["state"], "running");
    assert_eq!(kit.health().status, HealthStatus::Ok);

    // Once the handles are gone, so are the live figures.
    consumer.shutdown();
    sender.shutdown();
    let m = kit.metrics().unwrap();
    assert!(m.outbox.sender.is_none());
    assert!(m.consumer("order", "audit").unwrap().live.is_none());
}

#[test]
fn a_database_with_nothing_running_shows_positions_lags_and_stalls() {
    let t = common::kit();
    {
        let kit = &t.kit;
        for i in 0..10 {
            kit.store()
                .write(
                    &format!("invoice-{i}"),
                    &NewMessage::new("Issued", json!({})),
                    &WriteOptions::new(),
                )
                .unwrap();
        }
        let c = kit
            .consumer("invoice", "mailer")
            .spawn(|_m, _tx| Ok(()))
            .unwrap();
        c.wait_for_position(10, common::WAIT).unwrap();
        c.shutdown();
        for i in 0..4 {
            kit.store()
                .write(
                    &format!("invoice-{i}"),
                    &NewMessage::new("Paid", json!({})),
                    &WriteOptions::new(),
                )
                .unwrap();
        }
        write_outbox(kit, 3);
    }

    // A fresh kit on the file, as a command-line tool would open it.
    let tool = kit_on(&t.path()).build().unwrap();
    let m = tool.metrics().unwrap();
    assert_eq!(m.outbox.backlog, 3);
    assert!(m.outbox.sender.is_none());
    assert_eq!(m.consumers.len(), 1);
    let mailer = &m.consumers[0];
    assert_eq!(
        (mailer.category.as_str(), mailer.consumer_id.as_str()),
        ("invoice", "mailer")
    );
    assert_eq!(mailer.position, 10);
    assert_eq!(mailer.lag.as_ref().unwrap().messages, 4);
    assert!(mailer.live.is_none());
    assert!(
        !mailer.stalled,
        "60 s have not passed since its last progress"
    );

    // With a zero threshold the same database shows it as stalled.
    let strict = kit_on(&t.path())
        .stalled_after(Duration::ZERO)
        .build()
        .unwrap();
    assert!(strict.metrics().unwrap().consumers[0].stalled);
}

#[test]
fn a_halted_consumer_is_stalled_and_a_caught_up_one_is_not() {
    let t = common::kit();
    let kit = kit_on(&t.path())
        .stalled_after(Duration::ZERO)
        .build()
        .unwrap();
    let healthy = kit
        .consumer("payment", "ledger")
        .spawn(|_m, _tx| Ok(()))
        .unwrap();
    let halting = kit
        .consumer("payment", "strict")
        .retry_policy(once(1))
        .failure_policy(FailurePolicy::Stop)
        .spawn_typed(|m, _tx| {
            if m.message_type == "Poison" {
                Err("cannot handle poison".to_string())
            } else {
                Ok(())
            }
        })
        .unwrap();
    let write = |t: &str| {
        kit.store()
            .write(
                "payment-1",
                &NewMessage::new(t, json!({})),
                &WriteOptions::new(),
            )
            .unwrap()
            .global_position
    };
    write("Received");
    let poison = write("Poison");
    assert!(halting.wait_for_position(poison, common::WAIT).is_err());
    // Messages keep arriving behind the poison.
    let mut last = 0;
    for _ in 0..3 {
        last = write("Received");
    }
    healthy.wait_for_position(last, common::WAIT).unwrap();

    let m = kit.metrics().unwrap();
    let strict = m.consumer("payment", "strict").unwrap();
    assert_eq!(strict.position, poison - 1);
    assert_eq!(strict.lag.as_ref().unwrap().messages, 4);
    assert!(strict.stalled);
    assert!(matches!(
        strict.live.as_ref().unwrap().health,
        eventodb_kit::ConsumerHealth::Halted { .. }
    ));
    let ledger = m.consumer("payment", "ledger").unwrap();
    assert_eq!(ledger.lag.as_ref().unwrap().messages, 0);
    assert!(!ledger.stalled);

    let health = kit.health();
    assert_eq!(health.status, HealthStatus::Down);
    assert!(
        health
            .reasons
            .iter()
            .any(|r| r.contains("\"strict\"") && r.contains("halted")),
        "{:?}",
        health.reasons
    );
    assert_eq!(health.consumers.len(), 2);
    assert!(health.database_ok && health.store_reachable);

    // The halted handle dropped: its live state is gone, the stall stays.
    drop(halting);
    let m = kit.metrics().unwrap();
    assert!(m.consumer("payment", "strict").unwrap().stalled);
    healthy.shutdown();
    assert_eq!(kit.health().status, HealthStatus::Ok);
}

#[test]
fn dead_letters_are_counted_by_source() {
    let t = common::kit();
    let kit = &t.kit;
    let sender = kit.spawn_sender(common::fast()).unwrap();
    let refused = kit
        .outbox()
        .write_with(
            "ledger-1",
            &NewMessage::new("Versioned", json!({})),
            &WriteOptions::new().expected_version(7),
        )
        .unwrap();
    assert!(matches!(
        sender.wait_until_sent(&refused, common::WAIT).unwrap(),
        Delivery::DeadLettered { .. }
    ));
    let consumer = kit
        .consumer("ledger", "projector")
        .retry_policy(once(1))
        .spawn_typed(|_m, _tx| Err::<(), _>("always fails"))
        .unwrap();
    let w = kit
        .store()
        .write(
            "ledger-2",
            &NewMessage::new("Booked", json!({})),
            &WriteOptions::new(),
        )
        .unwrap();
    consumer
        .wait_for_position(w.global_position, common::WAIT)
        .unwrap();
    consumer.shutdown();

    let m = kit.metrics().unwrap();
    assert_eq!((m.dead_letters.outbox, m.dead_letters.consumer), (1, 1));
    assert_eq!(m.dead_letters.total(), 2);
    assert_eq!(m.outbox.dead_letters, 1);
    let projector = m.consumer("ledger", "projector").unwrap();
    assert_eq!(
        (projector.dead_letters, projector.dead_letters_requeued),
        (1, 0)
    );
    assert_eq!(m.outbox.sender.as_ref().unwrap().dead_lettered, 1);

    kit.dlq()
        .requeue_where(
            &eventodb_kit::DeadLetterFilter::new().source(eventodb_kit::DeadLetterSource::Consumer),
        )
        .unwrap();
    let m = kit.metrics().unwrap();
    assert_eq!(m.dead_letters.requeued, 1);
    assert_eq!(
        m.consumer("ledger", "projector")
            .unwrap()
            .dead_letters_requeued,
        1
    );
    sender.shutdown();
}

#[test]
fn prometheus_output_parses_and_has_the_expected_series() {
    let t = common::kit();
    let kit = &t.kit;
    let sender = kit.spawn_sender(common::fast()).unwrap();
    let consumer = kit
        .consumer("order", "audit")
        .spawn(|_m, _tx| Ok(()))
        .unwrap();
    let ids = write_outbox(kit, 20);
    for id in &ids {
        assert_eq!(
            sender.wait_until_sent(id, common::WAIT).unwrap(),
            Delivery::Sent
        );
    }
    consumer.wait_for_position(20, common::WAIT).unwrap();
    // A consumer id that needs escaping in a label.
    kit.checkpoints()
        .set("order", "we\"ird\\id\nx", 15)
        .unwrap();

    let text = render_prometheus(&kit.metrics().unwrap());
    let samples = prometheus_support::parse(&text);
    let ns = [("namespace", "default")];
    assert_eq!(
        value(&samples, "eventodb_kit_outbox_backlog", &ns),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "eventodb_kit_outbox_sent_total", &ns),
        Some(20.0)
    );
    assert_eq!(value(&samples, "eventodb_kit_store_up", &ns), Some(1.0));
    assert_eq!(
        value(
            &samples,
            "eventodb_kit_outbox_delivery_latency_seconds_count",
            &ns
        ),
        Some(20.0)
    );
    assert!(value(
        &samples,
        "eventodb_kit_outbox_delivery_latency_seconds",
        &[("namespace", "default"), ("quantile", "0.99")]
    )
    .is_some());
    let audit = [
        ("namespace", "default"),
        ("category", "order"),
        ("consumer", "audit"),
    ];
    assert_eq!(
        value(&samples, "eventodb_kit_consumer_lag_messages", &audit),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "eventodb_kit_consumer_position", &audit),
        Some(20.0)
    );
    assert_eq!(
        value(&samples, "eventodb_kit_consumer_processed_total", &audit),
        Some(20.0)
    );
    assert_eq!(
        value(&samples, "eventodb_kit_consumer_stalled", &audit),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "eventodb_kit_consumer_up", &audit),
        Some(1.0)
    );
    let weird = [
        ("namespace", "default"),
        ("category", "order"),
        ("consumer", "we\"ird\\id\nx"),
    ];
    assert_eq!(
        value(&samples, "eventodb_kit_consumer_lag_messages", &weird),
        Some(5.0)
    );
    assert_eq!(
        value(&samples, "eventodb_kit_consumer_up", &weird),
        None,
        "not running here"
    );
    assert_eq!(
        value(
            &samples,
            "eventodb_kit_dead_letters",
            &[("namespace", "default"), ("source", "outbox")]
        ),
        Some(0.0)
    );
    consumer.shutdown();
    sender.shutdown();
}

#[test]
fn metrics_and_health_work_with_the_store_unreachable() {
    // A store in a file that is closed under the kit cannot be simulated
    // in-process; an HttpStore to a port nobody listens on can.
    let dir = tempfile::tempdir().unwrap();
    let closed = common::closed_port::ClosedPort::new();
    let token = format!("ns_ZGVmYXVsdA_{}", "0".repeat(64));
    let kit = Kit::builder()
        .database(dir.path().join("app.db"))
        .url(closed.url())
        .token(token)
        .build()
        .unwrap();
    kit.checkpoints().set("order", "a", 0).unwrap();
    kit.checkpoints().set("order", "b", 0).unwrap();
    write_outbox(&kit, 2);
    let m = kit.metrics().unwrap();
    assert_eq!(m.outbox.backlog, 2, "the database part still works");
    assert!(m.store_error.is_some());
    assert!(m.consumers.iter().all(|c| c.lag.is_none() && !c.stalled));
    let text = render_prometheus(&m);
    let samples = prometheus_support::parse(&text);
    assert_eq!(
        value(
            &samples,
            "eventodb_kit_store_up",
            &[("namespace", "default")]
        ),
        Some(0.0)
    );
    let health = kit.health();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(!health.store_reachable);
    assert!(
        health.reasons[0].contains("unreachable"),
        "{:?}",
        health.reasons
    );
}
