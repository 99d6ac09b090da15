//! The scan over unsent rows: how far it has got, which streams wait (for a
//! retry, or behind a dead letter), and the clocks it keeps time on.
//!
//! The rule that keeps per-stream order across claims: a stream's rows are
//! claimed only in commit order; once one of its rows goes back to the
//! outbox to wait, none of its later rows is claimed until the stream
//! resumes — and it resumes (the scan rewound to its first open row) only
//! when the sender owns none of its rows any more.
//!
//! The book keeps time on a monotonic clock ([`Now::book_ms`]), so a wall
//! clock that jumps does not stretch a wait. Times stored in the outbox are
//! wall-clock times; one further ahead than the longest retry delay cannot
//! have been meant (it was stored before the wall clock went back) and counts
//! as due.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::outbox::sender::queue::OutboxRow;
use crate::time::millis;

/// The time, on both clocks the sender deals with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// Milliseconds on the sender's monotonic clock.
    pub(crate) book_ms: i64,
    /// Unix milliseconds: the clock of times stored in the outbox.
    pub(crate) wall_ms: i64,
    /// The longest wait a stored time may impose (the retry policy's
    /// maximum delay).
    pub(crate) max_wait_ms: i64,
}

impl Now {
    /// The time now, with the monotonic clock counted from `origin`.
    pub(crate) fn at(origin: Instant, wall_ms: i64, max_wait: Duration) -> Self {
        Now {
            book_ms: millis(origin.elapsed()),
            wall_ms,
            max_wait_ms: millis(max_wait),
        }
    }

    /// Book time `delay` from now.
    pub(crate) fn after(&self, delay: Duration) -> i64 {
        self.book_ms.saturating_add(millis(delay))
    }

    /// Until when (book time) to wait for `stored_ms`, a time stored in the
    /// outbox; `None` when it is due — it has passed, or it lies further
    /// ahead than any wait the sender sets (the wall clock went back since).
    pub(crate) fn wait_for_stored(&self, stored_ms: i64) -> Option<i64> {
        let ahead = stored_ms.saturating_sub(self.wall_ms);
        (ahead > 0 && ahead <= self.max_wait_ms).then(|| self.book_ms + ahead)
    }
}

#[derive(Debug, Clone, Copy)]
struct Blocked {
    /// The stream's first row that went back to the outbox.
    head: i64,
    /// Not resumed before this time (book ms).
    until_ms: i64,
}

/// Where the scan is and which streams it skips.
#[derive(Debug, Default)]
pub(crate) struct Book {
    /// Rows up to here have been looked at by the scan.
    cursor: i64,
    blocked: HashMap<String, Blocked>,
    /// No blocked stream resumes before this (book ms): a lower bound of
    /// their `until_ms`, so [`Book::resume_due`] looks at none of them
    /// while it is ahead (0: unknown, look).
    earliest_ms: i64,
    /// Streams behind a dead letter (policy "hold").
    held: HashSet<String>,
    /// Rewinds so far (a scan that began before one must not undo it).
    rewinds: u64,
}

impl Book {
    /// Starts the next scan from the first unsent row.
    pub(crate) fn rewind_all(&mut self) {
        self.cursor = 0;
        self.rewinds += 1;
    }

    /// Whether the scan skips `stream` (waiting, or held).
    pub(crate) fn skips(&self, stream: &str) -> bool {
        self.held.contains(stream) || self.blocked.contains_key(stream)
    }

    /// `stream` waits from row `seq` on, until `until_ms` (book ms) and
    /// until the sender owns none of its rows.
    pub(crate) fn block(&mut self, stream: &str, seq: i64, until_ms: i64) {
        self.earliest_ms = self.earliest_ms.min(until_ms);
        match self.blocked.get_mut(stream) {
            Some(b) => {
                b.head = b.head.min(seq);
                b.until_ms = b.until_ms.max(until_ms);
            }
            None => {
                self.blocked.insert(
                    stream.to_string(),
                    Blocked {
                        head: seq,
                        until_ms,
                    },
                );
            }
        }
    }

    /// Row `seq` of `stream` went back to the outbox: if the stream waits,
    /// its rescan must start no later than that row.
    pub(crate) fn returned(&mut self, stream: &str, seq: i64) {
        if let Some(b) = self.blocked.get_mut(stream) {
            b.head = b.head.min(seq);
        }
    }

