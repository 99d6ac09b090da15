//! A consumer's worker thread: it holds (or waits for) the consumer's
//! lease, handles the batches its fetcher thread reads ahead (so reading
//! the store and handling overlap), and between batches renews the lease,
//! runs requeued dead letters and retention.
//!
//! One instance of a consumer works at a time, across threads and
//! processes on the database file: the one holding its lease. Others stand
//! by ([`ConsumerHealth::Standby`](crate::ConsumerHealth::Standby)) and take
//! over when it stops or dies (see [`crate::lease`]). Every transaction
//! that handles messages or moves the position renews the lease first, in
//! the same transaction, so a worker that lost it commits nothing.
//!
//! A fetched batch is handled in `BEGIN IMMEDIATE` transactions on the
//! kit's database, optimistically: processed record and handler for each
//! message, no savepoints. When a handler fails, that transaction is rolled
//! back and the messages before the failing one are done again one by one,
//! each in a savepoint (so what a handler did is undone alone if it fails
//! now), and committed with the position just before the failing message.
//! That one is retried with backoff and then dead-lettered (its dead letter
//! and the position past it commit together) or halts the consumer. The
//! position therefore never passes a message that neither succeeded nor was
//! dead-lettered. A failure about the store as a whole (unreachable, token
//! refused) pauses the consumer instead, without using up attempts.
//!
//! * `threads` — starting the worker and the fetcher thread, the fetcher's loop;
//! * `leadership` — standing by, taking and renewing the lease;
//! * `batch` — one batch: transactions, the optimistic and the careful way;
//! * `failure` — a failed message: pause, retry, dead letter or halt.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use crate::db::Db;
use crate::hooks::{Component, Hooks};
use crate::lease::Lease;
use crate::store::MessageStore;

use super::config::ConsumerConfig;
use super::fetch::Fetched;
use super::filter::MessageFilter;
use super::handler::BoxedHandler;
use super::position::ConsumerKey;
use super::requeue;
use super::retention;
use super::stats::Shared;

mod batch;
mod failure;
mod leadership;
mod threads;

use failure::Retry;
use threads::FetchThread;

pub(crate) use threads::{spawn, Start};

/// Whether the worker goes on, ends, or lost its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
    /// Another instance holds the lease now: stand by.
    LeaseLost,
}

/// The worker thread's state.
pub(crate) struct Worker {
    db: Db,
    store: Arc<dyn MessageStore>,
    key: ConsumerKey,
    /// The consumer's integer key (processed records, lease name).
    consumer_key: i64,
    lease: Lease,
    config: ConsumerConfig,
    filter: MessageFilter,
    handler: BoxedHandler,
    shared: Arc<Shared>,
    hooks: Hooks,
    /// Messages of the current transaction the handler processed, and how
    /// long it took (kept only when hooks are registered).
    handled: Vec<(usize, Duration)>,
    shutdown: Receiver<()>,
    retry: Option<Retry>,
    requeue_checked: Option<Instant>,
    retention_done: Option<Instant>,
    /// When the lease is next renewed outside a batch.
    next_renew: Instant,
    /// Since when handler failures about the store pause the consumer.
    paused_since: Option<Instant>,
    /// The highest position any of the consumer's processed records holds
    /// (read on taking the lease; this worker is the only one adding to
    /// them while it holds it).
    recorded_through: i64,
}

