//! A consumer's threads: the fetcher reads batches ahead (so reading the
//! store and handling overlap), the worker handles them.
//!
//! The worker handles a fetched batch in one `BEGIN IMMEDIATE` transaction
//! on the kit's database, with a savepoint per message: processed record,
//! handler, release. A message whose handler fails is rolled back to its
//! savepoint alone; the messages before it commit with the position just
//! before it. The failing message is retried with backoff and then
//! dead-lettered (its dead letter and the position past it commit together)
//! or halts the consumer. The position therefore never passes a message that
//! neither succeeded nor was dead-lettered.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, Sender};

use crate::db::Db;
use crate::dlq::{self, DeadLetterSource, NewDeadLetter};
use crate::error::Result;
use crate::hooks::{Component, ConsumerDeadLetter, Handled, HandlerFailed, Hooks, NextStep};
use crate::kit::Kit;
use crate::message::Message;
use crate::store::CategoryQuery;
use crate::time::now_ms;

use super::config::{ConsumerConfig, FailurePolicy};
use super::fetch::{FetchOutcome, Fetcher};
use super::filter::MessageFilter;
use super::handle::ConsumerHandle;
use super::handler::{self, BoxedHandler, Failure, Savepoints};
use super::position::{self, ConsumerKey, ProcessedRecords};
use super::requeue;
use super::retention;
use super::stats::{BatchCounts, FailingMessage, Shared};

/// Starts the fetcher and worker threads of a consumer at `position`.
pub(crate) fn spawn(
    kit: &Kit,
    key: ConsumerKey,
    config: ConsumerConfig,
    filter: MessageFilter,
    handler: BoxedHandler,
    position: i64,
) -> Result<ConsumerHandle> {
    let shared = Arc::new(Shared::new(position));
    kit.runtime()
        .registry
        .add_consumer(&key.category, &key.consumer_id, &shared);
    let (shutdown_tx, shutdown_rx) = bounded::<()>(0);
    let (fetch_stop_tx, fetch_stop_rx) = bounded::<()>(0);
    let (batch_tx, batch_rx) = bounded::<Vec<Message>>(1);
    // Handled batches go back to the fetcher to be freed there, off the
    // worker's hot path (their memory came from the fetcher's thread).
    let (recycle_tx, recycle_rx) = bounded::<Vec<Message>>(2);

    let mut query = CategoryQuery::new().batch_size(config.batch_size);
    query.correlation = config.correlation.clone();
    query.consumer_group = config.consumer_group;
    // Watching starts here, before `spawn` returns: a write after it wakes us.
    let fetcher = Fetcher::new(
        Arc::clone(kit.store()),
        &key.category,
        query,
        position + 1,
        config.poll_interval,
        config.io_retry.clone(),
    );
    let fetch_shared = Arc::clone(&shared);
    let fetch_thread = thread::Builder::new()
        .name(format!("evento-fetch-{}", key.consumer_id))
        .spawn(move || fetch_loop(fetcher, batch_tx, recycle_rx, fetch_stop_rx, fetch_shared))?;

    let worker = Worker {
        db: kit.db().clone(),
        key,
        config,
        filter,
        handler,
        shared: Arc::clone(&shared),
        hooks: kit.runtime().hooks.clone(),
        handled: Vec::new(),
        shutdown: shutdown_rx,
        recycle: recycle_tx,
        retry: None,
        requeue_checked: None,
        // `ConsumerBuilder::spawn` pruned just now.
        retention_done: Some(Instant::now()),
    };
    let name = format!("evento-consumer-{}", worker.key.consumer_id);
    let (category, consumer_id) = (worker.key.category.clone(), worker.key.consumer_id.clone());
    let thread = thread::Builder::new()
        .name(name)
        .spawn(move || worker.run(batch_rx, fetch_stop_tx, fetch_thread));
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            // The fetcher ends: its batch receiver and stop sender are gone.
            return Err(e.into());
        }
    };
    Ok(ConsumerHandle::new(
        shared,
        shutdown_tx,
        thread,
        category,
        consumer_id,
    ))
}

