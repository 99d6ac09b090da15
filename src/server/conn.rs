//! Accepting connections and serving each on its own thread, with a
//! registry that lets shutdown close idle connections and join every thread,
//! and that gives the slot of the connection waiting longest for a request
//! to a new one when all are taken (so clients that trickle request heads
//! cannot lock others out; the head timeout ends them in any case).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::batch::{self, Served};
use super::http::{self, ReadError, Request, Response};
use super::metrics::Closed;
use super::transport::Transport;
use super::{router, Shared};
use crate::error::Result;

/// Bytes read from a connection at a time: a request head fits (the head
/// limit), and so do many small pipelined requests.
const READ_BUFFER: usize = 64 * 1024;

/// Where a connection is, as the acceptor sees it: [`BUSY`] inside a
/// request, [`EVICTED`] once its slot went to another connection, else
/// waiting for a request since the instant it encodes.
struct Phase(AtomicU64);

const BUSY: u64 = 0;
const EVICTED: u64 = u64::MAX;

impl Phase {
    /// Waiting for a request since `code` (see [`Connections::code`]).
    fn waiting(&self, code: u64) {
        // Only from BUSY: an evicted connection stays evicted.
        let _ = self
            .0
            .compare_exchange(BUSY, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Inside a request; `false` when the slot was given away.
    fn busy(&self) -> bool {
        let mut current = self.0.load(Ordering::SeqCst);
        loop {
            if current == EVICTED {
                return false;
            }
            match self
                .0
                .compare_exchange(current, BUSY, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    fn evicted(&self) -> bool {
        self.0.load(Ordering::SeqCst) == EVICTED
    }
}

struct Entry {
    socket: Arc<TcpStream>,
    phase: Arc<Phase>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// Each open connection's socket (for shutdown and eviction) and phase.
    open: HashMap<u64, Entry>,
    threads: Vec<JoinHandle<()>>,
}

/// The open connections and their threads.
pub(crate) struct Connections {
    inner: Mutex<Registry>,
    /// The origin of the instants [`Phase`]s encode.
    epoch: Instant,
}

impl Connections {
    pub(crate) fn new() -> Self {
        Connections {
            inner: Mutex::default(),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `at` as a [`Phase`] value: never [`BUSY`] nor [`EVICTED`].
    fn code(&self, at: Instant) -> u64 {
        let micros = at.saturating_duration_since(self.epoch).as_micros();
        u64::try_from(micros).unwrap_or(EVICTED - 2) + 1
    }

    /// Number of open connections.
    pub(crate) fn len(&self) -> usize {
        self.lock().open.len()
    }

    /// Shuts the reading side of every connection (after `stopping` was
    /// set): a connection waiting for a request ends at once; a request
    /// already read is still answered (then the connection closes, as
    /// `stopping` turns keep-alive off); SSE streams end on the stop channel.
    pub(crate) fn close_reads(&self) {
        for entry in self.lock().open.values() {
            let _ = entry.socket.shutdown(Shutdown::Read);
        }
    }

    /// Joins every connection thread.
    pub(crate) fn join_all(&self) {
        let threads = std::mem::take(&mut self.lock().threads);
        for t in threads {
            let _ = t.join();
        }
    }

    fn reap_finished(&self) {
        let finished: Vec<JoinHandle<()>> = {
            let mut reg = self.lock();
            let (done, running) = std::mem::take(&mut reg.threads)
                .into_iter()
                .partition(|t| t.is_finished());
            reg.threads = running;
            done
        };
        for t in finished {
            let _ = t.join();
        }
    }
}

impl Registry {
    /// Connections that hold a slot (evicted ones are on their way out).
    fn live(&self) -> usize {
        self.open.values().filter(|e| !e.phase.evicted()).count()
    }

    /// Closes the connection that has waited longest for a request, if
    /// any waits; its thread sees it and ends.
    fn evict_longest_waiting(&self) -> bool {
        loop {
            let oldest = self
                .open
                .values()
                .map(|e| (e.phase.0.load(Ordering::SeqCst), e))
                .filter(|(code, _)| *code != BUSY && *code != EVICTED)
                .min_by_key(|(code, _)| *code);
            let Some((code, entry)) = oldest else {
                return false;
            };
            let taken =
                entry
                    .phase
                    .0
                    .compare_exchange(code, EVICTED, Ordering::SeqCst, Ordering::SeqCst);
            if taken.is_ok() {
                let _ = entry.socket.shutdown(Shutdown::Both);
                return true;
            }
            // It started a request (or waits since later) meanwhile: look again.
        }
    }
}

/// Starts the thread that accepts connections until the server stops.
pub(crate) fn spawn_acceptor(listener: TcpListener, shared: Arc<Shared>) -> Result<JoinHandle<()>> {
    Ok(thread::Builder::new()
        .name("eventodb-serve-accept".into())
        .spawn(move || accept_loop(listener, shared))?)
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping() {
            return;
        }
        let socket = match accepted {
            Ok((socket, _)) => socket,
            Err(e) => {
                // Out of file descriptors and the like: wait a little (or
                // for shutdown) instead of spinning.
                log::warn!("accept failed: {e}");
                let _ = shared.stop.recv_timeout(Duration::from_millis(50));
                if shared.stopping() {
                    return;
                }
                continue;
            }
        };
        shared.connections.reap_finished();
        if let Err(e) = start_connection(&shared, socket) {
            log::warn!("cannot serve a connection: {e}");
        }
    }
}

fn start_connection(shared: &Arc<Shared>, socket: TcpStream) -> std::io::Result<()> {
    let accepted = Instant::now();
    // Responses leave in one write; without this, Nagle's algorithm and the
    // client's delayed ACK hold back the tail of multi-packet answers.
    socket.set_nodelay(true)?;
    let mut reg = shared.connections.lock();
    // `open` may still hold evicted connections on their way out.
    let full = reg.open.len() >= shared.max_connections && reg.live() >= shared.max_connections;
    if full && reg.evict_longest_waiting() {
        shared.metrics.closed(Closed::Evicted);
    } else if full {
        drop(reg);
        shared.metrics.closed(Closed::Refused);
        if shared.tls.is_some() {
            // A 503 would need a handshake (on this, the acceptor's,
            // thread): just close.
            return Ok(());
        }
        let body =
            crate::wire::error::ErrorBody::new("SERVICE_UNAVAILABLE", "Too many connections")
                .to_go_json();
        let mut s = &socket;
        let _ = Response::new(503, http::JSON, body).write_to(
            &mut s,
            &shared.server_header,
            false,
            false,
        );
        return Ok(());
    }
    let socket = Arc::new(socket);
    let phase = Arc::new(Phase(AtomicU64::new(shared.connections.code(accepted))));
    reg.next_id += 1;
    let id = reg.next_id;
    reg.open.insert(
        id,
        Entry {
            socket: Arc::clone(&socket),
            phase: Arc::clone(&phase),
        },
    );
    let worker_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("eventodb-serve-conn-{id}"))
        .spawn(move || {
            serve(&worker_shared, &socket, &phase, accepted);
            worker_shared.connections.lock().open.remove(&id);
        });
    match spawned {
        Ok(handle) => {
            reg.threads.push(handle);
            Ok(())
        }
        Err(e) => {
            reg.open.remove(&id);
            Err(e)
        }
    }
}

/// Serves requests on one connection until it closes.
fn serve(shared: &Shared, socket: &Arc<TcpStream>, phase: &Phase, accepted: Instant) {
    // Zero means no limit (std refuses a zero duration).
    let limit = |d: Duration| (!d.is_zero()).then_some(d);
    if socket
        .set_write_timeout(limit(shared.write_timeout))
        .is_err()
    {
        return;
    }
    let head_deadline = |from: Instant| limit(shared.head_timeout).map(|t| from + t);
    // Plain, or TLS whose handshake happens in the first read (so within
    // the first head's deadline).
    let Ok(transport) = Transport::new(
        Arc::clone(socket),
        limit(shared.idle_timeout),
        shared.tls.as_ref(),
    ) else {
        return;
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, transport);
    // The first request's head is due within the head timeout of the
    // accept; later ones may wait the idle timeout before they start.
    let mut deadline = head_deadline(accepted);
    loop {
        reader.get_mut().set_deadline(deadline);
        // Wait for the first bytes of the next request (or its end).
        match reader.fill_buf() {
            Ok([]) => return,
            Ok(_) => {}
            Err(e) => {
                if e.kind() == io::ErrorKind::TimedOut {
                    shared.metrics.closed(Closed::HeadTimeout);
                }
                return;
            }
        }
        if deadline.is_none() {
            reader.get_mut().set_deadline(head_deadline(Instant::now()));
        }
        let head = http::read_head(&mut reader, shared.max_body);
        reader.get_mut().set_deadline(None);
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => return refuse(shared, &mut reader, e),
        };
        if !phase.busy() {
            // The slot went to a new connection while the head arrived:
            // nothing of this request has run, and the socket is closed.
            return;
        }
        if head.wants_continue() && reader.get_mut().write_all(http::CONTINUE).is_err() {
            return;
        }
        let request = match http::read_body(&mut reader, head, shared.max_body) {
            Ok(request) => request,
            Err(e) => return refuse(shared, &mut reader, e),
        };
        let started = Instant::now();
        let keep_alive = match batch::serve(shared, request, started, &mut reader) {
            Served::Together {
                answers,
                keep_alive,
            } => reader.get_mut().write_all(&answers).is_ok() && keep_alive,
            Served::Alone(request) => match answer(shared, request, started, reader.get_mut()) {
                Some(keep_alive) => keep_alive,
                None => return, // a stream (SSE) was served
            },
        };
        if !keep_alive {
            return;
        }
        phase.waiting(shared.connections.code(Instant::now()));
        deadline = None;
    }
}

/// Routes one request and writes its answer; whether the connection stays
/// open (`None`: the handler streamed its own response, so it closes).
fn answer(
    shared: &Shared,
    request: Request,
    started: Instant,
    out: &mut Transport,
) -> Option<bool> {
    let head_only = request.method == "HEAD";
    let keep_alive = request.keep_alive && !shared.stopping();
    let (path, method) = (request.path.clone(), request.method.clone());
    match router::route(shared, request, out) {
        router::Outcome::Respond(response) => {
            shared
                .metrics
                .request(&path, &method, response.status, Some(started.elapsed()));
            let written = response.write_to(out, &shared.server_header, keep_alive, head_only);
            Some(written.is_ok() && keep_alive)
        }
        // The handler wrote its own (streamed) response (and counted it).
        router::Outcome::Streamed => None,
    }
}

/// Answers a request that could not be read (when there is something to
/// say) and closes.
fn refuse(shared: &Shared, reader: &mut BufReader<Transport>, e: ReadError) {
    let (status, text) = match e {
        ReadError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
            shared.metrics.closed(Closed::HeadTimeout);
            (408, "Request Timeout".to_string())
        }
        ReadError::Io(e) => {
            log::debug!("connection ended mid-request: {e}");
            return;
        }
        ReadError::BodyTooLarge => (413, "Request Entity Too Large".to_string()),
        ReadError::HeadTooLarge => (431, "Request Header Fields Too Large".to_string()),
        ReadError::Malformed(m) => (400, format!("Error when parsing request: {m}")),
    };
    let _ = Response::new(status, http::TEXT, text.into_bytes()).write_to(
        reader.get_mut(),
        &shared.server_header,
        false,
        false,
    );
    linger(reader);
}

/// Closes after an error answer without losing it: closing a socket with
/// unread input makes the kernel send a reset, which may destroy the answer
/// before the client reads it. So: end our side (with TLS, its close_notify
/// first), then discard what the client still sends, for a short while.
fn linger(reader: &mut BufReader<Transport>) {
    reader.get_mut().shutdown_write();
    reader
        .get_mut()
        .set_deadline(Some(Instant::now() + Duration::from_millis(500)));
    let mut budget: usize = 1024 * 1024;
    while budget > 0 {
        match reader.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(data) => {
                let n = data.len();
                reader.consume(n);
                budget = budget.saturating_sub(n);
            }
        }
    }
}
