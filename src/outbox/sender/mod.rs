//! The sender, owned by a [`SenderHandle`]: a dispatcher thread around a
//! pure state machine (`core`), one [`WritePipeline`] per lane keeping
//! writes in flight, and a thread for the reads that settle doubtful
//! outcomes and probe a store that failed (`checker`).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use super::config::SenderConfig;
use super::record::OutboxState;
use super::stats::{Counters, Delivery, SenderHealth, SenderStats};
use super::wake::{Listener, WakeHub};
use super::writer::Outbox;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::hooks::Hooks;
use crate::lease::{self, Lease};
use crate::store::{MessageStore, WritePipeline};
use crate::time::{now_ms, Deadline};

mod checker;
mod core;
mod dispatcher;
mod queue;
mod watch;

/// State shared by the sender's threads and its handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) counters: Counters,
    /// Notified whenever rows were marked sent or dead-lettered.
    pub(crate) progress: WakeHub,
    pub(crate) stop: AtomicBool,
}

/// Marks the sender as not running when dropped: at the end of its thread,
/// also when a panic ends it (so health sees a dead sender).
struct NotRunningOnExit(Arc<Shared>);

impl Drop for NotRunningOnExit {
    fn drop(&mut self) {
        self.0.counters.running.store(false, Ordering::Release);
    }
}

/// The lease name of the sender of `namespace`.
pub(crate) fn lease_name(namespace: &str) -> String {
    format!("outbox-sender:{namespace}")
}

/// Starts a sender for `namespace`; see [`Kit::spawn_sender`](crate::Kit::spawn_sender).
pub(crate) fn spawn(
    db: Db,
    store: Arc<dyn MessageStore>,
    outbox: Outbox,
    hub: Arc<WakeHub>,
    config: SenderConfig,
    hooks: Hooks,
) -> Result<SenderHandle> {
    let namespace = outbox.namespace().to_string();
    let holder = lease::holder_id("sender");
    let shared = Arc::new(Shared::default());
    // Running from now on (the thread may not have started yet when health is asked).
    shared.counters.running.store(true, Ordering::Release);
    let pipelines = (0..config.concurrency_value())
        .map(|_| WritePipeline::open(Arc::clone(&store)))
        .collect::<Result<Vec<_>>>()?;
    let checker = checker::Checker::spawn(Arc::clone(&store))?;
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let (done_tx, done_rx) = bounded::<()>(0);
    let now = Instant::now();
    let settings = core::Settings {
        lanes: config.concurrency_value(),
        depth: config.pipeline_depth_value(),
        batch_size: config.batch_size_value(),
        retry: config.retry_policy().clone(),
        after_dead_letter: config.after_dead_letter_value(),
        flush_interval_ms: config.flush_interval.as_millis() as i64,
        exclusive_streams: config.exclusive_streams_value(),
    };
    let seed = now_ms() as u64 ^ u64::from(std::process::id());
    let worker = dispatcher::Dispatcher {
        watch: watch::ChangeWatch::open(&db)?,
        db,
        lease: Lease::new(
            lease_name(&namespace),
            holder.clone(),
            config.lease_duration_value(),
        ),
        namespace,
        wake: hub.listen(),
        hub,
        stop: stop_rx,
        shared: Arc::clone(&shared),
        hooks,
        store,
        pipelines,
        checker,
        core: core::Core::new(settings, seed),
        db_pause_until: None,
        db_failures: 0,
        stored_pause: None,
        rescans_seen: 0,
        next_poll: now,
        next_renew: now,
        next_retention: now,
        origin: now,
        config: config.clone(),
    };
    let ended = NotRunningOnExit(Arc::clone(&shared));
    let thread = thread::Builder::new()
        .name("outbox-sender".into())
        .spawn(move || {
            let _done = done_tx; // dropped when the thread ends
            let _ended = ended; // the sender stops running, even by a panic
            worker.run();
        })?;
    Ok(SenderHandle {
        shared,
        outbox,
        holder,
        poll_interval: config.poll_interval_value(),
        drop_wait: config.drop_wait,
        stop: Some(stop_tx),
        done: done_rx,
        thread: Some(thread),
    })
}

