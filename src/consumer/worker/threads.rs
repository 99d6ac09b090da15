//! Starting a consumer's two threads, connected by a bounded channel of
//! batches, and the fetcher thread's loop.

use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::{bounded, select, Receiver, Sender};

use crate::error::Result;
use crate::kit::Kit;
use crate::message::Message;
use crate::store::CategoryQuery;

use crate::consumer::config::ConsumerConfig;
use crate::consumer::fetch::{FetchOutcome, Fetcher};
use crate::consumer::filter::MessageFilter;
use crate::consumer::handle::ConsumerHandle;
use crate::consumer::handler::BoxedHandler;
use crate::consumer::position::ConsumerKey;
use crate::consumer::stats::Shared;

use super::Worker;

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