impl Worker {
    /// The thread's body: work while holding the lease, stand by while
    /// not, until told to stop (or a halt); then let go of the lease.
    fn run(mut self, fetch: Option<FetchThread>) {
        self.hooks.emit(|h| h.on_started(&self.component()));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.lifecycle(fetch))) {
            log::error!(
                "consumer {:?} of {:?} stopped by a panic in the kit: {panic:?}",
                self.key.consumer_id,
                self.key.category
            );
        }
        self.release_lease();
        self.hooks.emit(|h| h.on_stopped(&self.component()));
        self.shared.mark_stopped();
    }

    fn component(&self) -> Component<'_> {
        Component::Consumer {
            category: &self.key.category,
            consumer_id: &self.key.consumer_id,
        }
    }

    fn lifecycle(&mut self, mut fetch: Option<FetchThread>) {
        loop {
            let running = match fetch.take() {
                Some(running) => running,
                None => {
                    let Some(position) = self.stand_by() else {
                        return;
                    };
                    match FetchThread::start(
                        Arc::clone(&self.store),
                        &self.key,
                        &self.config,
                        position,
                        &self.shared,
                    ) {
                        Ok(f) => f,
                        Err(e) => {
                            log::error!(
                                "consumer {:?}: starting its fetcher failed: {e}",
                                self.key.consumer_id
                            );
                            return;
                        }
                    }
                }
            };
            let flow = self.main_loop(&running);
            running.stop(&self.key.consumer_id);
            match flow {
                Flow::LeaseLost => {
                    self.lost_lease();
                }
                Flow::Exit | Flow::Continue => return,
            }
        }
    }

    fn main_loop(&mut self, fetch: &FetchThread) -> Flow {
        loop {
            if self.shared.stopping() {
                return Flow::Exit;
            }
            let flow = self.housekeeping();
            if flow != Flow::Continue {
                return flow;
            }
            let idle = self.config.poll_interval.min(self.renew_every());
            select! {
                recv(fetch.batches) -> batch => match batch {
                    Ok(Fetched::Messages(batch)) => {
                        let flow = self.process(&batch);
                        // A full channel means the fetcher is busy: free it here.
                        let _ = fetch.recycle.try_send(batch);
                        if flow != Flow::Continue {
                            return flow;
                        }
                    }
                    Ok(Fetched::Undecodable { message, reason }) => {
                        let flow = self.undecodable(&message, reason);
                        if flow != Flow::Continue {
                            return flow;
                        }
                    }
                    Err(_) => return Flow::Exit,
                },
                recv(self.shutdown) -> _ => return Flow::Exit,
                default(idle) => {}
            }
        }
    }

    /// Renews the lease, runs requeued dead letters and prunes processed
    /// records when due.
    fn housekeeping(&mut self) -> Flow {
        let now = Instant::now();
        if now >= self.next_renew {
            let flow = self.renew_lease();
            if flow != Flow::Continue {
                return flow;
            }
        }
        if self
            .requeue_checked
            .is_none_or(|t| now.duration_since(t) >= self.config.poll_interval)
        {
            self.requeue_checked = Some(now);
            match requeue::run_requeued(
                &self.db,
                requeue::Holder {
                    key: &self.key,
                    consumer_key: self.consumer_key,
                    lease: &mut self.lease,
                    recorded_through: &mut self.recorded_through,
                },
                &mut self.handler,
                &self.shared,
                &self.hooks,
            ) {
                Ok(true) => {}
                Ok(false) => return Flow::LeaseLost,
                Err(e) => log::warn!(
                    "consumer {:?}: running requeued dead letters failed: {e}",
                    self.key.consumer_id
                ),
            }
        }
        if let Some(age) = self.config.processed_retention {
            if self
                .retention_done
                .is_none_or(|t| now.duration_since(t) >= self.config.retention_interval)
            {
                self.retention_done = Some(now);
                if let Err(e) = retention::delete_processed_before(
                    &self.db,
                    &self.key.namespace,
                    Some(&self.key),
                    retention::cutoff(age),
                ) {
                    log::warn!(
                        "consumer {:?}: pruning processed records failed: {e}",
                        self.key.consumer_id
                    );
                }
            }
        }
        if self.shared.stopping() {
            Flow::Exit
        } else {
            Flow::Continue
        }
    }

    /// Waits `delay` unless shutdown comes first.
    fn pause(&self, delay: Duration) -> Flow {
        if self.shared.stopping() {
            return Flow::Exit;
        }
        select! {
            recv(self.shutdown) -> _ => Flow::Exit,
            default(delay) => Flow::Continue,
        }
    }
}
