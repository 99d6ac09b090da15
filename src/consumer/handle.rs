//! [`ConsumerHandle`]: the owner of a running consumer's threads.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::error::{Error, Result};
use crate::store::{CategoryQuery, MessageStore, MAX_BATCH_SIZE};
use crate::time::Deadline;

use super::stats::{ConsumerHealth, ConsumerStats, Shared};

/// A running consumer (see [`ConsumerBuilder::spawn`](super::ConsumerBuilder::spawn)).
///
/// [`ConsumerHandle::shutdown`] lets the in-flight message finish, commits,
/// and joins the consumer's threads. Dropping the handle asks them to stop the
/// same way but does not wait. The handle is `Send + Sync`: it may be shared
/// behind an `Arc` to watch the consumer from other threads.
pub struct ConsumerHandle {
    shared: Arc<Shared>,
    shutdown: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    category: String,
    consumer_id: String,
    /// The store and the query (group, correlation) it fetches with, for
    /// [`ConsumerHandle::wait_until_caught_up`].
    store: Arc<dyn MessageStore>,
    query: CategoryQuery,
}

impl fmt::Debug for ConsumerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerHandle")
            .field("category", &self.category)
            .field("consumer_id", &self.consumer_id)
            .field("position", &self.position())
            .field("health", &self.health())
            .finish()
    }
}

impl ConsumerHandle {
    pub(crate) fn new(
        shared: Arc<Shared>,
        shutdown: Sender<()>,
        thread: JoinHandle<()>,
        category: String,
        consumer_id: String,
        store: Arc<dyn MessageStore>,
        query: CategoryQuery,
    ) -> Self {
        ConsumerHandle {
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
            category,
            consumer_id,
            store,
            query,
        }
    }

    /// The category it follows.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// Its consumer id.
    pub fn consumer_id(&self) -> &str {
        &self.consumer_id
    }

    /// The committed position: the global position of the last message
    /// handled or passed over.
    pub fn position(&self) -> i64 {
        self.shared.position()
    }

    /// Counters and latencies so far.
    pub fn stats(&self) -> ConsumerStats {
        self.shared.stats()
    }

    /// How it is doing: running, retrying a message, unable to reach the
    /// store, halted, stopped.
    pub fn health(&self) -> ConsumerHealth {
        self.shared.health()
    }

    /// Whether its threads have ended (after a shutdown, or a halt).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits until the position is at least `global_position` — every
    /// message of the category up to it handled, dead-lettered or passed
    /// over — or `timeout` passes.
    ///
    /// With a consumer group or a correlation filter the position only moves
    /// on messages the store hands to this consumer, so wait for one of those.
    ///
    /// Errors: [`Error::Timeout`](crate::Error::Timeout);
    /// [`Error::Handler`](crate::Error::Handler) when the consumer halted at a
    /// message before it; [`Error::Shutdown`](crate::Error::Shutdown) when it
    /// stopped.
    pub fn wait_for_position(&self, global_position: i64, timeout: Duration) -> Result<()> {
        self.shared.wait_for_position(global_position, timeout)
    }

    /// Waits until the consumer has caught up with its category as it is
    /// now: every message the store holds at the time of the call for this
    /// consumer (its category, consumer group and correlation filter)
    /// handled, dead-lettered or passed over — or `timeout` passes.
    ///
    /// It reads the store from the consumer's position on to find the
    /// category's head (a `category.get` per 10 000 messages of lag), then
    /// waits as [`ConsumerHandle::wait_for_position`] does. Messages
    /// written after the call are not waited for.
    ///
    /// ```
    /// use std::time::Duration;
    /// use eventodb_kit::{Kit, MessageStore, NewMessage, WriteOptions};
    ///
    /// let kit = Kit::builder().build()?;
    /// for n in 0..3 {
    ///     let msg = NewMessage::new("Placed", serde_json::json!({ "n": n }));
    ///     kit.store().write("order-1", &msg, &WriteOptions::new())?;
    /// }
    /// let consumer = kit.consumer("order", "audit").spawn(|_msg, _tx| Ok(()))?;
    /// consumer.wait_until_caught_up(Duration::from_secs(10))?;
    /// assert_eq!(consumer.stats().processed, 3);
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    ///
    /// Errors: the store's error when it cannot be read;
    /// [`Error::Timeout`](crate::Error::Timeout);
    /// [`Error::Handler`](crate::Error::Handler) when the consumer halted at
    /// a message before the head; [`Error::Shutdown`](crate::Error::Shutdown)
    /// when it stopped.
    pub fn wait_until_caught_up(&self, timeout: Duration) -> Result<()> {
        let deadline = Deadline::after(timeout);
        let head = self.head()?;
        self.shared
            .wait_for_position(head, deadline.remaining())
            .map_err(|e| match e {
                Error::Timeout(_) => Error::Timeout(format!(
                    "consumer {:?} reached position {}, not the head {head} of {:?}, within {timeout:?}",
                    self.consumer_id,
                    self.position(),
                    self.category
                )),
                e => e,
            })
    }

    /// The global position of the last message the store holds for this
    /// consumer (its position when there is none after it).
    fn head(&self) -> Result<i64> {
        let mut head = self.position();
        loop {
            let query = self
                .query
                .clone()
                .position(head.saturating_add(1).max(1))
                .batch_size(MAX_BATCH_SIZE);
            match self.store.get_category(&self.category, &query) {
                Ok(batch) => match batch.last() {
                    Some(last) => head = last.global_position,
                    None => return Ok(head),
                },
                // The consumer passes it over as a failure of that message.
                Err(Error::Undecodable {
                    global_position, ..
                }) if global_position > head => head = global_position,
                Err(e) => return Err(e),
            }
        }
    }

    fn signal(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Closing the channel wakes the worker out of any wait.
        self.shutdown.take();
    }

    /// Stops the consumer after the message in flight (its work commits) and
    /// waits for its threads to end.
    pub fn shutdown(mut self) {
        self.signal();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("consumer {:?} thread panicked", self.consumer_id);
            }
        }
    }
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        self.signal();
    }
}
