//! After outcomes were committed: counters, hooks, and the waiters of
//! [`SenderHandle::wait_until_sent`](crate::outbox::SenderHandle::wait_until_sent);
//! and what the sender tells about itself: its pause, its pipelines.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Dispatcher;
use crate::disposition::PauseReason;
use crate::hooks::{Delivered, DeliveryRetry, OutboxDeadLetter, SenderPaused, SenderResumed};
use crate::outbox::sender::queue::Mark;
use crate::outbox::stats::{LiveState, PauseState};
use crate::time::{from_ms, now_ms};

impl Dispatcher {
    /// Counts what was just written back and tells waiters.
    pub(super) fn written_back(&self, marks: &[Mark]) {
        let counters = &self.shared.counters;
        let now = now_ms();
        let (mut sent, mut duplicates, mut settled) = (0, 0, false);
        for mark in marks {
            match mark {
                Mark::Sent {
                    created_at_ms,
                    duplicate,
                    id,
                    stream,
                    ..
                } => {
                    sent += 1;
                    duplicates += u64::from(*duplicate);
                    let latency = Duration::from_millis((now - created_at_ms).max(0) as u64);
                    counters.latency.record(latency);
                    settled = true;
                    self.hooks.emit(|h| {
                        h.on_delivered(&Delivered {
                            message_id: id,
                            stream,
                            latency,
                            already_delivered: *duplicate,
                        })
                    });
                }
                Mark::DeadLetter { row, error, .. } => {
                    counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    settled = true;
                    log::warn!(
                        "outbox message {} on {} dead-lettered: {error}",
                        row.id,
                        row.stream
                    );
                    self.hooks.emit(|h| {
                        h.on_outbox_dead_letter(&OutboxDeadLetter {
                            message_id: &row.id,
                            stream: &row.stream,
                            attempts: row.attempts,
                            error,
                        })
                    });
                }
                Mark::Retry {
                    id,
                    stream,
                    attempts,
                    error,
                    next_attempt_at_ms,
                    ..
                } => {
                    counters.retried.fetch_add(1, Ordering::Relaxed);
                    counters.error(format!("delivering {id} to {stream}: {error}"));
                    self.hooks.emit(|h| {
                        h.on_delivery_retry(&DeliveryRetry {
                            message_id: id,
                            stream,
                            attempts: *attempts,
                            error,
                            retry_in: Duration::from_millis(
                                (next_attempt_at_ms - now).max(0) as u64
                            ),
                        })
                    });
                }
                Mark::Unclaim { .. } => {}
            }
        }
        if sent > 0 {
            counters.delivered(sent, duplicates);
        }
        if settled {
            self.shared.progress.notify();
        }
    }

    /// The sender paused: one warning per pause, the health and the hooks.
    pub(super) fn paused(&self, reason: PauseReason, error: &str) {
        log::warn!(
            "outbox sender of {:?} paused ({reason}): {error}",
            self.namespace
        );
        let counters = &self.shared.counters;
        counters.error(format!("paused ({reason}): {error}"));
        self.hooks.emit(|h| {
            h.on_sender_paused(&SenderPaused {
                namespace: &self.namespace,
                reason,
                error,
            })
        });
    }

    /// The pause ended.
    pub(super) fn resumed(&self, reason: PauseReason, paused_ms: i64) {
        let paused_for = Duration::from_millis(paused_ms.max(0) as u64);
        log::info!(
            "outbox sender of {:?} resumed after {paused_for:?} ({reason})",
            self.namespace
        );
        self.hooks.emit(|h| {
            h.on_sender_resumed(&SenderResumed {
                namespace: &self.namespace,
                reason,
                paused_for,
            })
        });
    }

    /// A row reached the store after a later row of its stream.
    pub(super) fn reordered(&self, stream: &str, id: &str) {
        log::error!(
            "outbox message {id} reached {stream} after a later message of the stream: another \
             writer's appends lined up with a chain whose first write had failed"
        );
    }

    /// The core's pause, as stats, health and the lease row show it.
    pub(super) fn pause_state(&self) -> Option<PauseState> {
        self.core
            .pause()
            .map(|p| PauseState::new(p.reason, p.error.clone(), from_ms(p.since_wall_ms)))
    }

    /// Whether a pause started, ended or changed its reason since it was
    /// last stored with the lease: worth a transaction of its own, so that
    /// other processes see it at once. (A new error text of the same pause
    /// waits for the next renewal.)
    pub(super) fn pause_changed(&self) -> bool {
        let Some(stored) = &self.stored_pause else {
            return false;
        };
        let key = |p: &PauseState| (p.reason, p.since);
        stored.as_ref().map(key) != self.pause_state().as_ref().map(key)
    }

    /// Publishes the core's state for stats and health.
    pub(super) fn publish_state(&self) {
        self.shared.counters.set_state(LiveState {
            pause: self.pause_state(),
            fallback: self.pipelines.iter().find_map(|p| p.fallback()),
            windows: self.core.windows(),
            reordered: self.core.reordered(),
        });
    }
}
