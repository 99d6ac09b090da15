//! Hooks registered on a kit are called by its sender, consumers, cleanup
//! thread and metrics reporter, after the facts are committed; a panicking
//! hook does not stop a component. Over HTTP, an unreachable store shows
//! up as delivery retries.

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use eventodb_kit::consumer::FailurePolicy;
use eventodb_kit::hooks::{
    Component, ConsumerDeadLetter, Delivered, DeliveryRetry, Handled, HandlerFailed, KitHook,
    NextStep, OutboxDeadLetter, SenderPaused, SenderResumed,
};
use eventodb_kit::{
    CleanupConfig, Kit, LogHook, Metrics, NewMessage, NopHook, RetryPolicy, WriteOptions,
};
use serde_json::json;

/// Records every event as a line of text.
#[derive(Debug, Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    added: Condvar,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // A failed assertion in the test must not poison the sender's hook.
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, event: String) {
        self.lock().push(event);
        self.added.notify_all();
    }

    fn count(&self, prefix: &str) -> usize {
        self.lock().iter().filter(|e| e.starts_with(prefix)).count()
    }

    /// Waits until `n` events start with `prefix`.
    fn wait_for(&self, prefix: &str, n: usize) {
        let deadline = Instant::now() + common::WAIT;
        let mut events = self.lock();
        while events.iter().filter(|e| e.starts_with(prefix)).count() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {n} {prefix:?} events in {:#?}",
                *events
            );
            events = self
                .added
                .wait_timeout(events, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

fn name(c: &Component<'_>) -> String {
    match c {
        Component::Sender { .. } => "sender".into(),
        Component::Consumer { consumer_id, .. } => format!("consumer {consumer_id}"),
        Component::Cleanup => "cleanup".into(),
        Component::MetricsReporter => "reporter".into(),
        _ => "other".into(),
    }
}

impl KitHook for Recorder {
    fn on_delivered(&self, e: &Delivered<'_>) {
        self.push(format!("delivered {} {}", e.stream, e.message_id));
    }
    fn on_sender_paused(&self, e: &SenderPaused<'_>) {
        self.push(format!("paused {}", e.reason));
    }
    fn on_sender_resumed(&self, e: &SenderResumed<'_>) {
        self.push(format!("resumed {}", e.reason));
    }
    fn on_delivery_retry(&self, e: &DeliveryRetry<'_>) {
        assert!(e.attempts >= 1 && !e.error.is_empty());
        self.push(format!("retry {} {}", e.stream, e.attempts));
    }
    fn on_outbox_dead_letter(&self, e: &OutboxDeadLetter<'_>) {
        self.push(format!("outbox-dead {} {}", e.stream, e.error));
    }
    fn on_handled(&self, e: &Handled<'_>) {
        self.push(format!(
            "handled {} {}",
            e.consumer_id, e.message.global_position
        ));
    }
    fn on_handler_failed(&self, e: &HandlerFailed<'_>) {
        let next = match e.next {
            NextStep::Retry { .. } => "retry",
            NextStep::DeadLetter => "dead-letter",
            NextStep::Halt => "halt",
            NextStep::KeepDeadLetter => "keep",
            _ => "other",
        };
        self.push(format!("failed {} {} {next}", e.consumer_id, e.attempts));
    }
    fn on_consumer_dead_letter(&self, e: &ConsumerDeadLetter<'_>) {
        self.push(format!(
            "consumer-dead {} {}",
            e.consumer_id, e.message.global_position
        ));
    }
    fn on_started(&self, c: &Component<'_>) {
        self.push(format!("started {}", name(c)));
    }
    fn on_stopped(&self, c: &Component<'_>) {
        self.push(format!("stopped {}", name(c)));
    }
    fn on_metrics(&self, m: &Metrics) {
        self.push(format!("metrics backlog={}", m.outbox.backlog));
    }
}

fn kit_with(dir: &std::path::Path, hooks: &[Arc<dyn KitHook>]) -> Kit {
    hooks
        .iter()
        .fold(Kit::builder().database(dir.join("app.db")), |b, h| {
            b.hook(Arc::clone(h))
        })
        .build()
        .unwrap()
}

fn retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
        .max_attempts(attempts)
}

#[test]
fn every_component_calls_the_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let kit = kit_with(
        dir.path(),
        &[rec.clone(), Arc::new(NopHook), Arc::new(LogHook)],
    );

    // Outbox: three deliveries and a refusal.
    let sender = kit.spawn_sender(common::fast()).unwrap();
    for i in 0..3 {
        kit.outbox()
            .write(&format!("order-{i}"), &NewMessage::new("Placed", json!({})))
            .unwrap();
    }
    kit.outbox()
        .write_with(
            "ledger-1",
            &NewMessage::new("Versioned", json!({})),
            &WriteOptions::new().expected_version(3),
        )
        .unwrap();
    rec.wait_for("delivered order-", 3);
    rec.wait_for("outbox-dead ledger-1 version conflict", 1);

    // Consumers: handled messages, a retry then a dead letter, a halt.
    let audit = kit
        .consumer("order", "audit")
        .spawn(|_m, _tx| Ok(()))
        .unwrap();
    rec.wait_for("handled audit", 3);
    let picky = kit
        .consumer("invoice", "picky")
        .retry_policy(retries(2))
        .spawn_typed(|_m, _tx| Err::<(), _>("no"))
        .unwrap();
    let strict = kit
        .consumer("invoice", "strict")
        .retry_policy(retries(1))
        .failure_policy(FailurePolicy::Stop)
        .spawn_typed(|_m, _tx| Err::<(), _>("no"))
        .unwrap();
    let w = kit
        .store()
        .write(
            "invoice-1",
            &NewMessage::new("Issued", json!({})),
            &WriteOptions::new(),
        )
        .unwrap();
    rec.wait_for(&format!("consumer-dead picky {}", w.global_position), 1);
    assert_eq!(rec.count("failed picky 1 retry"), 1);
    assert_eq!(rec.count("failed picky 2 dead-letter"), 1);
    rec.wait_for("failed strict 1 halt", 1);
    rec.wait_for("stopped consumer strict", 1);

    // Background threads.
    let cleanup = kit.spawn_cleanup(CleanupConfig::new()).unwrap();
    cleanup.wait_for_runs(1, common::WAIT).unwrap();
    cleanup.shutdown();
    let reporter = kit
        .spawn_metrics_reporter(Duration::from_secs(3600))
        .unwrap();
    rec.wait_for("metrics backlog=0", 1);
    reporter.shutdown();

    audit.shutdown();
    picky.shutdown();
    drop(strict);
    sender.shutdown();
    for component in [
        "sender",
        "consumer audit",
        "consumer picky",
        "consumer strict",
        "cleanup",
        "reporter",
    ] {
        assert_eq!(rec.count(&format!("started {component}")), 1, "{component}");
        assert_eq!(rec.count(&format!("stopped {component}")), 1, "{component}");
    }
    assert_eq!(rec.count("delivered"), 3);
    assert_eq!(rec.count("handled"), 3);
}

