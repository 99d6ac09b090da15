//! The dispatcher thread: holds (or waits for) the lease, claims unsent rows
//! in commit order, hands them to the lanes, and writes outcomes back in
//! batches.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use rusqlite::TransactionBehavior;

use super::deliver::{FailureClass, Outcome};
use super::lane::{Lane, LaneFlags, LaneMsg, LaneResult, LaneRouter};
use super::queue::{self, Mark, OutboxRow};
use super::streams::StreamBook;
use super::watch::ChangeWatch;
use super::Shared;
use crate::db::Db;
use crate::error::Result;
use crate::hooks::{Component, Delivered, DeliveryRetry, Hooks, OutboxDeadLetter};
use crate::outbox::config::{AfterDeadLetter, SenderConfig};
use crate::outbox::lease::Lease;
use crate::outbox::retention;
use crate::outbox::wake::WakeHub;
use crate::time::now_ms;

/// Rows looked at per query while scanning.
const SCAN_PAGE: usize = 500;
/// Most rows one scan looks at (it resumes where it stopped).
const SCAN_BUDGET: usize = 20_000;

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

pub(crate) struct Dispatcher {
    pub(crate) db: Db,
    pub(crate) namespace: String,
    pub(crate) config: SenderConfig,
    pub(crate) hub: Arc<WakeHub>,
    pub(crate) wake: Receiver<()>,
    pub(crate) stop: Receiver<()>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) hooks: Hooks,
    pub(crate) lease: Lease,
    pub(crate) lanes: Vec<Lane>,
    pub(crate) router: LaneRouter,
    pub(crate) flags: Arc<LaneFlags>,
    pub(crate) results: Receiver<Vec<LaneResult>>,
    /// Kept so `results` never disconnects, even if every lane died.
    pub(crate) _results_tx: Sender<Vec<LaneResult>>,
    pub(crate) watch: ChangeWatch,
    pub(crate) book: StreamBook,
    pub(crate) pending: Vec<Mark>,
    pub(crate) pending_since: Option<Instant>,
    /// Unsent rows may be waiting (woken, polled, or the last scan stopped early).
    pub(crate) more_work: bool,
    /// The store is unreachable: nothing is sent before this.
    pub(crate) pause_until: Option<Instant>,
    pub(crate) unreachable_streak: u32,
    /// The database failed: no transaction before this.
    pub(crate) db_pause_until: Option<Instant>,
    pub(crate) db_failures: u32,
    pub(crate) rescans_seen: u64,
    pub(crate) next_poll: Instant,
    pub(crate) next_renew: Instant,
    pub(crate) next_retention: Instant,
}

impl Dispatcher {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    fn max_in_flight(&self) -> usize {
        (self.config.batch_size_value() * 2).max(self.lanes.len())
    }

    fn renew_every(&self) -> Duration {
        self.config.lease_duration_value() / 3
    }

