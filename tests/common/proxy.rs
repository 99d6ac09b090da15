//! A fault-injecting TCP proxy for HTTP/1.1 between a client and a server.
//! It passes pipelined requests through as they come (a thread per
//! direction), and, at a configurable rate, drops the connection before a
//! request reaches the server (with everything after it in the window),
//! resets it after the server processed the request (the ambiguous case),
//! delays, answers 500 (before or after the server processed the request)
//! or passes half an answer on and closes. Streams it does not understand
//! (chunked, e.g. SSE) are piped through untouched. It can also play a rate
//! limiter: 429 with a `Retry-After` for a while, then pass through.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What the proxy did to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Closed the connection; the server never saw the request.
    DropBefore,
    /// The server processed the request; the client got a closed connection.
    ResetAfter,
    /// Forwarded after a pause.
    Delay,
    /// Answered 500 without forwarding.
    Error500Before,
    /// Forwarded, then replaced the server's answer with a 500.
    Error500After,
    /// Forwarded; the client got half of the answer, then a closed connection.
    Truncate,
}

const FAULTS: [Fault; 6] = [
    Fault::DropBefore,
    Fault::ResetAfter,
    Fault::Delay,
    Fault::Error500Before,
    Fault::Error500After,
    Fault::Truncate,
];

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// Faults per 100 requests.
    rate: AtomicU32,
    /// The faults to choose from (all kinds unless narrowed).
    kinds: Mutex<Vec<Fault>>,
    /// Decides which requests fail and how (seeded: a run can be repeated).
    rng: Mutex<Option<fastrand::Rng>>,
    /// Serve one request per connection, then close (as a server or proxy
    /// that does not pipeline).
    one_per_connection: AtomicBool,
    requests: AtomicU64,
    faults: [AtomicU64; 6],
    /// Answer 429 with this `Retry-After` for this long after the first
    /// such answer (when it began), then pass through again.
    throttle: Mutex<Option<(String, Duration, Option<Instant>)>>,
    throttled: AtomicU64,
    /// Sockets of open connections, by connection, to close them on drop.
    streams: Mutex<HashMap<u64, Vec<TcpStream>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    /// The `Retry-After` to answer the next request with 429, while throttling.
    fn throttling(&self) -> Option<String> {
        let mut throttle = self.throttle.lock().unwrap();
        let (value, window, started) = throttle.as_mut()?;
        if started.get_or_insert_with(Instant::now).elapsed() < *window {
            return Some(value.clone());
        }
        *throttle = None;
        None
    }

    /// Whether the next request fails, and how.
    fn draw(&self) -> Option<Fault> {
        let rate = self.rate.load(Ordering::Acquire);
        let kinds = self.kinds.lock().unwrap().clone();
        let kinds = if kinds.is_empty() {
            FAULTS.to_vec()
        } else {
            kinds
        };
        let mut rng = self.rng.lock().unwrap();
        let rng = rng.get_or_insert_with(fastrand::Rng::new);
        (rng.u32(0..100) < rate).then(|| kinds[rng.usize(..kinds.len())])
    }

    fn track(&self, conn: u64, stream: &TcpStream) -> io::Result<()> {
        let clone = stream.try_clone()?;
        self.streams
            .lock()
            .unwrap()
            .entry(conn)
            .or_default()
            .push(clone);
        Ok(())
    }

    /// Closes (for real: every clone) the sockets of connection `conn`.
    fn close(&self, conn: u64) {
        for s in self
            .streams
            .lock()
            .unwrap()
            .remove(&conn)
            .unwrap_or_default()
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A running proxy; dropping it closes every connection and joins its threads.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("test-proxy".into())
                .spawn(move || accept(listener, upstream, shared))
                .unwrap()
        };
        Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Injects a fault into `percent` of the requests from now on (0 heals).
    /// Draws faults from a generator seeded with `seed` (otherwise from a
    /// random one), so that a run injects the same sequence of faults.
    pub fn seed(&self, seed: u64) {
        *self.shared.rng.lock().unwrap() = Some(fastrand::Rng::with_seed(seed));
    }

    /// From now on, forwards only the first request of each connection and
    /// closes it after its answer (the rest of a pipelined window is never
    /// seen by the server), as a server that does not pipeline does.
    pub fn one_request_per_connection(&self) {
        self.shared
            .one_per_connection
            .store(true, Ordering::Release);
    }

    /// Injects only these kinds of fault from now on.
    pub fn only(&self, kinds: &[Fault]) {
        *self.shared.kinds.lock().unwrap() = kinds.to_vec();
    }

    /// Plays a rate limiter: answers every request 429 with `Retry-After:
    /// <retry_after>` (without forwarding it) from the next one on, for
    /// `window` after that first 429; then passes requests through again.
    pub fn throttle(&self, retry_after: &str, window: Duration) {
        *self.shared.throttle.lock().unwrap() = Some((retry_after.to_string(), window, None));
    }

    /// Requests answered 429 so far.
    pub fn throttled(&self) -> u64 {
        self.shared.throttled.load(Ordering::SeqCst)
    }

    pub fn set_fault_rate(&self, percent: u32) {
        self.shared.rate.store(percent, Ordering::Release);
    }

    /// Requests seen, and faults injected per kind.
    pub fn counts(&self) -> (u64, Vec<(Fault, u64)>) {
        let faults = FAULTS
            .iter()
            .zip(&self.shared.faults)
            .map(|(f, n)| (*f, n.load(Ordering::Relaxed)))
            .collect();
        (self.shared.requests.load(Ordering::Relaxed), faults)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr); // wakes the acceptor
        for (_, streams) in self.shared.streams.lock().unwrap().drain() {
            for s in streams {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let threads: Vec<_> = self.shared.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    for (conn, client) in (0u64..).zip(listener.incoming()) {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = client else { continue };
        let _ = client.set_nodelay(true);
        if shared.track(conn, &client).is_err() {
            continue;
        }
        let conn_shared = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name("test-proxy-conn".into())
            .spawn(move || {
                let _ = serve(conn, client, upstream, &conn_shared);
                conn_shared.close(conn);
            })
            .unwrap();
        let mut threads = shared.threads.lock().unwrap();
        threads.retain(|t| !t.is_finished());
        threads.push(handle);
    }
}

/// One HTTP message: head (up to the blank line) and body (by Content-Length).
struct HttpMessage {
    head: Vec<u8>,
    body: Vec<u8>,
    /// Chunked or otherwise unframed: the rest must be piped.
    unframed: bool,
}

fn read_message(reader: &mut impl BufRead) -> io::Result<Option<HttpMessage>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = text.contains("transfer-encoding: chunked");
    let mut body = vec![0; if chunked { 0 } else { length.unwrap_or(0) }];
    reader.read_exact(&mut body)?;
    Ok(Some(HttpMessage {
        head,
        body,
        unframed: chunked,
    }))
}

