//! Servers that do not pipeline well, for the pipelining tests: a raw TCP
//! front on 127.0.0.1 that forwards each request it answers to a real
//! `serve` (so what it answers is what the server wrote) and misbehaves in
//! one of the ways proxies and old servers do.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{bounded, Receiver, Sender};

/// How the front misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers one request per connection, with `Connection: close`.
    CloseEach,
    /// A proxy that reads what is there, answers the first request and
    /// ignores the rest: on the first connection it waits until two
    /// requests came, answers the first, then stays silent with the socket
    /// open. Later connections: the same with whatever one read brings
    /// (one request at a time is served fine).
    FirstThenSilent,
    /// On the first connection reads `read` requests, answers the first
    /// `answer` of them, then closes; later connections are served well
    /// (pipelined requests answered in order).
    DropAfter { read: usize, answer: usize },
    /// An HTTP/1.0 server: one answer per connection, then it closes.
    Http10,
}

struct Shared {
    backend: SocketAddr,
    behaviour: Behaviour,
    stop: AtomicBool,
    connections: AtomicU64,
    /// Requests forwarded to the server.
    forwarded: AtomicU64,
    sockets: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Closed on drop: silent connections wait on it.
    stopped: Receiver<()>,
}

/// The misbehaving front; stops and joins its threads on drop.
pub struct Front {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<Sender<()>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Front {
    /// A front on a free port of 127.0.0.1 before the server at `backend`.
    pub fn start(backend: SocketAddr, behaviour: Behaviour) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = bounded(0);
        let shared = Arc::new(Shared {
            backend,
            behaviour,
            stop: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            sockets: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            stopped,
        });
        let accepting = Arc::clone(&shared);
        let acceptor = thread::spawn(move || accept(listener, accepting));
        Front {
            addr,
            shared,
            stop: Some(stop),
            acceptor: Some(acceptor),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Requests forwarded to the server so far.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.stop.take();
        for socket in self.shared.sockets.lock().unwrap().iter() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        // Wakes the acceptor.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let threads = std::mem::take(&mut *self.shared.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept(listener: TcpListener, shared: Arc<Shared>) {
    for socket in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(socket) = socket else { continue };
        let n = shared.connections.fetch_add(1, Ordering::SeqCst);
        shared
            .sockets
            .lock()
            .unwrap()
            .push(socket.try_clone().unwrap());
        let conn = Arc::clone(&shared);
        let thread = thread::spawn(move || {
            let _ = serve(&conn, socket, n == 0);
        });
        shared.threads.lock().unwrap().push(thread);
    }
}

/// Takes one complete request off the front of `buf`.
pub fn take_request(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(buf).ok()? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let length = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .unwrap_or(0);
    if buf.len() < head + length {
        return None;
    }
    Some(buf.drain(..head + length).collect())
}

/// Complete requests at the front of `buf` (without taking them).
fn complete_requests(buf: &[u8]) -> usize {
    let mut copy = buf.to_vec();
    let mut n = 0;
    while take_request(&mut copy).is_some() {
        n += 1;
    }
    n
}

/// Reads from `socket` into `buf` until it holds `n` complete requests;
/// false when the connection ended first.
fn read_requests(socket: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> bool {
    let mut chunk = [0u8; 64 * 1024];
    while complete_requests(buf) < n {
        match socket.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    true
}

/// Forwards `request` to the server and returns its answer's head (without
/// the empty line) and body.
fn forward(
    shared: &Shared,
    backend: &mut BufReader<TcpStream>,
    request: &[u8],
) -> (String, Vec<u8>) {
    backend.get_mut().write_all(request).unwrap();
    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        backend.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    backend.read_exact(&mut body).unwrap();
    (head, body)
}

fn respond(socket: &mut TcpStream, head: &str, body: &[u8], close: bool) -> std::io::Result<()> {
    let mut out = head.as_bytes().to_vec();
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    socket.write_all(&out)
}

/// Ends our side and discards what the client still sends until it
/// closes, so the answers already written are not destroyed by a reset.
fn linger(socket: &mut TcpStream) {
    let _ = socket.shutdown(Shutdown::Write);
    let mut sink = [0u8; 16 * 1024];
    while let Ok(n) = socket.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

fn serve(shared: &Shared, mut socket: TcpStream, first: bool) -> std::io::Result<()> {
    let mut backend = BufReader::new(TcpStream::connect(shared.backend)?);
    let mut buf = Vec::new();
    match shared.behaviour {
        Behaviour::CloseEach => {
            if !read_requests(&mut socket, &mut buf, 1) {
                return Ok(());
            }
            let request = take_request(&mut buf).unwrap();
            let (head, body) = forward(shared, &mut backend, &request);
            respond(&mut socket, &head, &body, true)?;
            linger(&mut socket);
        }
        Behaviour::FirstThenSilent => loop {
            let want = if first { 2 } else { 1 };
            if !read_requests(&mut socket, &mut buf, want) {
                return Ok(());
            }
            let request = take_request(&mut buf).unwrap();
            let (head, body) = forward(shared, &mut backend, &request);
            respond(&mut socket, &head, &body, false)?;
            if !buf.is_empty() {
                // More was read with it: dropped, and silence from now on.
                let _ = shared.stopped.recv();
                return Ok(());
            }
        },
        Behaviour::DropAfter { read, answer } if first => {
            if !read_requests(&mut socket, &mut buf, read) {
                return Ok(());
            }
            for _ in 0..answer {
                let request = take_request(&mut buf).unwrap();
                let (head, body) = forward(shared, &mut backend, &request);
                respond(&mut socket, &head, &body, false)?;
            }
            linger(&mut socket);
        }
        Behaviour::Http10 => {
            if !read_requests(&mut socket, &mut buf, 1) {
                return Ok(());
            }
            let request = take_request(&mut buf).unwrap();
            let (head, body) = forward(shared, &mut backend, &request);
            let head = head.replacen("HTTP/1.1", "HTTP/1.0", 1);
            respond(&mut socket, &head, &body, false)?;
            linger(&mut socket);
        }
        Behaviour::DropAfter { .. } => loop {
            if !read_requests(&mut socket, &mut buf, 1) {
                return Ok(());
            }
            let request = take_request(&mut buf).unwrap();
            let (head, body) = forward(shared, &mut backend, &request);
            respond(&mut socket, &head, &body, false)?;
        },
    }
    Ok(())
}
