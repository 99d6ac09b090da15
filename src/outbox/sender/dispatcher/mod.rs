//! The dispatcher thread: holds (or waits for) the lease, claims unsent rows
//! in commit order, hands them to the lanes, and writes outcomes back in
//! batches.
//!
//! This module has the thread's state and its loop (what is due next, and
//! the wait until then); the steps live in submodules:
//!
//! * `leadership` — standing by, taking the lease, losing it;
//! * `claim` — the one transaction per turn: renew the lease, write
//!   outcomes back, claim the next rows;
//! * `outcome` — a lane's report turned into what to write back (sent,
//!   retry later, pause, dead letter);
//! * `report` — counters, hooks and waiters once outcomes are committed;
//! * `housekeeping` — the fallback poll, rescans, retention;
//! * `shutdown` — draining the lanes, the last write-back, releasing the lease.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use super::lane::{Lane, LaneFlags, LaneMsg, LaneResult, LaneRouter};
use super::queue::Mark;
use super::streams::{Now, StreamBook};
use super::watch::ChangeWatch;
use super::Shared;
use crate::db::Db;
use crate::hooks::{Component, Hooks};
use crate::outbox::config::SenderConfig;
use crate::outbox::lease::Lease;
use crate::outbox::wake::{Listener, WakeHub};
use crate::time::now_ms;

mod claim;
mod housekeeping;
mod leadership;
mod outcome;
mod report;
mod shutdown;

/// A duration in whole milliseconds, as stored.
fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// The dispatcher thread's state (see the module docs).
pub(crate) struct Dispatcher {
    pub(crate) db: Db,
    pub(crate) namespace: String,
    pub(crate) config: SenderConfig,
    pub(crate) hub: Arc<WakeHub>,
    pub(crate) wake: Listener,
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
    /// Where the stream book's monotonic clock starts.
    pub(crate) origin: Instant,
}

impl Dispatcher {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    fn max_in_flight(&self) -> usize {
        (self.config.batch_size_value() * 2).max(self.lanes.len())
    }

    /// The time on the book's clock and on the wall clock.
    fn now(&self) -> Now {
        let max_wait = self.config.retry_policy().max_delay_value();
        Now::at(self.origin, now_ms(), max_wait)
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

    /// The thread's body: stand by or lead until told to stop, then finish.
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

    /// One turn as the active sender: take the lanes' reports, end pauses
    /// and resume streams that are due, then do the first thing due — a
    /// transaction (write back, claim, renew), retention — or wait.
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
            for stream in self.book.resume_due(self.now().book_ms) {
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
        // at most one batch is still in flight. After the store was
        // unreachable, probe with one row until one is delivered.
        let room = if self.unreachable_streak > 0 {
            self.book.in_flight() == 0
        } else {
            self.book.in_flight() + self.config.batch_size_value() <= self.max_in_flight()
        };
        let claim = self.more_work && self.pause_until.is_none() && room;
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
                    let wait = Duration::from_millis((at - self.now().book_ms).max(0) as u64);
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
            recv(*self.wake) -> _ => self.more_work = true,
            recv(self.stop) -> _ => {}
            default(timeout) => {}
        }
        if Instant::now() >= self.next_poll {
            self.poll();
        }
    }
}
