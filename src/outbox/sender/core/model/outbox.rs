//! The model's outbox: the application writing rows, claims as the
//! dispatcher runs them (marks written back, then the scan, in one
//! transaction that may fail), and the marks applied.

use std::collections::HashSet;

use super::super::Event;
use crate::outbox::sender::queue::{self, Mark, OutboxRow};

use super::sim::{RowState, Sim, SimRow, Stored, STREAMS};

impl Sim {
    // ----- the application and the outbox -----

    pub(super) fn write_rows(&mut self) {
        for _ in 0..self.rng.usize(1..6) {
            let stream = STREAMS[self.rng.usize(..STREAMS.len())];
            let seq = self.next_seq;
            self.next_seq += 1;
            let invalid = self.rng.u8(..100) < 3;
            let expected_version = (self.rng.u8(..100) < 3).then(|| {
                let len = self.store.get(stream).map_or(0, Vec::len) as i64;
                self.rng.i64(-1..len + 3)
            });
            let row = OutboxRow {
                seq,
                id: format!("0190b6a4-0000-7000-8000-{seq:012}"),
                stream: stream.to_string(),
                message_type: if invalid {
                    "Invalid".into()
                } else {
                    format!("T{seq}")
                },
                data: "{}".into(),
                metadata: None,
                expected_version,
                idempotency_key: None,
                created_at_ms: self.wall_ms,
                attempts: 0,
                next_attempt_at_ms: None,
                first_failed_at_ms: None,
            };
            // Now and then a row the store has already: an earlier process
            // sent it, crashed, and its attempt had been given back (so
            // nothing in the row says it was ever sent). Only behind rows
            // stored so too, as that process would have sent them in order.
            let in_order = self.outbox.values().all(|r| {
                r.state != RowState::Unsent
                    || r.row.stream != stream
                    || self.pre_stored.contains(&r.row.seq)
            });
            if !invalid && expected_version.is_none() && in_order && self.rng.u8(..100) < 5 {
                self.pre_stored.insert(seq);
                self.trace(|| format!("stored before it was ever sent: {}", row.id));
                self.ids.insert(row.id.clone());
                self.store
                    .entry(stream.to_string())
                    .or_default()
                    .push(Stored {
                        id: row.id.clone(),
                        message_type: row.message_type.clone(),
                    });
            }
            self.outbox.insert(
                seq,
                SimRow {
                    row,
                    state: RowState::Unsent,
                    invalid,
                },
            );
        }
        self.feed(Event::MoreWork);
    }

    /// One transaction, as the dispatcher runs it: the marks written back,
    /// then the claim — or, when it fails, neither.
    pub(super) fn claim(&mut self) {
        let Some(limit) = self.core.claim_limit() else {
            return;
        };
        let marks = self.core.take_marks();
        if self.rng.u8(..100) < 5 {
            return self.feed(Event::MarksFailed(marks));
        }
        // As the dispatcher does: in one transaction the marks are written,
        // then the scan runs; the core hears of both after the commit.
        let dead_letters = queue::dead_letters(&marks);
        self.apply(marks);
        let now = self.now();
        let mut plan = self.core.scan_plan();
        let mut rows = Vec::new();
        let candidates: Vec<OutboxRow> = self
            .outbox
            .range(plan.cursor() + 1..)
            .filter(|(_, r)| r.state == RowState::Unsent)
            .map(|(_, r)| r.row.clone())
            .collect();
        let mut exhausted = true;
        for row in candidates {
            if rows.len() >= limit {
                exhausted = false;
                break;
            }
            if self.core.consider(&mut plan, &row, &now) {
                rows.push(row);
            }
        }
        for row in &mut rows {
            row.attempts += 1;
            let backoff = self.retry.delay_after(row.attempts).as_millis() as i64;
            let stored = &mut self.outbox.get_mut(&row.seq).unwrap().row;
            stored.attempts = row.attempts;
            stored.next_attempt_at_ms = Some(self.wall_ms + backoff);
        }
        // The transaction took a while: streams may come due meanwhile.
        let took = self.rng.i64(0..15);
        self.book_ms += took;
        self.wall_ms += took;
        self.feed(Event::WrittenBack { dead_letters });
        self.feed(Event::Claimed {
            plan,
            rows,
            exhausted,
        });
    }

    pub(super) fn flush(&mut self, force: bool) {
        if !force && !self.core.marks_due(self.now()) {
            return;
        }
        let marks = self.core.take_marks();
        if marks.is_empty() {
            return;
        }
        if !force && self.rng.u8(..100) < 5 {
            return self.feed(Event::MarksFailed(marks));
        }
        self.apply_and_confirm(marks);
    }

    pub(super) fn apply_and_confirm(&mut self, marks: Vec<Mark>) {
        let dead_letters = queue::dead_letters(&marks);
        self.apply(marks);
        self.feed(Event::WrittenBack { dead_letters });
    }

    pub(super) fn apply(&mut self, marks: Vec<Mark>) {
        self.trace(|| {
            let shown: Vec<String> = marks
                .iter()
                .map(|m| match m {
                    Mark::Sent { seq, duplicate, .. } => {
                        format!("sent {seq}{}", if *duplicate { "d" } else { "" })
                    }
                    Mark::Retry { seq, .. } => format!("retry {seq}"),
                    Mark::Unclaim { seq, .. } => format!("unclaim {seq}"),
                    Mark::DeadLetter { row, .. } => format!("dead {}", row.seq),
                })
                .collect();
            format!("marks applied: {}", shown.join(" "))
        });
        for mark in marks {
            match mark {
                Mark::Sent { seq, .. } => {
                    let r = self.outbox.get_mut(&seq).unwrap();
                    assert_ne!(
                        r.state,
                        RowState::Dead,
                        "row {seq} sent after its dead letter"
                    );
                    r.state = RowState::Sent;
                }
                Mark::Retry {
                    seq,
                    next_attempt_at_ms,
                    first_failed_at_ms,
                    ..
                } => {
                    let r = &mut self.outbox.get_mut(&seq).unwrap().row;
                    r.next_attempt_at_ms = Some(next_attempt_at_ms);
                    r.first_failed_at_ms.get_or_insert(first_failed_at_ms);
                }
                Mark::Unclaim {
                    seq,
                    attempts,
                    next_attempt_at_ms,
                } => {
                    let r = &mut self.outbox.get_mut(&seq).unwrap().row;
                    r.attempts = attempts;
                    r.next_attempt_at_ms = next_attempt_at_ms;
                }
                Mark::DeadLetter { row, error, .. } => {
                    let r = self.outbox.get_mut(&row.seq).unwrap();
                    assert!(
                        r.invalid || r.row.expected_version.is_some(),
                        "row {} dead-lettered for no reason of its own: {error}",
                        row.seq
                    );
                    assert_ne!(r.state, RowState::Sent, "row {} dead after sent", row.seq);
                    r.state = RowState::Dead;
                }
            }
        }
    }

    pub(super) fn held_streams(&self) -> HashSet<String> {
        if !self.chaos.hold {
            return HashSet::new();
        }
        self.outbox
            .values()
            .filter(|r| r.state == RowState::Dead)
            .map(|r| r.row.stream.clone())
            .collect()
    }
}
