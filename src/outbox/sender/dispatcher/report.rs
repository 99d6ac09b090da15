//! After outcomes were committed: counters, hooks, and the waiters of
//! [`SenderHandle::wait_until_sent`](crate::outbox::SenderHandle::wait_until_sent).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Dispatcher;
use crate::hooks::{Delivered, DeliveryRetry, OutboxDeadLetter};
use crate::outbox::sender::queue::Mark;
use crate::time::now_ms;

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
}
