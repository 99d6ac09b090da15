//! One transaction per turn of the dispatcher: renew the lease, write the
//! outcomes collected so far back, and claim the next rows (recording an
//! attempt on each before it is tried). No transaction spans a network call.

use std::time::Instant;

use rusqlite::TransactionBehavior;

use super::Dispatcher;
use crate::error::Result;
use crate::outbox::sender::lane::LaneMsg;
use crate::outbox::sender::queue::{self, Mark, OutboxRow};
use crate::outbox::sender::streams::ScanPlan;

/// Rows looked at per query while scanning.
const SCAN_PAGE: usize = 500;
/// Most rows one scan looks at (it resumes where it stopped).
const SCAN_BUDGET: usize = 20_000;

/// What a committed claim transaction took: the scan (to apply to the
/// book), the rows, and whether the scan reached the end of the outbox.
type Claimed = (Option<ScanPlan>, Vec<OutboxRow>, bool);

impl Dispatcher {
    /// One turn's transaction: writes `pending` back and, when `claim`,
    /// hands the rows it claimed to their lanes. A database error keeps the
    /// outcomes for the next try and pauses database work with backoff.
    pub(super) fn cycle(&mut self, claim: bool) {
        let marks = std::mem::take(&mut self.pending);
        self.pending_since = None;
        let limit = if self.unreachable_streak > 0 {
            1 // probing whether the store is back
        } else {
            self.config
                .batch_size_value()
                .min(self.max_in_flight() - self.book.in_flight())
        };
        match self.transact(&marks, claim.then_some(limit)) {
            Ok(None) => self.lost_lease(),
            Ok(Some((plan, rows, exhausted))) => {
                self.db_failures = 0;
                self.db_pause_until = None;
                self.next_renew = Instant::now() + self.renew_every();
                self.written_back(&marks);
                let dead = marks
                    .iter()
                    .filter(|m| matches!(m, Mark::DeadLetter { .. }));
                self.watch.add_dead_letters(dead.count() as i64);
                if claim {
                    self.more_work = !exhausted;
                    if let Some(plan) = plan {
                        self.book.commit(&plan, &rows);
                    }
                    for row in rows {
                        let lane = self.router.route(&row.stream);
                        let _ = self.lanes[lane].tx.send(LaneMsg::Deliver(Box::new(row)));
                    }
                }
            }
            Err(e) => {
                self.shared.counters.error(format!("outbox database: {e}"));
                log::warn!("outbox sender: database error, retrying: {e}");
                self.db_failures += 1;
                let delay = self
                    .config
                    .retry_policy()
                    .jittered_delay_after(self.db_failures);
                self.db_pause_until = Some(Instant::now() + delay);
                let mut marks = marks;
                marks.append(&mut self.pending);
                self.pending = marks;
                if !self.pending.is_empty() {
                    self.pending_since = Some(Instant::now());
                }
            }
        }
    }

    /// Renews the lease, writes `marks`, claims up to `claim` rows — all in
    /// one `BEGIN IMMEDIATE` transaction. `None` when the lease is lost.
    fn transact(&mut self, marks: &[Mark], claim: Option<usize>) -> Result<Option<Claimed>> {
        let mut conn = self.db.connection()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = self.now();
        if !self.lease.renew(&tx, now.wall_ms)? {
            return Ok(None);
        }
        queue::apply(&tx, &self.namespace, marks, now.wall_ms)?;
        let mut plan = None;
        let mut rows = Vec::new();
        let mut exhausted = true;
        if let Some(limit) = claim {
            let mut scan = self.book.plan();
            let mut looked = 0;
            exhausted = false;
            'pages: loop {
                // Pages the size of the claim: rows read past it would be
                // read again by the next claim.
                let page_size = (limit - rows.len()).clamp(16, SCAN_PAGE);
                let page = queue::unsent_after(&tx, &self.namespace, scan.cursor(), page_size)?;
                let end = page.len() < page_size;
                for row in page {
                    looked += 1;
                    if scan.consider(&self.book, &row, &now) {
                        rows.push(row);
                        if rows.len() >= limit {
                            break 'pages;
                        }
                    }
                }
                if end {
                    exhausted = true;
                    break;
                }
                if looked >= SCAN_BUDGET {
                    break;
                }
            }
            queue::record_attempts(&tx, &mut rows, now.wall_ms, self.config.retry_policy())?;
            plan = Some(scan);
        }
        tx.commit()?;
        Ok(Some((plan, rows, exhausted)))
    }
}
