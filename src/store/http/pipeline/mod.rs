//! [`HttpStore`](super::HttpStore)'s [`WritePipeline`]: `stream.write`
//! requests written back to back on one keep-alive connection (HTTP/1.1
//! pipelining), answers read in order.
//!
//! A pipeline is two threads around one connection at a time: the
//! [`writer`] (takes writes from the pipeline's queue, opens the connection
//! when there is something to send, writes what is queued in one socket
//! write, watches the answer deadline, reopens after a break) and, per
//! connection, a [`reader`] (reads the answers in order and answers each
//! write). They share the connection's [`Line`]: the writes sent and not
//! yet answered, and how the connection ended. Whoever ends the connection
//! records why there first; the reader alone answers the writes that were
//! sent on it, and the writer opens a new connection only after it joined
//! the old one's reader, so answers leave in the order the writes came.

use std::collections::VecDeque;
use std::fmt;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Sender};

use crate::error::{Error, Result, TransportErrorKind};
use crate::message::WriteResult;
use crate::store::http::client::{self, CallContext};
use crate::store::http::connection::{self, BaseUrl, ConnectSettings, Connection};
use crate::store::http::pipelining::PipeliningState;
use crate::store::http::response::Response;
use crate::store::http::HttpStore;
use crate::store::pipeline::{PipelinedAnswer, PipelinedWrite, WriteItem, WritePipeline};
use crate::wire::rpc;

mod reader;
mod writer;

#[cfg(all(test, feature = "server"))]
mod tests;

/// Largest answer body read (a `stream.write` answer is ~40 bytes; an
/// error page of a proxy a few KB).
const MAX_ANSWER: usize = 1024 * 1024;

/// Where and how a pipeline's connections go.
pub(crate) struct Target {
    pub(crate) url: Arc<BaseUrl>,
    /// The constant head of every request ([`connection::request_head`]),
    /// built once: carries the token, never shown.
    pub(crate) head: Vec<u8>,
    pub(crate) connect: ConnectSettings,
    /// Longest silence while answers are due (zero: no limit).
    pub(crate) read_timeout: Duration,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("connect", &self.connect)
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl HttpStore {
    /// A new pipeline (no connection before its first write).
    pub(in crate::store::http) fn new_pipeline(&self) -> Result<WritePipeline> {
        let client = &self.inner.client;
        let settings = client.settings();
        let target = Target {
            url: Arc::clone(client.url()),
            head: connection::request_head(client.url(), client.authorization()),
            connect: ConnectSettings {
                connect_timeout: settings.connect_timeout,
                write_timeout: settings.read_timeout,
                tls: settings.rustls_config(),
            },
            read_timeout: settings.read_timeout,
        };
        open(Arc::new(target), Arc::clone(&self.inner.pipelining))
    }

    /// Writes `items` through one pipeline — the one kept from the last
    /// call, or a new one — and keeps it for the next call.
    pub(in crate::store::http) fn write_pipelined(
        &self,
        items: &[WriteItem],
    ) -> Vec<Result<WriteResult>> {
        let kept = self
            .inner
            .idle_pipeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let pipeline = match kept.map_or_else(|| self.new_pipeline(), Ok) {
            Ok(pipeline) => pipeline,
            // Only a thread that cannot be spawned.
            Err(e) => {
                let (kind, message) = transport_parts(&e);
                return items
                    .iter()
                    .map(|_| {
                        Err(Error::Transport {
                            kind,
                            message: message.clone(),
                        })
                    })
                    .collect();
            }
        };
        let mut results = Vec::with_capacity(items.len());
        let mut sent = 0;
        for (tag, item) in (0u64..).zip(items) {
            if pipeline.send(tag, item.clone()).is_err() {
                break;
            }
            sent += 1;
            // Take what is answered already, so answers do not pile up.
            results.extend(pipeline.answers().try_iter().map(|a| a.result));
        }
        while results.len() < sent {
            match pipeline.answers().recv() {
                Ok(answer) => results.push(answer.result),
                Err(_) => break,
            }
        }
        let complete = results.len() == items.len();
        results.resize_with(items.len(), || Err(Error::Shutdown));
        if complete {
            let mut slot = self
                .inner
                .idle_pipeline
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(pipeline);
            }
        }
        results
    }
}

/// Opens a pipeline to `target` whose answers and fallback are shared
/// with the other pipelines of the store through `store`. No connection is
/// made before the first write.
pub(crate) fn open(target: Arc<Target>, store: Arc<PipeliningState>) -> Result<WritePipeline> {
    let (requests, queue) = unbounded::<PipelinedWrite>();
    let (answer_tx, answers) = unbounded();
    let (stop, stop_rx) = bounded::<()>(0);
    let stopping = Arc::new(AtomicBool::new(false));
    let current = Arc::new(Mutex::new(None));
    let status = Arc::clone(store.status());
    let writer = writer::WriterThread::new(
        target,
        store,
        queue,
        answer_tx,
        stop_rx,
        Arc::clone(&stopping),
        Arc::clone(&current),
    );
    let thread = thread::Builder::new()
        .name("eventodb-pipe-write".into())
        .spawn(move || writer.run())?;
    Ok(WritePipeline::new(
        requests,
        answers,
        status,
        Stopper {
            stop: Some(stop),
            stopping,
            current,
            thread: Some(thread),
        },
    ))
}

