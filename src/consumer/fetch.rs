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

use crate::disposition::{Disposition, PauseReason};
use crate::error::Error;
use crate::message::Message;
use crate::retry::RetryPolicy;
use crate::store::{CategoryQuery, MessageStore, Poke, Subscription};

/// The longest wait between reads while the store cannot be reached:
/// noticing soon that it is back matters more than one request's cost.
const UNREACHABLE_MAX_DELAY: Duration = Duration::from_secs(2);

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// A poke, the poll interval or a backoff elapsed: fetch again.
    Fetch,
    /// The stop channel closed.
    Stop,
}

/// What one `category.get` call came to, for the fetcher's owner.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FetchOutcome<'a> {
    /// It answered; `after_errors`: the first answer after failed calls.
    Read {
        /// Whether calls failed before this one.
        after_errors: bool,
    },
    /// It failed (the fetcher backs off and tries again).
    Failed(&'a Error),
}

/// What a fetch brought.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// Messages in global order (never empty).
    Messages(Vec<Message>),
    /// A message the store cannot decode (see [`Error::Undecodable`]): a
    /// stand-in with its id, stream, type and positions (no data), and why.
    /// The next fetch goes on after it.
    Undecodable {
        /// The stand-in.
        message: Message,
        /// Why it cannot be decoded.
        reason: String,
    },
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
    /// `None` once `stop` is closed. `on_fetch` hears of every call to the
    /// store, empty answers and failures included.
    pub(crate) fn next_batch(
        &mut self,
        stop: &Receiver<()>,
        on_fetch: &mut dyn FnMut(FetchOutcome<'_>),
    ) -> Option<Fetched> {
        loop {
            self.ensure_watch();
            if let Some(watch) = &self.watch {
                watch.drain();
            }
            match self.store.get_category(&self.category, &self.query) {
                Ok(batch) => {
                    on_fetch(FetchOutcome::Read {
                        after_errors: self.failures > 0,
                    });
                    self.failures = 0;
                    if let Some(last) = batch.last() {
                        self.query.position = last.global_position + 1;
                        return Some(Fetched::Messages(batch));
                    }
                    if self.wait(stop, self.poll_interval) == Wake::Stop {
                        return None;
                    }
                }
                Err(Error::Undecodable {
                    id,
                    stream,
                    message_type,
                    position,
                    global_position,
                    reason,
                }) if global_position >= self.query.position => {
                    // The store read up to it: the rest of the category goes
                    // on after it.
                    on_fetch(FetchOutcome::Read {
                        after_errors: self.failures > 0,
                    });
                    self.failures = 0;
                    self.query.position = global_position + 1;
                    let message = Message {
                        id,
                        stream_name: stream,
                        message_type,
                        position,
                        global_position,
                        data: serde_json::Value::Null,
                        metadata: None,
                        time: std::time::SystemTime::now(),
                    };
                    return Some(Fetched::Undecodable { message, reason });
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    log::warn!("reading category {:?} failed: {e}", self.category);
                    on_fetch(FetchOutcome::Failed(&e));
                    let mut delay = self.backoff.jittered_delay_after(self.failures);
                    if e.disposition() == Disposition::Pause(PauseReason::Unreachable) {
                        // One cheap read: notice soon that the store is back.
                        delay = delay.min(UNREACHABLE_MAX_DELAY);
                    }
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
