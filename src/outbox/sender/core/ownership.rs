//! The rows the core owns: outcomes to write back, whether a stream may
//! send, rows handed back to the outbox (with the rows behind them), and
//! what to do when writes in flight or reads under way are lost, or dead
//! letters became durable.

use super::stream::{Floor, Reconcile};
use super::{Core, Effect, Now, Tag};
use crate::outbox::sender::queue::Mark;

/// Idle streams whose version the core remembers (for chaining the next
/// rows at once); beyond this, idle streams are forgotten.
const REMEMBERED_STREAMS: usize = 10_000;

impl Core {
    /// Fails every write in flight on `lane` as a broken connection would,
    /// in the order they were sent.
    pub(super) fn lane_reset(&mut self, lane: usize, now: Now, out: &mut Vec<Effect>) {
        let mut tags: Vec<Tag> = self
            .tags
            .iter()
            .filter(|(_, seq)| {
                self.rows
                    .get(seq)
                    .and_then(|o| o.flight)
                    .is_some_and(|(_, l, _)| l == lane)
            })
            .map(|(tag, _)| *tag)
            .collect();
        tags.sort_unstable();
        for tag in tags {
            let result = Err(crate::error::Error::Transport {
                kind: crate::error::TransportErrorKind::ConnectionReset,
                message: "the lane's pipeline stopped".into(),
            });
            self.answer(tag, result, now, out);
        }
    }

    /// Dead letters are durable: their streams may go on.
    pub(super) fn written_back(&mut self, dead_letters: &[(i64, String)]) {
        for (seq, stream) in dead_letters {
            let removed = self
                .streams
                .get_mut(stream)
                .is_some_and(|st| st.dead_pending.remove(seq));
            if removed {
                self.touch(stream);
            }
        }
    }

    /// Reads under way are asked for again.
    pub(super) fn checker_reset(&mut self) {
        let running: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, st)| matches!(st.reconcile, Reconcile::Running { .. }))
            .map(|(name, _)| name.clone())
            .collect();
        for stream in running {
            self.want_reconcile(&stream);
        }
        if let Some(pause) = &mut self.pause {
            if pause.next_probe_ms.is_none() {
                pause.schedule(self.now.book_ms, &self.settings.retry);
            }
        }
    }

    pub(super) fn mark(&mut self, mark: Mark) {
        self.marks_since.get_or_insert(self.now.book_ms);
        self.marks.push(mark);
    }

    /// Recomputes whether `stream` may send now, and forgets it when the
    /// sender owns nothing of it and too many streams are remembered.
    pub(super) fn touch(&mut self, stream: &str) {
        let Some(st) = self.streams.get(stream) else {
            return;
        };
        let head = st.queue.first().copied();
        let ready = head.and_then(|seq| {
            let own = self.rows.get(&seq)?.row.expected_version;
            st.next_expectation(own).map(|_| seq)
        });
        let idle = st.idle();
        let was = st.ready_at;
        if was != ready {
            if let Some(old) = was {
                self.ready.remove(&(old, stream.to_string()));
            }
            if let Some(seq) = ready {
                self.ready.insert((seq, stream.to_string()));
            }
        }
        if let Some(st) = self.streams.get_mut(stream) {
            st.ready_at = ready;
            if idle {
                st.delivered.settle();
            }
        }
        if idle && self.streams.len() > REMEMBERED_STREAMS {
            self.streams.remove(stream);
        }
    }

    /// Hands `seq` back to the outbox unsent (its attempt too), and with it
    /// every row of its stream queued behind it — they must not overtake it.
    pub(super) fn give_back(&mut self, seq: i64) {
        let Some(stream) = self.rows.get(&seq).map(|o| o.row.stream.clone()) else {
            return;
        };
        let behind: Vec<i64> = self
            .streams
            .get(&stream)
            .map(|st| st.queue.range(seq + 1..).copied().collect())
            .unwrap_or_default();
        self.give_back_one(seq);
        for later in behind {
            self.give_back_one(later);
        }
    }

    fn give_back_one(&mut self, seq: i64) {
        let Some(owned) = self.rows.remove(&seq) else {
            return;
        };
        if let Some((tag, lane, _)) = owned.flight {
            self.tags.remove(&tag);
            self.lanes[lane].window.answered(owned.bytes);
        }
        if let Some(st) = self.streams.get_mut(&owned.row.stream) {
            st.queue.remove(&seq);
            st.answered(seq);
        }
        self.book.returned(&owned.row.stream, seq);
        if owned.floor != Floor::NotSent {
            self.sent_before.insert(seq, owned.floor);
        }
        self.mark(Mark::Unclaim {
            seq,
            attempts: owned.row.attempts.saturating_sub(1),
            next_attempt_at_ms: owned.row.next_attempt_at_ms,
        });
        let stream = owned.row.stream;
        self.touch(&stream);
    }

    /// Gives back every queued row of `stream` (it waits in the outbox).
    pub(super) fn give_back_queue(&mut self, stream: &str) {
        let queued: Vec<i64> = self
            .streams
            .get(stream)
            .map(|st| st.queue.iter().copied().collect())
            .unwrap_or_default();
        for seq in queued {
            self.give_back(seq);
        }
    }
}
