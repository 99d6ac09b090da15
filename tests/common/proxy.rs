//! A fault-injecting TCP proxy for HTTP/1.1 between a client and a server:
//! it forwards request after request and, at a configurable rate, drops the
//! connection before the request reaches the server, resets it after the
//! server processed the request (the ambiguous case), delays, or answers
//! 500 (before or after the server processed the request). Streams it does
//! not understand (chunked, e.g. SSE) are piped through untouched.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

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
}

const FAULTS: [Fault; 5] = [
    Fault::DropBefore,
    Fault::ResetAfter,
    Fault::Delay,
    Fault::Error500Before,
    Fault::Error500After,
];

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// Faults per 100 requests.
    rate: AtomicU32,
    requests: AtomicU64,
    faults: [AtomicU64; 5],
    /// Sockets of open connections, by connection, to close them on drop.
    streams: Mutex<HashMap<u64, Vec<TcpStream>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
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

fn serve(conn: u64, client: TcpStream, upstream: SocketAddr, shared: &Shared) -> io::Result<()> {
    let mut client_reader = BufReader::new(client.try_clone()?);
    let mut client_writer = client;
    let server = TcpStream::connect(upstream)?;
    server.set_nodelay(true)?;
    shared.track(conn, &server)?;
    let mut server_reader = BufReader::new(server.try_clone()?);
    let mut server_writer = server;
    while let Some(request) = read_message(&mut client_reader)? {
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let fault = (fastrand::u32(0..100) < shared.rate.load(Ordering::Acquire))
            .then(|| FAULTS[fastrand::usize(..FAULTS.len())]);
        if let Some(f) = fault {
            let i = FAULTS.iter().position(|x| *x == f).unwrap();
            shared.faults[i].fetch_add(1, Ordering::Relaxed);
        }
        match fault {
            Some(Fault::DropBefore) => return Ok(()),
            Some(Fault::Error500Before) => {
                write_500(&mut client_writer)?;
                continue;
            }
            Some(Fault::Delay) => thread::sleep(Duration::from_millis(fastrand::u64(20..150))),
            _ => {}
        }
        write_message(&mut server_writer, &request)?;
        if request.unframed {
            // Not a plain request/response exchange: stop interfering.
            let upstream_out = server_reader;
            let client_in = client_writer.try_clone()?;
            let back = thread::spawn(move || pipe(upstream_out, client_in));
            pipe(client_reader, server_writer);
            let _ = back.join();
            return Ok(());
        }
        let Some(response) = read_message(&mut server_reader)? else {
            return Ok(());
        };
        match fault {
            Some(Fault::ResetAfter) => return Ok(()),
            Some(Fault::Error500After) => write_500(&mut client_writer)?,
            _ if response.unframed => {
                write_message(&mut client_writer, &response)?;
                let client_in = client_writer.try_clone()?;
                let back = thread::spawn(move || pipe(server_reader, client_in));
                let _ = back.join();
                return Ok(());
            }
            _ => write_message(&mut client_writer, &response)?,
        }
    }
    Ok(())
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
