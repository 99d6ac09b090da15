//! What a running consumer reports: counters, latencies, its position and
//! its health, shared between its threads and its handle.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::metrics::{Histogram, LatencySummary, RateMeter};
use crate::time::Deadline;

/// A snapshot of a consumer's counters (see [`ConsumerHandle::stats`](super::ConsumerHandle::stats)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Global position of the last message handled or passed over.
    pub position: i64,
    /// Messages the handler processed (committed), requeued dead letters included.
    pub processed: u64,
    /// Messages skipped because the consumer had already processed them.
    pub duplicates_skipped: u64,
    /// Messages passed over by the type or metadata filters.
    pub filtered: u64,
    /// Handler runs that failed (errors and panics), retries included.
    pub failed_attempts: u64,
    /// Of `failed_attempts`, the ones after which the message was tried again.
    pub retried: u64,
    /// Messages moved to the dead-letter table.
    pub dead_lettered: u64,
    /// Requeued dead letters whose handler run succeeded.
    pub requeued_processed: u64,
    /// Batches fetched from the store.
    pub batches_fetched: u64,
    /// Calls to the store's `category.get`, empty answers and failures
    /// included. While wake-ups work, an idle consumer makes none: it reads
    /// when a write pokes it (or at its poll interval, the fallback).
    pub fetches: u64,
    /// Processed messages per second over the last 10 seconds.
    pub processed_per_second: f64,
    /// How long successful handler runs took.
    pub handler_time: LatencySummary,
}

/// How a consumer is doing (see [`ConsumerHandle::health`](super::ConsumerHandle::health)).
///
/// Serializes with a `state` tag in snake case (`{"state":"halted",…}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConsumerHealth {
    /// Following its category: handling messages or waiting for new ones.
    Running,
    /// The store cannot be read; the consumer keeps trying with backoff.
    StoreUnavailable {
        /// The last error.
        error: String,
    },
    /// The local database failed while committing a batch; retrying it.
    DatabaseError {
        /// The last error.
        error: String,
    },
    /// The handler keeps failing on a message; retrying it with backoff.
    Retrying {
        /// The message's id.
        message_id: String,
        /// Its global position.
        global_position: i64,
        /// Failed attempts so far.
        attempts: u32,
        /// The last error.
        error: String,
    },
    /// Stopped at a message its handler could not process (the
    /// [`FailurePolicy::Stop`](super::FailurePolicy::Stop) policy). The
    /// position is just before it; a restart tries it again.
    Halted {
        /// The message's id.
        message_id: String,
        /// Its global position.
        global_position: i64,
        /// Failed attempts.
        attempts: u32,
        /// The last error.
        error: String,
    },
    /// Another instance of this consumer (same category and consumer id on
    /// the same database file, in this process or another) holds its lease
    /// and works; this one waits to take over when that one stops or dies.
    /// Its position follows the working instance's.
    Standby,
    /// Shut down.
    Stopped,
}

impl ConsumerHealth {
    /// Whether everything is fine (running, nothing failing).
    pub fn is_healthy(&self) -> bool {
        matches!(self, ConsumerHealth::Running)
    }
}

/// A failing message, for health and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailingMessage {
    pub(crate) message_id: String,
    pub(crate) global_position: i64,
    pub(crate) attempts: u32,
    pub(crate) error: String,
}

#[derive(Debug, Default)]
struct State {
    position: i64,
    store_error: Option<String>,
    db_error: Option<String>,
    retrying: Option<FailingMessage>,
    halted: Option<FailingMessage>,
    standby: bool,
    stopped: bool,
}

/// State shared by a consumer's threads and its handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Set to ask the threads to stop after the in-flight message.
    pub(crate) stop: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
    processed: AtomicU64,
    duplicates: AtomicU64,
    filtered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    requeued: AtomicU64,
    batches: AtomicU64,
    fetches: AtomicU64,
    handler_time: Histogram,
    rate: RateMeter,
}

/// Counts of one committed batch.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BatchCounts {
    pub(crate) processed: u64,
    pub(crate) duplicates: u64,
    pub(crate) filtered: u64,
}

