//! What the store's answers do: a write delivered, refused for good, to be
//! retried later, back in the queue, or in doubt until a read settles it
//! (see [`settle`](super::settle)); probes that end a pause.

use std::time::Duration;

use super::pause::{Pause, LINK_STREAK_PAUSE};
use super::stream::Expectation;
use super::{Core, Effect, Now, Tag, Verdict};
use crate::disposition::{Disposition, PauseReason};
use crate::error::{Error, Result, TransportErrorKind};
use crate::message::WriteResult;
use crate::outbox::config::AfterDeadLetter;
use crate::outbox::sender::queue::Mark;
use crate::time::millis;

/// Broken connections a row may be the first unanswered write on before
/// the failures count as its own (retried with backoff): a message that
/// makes something on the way drop the connection must not stall its
/// stream in a loop.
const LINK_FAILURES_PER_ROW: u32 = 5;

/// Failures of one message the store says may pass that are retried at
/// once, before the retry policy's backoff applies (a 500 from a flaky
/// proxy or a busy moment rarely comes three times in a row; a message
/// that fails every time costs three more requests per attempt).
const QUICK_RETRIES: u32 = 3;

/// Whether `e` says the connection failed mid-request: the outcome is
/// unknown, and a new connection may well work.
pub(super) fn is_link_failure(e: &Error) -> bool {
    match e {
        Error::Transport { kind, .. } => matches!(
            kind,
            TransportErrorKind::ConnectionReset
                | TransportErrorKind::Timeout
                | TransportErrorKind::Protocol
                | TransportErrorKind::Other
        ),
        Error::Timeout(_) | Error::Io(_) => true,
        _ => false,
    }
}

impl Core {
    pub(super) fn answer(
        &mut self,
        tag: Tag,
        result: Result<WriteResult>,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        // An answer to a write made before the lease was lost, or given up.
        let Some(seq) = self.tags.remove(&tag) else {
            return;
        };
        let Some(owned) = self.rows.get_mut(&seq) else {
            return;
        };
        let Some((_, lane, expectation)) = owned.flight.take() else {
            return;
        };
        let bytes = owned.bytes;
        let stream = owned.row.stream.clone();
        self.lanes[lane].window.answered(bytes);
        let Some(st) = self.streams.get_mut(&stream) else {
            return;
        };
        let broken = st.broken;
        st.answered(seq);
        // Any answer from the store (a success, a refusal, a conflict) shows
        // the link works: connection failures start counting anew.
        let answered = match &result {
            Ok(_) => true,
            Err(e) => !is_link_failure(e) && !matches!(e.disposition(), Disposition::Pause(_)),
        };
        if answered {
            self.link_streak = 0;
            self.lanes[lane].window.carried_one();
        }
        match result {
            Ok(written) => {
                // A write without an expected version landing further on
                // than the version known from this sender's own answers:
                // someone else appends to this stream.
                if let Some(st) = self.streams.get_mut(&stream) {
                    let known = st.version;
                    if expectation.version.is_none()
                        && known.is_some_and(|v| written.position != v + 1)
                    {
                        st.shared = true;
                    }
                }
                self.lanes[lane].window.grow();
                self.learned(&stream, Some(written.position));
                self.delivered(seq, false, written.position, out);
            }
            // The flight broke earlier: this row's outcome follows from it
            // (a conflict: not written; anything else: maybe written).
            Err(e) if broken => {
                if !matches!(e, Error::Conflict { .. }) {
                    if let Some(owned) = self.rows.get_mut(&seq) {
                        owned.doubt = true;
                    }
                }
                self.requeue(seq)
            }
            Err(e) => self.failed((seq, tag), e, expectation, lane, now, out),
        }
        self.touch(&stream);
    }