    /// `stream` waits behind a dead letter until [`Book::set_held`]
    /// releases it.
    pub(crate) fn hold(&mut self, stream: &str) {
        self.held.insert(stream.to_string());
    }

    /// Replaces the held streams; streams no longer held are resumed from
    /// the start of the outbox.
    pub(crate) fn set_held(&mut self, held: HashSet<String>, now_ms: i64) {
        let released: Vec<String> = self.held.difference(&held).cloned().collect();
        for stream in released {
            self.block(&stream, 0, now_ms);
        }
        self.held = held;
    }

    /// Streams whose wait is over (time passed, and `owned` says the sender
    /// has none of their rows), removed from the blocked set; the scan is
    /// rewound to their first open row. Returns how many resumed.
    pub(crate) fn resume_due(&mut self, now_ms: i64, owned: impl Fn(&str) -> bool) -> usize {
        if now_ms < self.earliest_ms {
            return 0;
        }
        let mut due = Vec::new();
        let mut earliest = i64::MAX;
        for (s, b) in &self.blocked {
            if b.until_ms <= now_ms && !owned(s) {
                due.push(s.clone());
            } else {
                earliest = earliest.min(b.until_ms);
            }
        }
        self.earliest_ms = earliest;
        for stream in &due {
            if let Some(b) = self.blocked.remove(stream) {
                self.cursor = self.cursor.min(b.head - 1).max(0);
                self.rewinds += 1;
            }
        }
        due.len()
    }

    /// When the next blocked stream may resume (book ms). Streams the
    /// sender still owns rows of are left out (their answers come first).
    pub(crate) fn next_resume_ms(&self, owned: impl Fn(&str) -> bool) -> Option<i64> {
        self.blocked
            .iter()
            .filter(|(s, _)| !owned(s))
            .map(|(_, b)| b.until_ms)
            .min()
    }

    pub(crate) fn plan(&self) -> ScanPlan {
        ScanPlan {
            rewinds: self.rewinds,
            cursor: self.cursor,
            blocked: HashMap::new(),
        }
    }

    /// Applies a scan whose claim committed. A stream resumed while the
    /// scan ran (the scan skipped its rows) keeps the rewind.
    pub(crate) fn commit(&mut self, plan: &ScanPlan) {
        self.cursor = if self.rewinds == plan.rewinds {
            plan.cursor
        } else {
            self.cursor.min(plan.cursor)
        };
        for (stream, b) in &plan.blocked {
            self.block(stream, b.head, b.until_ms);
        }
    }
}

/// One scan over unsent rows, decided against the book but applied to it
/// only once its claim transaction committed.
#[derive(Debug)]
pub(crate) struct ScanPlan {
    /// The book's rewinds when the scan began.
    rewinds: u64,
    cursor: i64,
    blocked: HashMap<String, Blocked>,
}