fn fetch_loop(
    mut fetcher: Fetcher,
    batches: Sender<Vec<Message>>,
    handled: Receiver<Vec<Message>>,
    stop: Receiver<()>,
    shared: Arc<Shared>,
) {
    let mut on_fetch = |outcome: FetchOutcome<'_>| {
        shared.fetched();
        match outcome {
            FetchOutcome::Read { after_errors } => {
                if after_errors {
                    shared.set_store_error(None);
                }
            }
            FetchOutcome::Failed(e) => shared.set_store_error(Some(e.to_string())),
        }
    };
    loop {
        handled.try_iter().for_each(drop);
        let Some(batch) = fetcher.next_batch(&stop, &mut on_fetch) else {
            return;
        };
        shared.batch_fetched();
        select! {
            send(batches, batch) -> sent => if sent.is_err() { return },
            recv(stop) -> _ => return,
        }
    }
}

/// Retry state of the message at the head of the line.
#[derive(Debug)]
struct Retry {
    message_id: String,
    failures: u32,
    first_failed: Instant,
    first_failed_ms: i64,
}

enum BatchEnd {
    /// Every message was handled or passed over.
    Done,
    /// The handler failed on the first message not consumed.
    Failed(Failure),
    /// Shutdown was requested; what was done is committed.
    Interrupted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

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