    /// The first failure of a flight (of the write `tag` of row `seq`).
    fn failed(
        &mut self,
        (seq, tag): (i64, Tag),
        error: Error,
        expectation: Expectation,
        lane: usize,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        let Some(owned) = self.rows.get(&seq) else {
            return;
        };
        let stream = owned.row.stream.clone();
        if let (Error::Conflict { actual, .. }, true) = (&error, expectation.chained) {
            // The sender chose the expected version and nothing before this
            // row failed: someone else appended to the stream.
            if let Some(st) = self.streams.get_mut(&stream) {
                st.break_flight(*actual);
                st.shared = true;
            }
            return self.requeue(seq);
        }
        match &error {
            Error::DuplicateId { .. } => {
                return self.settle_by_reading(seq, Verdict::Duplicate);
            }
            Error::Conflict { actual, .. } => {
                let verdict = Verdict::Conflict {
                    error: error.to_string(),
                    actual: *actual,
                };
                return self.settle_by_reading(seq, verdict);
            }
            _ => {}
        }
        if let Some(st) = self.streams.get_mut(&stream) {
            st.break_flight(None);
        }
        match error.disposition() {
            Disposition::DeadLetter => self.refused(seq, error.to_string(), now),
            Disposition::Retry => {
                self.lanes[lane].window.shrink();
                // A store's failure on one message (a busy database, a 500
                // from a proxy) often passes at once: a few quick retries, then
                // the retry policy's backoff.
                let quick = self.rows.get_mut(&seq).is_some_and(|o| {
                    o.doubt = true;
                    o.quick_retries += 1;
                    o.quick_retries <= QUICK_RETRIES
                });
                if quick {
                    self.requeue(seq);
                } else {
                    self.retry_later(seq, error.to_string(), now);
                }
            }
            Disposition::Pause(PauseReason::Unreachable) if is_link_failure(&error) => {
                self.link_failed((seq, tag), error, lane, now, out)
            }
            Disposition::Pause(reason) => {
                if let Some(owned) = self.rows.get_mut(&seq) {
                    owned.doubt = true;
                }
                self.pause_for(reason, &error, now, out);
                self.requeue(seq);
            }
        }
    }

    /// A connection broke with this row the first unanswered write: resend
    /// it at once on a new connection — unless connections keep breaking
    /// (the store is gone: pause) or this row keeps breaking them (its
    /// own failure: back off).
    fn link_failed(
        &mut self,
        (seq, tag): (i64, Tag),
        error: Error,
        lane: usize,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        // One break per connection, however many writes it failed: the
        // window shrinks to what connections carry (see `window`), and
        // breaks in a row count towards a pause.
        let next_tag = self.next_tag;
        if self.lanes[lane].broke(tag, next_tag) {
            self.link_streak += 1;
        }
        let Some(owned) = self.rows.get_mut(&seq) else {
            return;
        };
        owned.doubt = true;
        owned.link_failures += 1;
        let stream = owned.row.stream.clone();
        if owned.link_failures >= LINK_FAILURES_PER_ROW {
            return self.retry_later(seq, error.to_string(), now);
        }
        if self.link_streak >= LINK_STREAK_PAUSE {
            self.pause_for(PauseReason::Unreachable, &error, now, out);
        }
        // The write went out whole, so the store has likely taken it (and
        // the writes behind it on the connection): one read of the stream
        // settles them all, where resending would cost a request each and
        // then the read anyway.
        self.want_reconcile(&stream);
        self.requeue(seq);
    }

    /// Refused for good: dead letter, then the stream goes on or holds.
    pub(super) fn refused(&mut self, seq: i64, error: String, now: Now) {
        let Some(stream) = self.rows.get(&seq).map(|o| o.row.stream.clone()) else {
            return;
        };
        self.dead_letter(seq, error, now);
        if self.settings.after_dead_letter == AfterDeadLetter::HoldStream {
            self.book.hold(&stream);
            self.give_back_queue(&stream);
        }
    }

    /// A failure of this message that may pass: its stream waits for the
    /// retry policy's delay (or it is dead-lettered once the policy gives up).
    fn retry_later(&mut self, seq: i64, error: String, now: Now) {
        let Some(owned) = self.rows.get(&seq) else {
            return;
        };
        let row = &owned.row;
        let first_failed_at_ms = row.first_failed_at_ms.unwrap_or(now.wall_ms);
        let failing_for = Duration::from_millis((now.wall_ms - first_failed_at_ms).max(0) as u64);
        if self.settings.retry.gives_up(row.attempts, failing_for) {
            let error = format!("gave up after {} attempts: {error}", row.attempts);
            return self.refused(seq, error, now);
        }
        let delay = self
            .settings
            .retry
            .delay_with_jitter(row.attempts, self.rng.f64());
        let stream = row.stream.clone();
        let Some(owned) = self.rows.remove(&seq) else {
            return;
        };
        if let Some(st) = self.streams.get_mut(&stream) {
            st.queue.remove(&seq);
        }
        self.book.block(&stream, seq, now.after(delay));
        self.mark(Mark::Retry {
            seq,
            error,
            next_attempt_at_ms: now.wall_ms + millis(delay),
            first_failed_at_ms,
            id: owned.row.id,
            stream: stream.clone(),
            attempts: owned.row.attempts,
        });
        self.give_back_queue(&stream);
        self.touch(&stream);
    }