/// A running outbox sender: delivers the outbox of its kit's namespace to
/// the kit's [`MessageStore`].
///
/// Started by [`Kit::spawn_sender`](crate::Kit::spawn_sender). It runs a
/// dispatcher thread (`outbox-sender`) and one thread per lane
/// (`outbox-lane-N`). Only one sender per namespace and database file
/// sends at a time — it holds a lease in the database; others (in this
/// process or another) stand by and take over within the lease duration
/// after it stops or dies.
///
/// [`SenderHandle::shutdown`] stops taking work, lets the sends in flight
/// finish and records them, releases the lease and joins every thread.
/// Dropping the handle does the same, but waits at most about a second
/// for the threads; they finish on their own after that.
///
/// ```
/// use std::time::Duration;
/// use eventodb_kit::outbox::{Delivery, SenderConfig};
/// use eventodb_kit::{Kit, MessageStore, NewMessage, StreamQuery};
/// use serde_json::json;
///
/// let dir = tempfile::tempdir()?;
/// let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
/// let sender = kit.spawn_sender(SenderConfig::new())?;
/// let id = kit.outbox().write("account-7", &NewMessage::new("Opened", json!({})))?;
/// assert_eq!(sender.wait_until_sent(&id, Duration::from_secs(10))?, Delivery::Sent);
/// let stored = kit.store().get_stream("account-7", &StreamQuery::new())?;
/// assert_eq!(stored[0].id, id);
/// sender.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SenderHandle {
    shared: Arc<Shared>,
    outbox: Outbox,
    holder: String,
    poll_interval: Duration,
    drop_wait: Duration,
    stop: Option<Sender<()>>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for SenderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderHandle")
            .field("namespace", &self.outbox.namespace())
            .field("holder", &self.holder)
            .field("health", &self.health())
            .finish()
    }
}

impl SenderHandle {
    /// Stops the sender: no new work, sends in flight finish and are
    /// recorded, the lease is released, every thread is joined.
    pub fn shutdown(mut self) {
        self.signal_stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn signal_stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.stop.take(); // disconnecting wakes the dispatcher
    }

    /// The state shared with the sender's threads (for the kit's registry).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// This sender's id in the lease table (`pid <pid> sender <uuid>`).
    pub fn holder_id(&self) -> &str {
        &self.holder
    }

    /// Counters since the sender started, and the outbox backlog.
    pub fn stats(&self) -> Result<SenderStats> {
        let status = self.outbox.status()?;
        let c = &self.shared.counters;
        let (sent, already_delivered, retried, dead_lettered) = c.counts();
        let live = c.live();
        Ok(SenderStats {
            backlog: status.unsent,
            oldest_unsent_age: status.oldest_unsent_age(),
            dead_letters: status.dead_lettered,
            sent,
            already_delivered,
            retried,
            dead_lettered,
            latency: c.latency.summary(),
            throughput: c.rate.rate(Duration::from_secs(10)),
            pause: live.pause,
            pipelining_fallback: live.fallback,
            windows: live.windows,
            reordered: live.reordered,
        })
    }

    /// Whether the sender runs, whether it is the active one, its last
    /// success and last error.
    pub fn health(&self) -> SenderHealth {
        self.shared.counters.health()
    }

    /// Waits until message `id` (as returned by an outbox write) is
    /// delivered or dead-lettered, at most `timeout`.
    ///
    /// Errors: [`Error::Timeout`] when it is still pending, [`Error::NotFound`]
    /// when the outbox has no such message. Deliveries by another process's
    /// sender are noticed within the poll interval.
    pub fn wait_until_sent(&self, id: &str, timeout: Duration) -> Result<Delivery> {
        let progress = self.shared.progress.listen();
        let deadline = Deadline::after(timeout);
        loop {
            let record = self.outbox.get(id)?;
            match record.state() {
                OutboxState::Sent => return Ok(Delivery::Sent),
                OutboxState::DeadLettered => {
                    return Ok(Delivery::DeadLettered {
                        error: record.last_error.unwrap_or_default(),
                    })
                }
                OutboxState::Pending => {}
            }
            self.wait_for_progress(&progress, deadline, || {
                format!("outbox message {id} not delivered after {timeout:?}")
            })?;
        }
    }

    /// Waits until nothing is left to deliver (dead letters aside), at most
    /// `timeout`; [`Error::Timeout`] otherwise.
    pub fn wait_until_drained(&self, timeout: Duration) -> Result<()> {
        let progress = self.shared.progress.listen();
        let deadline = Deadline::after(timeout);
        loop {
            let status = self.outbox.status()?;
            if status.unsent == 0 {
                return Ok(());
            }
            self.wait_for_progress(&progress, deadline, || {
                format!(
                    "outbox still has {} unsent messages after {timeout:?}",
                    status.unsent
                )
            })?;
        }
    }

    fn wait_for_progress(
        &self,
        progress: &Listener,
        deadline: Deadline,
        timeout_message: impl FnOnce() -> String,
    ) -> Result<()> {
        let left = deadline.remaining();
        if left.is_zero() {
            return Err(Error::Timeout(timeout_message()));
        }
        // Another process's sender does not notify us: look again at least
        // every poll interval.
        match progress.recv_timeout(left.min(self.poll_interval)) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => Ok(()),
            Err(RecvTimeoutError::Disconnected) => Err(Error::Shutdown),
        }
    }
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        if self.thread.is_none() {
            return;
        }
        self.signal_stop();
        // Quick: give the threads a moment, then let them finish alone.
        if let Err(RecvTimeoutError::Disconnected) = self.done.recv_timeout(self.drop_wait) {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
