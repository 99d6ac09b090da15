//! [`MessageSubscription`]: a category as a stream of messages on a bounded
//! crossbeam channel, fed by a thread.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{bounded, select, Receiver, RecvTimeoutError, Sender};

use crate::consumer_group::ConsumerGroup;
use crate::error::{Error, Result};
use crate::kit::Kit;
use crate::message::Message;
use crate::retry::RetryPolicy;
use crate::store::{CategoryQuery, MAX_BATCH_SIZE};

use super::fetch::{FetchOutcome, Fetched, Fetcher};

/// Settings of a [`MessageSubscription`] (see [`Kit::subscribe_with`]).
///
/// ```
/// use eventodb_kit::consumer::SubscribeOptions;
/// let options = SubscribeOptions::new().from_position(101).capacity(64);
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    from_position: i64,
    capacity: usize,
    batch_size: i64,
    poll_interval: Duration,
    consumer_group: Option<ConsumerGroup>,
    correlation: Option<String>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            from_position: 1,
            capacity: 256,
            batch_size: 1000,
            poll_interval: Duration::from_secs(1),
            consumer_group: None,
            correlation: None,
        }
    }
}

impl SubscribeOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first global position delivered. Defaults to 1 (the beginning).
    pub fn from_position(mut self, global_position: i64) -> Self {
        self.from_position = global_position.max(1);
        self
    }

    /// Messages the channel holds before the feeding thread waits for the
    /// reader (back pressure; at least 1). Defaults to 256.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Messages fetched per `category.get` (1..=10 000). Defaults to 1000.
    pub fn batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// How often to look for new messages when no wake-up came (the fallback).
    /// Defaults to 1 s.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Only the streams of this consumer-group member. Defaults to every stream.
    pub fn consumer_group(mut self, group: ConsumerGroup) -> Self {
        self.consumer_group = Some(group);
        self
    }

    /// Only messages correlated with category `category`. Defaults to none.
    pub fn correlation(mut self, category: impl Into<String>) -> Self {
        self.correlation = Some(category.into());
        self
    }
}

/// A category delivered as messages on a bounded channel, in global order,
/// by a thread that this value owns.
///
/// The thread fetches ahead only as far as the channel's capacity: a slow
/// reader makes it wait (back pressure). It keeps no position: pair it with
/// [`Kit::checkpoints`] to remember where a reader got to. Dropping the
/// subscription (or [`MessageSubscription::shutdown`], which also joins the
/// thread) ends it.
///
/// ```
/// use std::time::Duration;
/// use eventodb_kit::{Kit, MessageStore, NewMessage, WriteOptions};
///
/// let dir = tempfile::tempdir()?;
/// let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
/// kit.store().write("order-1", &NewMessage::new("Placed", serde_json::json!({})), &WriteOptions::new())?;
///
/// let orders = kit.subscribe("order", 1)?;
/// let msg = orders.recv_timeout(Duration::from_secs(10))?;
/// assert_eq!(msg.message_type, "Placed");
/// kit.checkpoints().set("order", "mailer", msg.global_position)?;
/// orders.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MessageSubscription {
    receiver: Receiver<Message>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    delivered: Arc<AtomicU64>,
}

impl fmt::Debug for MessageSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageSubscription")
            .field("pending", &self.receiver.len())
            .field("delivered", &self.delivered())
            .finish()
    }
}

impl MessageSubscription {
    pub(crate) fn start(kit: &Kit, category: &str, options: SubscribeOptions) -> Result<Self> {
        if !(1..=MAX_BATCH_SIZE).contains(&options.batch_size) {
            return Err(Error::invalid(format!(
                "subscription batch size must be between 1 and {MAX_BATCH_SIZE}, not {}",
                options.batch_size
            )));
        }
        let mut query = CategoryQuery::new().batch_size(options.batch_size);
        query.consumer_group = options.consumer_group;
        query.correlation = options.correlation;
        let fetcher = Fetcher::new(
            Arc::clone(kit.store()),
            category,
            query,
            options.from_position,
            options.poll_interval,
            RetryPolicy::new().max_delay(Duration::from_secs(30)),
        );
        let (tx, rx) = bounded(options.capacity);
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let delivered = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&delivered);
        let thread = thread::Builder::new()
            .name(format!("evento-subscribe-{category}"))
            .spawn(move || feed(fetcher, tx, stop_rx, counter))?;
        Ok(MessageSubscription {
            receiver: rx,
            stop: Some(stop_tx),
            thread: Some(thread),
            delivered,
        })
    }

    /// The channel, for `select!`, iteration or handing to another thread.
    /// It disconnects when the subscription ends.
    pub fn receiver(&self) -> &Receiver<Message> {
        &self.receiver
    }

    /// Waits up to `timeout` for the next message.
    ///
    /// Errors: [`Error::Timeout`] when none came, [`Error::Shutdown`] when the
    /// subscription ended.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message> {
        self.receiver.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => Error::Timeout("no message arrived".into()),
            RecvTimeoutError::Disconnected => Error::Shutdown,
        })
    }

    /// Messages put on the channel so far (taken by the reader or waiting).
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    /// Ends the subscription and waits for its thread.
    pub fn shutdown(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("subscription thread panicked");
            }
        }
    }
}

impl Drop for MessageSubscription {
    fn drop(&mut self) {
        // Closing the stop channel wakes the thread out of any wait.
        self.stop.take();
    }
}

fn feed(mut fetcher: Fetcher, tx: Sender<Message>, stop: Receiver<()>, delivered: Arc<AtomicU64>) {
    let mut on_fetch = |_: FetchOutcome<'_>| {};
    while let Some(fetched) = fetcher.next_batch(&stop, &mut on_fetch) {
        let batch = match fetched {
            Fetched::Messages(batch) => batch,
            Fetched::Undecodable { message, reason } => {
                log::error!(
                    "subscription: message {} (global position {}) cannot be decoded and is passed over: {reason}",
                    message.id,
                    message.global_position
                );
                continue;
            }
        };
        for message in batch {
            select! {
                send(tx, message) -> sent => if sent.is_err() { return },
                recv(stop) -> _ => return,
            }
            delivered.fetch_add(1, Ordering::Release);
        }
    }
}