    /// Puts `seq` back at its place in its stream's queue — or, when the
    /// stream waits in the outbox meanwhile, gives it back.
    pub(super) fn requeue(&mut self, seq: i64) {
        let Some(stream) = self.rows.get(&seq).map(|o| o.row.stream.clone()) else {
            return;
        };
        if self.book.skips(&stream) {
            return self.give_back(seq);
        }
        if let Some(st) = self.streams.get_mut(&stream) {
            st.queue.insert(seq);
        }
        self.touch(&stream);
    }

    /// `seq` is in the store, at stream position `position`.
    pub(super) fn delivered(
        &mut self,
        seq: i64,
        duplicate: bool,
        position: i64,
        out: &mut Vec<Effect>,
    ) {
        let Some(owned) = self.rows.remove(&seq) else {
            return;
        };
        let row = owned.row;
        if let Some(st) = self.streams.get_mut(&row.stream) {
            st.queue.remove(&seq);
            if st.delivered.record(seq, position) {
                self.reordered += 1;
                out.push(Effect::Reordered {
                    stream: row.stream.clone(),
                    id: row.id.clone(),
                });
            }
        }
        let stream = row.stream.clone();
        self.mark(Mark::Sent {
            seq,
            created_at_ms: row.created_at_ms,
            duplicate,
            id: row.id,
            stream: row.stream,
        });
        self.touch(&stream);
    }

    pub(super) fn dead_letter(&mut self, seq: i64, error: String, now: Now) {
        let Some(owned) = self.rows.remove(&seq) else {
            return;
        };
        if let Some(st) = self.streams.get_mut(&owned.row.stream) {
            st.queue.remove(&seq);
            st.dead_pending.insert(seq);
        }
        let stream = owned.row.stream.clone();
        let first_failed_at_ms = owned.row.first_failed_at_ms.unwrap_or(now.wall_ms);
        self.mark(Mark::DeadLetter {
            row: Box::new(owned.row),
            error,
            first_failed_at_ms,
        });
        self.touch(&stream);
    }

    /// Pauses the whole sender (or notes a new reason for the pause in
    /// progress) because of `error`; not probing before its `Retry-After`.
    /// One outage is one pause, however many writes fail with it.
    pub(super) fn pause_for(
        &mut self,
        reason: PauseReason,
        error: &Error,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        let text = error.to_string();
        match &mut self.pause {
            Some(pause) => {
                pause.reason = reason;
                pause.error = text;
            }
            None => {
                out.push(Effect::Paused {
                    reason,
                    error: text.clone(),
                });
                self.pause = Some(Pause::new(
                    reason,
                    text,
                    now.book_ms,
                    now.wall_ms,
                    &self.settings.retry,
                ));
            }
        }
        if let Some(pause) = &mut self.pause {
            pause.hold_off(now.book_ms, error.retry_after());
        }
    }

    pub(super) fn probed(&mut self, result: Result<()>, now: Now, out: &mut Vec<Effect>) {
        let Some(pause) = &mut self.pause else {
            return;
        };
        match result.map_err(|e| (e.disposition(), e)) {
            Err((Disposition::Pause(reason), e)) => {
                pause.reason = reason;
                pause.error = e.to_string();
                pause.probes_failed += 1;
                pause.hold_off(now.book_ms, e.retry_after());
                pause.schedule(now.book_ms, &self.settings.retry);
            }
            // The store answered (even an error about the request): resume.
            _ => {
                let paused_ms = now.wall_ms - pause.since_wall_ms;
                out.push(Effect::Resumed {
                    reason: pause.reason,
                    paused_ms,
                });
                self.pause = None;
                self.link_streak = 0;
                for lane in &mut self.lanes {
                    lane.broke_at = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_failures_are_the_ambiguous_ones() {
        let t = |kind| Error::Transport {
            kind,
            message: "x".into(),
        };
        assert!(is_link_failure(&t(TransportErrorKind::ConnectionReset)));
        assert!(is_link_failure(&t(TransportErrorKind::Timeout)));
        assert!(!is_link_failure(&t(TransportErrorKind::ConnectionRefused)));
        assert!(!is_link_failure(&t(TransportErrorKind::Dns)));
        assert!(!is_link_failure(&t(TransportErrorKind::Tls)));
    }
}
