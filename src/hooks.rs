//! Hooks: a trait whose methods the kit calls when something happens in its
//! threads — a message delivered, retried or dead-lettered by the outbox
//! sender; a message handled, failed or dead-lettered by a consumer; a
//! component started or stopped; a periodic metrics snapshot — so an
//! application can forward events and figures to its own system.
//!
//! Every method does nothing by default: implement the ones you need.
//! [`NopHook`] ignores everything; [`LogHook`] writes each event to the
//! [`log`] facade (target `eventodb_kit::hook`). Register hooks with
//! [`KitBuilder::hook`](crate::KitBuilder::hook); every sender and consumer the
//! kit spawns calls them.
//!
//! # When and where hooks run
//!
//! * On the component's own thread (the sender's dispatcher, the consumer's
//!   worker, the cleanup or reporter thread), one event at a time per
//!   component; different components call concurrently, hence `Send + Sync`.
//! * After the fact is committed: [`KitHook::on_delivered`] once the row is
//!   marked sent, [`KitHook::on_handled`] once the handler's transaction
//!   committed, the dead-letter events once the dead letter is stored. No
//!   transaction is open while a hook runs.
//! * A hook holds up the component while it runs: keep it quick (count, send
//!   on a channel). A hook that panics is logged and ignored; the component
//!   goes on.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use eventodb_kit::hooks::{Delivered, KitHook};
//! use eventodb_kit::{Kit, NewMessage, SenderConfig};
//!
//! #[derive(Debug, Default)]
//! struct CountDeliveries(AtomicU64);
//!
//! impl KitHook for CountDeliveries {
//!     fn on_delivered(&self, _event: &Delivered<'_>) {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!     }
//! }
//!
//! let counter = Arc::new(CountDeliveries::default());
//! let dir = tempfile::tempdir()?;
//! let kit = Kit::builder()
//!     .database(dir.path().join("app.db"))
//!     .hook(counter.clone())
//!     .build()?;
//! let sender = kit.spawn_sender(SenderConfig::new())?;
//! let id = kit.outbox().write("order-1", &NewMessage::new("Placed", serde_json::json!({})))?;
//! let _ = sender.wait_until_sent(&id, Duration::from_secs(10))?;
//! sender.shutdown(); // the hook has been called by then
//! assert_eq!(counter.0.load(Ordering::Relaxed), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::message::Message;
use crate::metrics::Metrics;

/// Receives the kit's events; every method does nothing unless implemented.
///
/// See the [module documentation](self) for when and on which thread each
/// is called.
pub trait KitHook: Send + Sync + fmt::Debug {
    /// The sender delivered a message and recorded it as sent.
    fn on_delivered(&self, event: &Delivered<'_>) {
        let _ = event;
    }

    /// A delivery attempt failed with an error worth retrying; the message
    /// waits for its next attempt.
    fn on_delivery_retry(&self, event: &DeliveryRetry<'_>) {
        let _ = event;
    }

    /// The sender gave up on a message (the store refused it for good, or it
    /// ran out of retries); it is now in the dead-letter queue.
    fn on_outbox_dead_letter(&self, event: &OutboxDeadLetter<'_>) {
        let _ = event;
    }

    /// The sender paused: the store is unreachable, or refused the token or
    /// the certificate. Nothing is sent (and nothing dead-lettered) until a
    /// probe finds it answering again; called once per pause.
    fn on_sender_paused(&self, event: &SenderPaused<'_>) {
        let _ = event;
    }

    /// The sender's pause ended: the store answers again.
    fn on_sender_resumed(&self, event: &SenderResumed<'_>) {
        let _ = event;
    }

    /// A consumer's handler processed a message and its transaction
    /// committed (requeued dead letters included).
    fn on_handled(&self, event: &Handled<'_>) {
        let _ = event;
    }

    /// A consumer's handler failed on a message (an error or a panic); `next`
    /// says what the consumer does about it.
    fn on_handler_failed(&self, event: &HandlerFailed<'_>) {
        let _ = event;
    }

    /// A consumer moved a message its handler kept failing on to the
    /// dead-letter queue (and its position past it).
    fn on_consumer_dead_letter(&self, event: &ConsumerDeadLetter<'_>) {
        let _ = event;
    }

    /// A component's thread started.
    fn on_started(&self, component: &Component<'_>) {
        let _ = component;
    }

    /// A component's thread is about to end (shutdown, a dropped handle, or a
    /// consumer halted by [`FailurePolicy::Stop`](crate::FailurePolicy::Stop)).
    fn on_stopped(&self, component: &Component<'_>) {
        let _ = component;
    }

