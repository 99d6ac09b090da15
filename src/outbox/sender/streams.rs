//! Per-stream bookkeeping of the dispatcher: which rows are in flight,
//! which streams wait (for a retry, or behind a dead letter), and how far the
//! scan of unsent rows has got.
//!
//! The rule that keeps per-stream order: a stream's rows are handed out only
//! in commit order; once one of its rows is not delivered, none of its later
//! rows is handed out until that row is settled, and the stream is resumed
//! (scan rewound to its first open row) only when none of its rows is in
//! flight any more.
//!
//! The book keeps time on a monotonic clock ([`Now::book_ms`]), so a wall
//! clock that jumps does not stretch a wait. Times stored in the outbox are
//! wall-clock times; one further ahead than the longest retry delay cannot
//! have been meant (it was stored before the wall clock went back) and counts
//! as due.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::queue::OutboxRow;

/// The time, on both clocks the sender deals with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// Milliseconds on the book's monotonic clock.
    pub(crate) book_ms: i64,
    /// Unix milliseconds: the clock of times stored in the outbox.
    pub(crate) wall_ms: i64,
    /// The longest wait a stored time may impose (the retry policy's
    /// maximum delay).
    pub(crate) max_wait_ms: i64,
}

impl Now {
    /// The time now, with the book's clock counted from `origin`.
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

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

#[derive(Debug, Clone, Copy)]
struct Blocked {
    /// The stream's first row that was not delivered.
    head: i64,
    /// Not resumed before this time (book ms).
    until_ms: i64,
}

/// What the dispatcher knows about streams.
#[derive(Debug, Default)]
pub(crate) struct StreamBook {
    /// Rows up to here have been looked at by the scan.
    cursor: i64,
    blocked: HashMap<String, Blocked>,
    /// Streams behind a dead letter (policy "hold").
    held: HashSet<String>,
    in_flight: HashSet<i64>,
    per_stream: HashMap<String, usize>,
}

impl StreamBook {
    /// Forgets everything (after taking the lease over). Nothing may be in flight.
    pub(crate) fn reset(&mut self) {
        debug_assert!(self.in_flight.is_empty());
        *self = StreamBook::default();
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Starts the next scan from the first unsent row.
    pub(crate) fn rewind_all(&mut self) {
        self.cursor = 0;
    }

    #[cfg(test)]
    pub(crate) fn cursor(&self) -> i64 {
        self.cursor
    }

    /// A row came back from its lane.
    pub(crate) fn finish(&mut self, row: &OutboxRow) {
        if self.in_flight.remove(&row.seq) {
            if let Some(n) = self.per_stream.get_mut(&row.stream) {
                *n -= 1;
                if *n == 0 {
                    self.per_stream.remove(&row.stream);
                }
            }
        }
    }

    /// `stream` waits from row `seq` on, until `until_ms` (book ms) and
    /// until none of its rows is in flight.
    pub(crate) fn block(&mut self, stream: &str, seq: i64, until_ms: i64) {
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

    /// `stream` waits behind a dead letter until [`StreamBook::set_held`]
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

    /// Streams whose wait is over (time passed, nothing in flight), removed
    /// from the blocked set; the scan is rewound to their first open row.
    /// Returns them, so their lanes can forget the failure.
    pub(crate) fn resume_due(&mut self, now_ms: i64) -> Vec<String> {
        let due: Vec<String> = self
            .blocked
            .iter()
            .filter(|(s, b)| b.until_ms <= now_ms && !self.per_stream.contains_key(*s))
            .map(|(s, _)| s.clone())
            .collect();
        for stream in &due {
            if let Some(b) = self.blocked.remove(stream) {
                self.cursor = self.cursor.min(b.head - 1).max(0);
            }
        }
        due
    }

    /// When the next blocked stream may resume (book ms). Streams with rows
    /// in flight are left out: a lane's report wakes the dispatcher anyway.
    pub(crate) fn next_resume_ms(&self) -> Option<i64> {
        self.blocked
            .iter()
            .filter(|(s, _)| !self.per_stream.contains_key(*s))
            .map(|(_, b)| b.until_ms)
            .min()
    }

    pub(crate) fn plan(&self) -> ScanPlan {
        ScanPlan {
            cursor: self.cursor,
            blocked: HashMap::new(),
        }
    }

    /// Applies a scan whose claim committed.
    pub(crate) fn commit(&mut self, plan: &ScanPlan, taken: &[OutboxRow]) {
        self.cursor = plan.cursor;
        for (stream, b) in &plan.blocked {
            self.block(stream, b.head, b.until_ms);
        }
        for row in taken {
            self.in_flight.insert(row.seq);
            *self.per_stream.entry(row.stream.clone()).or_default() += 1;
        }
    }
}

/// One scan over unsent rows, decided against the book but applied to it
/// only once its claim transaction committed.
#[derive(Debug)]
pub(crate) struct ScanPlan {
    cursor: i64,
    blocked: HashMap<String, Blocked>,
}

impl ScanPlan {
    /// The scan position (the next page starts after it).
    pub(crate) fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Whether `row`, next in commit order, may be sent now.
    pub(crate) fn consider(&mut self, book: &StreamBook, row: &OutboxRow, now: &Now) -> bool {
        self.cursor = self.cursor.max(row.seq);
        if book.in_flight.contains(&row.seq) {
            return false;
        }
        let stream = row.stream.as_str();
        if book.held.contains(stream)
            || book.blocked.contains_key(stream)
            || self.blocked.contains_key(stream)
        {
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

    fn row(seq: i64, stream: &str, next: Option<i64>) -> OutboxRow {
        OutboxRow {
            seq,
            id: format!("id-{seq}"),
            stream: stream.into(),
            message_type: "T".into(),
            data: "{}".into(),
            metadata: None,
            expected_version: None,
            idempotency_key: None,
            created_at_ms: 0,
            attempts: 0,
            next_attempt_at_ms: next,
            first_failed_at_ms: None,
        }
    }

    /// `now` on both clocks (tests: the same numbers), waits up to a minute.
    fn at(now: i64) -> Now {
        Now {
            book_ms: now,
            wall_ms: now,
            max_wait_ms: 60_000,
        }
    }

    fn scan(book: &mut StreamBook, rows: &[OutboxRow], now: i64) -> Vec<i64> {
        let mut plan = book.plan();
        let start = plan.cursor();
        let taken: Vec<OutboxRow> = rows
            .iter()
            .filter(|r| r.seq > start && plan.consider(book, r, &at(now)))
            .cloned()
            .collect();
        book.commit(&plan, &taken);
        taken.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn a_waiting_head_holds_back_only_its_stream() {
        let mut book = StreamBook::default();
        let rows = [
            row(1, "a-1", Some(500)),
            row(2, "b-1", None),
            row(3, "a-1", None),
            row(4, "b-1", None),
        ];
        assert_eq!(scan(&mut book, &rows, 100), [2, 4]);
        assert!(scan(&mut book, &rows, 100).is_empty(), "cursor moved on");
        for r in &rows[..] {
            book.finish(r);
        }
        assert!(book.resume_due(499).is_empty());
        assert_eq!(book.resume_due(500), ["a-1"]);
        assert_eq!(book.cursor(), 0, "rewound to a-1's head");
        let rows_after = [row(1, "a-1", None), row(3, "a-1", None)];
        assert_eq!(scan(&mut book, &rows_after, 500), [1, 3]);
    }

    #[test]
    fn stored_times_are_waited_for_on_the_book_clock_unless_impossibly_far() {
        let mut book = StreamBook::default();
        // Wall clock at 10 000 000; the book's clock started at 0. One retry
        // time is due in 200 ms; the other was stored an hour "ahead" (before
        // the wall clock went back an hour), beyond any delay of the policy.
        let now = Now {
            book_ms: 0,
            wall_ms: 10_000_000,
            max_wait_ms: 1_000,
        };
        let rows = [
            row(1, "a-1", Some(10_000_200)),
            row(2, "b-1", Some(10_000_000 + 3_600_000)),
        ];
        let mut plan = book.plan();
        let taken: Vec<bool> = rows.iter().map(|r| plan.consider(&book, r, &now)).collect();
        assert_eq!(taken, [false, true], "b-1 is due, not an hour later");
        book.commit(&plan, &rows[1..]);
        assert_eq!(book.next_resume_ms(), Some(200));
        assert!(book.resume_due(199).is_empty());
        assert_eq!(book.resume_due(200), ["a-1"]);
    }

    #[test]
    fn a_stream_resumes_only_when_nothing_of_it_is_in_flight() {
        let mut book = StreamBook::default();
        let rows = [row(1, "a-1", None), row(2, "a-1", None)];
        assert_eq!(scan(&mut book, &rows, 0), [1, 2]);
        // Row 1 failed; row 2 is still in its lane.
        book.finish(&rows[0]);
        book.block("a-1", 1, 10);
        assert!(book.resume_due(20).is_empty(), "row 2 still in flight");
        book.finish(&rows[1]);
        book.block("a-1", 2, 0);
        assert_eq!(book.resume_due(20), ["a-1"]);
        assert_eq!(scan(&mut book, &rows, 20), [1, 2], "in order again");
    }

    #[test]
    fn held_streams_wait_until_released() {
        let mut book = StreamBook::default();
        book.hold("a-1");
        let rows = [row(5, "a-1", None), row(6, "b-1", None)];
        assert_eq!(scan(&mut book, &rows, 0), [6]);
        book.finish(&rows[1]);
        book.set_held(HashSet::new(), 0);
        assert_eq!(book.resume_due(0), ["a-1"]);
        // Row 6 was sent meanwhile; only row 5 is still unsent.
        assert_eq!(scan(&mut book, &rows[..1], 0), [5]);
    }
}