    /// Tells the hooks about a handler failure.
    fn failed_event(&self, message: &Message, failing: &FailingMessage, next: NextStep) {
        self.hooks.emit(|h| {
            h.on_handler_failed(&HandlerFailed {
                category: &self.key.category,
                consumer_id: &self.key.consumer_id,
                message,
                attempts: failing.attempts,
                error: &failing.error,
                next,
            })
        });
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

    /// Handles a fetched batch to its end (or until shutdown or a halt).
    fn process(&mut self, batch: &[Message]) -> Flow {
        let mut start = 0;
        let mut db_failures = 0u32;
        while start < batch.len() {
            match self.run_batch(&batch[start..]) {
                Ok((consumed, end)) => {
                    db_failures = 0;
                    if consumed > 0 && self.retry.take().is_some() {
                        self.shared.set_retrying(None);
                    }
                    start += consumed;
                    match end {
                        BatchEnd::Done => {}
                        BatchEnd::Interrupted => return Flow::Exit,
                        BatchEnd::Failed(failure) => {
                            match self.on_failure(&batch[start], failure) {
                                Ok(true) => start += 1,
                                Ok(false) => {}
                                Err(flow) => return flow,
                            }
                        }
                    }
                }
                Err(e) => {
                    db_failures = db_failures.saturating_add(1);
                    log::warn!(
                        "consumer {:?}: committing a batch failed: {e}",
                        self.key.consumer_id
                    );
                    self.shared.set_db_error(Some(e.to_string()));
                    let delay = self.config.io_retry.jittered_delay_after(db_failures);
                    if self.pause(delay) == Flow::Exit {
                        return Flow::Exit;
                    }
                }
            }
        }
        Flow::Continue
    }

    /// One transaction over `messages` until the end, a failure or shutdown.
    /// Returns how many messages it consumed (handled or passed over).
    fn run_batch(&mut self, messages: &[Message]) -> Result<(usize, BatchEnd)> {
        let mut conn = self.db.connection()?;
        let tx = conn.transaction()?;
        let mut counts = BatchCounts::default();
        let mut last = None;
        let mut end = BatchEnd::Done;
        let mut consumed = 0;
        let observe = self.hooks.any();
        self.handled.clear();
        {
            let mut savepoints = Savepoints::prepare(&tx)?;
            let mut records = ProcessedRecords::prepare(&tx, &self.key)?;
            for message in messages {
                if self.shared.stopping() {
                    end = BatchEnd::Interrupted;
                    break;
                }
                if !self.filter.accepts(message) {
                    counts.filtered += 1;
                } else {
                    savepoints.begin()?;
                    if !records.mark(message)? {
                        savepoints.keep()?;
                        counts.duplicates += 1;
                    } else {
                        let started = Instant::now();
                        match handler::run(&mut self.handler, message, &tx) {
                            Ok(()) => {
                                savepoints.keep()?;
                                let took = started.elapsed();
                                self.shared.handler_ran(took);
                                if observe {
                                    self.handled.push((consumed, took));
                                }
                                counts.processed += 1;
                            }
                            Err(failure) => {
                                savepoints.undo()?;
                                end = BatchEnd::Failed(failure);
                                break;
                            }
                        }
                    }
                }
                last = Some(message.global_position);
                consumed += 1;
            }
        }
        if let Some(position) = last {
            position::save(&tx, &self.key, position)?;
        }
        tx.commit()?;
        self.shared.committed(last, counts);
        for &(i, took) in &self.handled {
            self.hooks.emit(|h| {
                h.on_handled(&Handled {
                    category: &self.key.category,
                    consumer_id: &self.key.consumer_id,
                    message: &messages[i],
                    took,
                })
            });
        }
        self.handled.clear();
        Ok((consumed, end))
    }

    /// A failed attempt at `message`. `Ok(true)`: it was dead-lettered (move
    /// on); `Ok(false)`: retry it now; `Err(flow)`: stop.
    fn on_failure(&mut self, message: &Message, failure: Failure) -> Result<bool, Flow> {
        self.shared.handler_failed();
        let retry = match &mut self.retry {
            Some(r) if r.message_id == message.id => r,
            slot => slot.insert(Retry {
                message_id: message.id.clone(),
                failures: 0,
                first_failed: Instant::now(),
                first_failed_ms: now_ms(),
            }),
        };
        retry.failures = retry.failures.saturating_add(1);
        let failing = FailingMessage {
            message_id: message.id.clone(),
            global_position: message.global_position,
            attempts: retry.failures,
            error: failure.error.clone(),
        };
        let give_up = (failure.permanent && !self.config.retry_permanent_errors)
            || self
                .config
                .retry
                .gives_up(retry.failures, retry.first_failed.elapsed());
        if !give_up {
            log::warn!(
                "consumer {:?}: handler failed on message {} (attempt {}): {}",
                self.key.consumer_id,
                message.id,
                retry.failures,
                failure.error
            );
            let delay = self.config.retry.jittered_delay_after(retry.failures);
            self.shared.handler_retried();
            self.failed_event(message, &failing, NextStep::Retry { after: delay });
            self.shared.set_retrying(Some(failing));
            return match self.pause(delay) {
                Flow::Continue => Ok(false),
                Flow::Exit => Err(Flow::Exit),
            };
        }
        match self.config.failure_policy {
            FailurePolicy::Stop => {
                log::error!(
                    "consumer {:?} halted at message {} (global position {}): {}",
                    self.key.consumer_id,
                    message.id,
                    message.global_position,
                    failure.error
                );
                self.failed_event(message, &failing, NextStep::Halt);
                self.shared.halt(failing);
                Err(Flow::Exit)
            }
            _ => {
                let first_failed_ms = retry.first_failed_ms;
                self.failed_event(message, &failing, NextStep::DeadLetter);
                let mut db_failures = 0u32;
                loop {
                    match self.dead_letter(message, &failing, first_failed_ms) {
                        Ok(()) => break,
                        Err(e) => {
                            db_failures = db_failures.saturating_add(1);
                            self.shared.set_db_error(Some(e.to_string()));
                            let delay = self.config.io_retry.jittered_delay_after(db_failures);
                            if self.pause(delay) == Flow::Exit {
                                return Err(Flow::Exit);
                            }
                        }
                    }
                }
                log::warn!(
                    "consumer {:?}: message {} dead-lettered after {} attempts: {}",
                    self.key.consumer_id,
                    message.id,
                    failing.attempts,
                    failing.error
                );
                self.retry = None;
                self.shared.dead_lettered(message.global_position);
                self.hooks.emit(|h| {
                    h.on_consumer_dead_letter(&ConsumerDeadLetter {
                        category: &self.key.category,
                        consumer_id: &self.key.consumer_id,
                        message,
                        attempts: failing.attempts,
                        error: &failing.error,
                    })
                });
                Ok(true)
            }
        }
    }

    /// Records the dead letter and moves the position past it, together.
    fn dead_letter(
        &self,
        message: &Message,
        failing: &FailingMessage,
        first_ms: i64,
    ) -> Result<()> {
        let json = dlq::message_to_json(message);
        self.db.write(|tx| {
            dlq::record(
                tx,
                &NewDeadLetter {
                    source: DeadLetterSource::Consumer,
                    namespace: &self.key.namespace,
                    message_id: &message.id,
                    stream: &message.stream_name,
                    message_type: &message.message_type,
                    category: Some(&self.key.category),
                    consumer_id: Some(&self.key.consumer_id),
                    message: &json,
                    error: &failing.error,
                    attempts: failing.attempts,
                    first_failed_at_ms: first_ms,
                },
            )?;
            position::save(tx, &self.key, message.global_position)
        })
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