/// A hook that panics on every delivery.
#[derive(Debug)]
struct Broken;

impl KitHook for Broken {
    fn on_delivered(&self, _: &Delivered<'_>) {
        panic!("this hook is broken");
    }
}

#[test]
fn a_panicking_hook_does_not_stop_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let kit = kit_with(dir.path(), &[Arc::new(Broken), rec.clone()]);
    let sender = kit.spawn_sender(common::fast()).unwrap();
    for i in 0..5 {
        kit.outbox()
            .write(&format!("order-{i}"), &NewMessage::new("Placed", json!({})))
            .unwrap();
    }
    sender.wait_until_drained(common::WAIT).unwrap();
    rec.wait_for("delivered", 5);
    assert!(sender.health().running);
    sender.shutdown();
}

#[cfg(feature = "server")]
#[test]
fn an_unreachable_store_pauses_the_sender_once_and_uses_no_attempts() {
    use eventodb_kit::server::{Server, ServerConfig};

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::new().data_dir(data.path())).unwrap();
    let (addr, token) = (
        server.addr(),
        server.default_token().unwrap().expose_secret().to_string(),
    );
    server.shutdown();
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let kit = Kit::builder()
        .database(dir.path().join("app.db"))
        .url(format!("http://{addr}"))
        .token(token.as_str())
        .hook(rec.clone())
        .build()
        .unwrap();
    let sender = kit.spawn_sender(common::fast()).unwrap();
    let id = kit
        .outbox()
        .write("order-1", &NewMessage::new("Placed", json!({})))
        .unwrap();
    rec.wait_for("paused store unreachable", 1);
    let server = Server::start(
        ServerConfig::new()
            .port(addr.port())
            .data_dir(data.path())
            .token(token),
    )
    .unwrap();
    rec.wait_for(&format!("delivered order-1 {id}"), 1);
    rec.wait_for("resumed store unreachable", 1);
    assert_eq!(rec.count("paused"), 1, "one outage, one pause");
    assert_eq!(
        rec.count("retry"),
        0,
        "a pause is not a retry of the message"
    );
    let m = kit.metrics().unwrap();
    assert_eq!(m.outbox.sender.as_ref().unwrap().retried, 0);
    assert!(
        kit.outbox().get(&id).unwrap().attempts <= 1,
        "the outage used up no attempts"
    );
    sender.shutdown();
    server.shutdown();
}
