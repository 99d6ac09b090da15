//! One transaction per turn of the dispatcher: renew the lease, write the
//! outcomes collected so far back, and claim the next rows (recording an
//! attempt on each before it is tried). No transaction spans a network call.

use std::time::Instant;

use rusqlite::TransactionBehavior;

use super::Dispatcher;
use crate::error::Result;
use crate::outbox::sender::core::{Event, ScanPlan};
use crate::outbox::sender::queue::{self, Mark, OutboxRow};

/// Rows looked at per query while scanning.
const SCAN_PAGE: usize = 500;
/// Most rows one scan looks at (it resumes where it stopped).
const SCAN_BUDGET: usize = 20_000;

/// What a committed claim transaction took: the scan, the rows, and
/// whether the scan reached the end of the outbox.
type Claimed = (ScanPlan, Vec<OutboxRow>, bool);

impl Dispatcher {
    /// One turn's transaction: writes the core's marks back and, when
    /// `claim` says how many, claims rows for it. A database error gives the
    /// marks back to the core and pauses database work with backoff.
    pub(super) fn cycle(&mut self, claim: Option<usize>) {
        let marks = self.core.take_marks();
        match self.transact(&marks, claim) {
            Ok(None) => self.lost_lease(),
            Ok(Some(claimed)) => {
                self.db_failures = 0;
                self.db_pause_until = None;
                self.next_renew = Instant::now() + self.renew_every();
                self.written_back(&marks);
                let dead_letters = queue::dead_letters(&marks);
                self.watch.add_dead_letters(dead_letters.len() as i64);
                self.feed(Event::WrittenBack { dead_letters });
                if let Some((plan, rows, exhausted)) = claimed {
                    self.feed(Event::Claimed {
                        plan,
                        rows,
                        exhausted,
                    });
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
                self.feed(Event::MarksFailed(marks));
            }
        }
    }

    /// Renews the lease, writes `marks`, claims up to `claim` rows — all in
    /// one `BEGIN IMMEDIATE` transaction. `None` when the lease is lost.
    fn transact(
        &mut self,
        marks: &[Mark],
        claim: Option<usize>,
    ) -> Result<Option<Option<Claimed>>> {
        let mut conn = self.db.connection()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = self.now();
        if !self.lease.renew(&tx, now.wall_ms)? {
            return Ok(None);
        }
        // The pause goes with the lease, for other processes to see.
        let pause = self.pause_state();
        let store_pause = self.stored_pause.as_ref() != Some(&pause);
        if store_pause {
            self.lease.store_pause(&tx, pause.as_ref())?;
        }
        queue::apply(&tx, &self.namespace, marks, now.wall_ms)?;
        let mut claimed = None;
        if let Some(limit) = claim {
            let mut plan = self.core.scan_plan();
            let mut rows = Vec::new();
            let mut looked = 0;
            let mut exhausted = false;
            'pages: loop {
                // Pages the size of the claim: rows read past it would be
                // read again by the next claim.
                let page_size = (limit - rows.len()).clamp(16, SCAN_PAGE);
                let page = queue::unsent_after(&tx, &self.namespace, plan.cursor(), page_size)?;
                let end = page.len() < page_size;
                for row in page {
                    looked += 1;
                    if self.core.consider(&mut plan, &row, &now) {
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
            claimed = Some((plan, rows, exhausted));
        }
        tx.commit()?;
        if store_pause {
            self.stored_pause = Some(pause);
        }
        Ok(Some(claimed))
    }
}
