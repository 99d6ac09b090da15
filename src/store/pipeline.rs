//! Many writes at once: [`WriteItem`] for [`MessageStore::write_many`], and
//! [`WritePipeline`], writes kept in flight whose answers come back in order.
//!
//! A store on the other side of a network answers one write per round
//! trip; on a 50 ms link that is 20 writes a second. A pipeline sends the
//! next writes before the answers of the earlier ones are back (HTTP/1.1
//! pipelining for [`HttpStore`](crate::HttpStore)), so a backlog moves at
//! the store's speed instead. A store without a pipeline of its own gets one
//! that hands what is queued to [`MessageStore::write_many`] in batches
//! (one transaction per batch for [`EmbeddedStore`](crate::EmbeddedStore)).
//!
//! Writes in a pipeline are independent: each gets its own answer, and one
//! failing does not stop the others. Order between writes of one stream is
//! the caller's business — the outbox sender chains them with
//! `expectedVersion` so that a write that fails makes the later ones of its
//! stream fail too.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use eventodb_kit::store::{WriteItem, WritePipeline};
//! use eventodb_kit::{EmbeddedStore, MessageStore, NewMessage, WriteOptions};
//! use serde_json::json;
//!
//! let store: Arc<dyn MessageStore> = Arc::new(EmbeddedStore::open_in_memory()?);
//! let pipeline = WritePipeline::open(Arc::clone(&store))?;
//! for n in 0..3u64 {
//!     let item = WriteItem::new("reading-1", NewMessage::new("Read", json!({ "n": n })), WriteOptions::new());
//!     pipeline.send(n, item)?;
//! }
//! for n in 0..3u64 {
//!     let answer = pipeline.answers().recv_timeout(Duration::from_secs(5)).unwrap();
//!     assert_eq!(answer.tag, n, "answers come back in the order sent");
//!     assert_eq!(answer.result?.position, n as i64);
//! }
//! # Ok::<(), eventodb_kit::Error>(())
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::error::{Error, Result};
use crate::message::{NewMessage, WriteOptions, WriteResult};
use crate::store::MessageStore;

/// Most writes the batching pipeline hands to one
/// [`MessageStore::write_many`] call.
const BATCH_LIMIT: usize = 1_000;

/// One write of [`MessageStore::write_many`] or of a [`WritePipeline`]:
/// what `stream.write` takes.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteItem {
    /// The stream to append to.
    pub stream: String,
    /// The message.
    pub message: NewMessage,
    /// Its id and expected version, if any.
    pub options: WriteOptions,
}

impl WriteItem {
    /// A write of `message` to `stream` with `options`.
    pub fn new(stream: impl Into<String>, message: NewMessage, options: WriteOptions) -> Self {
        WriteItem {
            stream: stream.into(),
            message,
            options,
        }
    }
}

/// A write sent into a [`WritePipeline`], with the caller's tag.
#[derive(Debug, Clone)]
pub struct PipelinedWrite {
    /// The caller's name for this write; its answer carries it.
    pub tag: u64,
    /// The write.
    pub item: WriteItem,
}

/// The answer to one [`PipelinedWrite`].
#[derive(Debug)]
pub struct PipelinedAnswer {
    /// The tag the write was sent with.
    pub tag: u64,
    /// What the store said, or why it could not be asked. A transport error
    /// of kind [`ConnectionReset`](crate::TransportErrorKind::ConnectionReset)
    /// or [`Timeout`](crate::TransportErrorKind::Timeout) leaves the outcome
    /// unknown: the write may or may not have been stored.
    pub result: Result<WriteResult>,
}

/// What a pipeline has found out about its store, shared between the
/// pipeline's threads and its handle.
#[derive(Debug, Default)]
pub struct PipelineStatus {
    fallback: Mutex<Option<String>>,
}