    /// A metrics snapshot, taken periodically by
    /// [`Kit::spawn_metrics_reporter`](crate::Kit::spawn_metrics_reporter).
    fn on_metrics(&self, metrics: &Metrics) {
        let _ = metrics;
    }
}

/// The outbox sender delivered a message ([`KitHook::on_delivered`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Delivered<'a> {
    /// The message id.
    pub message_id: &'a str,
    /// Its stream.
    pub stream: &'a str,
    /// From the write to the outbox until the store accepted it (millisecond resolution).
    pub latency: Duration,
    /// The store already had it (a resend after an ambiguous failure).
    pub already_delivered: bool,
}

/// A delivery attempt failed and will be retried ([`KitHook::on_delivery_retry`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct DeliveryRetry<'a> {
    /// The message id.
    pub message_id: &'a str,
    /// Its stream.
    pub stream: &'a str,
    /// Attempts made so far.
    pub attempts: u32,
    /// The error.
    pub error: &'a str,
    /// How long until the next attempt.
    pub retry_in: Duration,
}

/// The sender dead-lettered a message ([`KitHook::on_outbox_dead_letter`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct OutboxDeadLetter<'a> {
    /// The message id.
    pub message_id: &'a str,
    /// Its stream.
    pub stream: &'a str,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: &'a str,
}

/// The sender paused ([`KitHook::on_sender_paused`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SenderPaused<'a> {
    /// The namespace of the sender.
    pub namespace: &'a str,
    /// What the pause is about.
    pub reason: crate::disposition::PauseReason,
    /// The error that started it.
    pub error: &'a str,
}

/// The sender's pause ended ([`KitHook::on_sender_resumed`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SenderResumed<'a> {
    /// The namespace of the sender.
    pub namespace: &'a str,
    /// What the pause was about.
    pub reason: crate::disposition::PauseReason,
    /// How long it lasted.
    pub paused_for: Duration,
}

/// A consumer handled a message ([`KitHook::on_handled`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Handled<'a> {
    /// The category the consumer follows.
    pub category: &'a str,
    /// The consumer's id.
    pub consumer_id: &'a str,
    /// The message.
    pub message: &'a Message,
    /// How long the handler took.
    pub took: Duration,
}

/// What a consumer does after a handler failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NextStep {
    /// Tries the message again after this delay.
    Retry {
        /// The backoff before the next attempt.
        after: Duration,
    },
    /// Moves it to the dead-letter queue and goes on.
    DeadLetter,
    /// Halts at it ([`FailurePolicy::Stop`](crate::FailurePolicy::Stop)).
    Halt,
    /// Nothing more: a requeued dead letter failed again and stays in the
    /// dead-letter queue.
    KeepDeadLetter,
}

/// A consumer's handler failed ([`KitHook::on_handler_failed`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HandlerFailed<'a> {
    /// The category the consumer follows.
    pub category: &'a str,
    /// The consumer's id.
    pub consumer_id: &'a str,
    /// The message.
    pub message: &'a Message,
    /// Failed attempts at this message so far.
    pub attempts: u32,
    /// The handler's error (or panic message).
    pub error: &'a str,
    /// What happens next.
    pub next: NextStep,
}

/// A consumer dead-lettered a message ([`KitHook::on_consumer_dead_letter`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ConsumerDeadLetter<'a> {
    /// The category the consumer follows.
    pub category: &'a str,
    /// The consumer's id.
    pub consumer_id: &'a str,
    /// The message.
    pub message: &'a Message,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: &'a str,
}

/// A thread of the kit ([`KitHook::on_started`], [`KitHook::on_stopped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Component<'a> {
    /// An outbox sender of a namespace.
    Sender {
        /// The namespace.
        namespace: &'a str,
        /// Its id in the lease table.
        holder: &'a str,
    },
    /// A consumer.
    Consumer {
        /// The category it follows.
        category: &'a str,
        /// Its id.
        consumer_id: &'a str,
    },
    /// The cleanup thread ([`Kit::spawn_cleanup`](crate::Kit::spawn_cleanup)).
    Cleanup,
    /// The metrics reporter ([`Kit::spawn_metrics_reporter`](crate::Kit::spawn_metrics_reporter)).
    MetricsReporter,
}

impl fmt::Display for Component<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Component::Sender { namespace, holder } => {
                write!(f, "outbox sender of {namespace:?} ({holder})")
            }
            Component::Consumer {
                category,
                consumer_id,
            } => write!(f, "consumer {consumer_id:?} of {category:?}"),
            Component::Cleanup => f.write_str("cleanup thread"),
            Component::MetricsReporter => f.write_str("metrics reporter"),
        }
    }
}

/// A hook that ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NopHook;

impl KitHook for NopHook {}