fn write_message(to: &mut impl Write, m: &HttpMessage) -> io::Result<()> {
    to.write_all(&m.head)?;
    to.write_all(&m.body)?;
    to.flush()
}

fn pipe(mut from: impl Read, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
}

/// What the responding side does with the answer to one request, in
/// request order.
enum Answer {
    /// Pass the server's answer on.
    Forward,
    /// The request never reached the server: answer 500 in its place.
    Fake500,
    /// The request never reached the server: answer 429 with this
    /// `Retry-After` in its place.
    Fake429(String),
    /// Replace the server's answer with a 500.
    Replace500,
    /// Read the server's answer, then break the connection.
    ResetAfter,
    /// Pass half of the server's answer on, then break the connection.
    Truncate,
}

/// Serves one connection with a thread per direction, so a pipelining
/// client keeps many requests in flight through the proxy: requests are
/// forwarded as they come (faults decided per request), answers go back
/// in request order.
fn serve(
    conn: u64,
    client: TcpStream,
    upstream: SocketAddr,
    shared: &Arc<Shared>,
) -> io::Result<()> {
    let client_reader = BufReader::new(client.try_clone()?);
    let server = TcpStream::connect(upstream)?;
    server.set_nodelay(true)?;
    shared.track(conn, &server)?;
    let server_reader = BufReader::new(server.try_clone()?);
    let (answers_tx, answers_rx) = crossbeam_channel::unbounded::<Answer>();
    let one = shared.one_per_connection.load(Ordering::Acquire);
    let responder = {
        let shared = Arc::clone(shared);
        thread::Builder::new()
            .name("test-proxy-back".into())
            .spawn(move || {
                if one {
                    // One answer, then end our side; the client closes.
                    let client_out = client.try_clone();
                    let _ = respond_once(answers_rx, server_reader, client);
                    if let Ok(c) = client_out {
                        let _ = c.shutdown(Shutdown::Write);
                    }
                    return;
                }
                let _ = respond(conn, answers_rx, server_reader, client, &shared);
                shared.close(conn);
            })?
    };
    let result = forward(conn, client_reader, server, answers_tx, shared);
    let _ = responder.join();
    result
}

