//! A lane's report turned into what to write back — sent, retry later
//! (this stream backs off, or the whole sender pauses while the store is
//! unreachable), or dead letter — and into what the stream book must know.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{ms, Dispatcher};
use crate::outbox::config::AfterDeadLetter;
use crate::outbox::sender::deliver::{FailureClass, Outcome};
use crate::outbox::sender::lane::LaneResult;
use crate::outbox::sender::queue::{Mark, OutboxRow};
use crate::outbox::sender::streams::Now;

impl Dispatcher {
    /// Takes a lane's report into account.
    pub(super) fn settle(&mut self, result: LaneResult) {
        let LaneResult { lane, row, outcome } = result;
        self.book.finish(&row);
        self.router.done(lane, &row.stream);
        let now = self.now();
        let mark = match outcome {
            Outcome::Delivered { duplicate } => {
                self.unreachable_streak = 0;
                let row = *row;
                Mark::Sent {
                    seq: row.seq,
                    created_at_ms: row.created_at_ms,
                    duplicate,
                    id: row.id,
                    stream: row.stream,
                }
            }
            Outcome::Skipped => {
                self.book.block(&row.stream, row.seq, now.book_ms);
                Mark::Unclaim {
                    seq: row.seq,
                    attempts: row.attempts.saturating_sub(1),
                    next_attempt_at_ms: row.next_attempt_at_ms,
                }
            }
            Outcome::Failed { error, class } => self.failed(row, error.to_string(), class, now),
        };
        if self.pending.is_empty() {
            self.pending_since = Some(Instant::now());
        }
        self.pending.push(mark);
    }

    /// The store could not be reached: pauses the sender, or — when it is
    /// pausing already — leaves the pause as it is. One outage is one
    /// pause: rows that were on their way when it began (many streams, many
    /// lanes) fail with it, and must not each count as another failed probe.
    /// The backoff grows with the probes that fail after a pause. Returns
    /// the time left until the pause ends.
    fn pause_for_unreachable_store(&mut self) -> Duration {
        let end = match self.pause_until {
            Some(end) => end,
            None => {
                self.unreachable_streak += 1;
                let pause = self
                    .config
                    .retry_policy()
                    .jittered_delay_after(self.unreachable_streak);
                self.flags.paused.store(true, Ordering::Release);
                *self.pause_until.insert(Instant::now() + pause)
            }
        };
        end.saturating_duration_since(Instant::now())
    }

    /// A failed attempt: the mark to write back, and the stream's wait.
    pub(super) fn failed(
        &mut self,
        row: Box<OutboxRow>,
        error: String,
        class: FailureClass,
        now: Now,
    ) -> Mark {
        log::debug!(
            "outbox message {} on {} failed ({class:?}): {error}",
            row.id,
            row.stream
        );
        self.shared
            .counters
            .error(format!("delivering {} to {}: {error}", row.id, row.stream));
        let first_failed_at_ms = row.first_failed_at_ms.unwrap_or(now.wall_ms);
        let policy = self.config.retry_policy();
        let failing_for = Duration::from_millis((now.wall_ms - first_failed_at_ms).max(0) as u64);
        let mut error = error;
        let retry_in = match class {
            FailureClass::Permanent => None,
            _ if policy.gives_up(row.attempts, failing_for) => {
                error = format!("gave up after {} attempts: {error}", row.attempts);
                None
            }
            FailureClass::Unreachable => {
                // The stream goes on with the others when the pause ends.
                let pause = self.pause_for_unreachable_store();
                self.book.block(&row.stream, row.seq, now.book_ms);
                Some(pause)
            }
            FailureClass::Transient => {
                let delay = policy.jittered_delay_after(row.attempts);
                self.book.block(&row.stream, row.seq, now.after(delay));
                Some(delay)
            }
        };
        if let Some(delay) = retry_in {
            return Mark::Retry {
                seq: row.seq,
                error,
                next_attempt_at_ms: now.wall_ms + ms(delay),
                first_failed_at_ms,
                id: row.id,
                stream: row.stream,
                attempts: row.attempts,
            };
        }
        log::warn!(
            "outbox message {} on {} dead-lettered: {error}",
            row.id,
            row.stream
        );
        match self.config.after_dead_letter_value() {
            AfterDeadLetter::Continue => self.book.block(&row.stream, row.seq, now.book_ms),
            AfterDeadLetter::HoldStream => self.book.hold(&row.stream),
        }
        Mark::DeadLetter {
            row,
            error,
            first_failed_at_ms,
        }
    }
}
