//! [`Kit::health`]: one answer to "is this kit working?", from the
//! database, the store and the senders and consumers the kit spawned.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde::Serialize;

use crate::consumer::ConsumerHealth;
use crate::disposition::PauseReason;
use crate::kit::Kit;
use crate::metrics::units;
use crate::outbox::PauseState;

/// The overall verdict of [`Kit::health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Everything works.
    Ok,
    /// Working, but something needs attention: the store is unreachable
    /// (the outbox keeps the writes), a consumer retries a message or
    /// cannot read, a sender ran into errors lately.
    Degraded,
    /// Something does not work: the local database fails, a component
    /// this kit spawned stopped doing its job (a consumer halted at a
    /// message, a thread that ended while its handle is still held), or
    /// the outbox sender is paused because the store refuses its token or
    /// a certificate (it takes a person to fix).
    Down,
}

/// How the kit is doing ([`Kit::health`]); `Clone` and serde-`Serialize`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct KitHealth {
    /// The worst of the findings below.
    pub status: HealthStatus,
    /// Why the status is not [`HealthStatus::Ok`], one line per finding.
    pub reasons: Vec<String>,
    /// When it was checked.
    #[serde(serialize_with = "units::time")]
    pub checked_at: SystemTime,
    /// The local database answered a query.
    pub database_ok: bool,
    /// The store answered a cheap read.
    pub store_reachable: bool,
    /// Why the store did not answer.
    pub store_error: Option<String>,
    /// The live senders this kit spawned.
    pub senders: Vec<SenderStatus>,
    /// The live consumers this kit spawned.
    pub consumers: Vec<ConsumerStatus>,
}

/// One live sender in [`KitHealth`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SenderStatus {
    /// Its thread runs.
    pub running: bool,
    /// It holds the lease and sends (otherwise it stands by).
    pub active: bool,
    /// When it last delivered a message.
    #[serde(serialize_with = "units::opt_time")]
    pub last_success: Option<SystemTime>,
    /// The last error it ran into.
    pub last_error: Option<String>,
    /// When that was.
    #[serde(serialize_with = "units::opt_time")]
    pub last_error_at: Option<SystemTime>,
    /// Why it is paused, if it is.
    pub pause: Option<PauseState>,
}

/// One live consumer in [`KitHealth`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ConsumerStatus {
    /// The category it follows.
    pub category: String,
    /// Its id.
    pub consumer_id: String,
    /// Its position.
    pub position: i64,
    /// How it is doing.
    pub health: ConsumerHealth,
}

/// A paused sender's finding: `Down` when it takes a person (a refused
/// token or certificate), `Degraded` while the store is unreachable.
fn paused(pause: &PauseState, now: SystemTime, who: &str) -> (HealthStatus, String) {
    let level = match pause.reason {
        PauseReason::Unreachable => HealthStatus::Degraded,
        _ => HealthStatus::Down,
    };
    let reason = format!(
        "{who} is paused ({}) since {} ({}s): {}",
        pause.reason,
        crate::time::format_rfc3339_seconds(pause.since),
        pause.duration_at(now).as_secs(),
        pause.error
    );
    (level, reason)
}

/// The stream [`Kit::health`] asks the store about (a read; it need not exist).
const PROBE_STREAM: &str = "eventodbKitHealth-probe";

