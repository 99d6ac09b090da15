//! Accepting connections and serving each on its own thread, with a
//! registry that lets shutdown close idle connections and join every thread.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::http::{self, ReadError, Response};
use super::tls::Stream;
use super::{router, Shared};
use crate::error::Result;

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// A handle on each open connection's socket, for shutdown.
    open: HashMap<u64, TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

/// The open connections and their threads.
#[derive(Default)]
pub(crate) struct Connections {
    inner: Mutex<Registry>,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
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
        for socket in self.lock().open.values() {
            let _ = socket.shutdown(Shutdown::Read);
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
    // Responses leave in one write; without this, Nagle's algorithm and the
    // client's delayed ACK hold back the tail of multi-packet answers.
    socket.set_nodelay(true)?;
    // (Over TLS the refusal would not be readable: just close.)
    if shared.connections.len() >= shared.max_connections && shared.tls.is_none() {
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
    if shared.connections.len() >= shared.max_connections {
        return Ok(());
    }
    let registered = socket.try_clone()?;
    let mut reg = shared.connections.lock();
    reg.next_id += 1;
    let id = reg.next_id;
    reg.open.insert(id, registered);
    let worker_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("eventodb-serve-conn-{id}"))
        .spawn(move || {
            serve(&worker_shared, socket);
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
fn serve(shared: &Shared, socket: TcpStream) {
    // Plain, or TLS whose handshake happens on the first read.
    let Ok(socket) = Stream::new(socket, shared.tls.as_ref()) else {
        return;
    };
    // Zero means no timeout (std refuses a zero duration).
    let limit = |d: Duration| (!d.is_zero()).then_some(d);
    let timeouts = socket
        .tcp()
        .set_read_timeout(limit(shared.idle_timeout))
        .and_then(|_| socket.tcp().set_write_timeout(limit(shared.write_timeout)));
    if timeouts.is_err() {
        return;
    }
    let Ok(read_half) = socket.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let mut writer = &socket;
    loop {
        // Wait for the first bytes of the next request (or its end).
        match reader.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(_) => {}
        }
        let request = match http::read_request(&mut reader, &mut writer, shared.max_body) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(ReadError::Io(e)) => {
                log::debug!("connection ended mid-request: {e}");
                return;
            }
            Err(e) => {
                let (status, text) = match e {
                    ReadError::BodyTooLarge => (413, "Request Entity Too Large".to_string()),
                    ReadError::HeadTooLarge => (431, "Request Header Fields Too Large".to_string()),
                    ReadError::Malformed(m) => (400, format!("Error when parsing request: {m}")),
                    ReadError::Io(_) => unreachable!(),
                };
                let _ = Response::new(status, http::TEXT, text.into_bytes()).write_to(
                    &mut writer,
                    &shared.server_header,
                    false,
                    false,
                );
                linger(&socket, &mut reader);
                return;
            }
        };
        let head_only = request.method == "HEAD";
        let keep_alive = request.keep_alive && !shared.stopping();
        let (path, method) = (request.path.clone(), request.method.clone());
        let started = Instant::now();
        match router::route(shared, request, &socket) {
            router::Outcome::Respond(response) => {
                shared
                    .metrics
                    .request(&path, &method, response.status, Some(started.elapsed()));
                let written =
                    response.write_to(&mut writer, &shared.server_header, keep_alive, head_only);
                if written.is_err() || !keep_alive {
                    return;
                }
            }
            // The handler wrote its own (streamed) response (and counted it).
            router::Outcome::Streamed => return,
        }
    }
}

/// Closes after an error answer without losing it: closing a socket with
/// unread input makes the kernel send a reset, which may destroy the answer
/// before the client reads it. So: end our side, then discard what the client
/// still sends, for a short while.
fn linger(socket: &Stream, reader: &mut BufReader<Stream>) {
    let _ = socket.shutdown(Shutdown::Write);
    let _ = socket
        .tcp()
        .set_read_timeout(Some(Duration::from_millis(500)));
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
