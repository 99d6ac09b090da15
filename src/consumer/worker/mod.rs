//! A consumer's worker thread: it handles the batches the fetcher thread
//! reads ahead (so reading the store and handling overlap), and between
//! batches runs requeued dead letters and retention.
//!
//! The worker handles a fetched batch in one `BEGIN IMMEDIATE` transaction
//! on the kit's database, with a savepoint per message: processed record,
//! handler, release. A message whose handler fails is rolled back to its
//! savepoint alone; the messages before it commit with the position just
//! before it. The failing message is retried with backoff and then
//! dead-lettered (its dead letter and the position past it commit together)
//! or halts the consumer. The position therefore never passes a message that
//! neither succeeded nor was dead-lettered.
//!
//! * `threads` — starting the fetcher and worker threads, the fetcher's loop;
//! * `batch` — one batch: transactions, savepoints, the position;
//! * `failure` — a failed message: retry, dead letter or halt.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::db::Db;
use crate::hooks::{Component, Hooks};
use crate::message::Message;

use super::config::ConsumerConfig;
use super::filter::MessageFilter;
use super::handler::BoxedHandler;
use super::position::ConsumerKey;
use super::requeue;
use super::retention;
use super::stats::Shared;

mod batch;
mod failure;
mod threads;

use failure::Retry;

pub(crate) use threads::spawn;

/// Whether the worker goes on or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

/// The worker thread's state.
pub(crate) struct Worker {
    db: Db,
    key: ConsumerKey,
    config: ConsumerConfig,
    filter: MessageFilter,
    handler: BoxedHandler,
    shared: Arc<Shared>,
    hooks: Hooks,
    /// Messages of the current batch the handler processed, and how long it
    /// took (kept only when hooks are registered).
    handled: Vec<(usize, Duration)>,
    shutdown: Receiver<()>,
    recycle: Sender<Vec<Message>>,
    retry: Option<Retry>,
    requeue_checked: Option<Instant>,
    retention_done: Option<Instant>,
}

impl Worker {
    /// The thread's body: handle batches until told to stop (or a halt),
    /// then stop the fetcher and join it.
    fn run(
        mut self,
        batches: Receiver<Vec<Message>>,
        fetch_stop: Sender<()>,
        fetch_thread: JoinHandle<()>,
    ) {
        self.hooks.emit(|h| h.on_started(&self.component()));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.main_loop(&batches))) {
            log::error!(
                "consumer {:?} of {:?} stopped by a panic in the kit: {panic:?}",
                self.key.consumer_id,
                self.key.category
            );
        }
        drop(fetch_stop);
        drop(batches);
        if fetch_thread.join().is_err() {
            log::error!("fetcher of consumer {:?} panicked", self.key.consumer_id);
        }
        self.hooks.emit(|h| h.on_stopped(&self.component()));
        self.shared.mark_stopped();
    }

    fn component(&self) -> Component<'_> {
        Component::Consumer {
            category: &self.key.category,
            consumer_id: &self.key.consumer_id,
        }
    }

    fn main_loop(&mut self, batches: &Receiver<Vec<Message>>) {
        loop {
            if self.shared.stopping() {
                return;
            }
            if self.housekeeping() == Flow::Exit {
                return;
            }
            select! {
                recv(batches) -> batch => match batch {
                    Ok(batch) => {
                        let flow = self.process(&batch);
                        // A full channel means the fetcher is busy: free it here.
                        let _ = self.recycle.try_send(batch);
                        if flow == Flow::Exit {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                recv(self.shutdown) -> _ => return,
                default(self.config.poll_interval) => {}
            }
        }
    }

    /// Runs requeued dead letters and prunes processed records when due.
    fn housekeeping(&mut self) -> Flow {
        let now = Instant::now();
        if self
            .requeue_checked
            .is_none_or(|t| now.duration_since(t) >= self.config.poll_interval)
        {
            self.requeue_checked = Some(now);
            match requeue::run_requeued(
                &self.db,
                &self.key,
                &mut self.handler,
                &self.shared,
                &self.hooks,
            ) {
                Ok(()) => {}
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
