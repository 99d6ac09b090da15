//! Reading a category in order, waking on pokes: the loop behind a
//! consumer's fetcher thread and a channel subscription.
//!
//! Between fetches that came back empty the loop blocks in `select!` on the
//! store's live wake-ups ([`MessageStore::watch_category`]), the stop
//! channel, and the poll interval (the fallback while wake-ups are missing).
//! Pending pokes are drained before each fetch: a write that lands after the
//! drain pokes again, so none is missed and none is waited for twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, Receiver};

use crate::error::Error;
use crate::message::Message;
use crate::retry::RetryPolicy;
use crate::store::{CategoryQuery, MessageStore, Poke, Subscription};

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// A poke, the poll interval or a backoff elapsed: fetch again.
    Fetch,
    /// The stop channel closed.
    Stop,
}

/// Fetches batches of a category from a position on.
pub(crate) struct Fetcher {
    store: Arc<dyn MessageStore>,
    category: String,
    query: CategoryQuery,
    poll_interval: Duration,
    backoff: RetryPolicy,
    watch: Option<Subscription>,
    /// When to try `watch_category` again after it failed or disconnected.
    rewatch_at: Option<Instant>,
    failures: u32,
}

impl Fetcher {
    /// A fetcher of `category` from global position `next`; `query` carries
    /// the batch size, correlation and consumer group.
    pub(crate) fn new(
        store: Arc<dyn MessageStore>,
        category: &str,
        query: CategoryQuery,
        next: i64,
        poll_interval: Duration,
        backoff: RetryPolicy,
    ) -> Self {
        let mut fetcher = Fetcher {
            store,
            category: category.to_string(),
            query: query.position(next.max(1)),
            poll_interval,
            backoff,
            watch: None,
            rewatch_at: None,
            failures: 0,
        };
        fetcher.ensure_watch();
        fetcher
    }

    fn ensure_watch(&mut self) {
        if self.watch.is_some() || self.rewatch_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match self.store.watch_category(&self.category) {
            Ok(watch) => {
                self.watch = Some(watch);
                self.rewatch_at = None;
            }
            Err(e) => {
                log::warn!(
                    "no live wake-ups for category {:?}, polling every {:?}: {e}",
                    self.category,
                    self.poll_interval
                );
                self.rewatch_at = Some(Instant::now() + self.poll_interval);
            }
        }
    }

    /// The next non-empty batch, waiting for one as long as it takes;
    /// `None` once `stop` is closed. `on_store` hears of every fetch error
    /// (`Some`) and of the first success after errors (`None`).
    pub(crate) fn next_batch(
        &mut self,
        stop: &Receiver<()>,
        on_store: &mut dyn FnMut(Option<&Error>),
    ) -> Option<Vec<Message>> {
        loop {
            self.ensure_watch();
            if let Some(watch) = &self.watch {
                watch.drain();
            }
            match self.store.get_category(&self.category, &self.query) {
                Ok(batch) => {
                    if self.failures > 0 {
                        self.failures = 0;
                        on_store(None);
                    }
                    if let Some(last) = batch.last() {
                        self.query.position = last.global_position + 1;
                        return Some(batch);
                    }
                    if self.wait(stop, self.poll_interval) == Wake::Stop {
                        return None;
                    }
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    log::warn!("reading category {:?} failed: {e}", self.category);
                    on_store(Some(&e));
                    let delay = self.backoff.jittered_delay_after(self.failures);
                    if self.wait(stop, delay) == Wake::Stop {
                        return None;
                    }
                }
            }
        }
    }

    /// Blocks until a poke, `timeout`, or `stop` closing.
    pub(crate) fn wait(&mut self, stop: &Receiver<()>, timeout: Duration) -> Wake {
        let pokes: Receiver<Poke> = match &self.watch {
            Some(w) => w.receiver().clone(),
            None => never(),
        };
        select! {
            recv(pokes) -> poke => {
                if poke.is_err() {
                    // The wake-up source went away: poll, and watch again later.
                    self.watch = None;
                    self.rewatch_at = Some(Instant::now() + self.poll_interval);
                }
                Wake::Fetch
            }
            recv(stop) -> _ => Wake::Stop,
            default(timeout) => Wake::Fetch,
        }
    }
}