/// A hook that logs every event through the [`log`] facade, on target
/// `eventodb_kit::hook`: starts, stops and dead letters at `info`/`error`,
/// failures at `warn`, deliveries and handled messages at `debug`, metrics
/// snapshots at `info` (one line).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogHook;

const TARGET: &str = "eventodb_kit::hook";

impl KitHook for LogHook {
    fn on_delivered(&self, e: &Delivered<'_>) {
        log::debug!(target: TARGET, "delivered {} to {} after {:?}{}", e.message_id, e.stream, e.latency,
            if e.already_delivered { " (already in the store)" } else { "" });
    }

    fn on_delivery_retry(&self, e: &DeliveryRetry<'_>) {
        log::warn!(target: TARGET, "delivering {} to {} failed (attempt {}), retrying in {:?}: {}",
            e.message_id, e.stream, e.attempts, e.retry_in, e.error);
    }

    fn on_outbox_dead_letter(&self, e: &OutboxDeadLetter<'_>) {
        log::error!(target: TARGET, "outbox message {} to {} dead-lettered after {} attempts: {}",
            e.message_id, e.stream, e.attempts, e.error);
    }

    fn on_sender_paused(&self, e: &SenderPaused<'_>) {
        log::warn!(target: TARGET, "outbox sender of {:?} paused ({}): {}", e.namespace, e.reason, e.error);
    }

    fn on_sender_resumed(&self, e: &SenderResumed<'_>) {
        log::info!(target: TARGET, "outbox sender of {:?} resumed after {:?} ({})", e.namespace, e.paused_for, e.reason);
    }

    fn on_handled(&self, e: &Handled<'_>) {
        log::debug!(target: TARGET, "consumer {:?} handled {} ({} at {}) in {:?}",
            e.consumer_id, e.message.id, e.message.message_type, e.message.global_position, e.took);
    }

    fn on_handler_failed(&self, e: &HandlerFailed<'_>) {
        log::warn!(target: TARGET, "consumer {:?} failed on {} (global position {}, attempt {}, next: {:?}): {}",
            e.consumer_id, e.message.id, e.message.global_position, e.attempts, e.next, e.error);
    }

    fn on_consumer_dead_letter(&self, e: &ConsumerDeadLetter<'_>) {
        log::error!(target: TARGET, "consumer {:?} dead-lettered {} (global position {}) after {} attempts: {}",
            e.consumer_id, e.message.id, e.message.global_position, e.attempts, e.error);
    }

    fn on_started(&self, component: &Component<'_>) {
        log::info!(target: TARGET, "{component} started");
    }

    fn on_stopped(&self, component: &Component<'_>) {
        log::info!(target: TARGET, "{component} stopped");
    }

    fn on_metrics(&self, m: &Metrics) {
        let stalled = m.consumers.iter().filter(|c| c.stalled).count();
        log::info!(target: TARGET,
            "metrics: outbox backlog {}, dead letters {} (outbox) + {} (consumers), {} consumers ({} stalled)",
            m.outbox.backlog, m.dead_letters.outbox, m.dead_letters.consumer, m.consumers.len(), stalled);
    }
}

/// The hooks registered on a kit, shared by its components.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    list: Arc<[Arc<dyn KitHook>]>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list.iter()).finish()
    }
}

impl Hooks {
    pub(crate) fn new(list: Vec<Arc<dyn KitHook>>) -> Self {
        Hooks { list: list.into() }
    }

    /// Whether any hook is registered (callers skip building events if not).
    pub(crate) fn any(&self) -> bool {
        !self.list.is_empty()
    }

    /// Calls `f` on every hook; a panicking hook is logged and skipped.
    pub(crate) fn emit(&self, f: impl Fn(&dyn KitHook)) {
        for hook in self.list.iter() {
            if catch_unwind(AssertUnwindSafe(|| f(hook.as_ref()))).is_err() {
                log::error!(target: TARGET, "a hook panicked ({hook:?}); the event is dropped for it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug, Default)]
    struct Starts(AtomicU32);
    impl KitHook for Starts {
        fn on_started(&self, _: &Component<'_>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[derive(Debug)]
    struct Panics;
    impl KitHook for Panics {
        fn on_started(&self, _: &Component<'_>) {
            panic!("a broken hook");
        }
    }

    #[test]
    fn a_panicking_hook_does_not_stop_the_others() {
        let starts = Arc::new(Starts::default());
        let hooks = Hooks::new(vec![Arc::new(Panics), starts.clone(), Arc::new(NopHook)]);
        assert!(hooks.any());
        hooks.emit(|h| h.on_started(&Component::Cleanup));
        assert_eq!(starts.0.load(Ordering::Relaxed), 1);
        assert!(!Hooks::default().any());
    }
}