    fn component(&self) -> Component<'_> {
        Component::Sender {
            namespace: &self.namespace,
            holder: self.lease.holder(),
        }
    }

    pub(crate) fn run(mut self) {
        self.shared.counters.running.store(true, Ordering::Release);
        self.hooks.emit(|h| h.on_started(&self.component()));
        while !self.stopping() {
            if self.lease.token().is_none() {
                self.stand_by();
            } else {
                self.lead();
            }
        }
        self.finish();
        self.shared.counters.active.store(false, Ordering::Release);
        self.hooks.emit(|h| h.on_stopped(&self.component()));
        self.shared.counters.running.store(false, Ordering::Release);
    }

    // ----- standing by -----

    fn stand_by(&mut self) {
        let acquired = self.db.write(|tx| self.lease.try_acquire(tx, now_ms()));
        match acquired {
            Ok(true) => return self.took_lease(),
            Ok(false) => {}
            Err(e) => self
                .shared
                .counters
                .error(format!("taking the sender lease: {e}")),
        }
        let wait = (self.config.lease_duration_value() / 5).max(Duration::from_millis(5));
        select! {
            recv(self.stop) -> _ => {}
            default(wait) => {}
        }
        // Wake-ups meant for the active sender are of no use here.
        while self.wake.try_recv().is_ok() {}
    }

    fn took_lease(&mut self) {
        log::info!(
            "outbox sender {} took the lease {} (fencing token {:?})",
            self.lease.holder(),
            self.lease.name(),
            self.lease.token()
        );
        self.shared.counters.active.store(true, Ordering::Release);
        self.book.reset();
        for lane in &self.lanes {
            let _ = lane.tx.send(LaneMsg::ResumeAll);
        }
        self.flags.halted.store(false, Ordering::Release);
        self.flags.paused.store(false, Ordering::Release);
        self.pause_until = None;
        self.unreachable_streak = 0;
        self.rescans_seen = self.hub.rescan_generation();
        self.reload_dead_letters();
        self.more_work = true;
        let now = Instant::now();
        self.next_renew = now + self.renew_every();
        self.next_poll = now + self.config.poll_interval_value();
        self.next_retention = now;
    }

    // ----- leading -----

    fn lead(&mut self) {
        while let Ok(results) = self.results.try_recv() {
            results.into_iter().for_each(|r| self.settle(r));
        }
        let now = Instant::now();
        if self.pause_until.is_some_and(|t| now >= t) {
            self.pause_until = None;
            self.flags.paused.store(false, Ordering::Release);
            self.more_work = true;
        }
        if self.pause_until.is_none() {
            for stream in self.book.resume_due(now_ms()) {
                // The lane that saw it fail may not be the one it goes to next.
                for lane in &self.lanes {
                    let _ = lane.tx.send(LaneMsg::Resume(stream.clone()));
                }
                self.more_work = true;
            }
        }
        let generation = self.hub.rescan_generation();
        if generation != self.rescans_seen {
            self.rescans_seen = generation;
            self.rescan();
        }

        let db_ok = self.db_pause_until.is_none_or(|t| now >= t);
        let flush_due = !self.pending.is_empty()
            && (self.book.in_flight() == 0
                || self.pending.len() >= self.config.batch_size_value()
                || self
                    .pending_since
                    .is_some_and(|t| now >= t + self.config.flush_interval));
        // Claim a whole batch at a time (fewer, fuller transactions): once
        // at most one batch is still in flight.
        let claim = self.more_work
            && self.pause_until.is_none()
            && self.book.in_flight() + self.config.batch_size_value() <= self.max_in_flight();
        if db_ok && (flush_due || claim || now >= self.next_renew) {
            self.cycle(claim);
            return;
        }
        if db_ok && now >= self.next_retention {
            self.retention();
            return;
        }
        self.wait(now);
    }

    /// Blocks until a lane reports, a write wakes us, it is time for
    /// something, or we are told to stop.
    fn wait(&mut self, now: Instant) {
        let mut deadline = self.next_poll;
        match self.db_pause_until {
            // The database failed: nothing that needs it before this.
            Some(t) if now < t => deadline = deadline.min(t),
            _ => {
                deadline = deadline.min(self.next_renew).min(self.next_retention);
                if let Some(t) = self.pending_since {
                    deadline = deadline.min(t + self.config.flush_interval);
                }
            }
        }
        match self.pause_until {
            // The store is unreachable: no stream resumes before this.
            Some(t) => deadline = deadline.min(t),
            None => {
                if let Some(at) = self.book.next_resume_ms() {
                    let wait = Duration::from_millis((at - now_ms()).max(0) as u64);
                    deadline = deadline.min(now + wait);
                }
            }
        }
        let timeout = deadline.saturating_duration_since(now);
        select! {
            recv(self.results) -> results => {
                for result in results.into_iter().flatten() {
                    self.settle(result);
                }
            }
            recv(self.wake) -> _ => self.more_work = true,
            recv(self.stop) -> _ => {}
            default(timeout) => {}
        }
        if Instant::now() >= self.next_poll {
            self.poll();
        }
    }

    /// The fallback poll: looks for changes made by other connections
    /// (another process writing or requeueing).
    fn poll(&mut self) {
        self.next_poll = Instant::now() + self.config.poll_interval_value();
        match self.watch.changed(&self.db, &self.namespace) {
            Ok((false, _)) => {}
            Ok((true, dead_letters_changed)) => {
                self.more_work = true;
                if dead_letters_changed {
                    self.rescan();
                }
            }
            Err(e) => self
                .shared
                .counters
                .error(format!("polling the outbox: {e}")),
        }
    }

    /// Scans the whole outbox again (rows behind the scan position may be
    /// sendable again, e.g. requeued dead letters).
    fn rescan(&mut self) {
        self.book.rewind_all();
        self.reload_dead_letters();
        self.more_work = true;
    }

    fn reload_dead_letters(&mut self) {
        let ns = self.namespace.clone();
        let loaded = self.db.read(|c| {
            let held = match self.config.after_dead_letter_value() {
                AfterDeadLetter::HoldStream => queue::streams_with_dead_letters(c, &ns)?,
                AfterDeadLetter::Continue => Default::default(),
            };
            Ok((held, queue::dead_letter_count(c, &ns)?))
        });
        match loaded {
            Ok((held, count)) => {
                self.book.set_held(held, now_ms());
                self.watch.set_dead_letters(count);
            }
            Err(e) => self
                .shared
                .counters
                .error(format!("reading dead letters: {e}")),
        }
    }

    // ----- one transaction: write outcomes back, claim new rows -----

    fn cycle(&mut self, claim: bool) {
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
    #[allow(clippy::type_complexity)]
    fn transact(
        &mut self,
        marks: &[Mark],
        claim: Option<usize>,
    ) -> Result<Option<(Option<super::streams::ScanPlan>, Vec<OutboxRow>, bool)>> {
        let mut conn = self.db.connection()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        if !self.lease.renew(&tx, now)? {
            return Ok(None);
        }
        queue::apply(&tx, &self.namespace, marks, now)?;
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
                    if scan.consider(&self.book, &row, now) {
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
            queue::record_attempts(&tx, &mut rows, now, self.config.retry_policy())?;
            plan = Some(scan);
        }
        tx.commit()?;
        Ok(Some((plan, rows, exhausted)))
    }

    /// Counts what was just written back and tells waiters.
    fn written_back(&self, marks: &[Mark]) {
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

    /// Takes a lane's report into account.
    fn settle(&mut self, result: LaneResult) {
        let LaneResult { lane, row, outcome } = result;
        self.book.finish(&row);
        self.router.done(lane, &row.stream);
        let now = now_ms();
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
                self.book.block(&row.stream, row.seq, now);
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

    fn failed(
        &mut self,
        row: Box<OutboxRow>,
        error: String,
        class: FailureClass,
        now: i64,
    ) -> Mark {
        log::debug!(
            "outbox message {} on {} failed ({class:?}): {error}",
            row.id,
            row.stream
        );
        self.shared
            .counters
            .error(format!("delivering {} to {}: {error}", row.id, row.stream));
        let first_failed_at_ms = row.first_failed_at_ms.unwrap_or(now);
        let policy = self.config.retry_policy();
        let failing_for = Duration::from_millis((now - first_failed_at_ms).max(0) as u64);
        let error = match class {
            FailureClass::Permanent => error,
            _ if policy.gives_up(row.attempts, failing_for) => {
                format!("gave up after {} attempts: {error}", row.attempts)
            }
            FailureClass::Unreachable => {
                self.unreachable_streak += 1;
                let pause = policy.jittered_delay_after(self.unreachable_streak);
                self.pause_until = Some(Instant::now() + pause);
                self.flags.paused.store(true, Ordering::Release);
                self.book.block(&row.stream, row.seq, now);
                return Mark::Retry {
                    seq: row.seq,
                    error,
                    next_attempt_at_ms: now + ms(pause),
                    first_failed_at_ms,
                    id: row.id,
                    stream: row.stream,
                    attempts: row.attempts,
                };
            }
            FailureClass::Transient => {
                let next = now + ms(policy.jittered_delay_after(row.attempts));
                self.book.block(&row.stream, row.seq, next);
                return Mark::Retry {
                    seq: row.seq,
                    error,
                    next_attempt_at_ms: next,
                    first_failed_at_ms,
                    id: row.id,
                    stream: row.stream,
                    attempts: row.attempts,
                };
            }
        };
        log::warn!(
            "outbox message {} on {} dead-lettered: {error}",
            row.id,
            row.stream
        );
        match self.config.after_dead_letter_value() {
            AfterDeadLetter::Continue => self.book.block(&row.stream, row.seq, now),
            AfterDeadLetter::HoldStream => self.book.hold(&row.stream),
        }
        Mark::DeadLetter {
            row,
            error,
            first_failed_at_ms,
        }
    }

    /// Someone else holds the lease now: drop everything in flight (their
    /// sender will resend it; the store recognises the ids) and stand by.
    fn lost_lease(&mut self) {
        log::warn!(
            "outbox sender {} lost the lease {}",
            self.lease.holder(),
            self.lease.name()
        );
        self.shared.counters.active.store(false, Ordering::Release);
        self.shared
            .counters
            .error("lost the sender lease to another sender");
        self.lease.forget();
        let _ = self.drain_lanes();
        self.pending.clear();
        self.pending_since = None;
        self.book.reset();
    }

    /// Waits until every row handed to a lane has come back (lanes skip
    /// what they have not started) and returns what is worth writing back:
    /// deliveries, and the attempts given back for skipped rows. (A failed
    /// row keeps its recorded attempt and backoff.)
    fn drain_lanes(&mut self) -> Vec<Mark> {
        self.flags.halted.store(true, Ordering::Release);
        let mut marks = Vec::new();
        while self.book.in_flight() > 0 {
            match self.results.recv_timeout(Duration::from_millis(200)) {
                Ok(results) => {
                    for LaneResult { lane, row, outcome } in results {
                        self.book.finish(&row);
                        self.router.done(lane, &row.stream);
                        match outcome {
                            Outcome::Delivered { duplicate } => marks.push(Mark::Sent {
                                seq: row.seq,
                                created_at_ms: row.created_at_ms,
                                duplicate,
                                id: row.id.clone(),
                                stream: row.stream.clone(),
                            }),
                            Outcome::Skipped => marks.push(Mark::Unclaim {
                                seq: row.seq,
                                attempts: row.attempts.saturating_sub(1),
                                next_attempt_at_ms: row.next_attempt_at_ms,
                            }),
                            Outcome::Failed { .. } => {}
                        }
                    }
                }
                Err(_) if self.lanes.iter().all(|l| l.thread.is_finished()) => break,
                Err(_) => {}
            }
        }
        marks
    }

    fn retention(&mut self) {
        self.next_retention = Instant::now() + self.config.retention_interval;
        let Some(age) = self.config.retention_value() else {
            return;
        };
        let cutoff = now_ms().saturating_sub(ms(age));
        let stop = &self.shared.stop;
        match retention::prune_sent(&self.db, &self.namespace, cutoff, || {
            stop.load(Ordering::Acquire)
        }) {
            Ok(0) => {}
            Ok(n) => log::debug!("outbox retention deleted {n} sent rows"),
            Err(e) => self.shared.counters.error(format!("outbox retention: {e}")),
        }
    }

    /// Shutting down: let in-flight sends finish, write back what they did,
    /// release the lease, stop the lanes.
    fn finish(&mut self) {
        let mut marks = std::mem::take(&mut self.pending);
        marks.append(&mut self.drain_lanes());
        if self.lease.token().is_some() {
            match self.final_write(&marks) {
                Ok(()) => self.written_back(&marks),
                Err(e) => log::warn!("outbox sender: could not record the last outcomes: {e}"),
            }
        }
        for lane in self.lanes.drain(..) {
            drop(lane.tx);
            let _ = lane.thread.join();
        }
    }

    fn final_write(&mut self, marks: &[Mark]) -> Result<()> {
        let lease = &mut self.lease;
        let namespace = &self.namespace;
        self.db.write(|tx| {
            if lease.renew(tx, now_ms())? {
                queue::apply(tx, namespace, marks, now_ms())?;
                lease.release(tx)?;
            }
            Ok(())
        })
    }
}
