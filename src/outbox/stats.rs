//! What a running sender reports: [`SenderStats`], [`SenderHealth`], and the
//! outcome of waiting for one message ([`Delivery`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::disposition::PauseReason;
use crate::metrics::{Histogram, LatencySummary, RateMeter};

/// Counters of one sender since it was spawned, plus the outbox backlog.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SenderStats {
    /// Messages waiting to be delivered (all senders of the namespace).
    pub backlog: u64,
    /// How long the oldest of them has been waiting.
    pub oldest_unsent_age: Option<Duration>,
    /// Messages in the dead-letter queue (all senders of the namespace).
    pub dead_letters: u64,
    /// Messages this sender delivered (including `already_delivered`).
    pub sent: u64,
    /// Of `sent`, messages the store already had (a resend after an
    /// ambiguous failure or a crash), recognised by their id.
    pub already_delivered: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Messages this sender moved to the dead-letter queue.
    pub dead_lettered: u64,
    /// Time from the write to the outbox until the store accepted the
    /// message (millisecond resolution), over everything this sender delivered.
    pub latency: LatencySummary,
    /// Messages delivered per second, averaged over the last 10 s.
    pub throughput: f64,
    /// Why the sender is paused, if it is (the store unreachable, the token
    /// refused), and since when.
    pub pause: Option<PauseState>,
    /// Why its pipelines send one write at a time, if they found that the
    /// store (or a proxy in front of it) does not answer pipelined requests.
    pub pipelining_fallback: Option<String>,
    /// Writes each lane may keep in flight now (its window).
    pub windows: Vec<usize>,
    /// Messages that reached the store after a later message of their
    /// stream (only possible when another writer appends to the stream at
    /// the moment a write fails; each is logged at error).
    pub reordered: u64,
}

/// A sender's pause: nothing is sent, nothing uses up attempts, and a probe
/// on a short schedule notices when the store is back.
///
/// The active sender also stores its pause with its lease, so that
/// [`Kit::metrics`](crate::Kit::metrics) in another process (and
/// `eventodb-kit status`) shows it too ([`LeaseInfo::pause`](crate::outbox::LeaseInfo::pause)).
/// Serializes as `{ "reason": "auth_refused", "error": "…", "since": "<RFC 3339>" }`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PauseState {
    /// What it is about.
    pub reason: PauseReason,
    /// The error that started it, or the latest probe's.
    pub error: String,
    /// When it began.
    #[serde(serialize_with = "crate::metrics::units::time")]
    pub since: SystemTime,
}

impl PauseState {
    pub(crate) fn new(reason: PauseReason, error: String, since: SystemTime) -> Self {
        PauseState {
            reason,
            error,
            since,
        }
    }

    /// How long it has lasted at `now`.
    pub fn duration_at(&self, now: SystemTime) -> Duration {
        now.duration_since(self.since).unwrap_or_default()
    }
}

/// Whether a sender is working.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SenderHealth {
    /// The sender's thread is running (false after shutdown or a crash).
    pub running: bool,
    /// It holds the namespace's lease and sends; `false` while it stands by
    /// for another sender on the same database.
    pub active: bool,
    /// When it last delivered a message.
    pub last_success: Option<SystemTime>,
    /// The last error it ran into (delivery or database), if any.
    pub last_error: Option<String>,
    /// When that was.
    pub last_error_at: Option<SystemTime>,
    /// Why it is paused, if it is (see [`SenderStats::pause`]).
    pub pause: Option<PauseState>,
}

/// How a message waited for with
/// [`SenderHandle::wait_until_sent`](super::SenderHandle::wait_until_sent) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Delivery {
    /// The store has it.
    Sent,
    /// The store refused it (or it ran out of retries): it is in the
    /// dead-letter queue with this error.
    DeadLettered {
        /// The last error.
        error: String,
    },
}

#[derive(Debug, Default)]
struct HealthInner {
    last_success: Option<SystemTime>,
    last_error: Option<(String, SystemTime)>,
    live: LiveState,
}

/// What the dispatcher publishes about its state, for the stats.
#[derive(Debug, Clone, Default)]
pub(crate) struct LiveState {
    pub(crate) pause: Option<PauseState>,
    pub(crate) fallback: Option<String>,
    pub(crate) windows: Vec<usize>,
    pub(crate) reordered: u64,
}

/// Counters shared by the sender's threads and its handle.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) running: AtomicBool,
    pub(crate) active: AtomicBool,
    pub(crate) sent: AtomicU64,
    pub(crate) already_delivered: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) latency: Histogram,
    pub(crate) rate: RateMeter,
    health: Mutex<HealthInner>,
}

impl Counters {
    pub(crate) fn delivered(&self, n: u64, duplicates: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.already_delivered
            .fetch_add(duplicates, Ordering::Relaxed);
        self.rate.record(n);
        self.lock().last_success = Some(SystemTime::now());
    }

    pub(crate) fn error(&self, error: impl Into<String>) {
        self.lock().last_error = Some((error.into(), SystemTime::now()));
    }

    /// The dispatcher's latest state.
    pub(crate) fn set_state(&self, live: LiveState) {
        self.lock().live = live;
    }

    pub(crate) fn live(&self) -> LiveState {
        self.lock().live.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthInner> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn health(&self) -> SenderHealth {
        let inner = self.lock();
        SenderHealth {
            running: self.running.load(Ordering::Acquire),
            active: self.active.load(Ordering::Acquire),
            last_success: inner.last_success,
            last_error: inner.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: inner.last_error.as_ref().map(|(_, t)| *t),
            pause: inner.live.pause.clone(),
        }
    }

    pub(crate) fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.already_delivered.load(Ordering::Relaxed),
            self.retried.load(Ordering::Relaxed),
            self.dead_lettered.load(Ordering::Relaxed),
        )
    }
}