impl ScanPlan {
    /// The scan position (the next page starts after it).
    pub(crate) fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Whether `row`, next in commit order, may be claimed now; `owned`
    /// says whether the sender already has it.
    pub(crate) fn consider(
        &mut self,
        book: &Book,
        row: &OutboxRow,
        owned: bool,
        now: &Now,
    ) -> bool {
        self.cursor = self.cursor.max(row.seq);
        if owned {
            return false;
        }
        let stream = row.stream.as_str();
        if book.skips(stream) || self.blocked.contains_key(stream) {
            return false;
        }
        if let Some(until_ms) = row.next_attempt_at_ms.and_then(|t| now.wait_for_stored(t)) {
            // The stream's first open row is not due yet: the stream waits.
            self.blocked.insert(
                stream.to_string(),
                Blocked {
                    head: row.seq,
                    until_ms,
                },
            );
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::sender::queue::tests::row;

    /// `now` on both clocks (tests: the same numbers), waits up to a minute.
    fn at(now: i64) -> Now {
        Now {
            book_ms: now,
            wall_ms: now,
            max_wait_ms: 60_000,
        }
    }

    fn scan(book: &mut Book, rows: &[OutboxRow], owned: &mut HashSet<i64>, now: i64) -> Vec<i64> {
        let mut plan = book.plan();
        let start = plan.cursor();
        let taken: Vec<i64> = rows
            .iter()
            .filter(|r| r.seq > start && plan.consider(book, r, owned.contains(&r.seq), &at(now)))
            .map(|r| r.seq)
            .collect();
        book.commit(&plan);
        owned.extend(&taken);
        taken
    }

    #[test]
    fn a_waiting_head_holds_back_only_its_stream() {
        let mut book = Book::default();
        let mut owned = HashSet::new();
        let mut rows = [row(1, "a-1"), row(2, "b-1"), row(3, "a-1"), row(4, "b-1")];
        rows[0].next_attempt_at_ms = Some(500);
        assert_eq!(scan(&mut book, &rows, &mut owned, 100), [2, 4]);
        assert!(
            scan(&mut book, &rows, &mut owned, 100).is_empty(),
            "cursor moved on"
        );
        owned.clear();
        assert_eq!(book.resume_due(499, |_| false), 0);
        assert_eq!(book.resume_due(500, |_| false), 1);
        let rows_after = [row(1, "a-1"), row(3, "a-1")];
        assert_eq!(scan(&mut book, &rows_after, &mut owned, 500), [1, 3]);
    }

    #[test]
    fn stored_times_are_waited_for_on_the_book_clock_unless_impossibly_far() {
        let book = Book::default();
        // Wall clock at 10 000 000; the book's clock started at 0. One retry
        // time is due in 200 ms; the other was stored an hour "ahead" (before
        // the wall clock went back an hour), beyond any delay of the policy.
        let now = Now {
            book_ms: 0,
            wall_ms: 10_000_000,
            max_wait_ms: 1_000,
        };
        let mut rows = [row(1, "a-1"), row(2, "b-1")];
        rows[0].next_attempt_at_ms = Some(10_000_200);
        rows[1].next_attempt_at_ms = Some(10_000_000 + 3_600_000);
        let mut plan = book.plan();
        let taken: Vec<bool> = rows
            .iter()
            .map(|r| plan.consider(&book, r, false, &now))
            .collect();
        assert_eq!(taken, [false, true], "b-1 is due, not an hour later");
        let mut book = book;
        book.commit(&plan);
        assert_eq!(book.next_resume_ms(|_| false), Some(200));
        assert_eq!(book.resume_due(199, |_| false), 0);
        assert_eq!(book.resume_due(200, |_| false), 1);
    }

    #[test]
    fn a_stream_resumes_only_when_the_sender_owns_none_of_its_rows() {
        let mut book = Book::default();
        book.block("a-1", 1, 10);
        assert_eq!(book.resume_due(20, |s| s == "a-1"), 0, "rows still owned");
        assert_eq!(book.next_resume_ms(|s| s == "a-1"), None);
        assert_eq!(book.resume_due(20, |_| false), 1);
    }

    #[test]
    fn a_rewind_while_a_scan_runs_is_kept() {
        let mut book = Book::default();
        let mut owned = HashSet::new();
        let rows = [row(1, "a-1"), row(2, "b-1"), row(3, "b-1")];
        book.block("a-1", 1, 10);
        assert_eq!(scan(&mut book, &rows, &mut owned, 0), [2, 3]);
        let mut plan = book.plan();
        // The stream resumes between the scan's start and its commit.
        assert_eq!(book.resume_due(10, |_| false), 1);
        let now = at(10);
        let later = [row(4, "b-1")];
        for r in &later {
            plan.consider(&book, r, false, &now);
        }
        book.commit(&plan);
        owned.insert(4);
        assert_eq!(
            scan(&mut book, &rows, &mut owned, 10),
            [1],
            "a-1's row is scanned again"
        );
    }

    #[test]
    fn held_streams_wait_until_released() {
        let mut book = Book::default();
        let mut owned = HashSet::new();
        book.hold("a-1");
        let rows = [row(5, "a-1"), row(6, "b-1")];
        assert_eq!(scan(&mut book, &rows, &mut owned, 0), [6]);
        book.set_held(HashSet::new(), 0);
        assert_eq!(book.resume_due(0, |_| false), 1);
        // Row 6 was sent meanwhile; only row 5 is still unsent.
        owned.clear();
        assert_eq!(scan(&mut book, &rows[..1], &mut owned, 0), [5]);
    }
}
