//! Starting a consumer's worker thread, and the fetcher thread it runs
//! while it holds the consumer's lease: the two are connected by a bounded
//! channel of batches, and the fetcher's loop is here.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{bounded, select, Receiver, Sender};

use crate::error::Result;
use crate::kit::Kit;
use crate::lease::Lease;
use crate::message::Message;
use crate::store::{CategoryQuery, MessageStore};

use crate::consumer::config::ConsumerConfig;
use crate::consumer::fetch::{FetchOutcome, Fetched, Fetcher};
use crate::consumer::filter::MessageFilter;
use crate::consumer::handle::ConsumerHandle;
use crate::consumer::handler::BoxedHandler;
use crate::consumer::position::ConsumerKey;
use crate::consumer::stats::Shared;

use super::Worker;

/// What [`spawn`] starts from.
pub(crate) struct Start {
    pub(crate) key: ConsumerKey,
    pub(crate) consumer_key: i64,
    pub(crate) config: ConsumerConfig,
    pub(crate) filter: MessageFilter,
    pub(crate) handler: BoxedHandler,
    /// The lease, already held when `spawn` could take it at once.
    pub(crate) lease: Lease,
    /// The saved position.
    pub(crate) position: i64,
    /// The highest position the consumer's processed records hold.
    pub(crate) recorded_through: i64,
}

/// Starts the worker thread of a consumer; it starts its fetcher once it
/// holds the lease (at once when `start.lease` is held).
pub(crate) fn spawn(kit: &Kit, start: Start) -> Result<ConsumerHandle> {
    let shared = Arc::new(Shared::new(start.position));
    shared.set_standby(start.lease.token().is_none());
    kit.runtime()
        .registry
        .add_consumer(&start.key.category, &start.key.consumer_id, &shared);
    let (shutdown_tx, shutdown_rx) = bounded::<()>(0);
    // Watching starts here, before `spawn` returns, when the lease is held:
    // a write after it wakes us.
    let fetch = if start.lease.token().is_some() {
        Some(FetchThread::start(
            Arc::clone(kit.store()),
            &start.key,
            &start.config,
            start.position,
            &shared,
        )?)
    } else {
        None
    };
    let worker = Worker {
        db: kit.db().clone(),
        store: Arc::clone(kit.store()),
        key: start.key,
        consumer_key: start.consumer_key,
        lease: start.lease,
        config: start.config,
        filter: start.filter,
        handler: start.handler,
        shared: Arc::clone(&shared),
        hooks: kit.runtime().hooks.clone(),
        handled: Vec::new(),
        shutdown: shutdown_rx,
        retry: None,
        requeue_checked: None,
        // `ConsumerBuilder::spawn` pruned just now.
        retention_done: Some(Instant::now()),
        next_renew: Instant::now(),
        paused_since: None,
        recorded_through: start.recorded_through,
    };
    let mut query = CategoryQuery::new();
    query.correlation = worker.config.correlation.clone();
    query.consumer_group = worker.config.consumer_group;
    let name = format!("evento-consumer-{}", worker.key.consumer_id);
    let (category, consumer_id) = (worker.key.category.clone(), worker.key.consumer_id.clone());
    // On failure the fetcher (if started) ends: its batch receiver and stop
    // sender are gone with the closure.
    let thread = thread::Builder::new()
        .name(name)
        .spawn(move || worker.run(fetch))?;
    Ok(ConsumerHandle::new(
        shared,
        shutdown_tx,
        thread,
        category,
        consumer_id,
        Arc::clone(kit.store()),
        query,
    ))
}

/// A running fetcher thread, owned by the worker while it holds the lease.
pub(super) struct FetchThread {
    pub(super) batches: Receiver<Fetched>,
    /// Handled batches go back to the fetcher to be freed there, off the
    /// worker's hot path (their memory came from the fetcher's thread).
    pub(super) recycle: Sender<Vec<Message>>,
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl FetchThread {
    /// Starts fetching `key`'s category after `position`.
    pub(super) fn start(
        store: Arc<dyn MessageStore>,
        key: &ConsumerKey,
        config: &ConsumerConfig,
        position: i64,
        shared: &Arc<Shared>,
    ) -> Result<FetchThread> {
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let (batch_tx, batch_rx) = bounded::<Fetched>(1);
        let (recycle_tx, recycle_rx) = bounded::<Vec<Message>>(2);
        let mut query = CategoryQuery::new().batch_size(config.batch_size);
        query.correlation = config.correlation.clone();
        query.consumer_group = config.consumer_group;
        let fetcher = Fetcher::new(
            store,
            &key.category,
            query,
            position + 1,
            config.poll_interval,
            config.io_retry.clone(),
        );
        let shared = Arc::clone(shared);
        let thread = thread::Builder::new()
            .name(format!("evento-fetch-{}", key.consumer_id))
            .spawn(move || fetch_loop(fetcher, batch_tx, recycle_rx, stop_rx, shared))?;
        Ok(FetchThread {
            batches: batch_rx,
            recycle: recycle_tx,
            stop: stop_tx,
            thread,
        })
    }

    /// Stops the fetcher and waits for it.
    pub(super) fn stop(self, consumer_id: &str) {
        let FetchThread {
            batches,
            recycle,
            stop,
            thread,
        } = self;
        drop(stop);
        drop(batches);
        drop(recycle);
        if thread.join().is_err() {
            log::error!("fetcher of consumer {consumer_id:?} panicked");
        }
    }
}

fn fetch_loop(
    mut fetcher: Fetcher,
    batches: Sender<Fetched>,
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