/// Dropped with the pipeline: stops its threads and joins them.
struct Stopper {
    /// Never sent on; dropping it wakes the writer.
    stop: Option<Sender<()>>,
    stopping: Arc<AtomicBool>,
    /// The open connection, to wake a blocked read or write.
    current: Arc<Mutex<Option<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.take();
        if let Some(socket) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Connection::shutdown(socket);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A write sent on a connection and not answered yet — or one refused
/// before sending, waiting for the answers of the writes sent before it.
struct InFlight {
    write: PipelinedWrite,
    sent_at: Instant,
    /// Nothing was ahead of it when it was sent: its answer time is a
    /// round trip.
    timed: bool,
    /// Not sent: refused by the checks [`HttpStore::write`] makes
    /// ([`check`]), and answered with this in its turn, right after the
    /// answer of the write ahead of it. Never first in line (see
    /// [`LineState::answer_refused`]).
    refused: Option<Error>,
}

/// How a connection ended.
#[derive(Debug, Clone)]
enum End {
    /// The server said `Connection: close` on an answer: the writes sent
    /// after that request were not processed and go out again.
    Closed,
    /// The connection broke: the writes sent and not answered may or may
    /// not have been stored.
    Broken {
        kind: TransportErrorKind,
        message: String,
    },
    /// The pipeline was dropped.
    Stopped,
}

impl End {
    fn broken(kind: TransportErrorKind, message: impl Into<String>) -> End {
        End::Broken {
            kind,
            message: message.into(),
        }
    }
}

/// The state of one connection, shared by the writer and its reader.
struct Line {
    state: Mutex<LineState>,
}

struct LineState {
    /// Sent (or being sent), in order, not answered.
    in_flight: VecDeque<InFlight>,
    /// Set once, by whoever ends the connection first.
    end: Option<End>,
    /// After [`End::Closed`]: the writes to send again, in order.
    handback: Vec<PipelinedWrite>,
    /// Answers read on this connection.
    answered: u64,
    /// Writes that were sent and waiting when the first answer came.
    behind_first: usize,
    /// When the reader last got bytes.
    last_progress: Instant,
    /// The writer waits for an answer to make room (depth 1).
    writer_waits: bool,
}

impl Line {
    fn new() -> Line {
        Line {
            state: Mutex::new(LineState {
                in_flight: VecDeque::new(),
                end: None,
                handback: Vec::new(),
                answered: 0,
                behind_first: 0,
                last_progress: Instant::now(),
                writer_waits: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LineState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LineState {
    /// Answers the refused writes first in line: nothing sent is ahead of
    /// them any more. Called under the line's lock whenever the front
    /// changes, so the first in line is always a write that was sent.
    fn answer_refused(&mut self, answers: &Sender<PipelinedAnswer>) {
        while let Some(refused) = self.in_flight.front_mut().and_then(|f| f.refused.take()) {
            if let Some(f) = self.in_flight.pop_front() {
                let _ = answers.send(PipelinedAnswer {
                    tag: f.write.tag,
                    result: Err(refused),
                });
            }
        }
    }

    /// The writes in line that were sent (not refused): the answers due.
    fn due(&self) -> usize {
        self.in_flight
            .iter()
            .filter(|f| f.refused.is_none())
            .count()
    }
}

/// The checks [`HttpStore::write`](crate::MessageStore::write) makes
/// before sending, made of every pipelined write too: what fails them is
/// answered with that error and never sent.
fn check(item: &WriteItem) -> Result<()> {
    crate::store::check_write(&item.stream, &item.message)
}

/// The transport kind of an I/O failure on an open connection: the
/// outcome of what was sent is unknown either way.
fn broken_kind(e: &std::io::Error) -> TransportErrorKind {
    use std::io::ErrorKind as Io;
    match e.kind() {
        Io::TimedOut | Io::WouldBlock => TransportErrorKind::Timeout,
        _ => TransportErrorKind::ConnectionReset,
    }
}

/// What the answer `response` to `item` means, mapped exactly as
/// [`HttpStore::write`](crate::MessageStore::write) maps it.
fn write_result(response: &Response, item: &WriteItem) -> Result<WriteResult> {
    let ctx = CallContext {
        stream: Some(&item.stream),
        expected_version: item.options.expected_version,
        id: item.options.id.as_deref(),
    };
    let value = client::decode_answer(
        "stream.write",
        response.status,
        &response.body,
        response.retry_after,
        ctx,
    )?;
    rpc::decode_write_result(&value)
}

/// The kind and message of `e`, to answer many writes with the same
/// transport error: a transport error's own; anything else (a thread that
/// cannot be spawned) is of kind `Other`.
fn transport_parts(e: &Error) -> (TransportErrorKind, String) {
    match e {
        Error::Transport { kind, message } => (*kind, message.clone()),
        other => (TransportErrorKind::Other, other.to_string()),
    }
}

/// The error of a write that was sent on a connection that then broke.
fn unknown_outcome(kind: TransportErrorKind, why: &str) -> Error {
    Error::Transport {
        kind,
        message: format!("{why}; the write may or may not have been stored"),
    }
}