impl Shared {
    pub(crate) fn new(position: i64) -> Self {
        let shared = Shared::default();
        shared.lock().position = position;
        shared
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// A batch committed: new position and counts.
    pub(crate) fn committed(&self, position: Option<i64>, counts: BatchCounts) {
        self.processed
            .fetch_add(counts.processed, Ordering::Relaxed);
        self.duplicates
            .fetch_add(counts.duplicates, Ordering::Relaxed);
        self.filtered.fetch_add(counts.filtered, Ordering::Relaxed);
        if counts.processed > 0 {
            self.rate.record(counts.processed);
        }
        self.update(|s| {
            if let Some(p) = position {
                s.position = p;
            }
            s.db_error = None;
        });
    }

    pub(crate) fn handler_ran(&self, took: Duration) {
        self.handler_time.record(took);
    }

    pub(crate) fn batch_fetched(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fetched(&self) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn requeue_processed(&self) {
        self.requeued.fetch_add(1, Ordering::Relaxed);
        self.processed.fetch_add(1, Ordering::Relaxed);
        self.rate.record(1);
    }

    pub(crate) fn handler_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A failed message will be tried again.
    pub(crate) fn handler_retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dead_lettered(&self, position: i64) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.update(|s| {
            s.position = position;
            s.retrying = None;
        });
    }

    pub(crate) fn set_store_error(&self, error: Option<String>) {
        self.update(|s| s.store_error = error);
    }

    pub(crate) fn set_db_error(&self, error: Option<String>) {
        self.update(|s| s.db_error = error);
    }

    pub(crate) fn set_retrying(&self, failing: Option<FailingMessage>) {
        self.update(|s| s.retrying = failing);
    }

    pub(crate) fn halt(&self, failing: FailingMessage) {
        self.update(|s| {
            s.retrying = None;
            s.halted = Some(failing);
        });
    }

    pub(crate) fn set_standby(&self, standby: bool) {
        self.update(|s| s.standby = standby);
    }

    /// The position as the working instance saved it (while standing by).
    pub(crate) fn set_position(&self, position: i64) {
        self.update(|s| s.position = position);
    }

    pub(crate) fn mark_stopped(&self) {
        self.update(|s| s.stopped = true);
    }

    pub(crate) fn position(&self) -> i64 {
        self.lock().position
    }

    pub(crate) fn health(&self) -> ConsumerHealth {
        let s = self.lock();
        if let Some(h) = &s.halted {
            return ConsumerHealth::Halted {
                message_id: h.message_id.clone(),
                global_position: h.global_position,
                attempts: h.attempts,
                error: h.error.clone(),
            };
        }
        if s.stopped {
            return ConsumerHealth::Stopped;
        }
        if s.standby {
            return ConsumerHealth::Standby;
        }
        if let Some(r) = &s.retrying {
            return ConsumerHealth::Retrying {
                message_id: r.message_id.clone(),
                global_position: r.global_position,
                attempts: r.attempts,
                error: r.error.clone(),
            };
        }
        if let Some(e) = &s.db_error {
            return ConsumerHealth::DatabaseError { error: e.clone() };
        }
        if let Some(e) = &s.store_error {
            return ConsumerHealth::StoreUnavailable { error: e.clone() };
        }
        ConsumerHealth::Running
    }

    pub(crate) fn stats(&self) -> ConsumerStats {
        ConsumerStats {
            position: self.position(),
            processed: self.processed.load(Ordering::Relaxed),
            duplicates_skipped: self.duplicates.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
            failed_attempts: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            requeued_processed: self.requeued.load(Ordering::Relaxed),
            batches_fetched: self.batches.load(Ordering::Relaxed),
            fetches: self.fetches.load(Ordering::Relaxed),
            processed_per_second: self.rate.rate(Duration::from_secs(10)),
            handler_time: self.handler_time.summary(),
        }
    }

    /// Waits until the position reaches `position`, the consumer halts or
    /// stops, or `timeout` passes.
    pub(crate) fn wait_for_position(&self, position: i64, timeout: Duration) -> Result<()> {
        let deadline = Deadline::after(timeout);
        let mut s = self.lock();
        loop {
            if s.position >= position {
                return Ok(());
            }
            if let Some(h) = &s.halted {
                return Err(Error::Handler {
                    message_id: h.message_id.clone(),
                    global_position: h.global_position,
                    message: h.error.clone(),
                });
            }
            if s.stopped {
                return Err(Error::Shutdown);
            }
            let left = deadline.remaining();
            if left.is_zero() {
                return Err(Error::Timeout(format!(
                    "consumer reached position {}, not {position}, within {timeout:?}",
                    s.position
                )));
            }
            s = self
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