impl PipelineStatus {
    /// A status with nothing to report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the pipeline sends one write at a time from now on
    /// (the store or a proxy in front of it does not answer pipelined
    /// requests), and why. The first reason is kept.
    pub fn fall_back(&self, reason: impl Into<String>) {
        let mut slot = self.fallback.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason.into());
        }
    }

    /// Why the pipeline sends one write at a time, if it does.
    pub fn fallback(&self) -> Option<String> {
        self.fallback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Writes in flight to a [`MessageStore`], answered in the order they were
/// sent; see the [module docs](self).
///
/// [`WritePipeline::open`] gives the store's own pipeline
/// ([`MessageStore::open_pipeline`]) or, for a store without one, a thread
/// that writes what is queued with [`MessageStore::write_many`]. Every
/// write sent gets exactly one answer on [`WritePipeline::answers`] while
/// the pipeline lives; dropping it stops its threads (writes not yet
/// answered may or may not have been stored).
pub struct WritePipeline {
    requests: Sender<PipelinedWrite>,
    answers: Receiver<PipelinedAnswer>,
    status: Arc<PipelineStatus>,
    // Dropped last, after `requests` closed: stops whatever serves the pipeline.
    _guard: Box<dyn Send + Sync>,
}

impl fmt::Debug for WritePipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WritePipeline")
            .field("queued", &self.requests.len())
            .field("answers", &self.answers.len())
            .field("fallback", &self.status.fallback())
            .finish()
    }
}

impl WritePipeline {
    /// A pipeline fed through `requests` and answering on `answers`, for
    /// implementors of [`MessageStore::open_pipeline`]. `status` is shared
    /// with whatever serves it; `guard` is dropped with the pipeline, after
    /// `requests` has closed (use it to stop and join threads).
    pub fn new(
        requests: Sender<PipelinedWrite>,
        answers: Receiver<PipelinedAnswer>,
        status: Arc<PipelineStatus>,
        guard: impl Send + Sync + 'static,
    ) -> Self {
        WritePipeline {
            requests,
            answers,
            status,
            _guard: Box::new(guard),
        }
    }

    /// `store`'s own pipeline, or one that batches what is queued into
    /// [`MessageStore::write_many`] calls on a thread of its own.
    pub fn open(store: Arc<dyn MessageStore>) -> Result<WritePipeline> {
        match store.open_pipeline()? {
            Some(pipeline) => Ok(pipeline),
            None => Self::batching(store),
        }
    }

    /// A pipeline over `store.write_many`: a thread takes every write queued
    /// (up to 1000) and writes them in one call.
    pub fn batching(store: Arc<dyn MessageStore>) -> Result<WritePipeline> {
        let (requests, queue) = unbounded::<PipelinedWrite>();
        let (answer_tx, answers) = unbounded();
        let thread = thread::Builder::new()
            .name("eventodb-writes".into())
            .spawn(move || serve_batches(&*store, &queue, &answer_tx))?;
        Ok(Self::new(
            requests,
            answers,
            Arc::new(PipelineStatus::new()),
            JoinOnDrop(Some(thread)),
        ))
    }

    /// Queues a write; its answer comes with `tag`. Never blocks: the
    /// caller bounds how many writes it keeps in flight (the outbox sender's
    /// window does).
    ///
    /// Errors: [`Error::Shutdown`] when the pipeline has stopped.
    pub fn send(&self, tag: u64, item: WriteItem) -> Result<()> {
        self.requests
            .send(PipelinedWrite { tag, item })
            .map_err(|_| Error::Shutdown)
    }

    /// The answers, in the order the writes were sent (for `select!`).
    pub fn answers(&self) -> &Receiver<PipelinedAnswer> {
        &self.answers
    }

    /// Why the pipeline sends one write at a time, if it found that its
    /// store does not answer pipelined requests.
    pub fn fallback(&self) -> Option<String> {
        self.status.fallback()
    }
}

/// Joins a thread when dropped. (A `JoinHandle` is `Send` and `Sync`, as
/// [`WritePipeline::new`]'s guard must be; dropping has `&mut`.)
struct JoinOnDrop(Option<JoinHandle<()>>);

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// The batching pipeline's thread: until the pipeline is dropped, writes
/// what is queued with `write_many` and answers each write.
fn serve_batches(
    store: &dyn MessageStore,
    queue: &Receiver<PipelinedWrite>,
    answers: &Sender<PipelinedAnswer>,
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(BATCH_LIMIT - 1));
        let (tags, items): (Vec<u64>, Vec<WriteItem>) =
            batch.into_iter().map(|w| (w.tag, w.item)).unzip();
        let results = store.write_many(&items);
        debug_assert_eq!(results.len(), items.len());
        let mut results = results.into_iter();
        for tag in tags {
            let result = results.next().unwrap_or_else(|| {
                Err(Error::backend(
                    "the store's write_many returned fewer results than writes",
                ))
            });
            if answers.send(PipelinedAnswer { tag, result }).is_err() {
                return;
            }
        }
    }
}