impl Kit {
    /// Checks the database (one query), the store (one cheap read:
    /// `stream.version` of a probe stream) and the live senders and
    /// consumers this kit spawned, and sums it up in a [`HealthStatus`] with
    /// reasons.
    ///
    /// * **Down** — the database fails; a consumer halted (its
    ///   [`FailurePolicy::Stop`](crate::FailurePolicy::Stop)) or stopped while
    ///   its handle is held; a sender whose thread ended while its handle is
    ///   held; the namespace's outbox sender is paused because the store
    ///   refuses its token (401/403, a deleted namespace) or a TLS
    ///   certificate — "the outbox sender is paused (token refused) since …".
    /// * **Degraded** — the store does not answer; the outbox sender is
    ///   paused because the store is unreachable (the outbox keeps the
    ///   messages; it goes on by itself); a consumer retries a
    ///   message, cannot read the store or cannot commit; a sender's last
    ///   error is newer than its last delivery and younger than
    ///   [`KitBuilder::stalled_after`](crate::KitBuilder::stalled_after).
    ///
    /// The sender's pause is its own state when it runs in this kit, or
    /// else what the lease's holder (another process) stored with its
    /// lease.
    /// * **Ok** — none of these.
    ///
    /// Lags and stalls are in [`Kit::metrics`] (they cost a read per consumer).
    ///
    /// ```
    /// use eventodb_kit::{health::HealthStatus, Kit};
    /// let kit = Kit::builder().build()?;
    /// let health = kit.health();
    /// assert_eq!(health.status, HealthStatus::Ok, "{:?}", health.reasons);
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    pub fn health(&self) -> KitHealth {
        let now = SystemTime::now();
        let mut reasons = Vec::new();
        let mut status = HealthStatus::Ok;
        let mut find = |level: HealthStatus, reason: String| {
            status = status.max(level);
            reasons.push(reason);
        };

        let database = self
            .db()
            .read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?));
        if let Err(e) = &database {
            find(HealthStatus::Down, format!("the local database fails: {e}"));
        }
        let store = self.store().stream_version(PROBE_STREAM);
        if let Err(e) = &store {
            find(
                HealthStatus::Degraded,
                format!("the store is unreachable: {e}"),
            );
        }

        let recent = self.stalled_after();
        let mut senders = Vec::new();
        let mut live_active = false;
        for shared in self.runtime().registry.senders() {
            let c = &shared.counters;
            let h = c.health();
            let running = c.running.load(Ordering::Acquire);
            if !running && !shared.stop.load(Ordering::Acquire) {
                find(
                    HealthStatus::Down,
                    "an outbox sender's thread has ended while its handle is held".to_string(),
                );
            }
            if let (Some(error), Some(at)) = (&h.last_error, h.last_error_at) {
                let newer = h.last_success.is_none_or(|s| at > s);
                let young = now.duration_since(at).unwrap_or_default() < recent;
                if newer && young {
                    find(
                        HealthStatus::Degraded,
                        format!("the outbox sender's last attempt failed: {error}"),
                    );
                }
            }
            let active = c.active.load(Ordering::Acquire);
            if active {
                live_active = true;
                if let Some(pause) = &h.pause {
                    let (level, reason) = paused(pause, now, "the outbox sender");
                    find(level, reason);
                }
            }
            senders.push(SenderStatus {
                running,
                active,
                last_success: h.last_success,
                last_error: h.last_error,
                last_error_at: h.last_error_at,
                pause: h.pause,
            });
        }
        // The sender of another process: what it stored with its lease.
        if !live_active && database.is_ok() {
            if let Ok(Some(lease)) = self.outbox().sender_lease() {
                if let Some(pause) = lease.pause.as_ref().filter(|_| lease.is_held_at(now)) {
                    let who = format!(
                        "the outbox sender ({})",
                        crate::lease::holder_process(&lease.holder)
                    );
                    let (level, reason) = paused(pause, now, &who);
                    find(level, reason);
                }
            }
        }

        let mut consumers = Vec::new();
        for live in self.runtime().registry.consumers() {
            let health = live.shared.health();
            let who = format!("consumer {:?} of {:?}", live.consumer_id, live.category);
            match &health {
                // A standby is healthy: another instance works.
                ConsumerHealth::Running | ConsumerHealth::Standby => {}
                ConsumerHealth::Halted {
                    message_id,
                    global_position,
                    error,
                    ..
                } => find(
                    HealthStatus::Down,
                    format!("{who} halted at message {message_id} (global position {global_position}): {error}"),
                ),
                ConsumerHealth::Stopped => {
                    if !live.shared.stopping() {
                        find(HealthStatus::Down, format!("{who} has stopped"));
                    }
                }
                ConsumerHealth::Retrying {
                    message_id,
                    attempts,
                    error,
                    ..
                } => find(
                    HealthStatus::Degraded,
                    format!("{who} retries message {message_id} (attempt {attempts}): {error}"),
                ),
                ConsumerHealth::StoreUnavailable { error } => find(
                    HealthStatus::Degraded,
                    format!("{who} cannot read the store: {error}"),
                ),
                ConsumerHealth::DatabaseError { error } => find(
                    HealthStatus::Degraded,
                    format!("{who} cannot commit: {error}"),
                ),
            }
            consumers.push(ConsumerStatus {
                category: live.category,
                consumer_id: live.consumer_id,
                position: live.shared.position(),
                health,
            });
        }

        KitHealth {
            status,
            reasons,
            checked_at: now,
            database_ok: database.is_ok(),
            store_reachable: store.is_ok(),
            store_error: store.err().map(|e| e.to_string()),
            senders,
            consumers,
        }
    }
}
