//! [`ConsumerHandle`]: the owner of a running consumer's threads.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::error::Result;

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
    ) -> Self {
        ConsumerHandle {
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
            category,
            consumer_id,
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