fn forward(
    conn: u64,
    mut client_reader: BufReader<TcpStream>,
    mut server_writer: TcpStream,
    answers: crossbeam_channel::Sender<Answer>,
    shared: &Shared,
) -> io::Result<()> {
    while let Some(request) = read_message(&mut client_reader)? {
        shared.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(retry_after) = shared.throttling() {
            shared.throttled.fetch_add(1, Ordering::SeqCst);
            let _ = answers.send(Answer::Fake429(retry_after));
            continue;
        }
        let fault = shared.draw();
        if let Some(f) = fault {
            let i = FAULTS.iter().position(|x| *x == f).unwrap();
            shared.faults[i].fetch_add(1, Ordering::Relaxed);
        }
        let answer = match fault {
            Some(Fault::DropBefore) => {
                shared.close(conn);
                return Ok(());
            }
            Some(Fault::Error500Before) => {
                let _ = answers.send(Answer::Fake500);
                continue;
            }
            Some(Fault::Delay) => {
                thread::sleep(Duration::from_millis(fastrand::u64(20..150)));
                Answer::Forward
            }
            Some(Fault::ResetAfter) => Answer::ResetAfter,
            Some(Fault::Error500After) => Answer::Replace500,
            Some(Fault::Truncate) => Answer::Truncate,
            None => Answer::Forward,
        };
        write_message(&mut server_writer, &request)?;
        if answers.send(answer).is_err() {
            return Ok(());
        }
        if shared.one_per_connection.load(Ordering::Acquire) {
            // The rest of the window is never forwarded: read and drop it
            // until the client closes.
            drop(answers);
            let _ = io::copy(&mut client_reader, &mut io::sink());
            return Ok(());
        }
        if request.unframed {
            // Not a plain request/response exchange: stop interfering.
            pipe(client_reader, server_writer);
            return Ok(());
        }
    }
    Ok(())
}

/// Passes the first answer on, as is.
fn respond_once(
    answers: crossbeam_channel::Receiver<Answer>,
    mut server_reader: BufReader<TcpStream>,
    mut client_writer: TcpStream,
) -> io::Result<()> {
    if answers.recv().is_ok() {
        if let Some(response) = read_message(&mut server_reader)? {
            write_message(&mut client_writer, &response)?;
        }
    }
    Ok(())
}

fn respond(
    conn: u64,
    answers: crossbeam_channel::Receiver<Answer>,
    mut server_reader: BufReader<TcpStream>,
    mut client_writer: TcpStream,
    shared: &Shared,
) -> io::Result<()> {
    for answer in answers {
        if let Answer::Fake500 = answer {
            write_500(&mut client_writer)?;
            continue;
        }
        if let Answer::Fake429(retry_after) = &answer {
            write_429(&mut client_writer, retry_after)?;
            continue;
        }
        let Some(response) = read_message(&mut server_reader)? else {
            return Ok(());
        };
        match answer {
            Answer::ResetAfter => return Ok(()),
            Answer::Replace500 => write_500(&mut client_writer)?,
            Answer::Truncate => {
                let mut bytes = response.head.clone();
                bytes.extend_from_slice(&response.body);
                client_writer.write_all(&bytes[..bytes.len() / 2])?;
                client_writer.flush()?;
                shared.close(conn);
                return Ok(());
            }
            _ if response.unframed => {
                write_message(&mut client_writer, &response)?;
                pipe(server_reader, client_writer);
                return Ok(());
            }
            _ => write_message(&mut client_writer, &response)?,
        }
    }
    Ok(())
}

fn write_429(to: &mut impl Write, retry_after: &str) -> io::Result<()> {
    let body = b"Too Many Requests";
    let head = format!(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {retry_after}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    to.write_all(head.as_bytes())?;
    to.write_all(body)?;
    to.flush()
}

fn write_500(to: &mut impl Write) -> io::Result<()> {
    let body = br#"{"error":{"code":"PROXY_ERROR","message":"injected by the test proxy"}}"#;
    let head = format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    to.write_all(head.as_bytes())?;
    to.write_all(body)?;
    to.flush()
}
