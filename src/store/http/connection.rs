//! A raw HTTP/1.1 client connection to the store's `/rpc`, plain or TLS,
//! split into a [`Writer`] and a [`Reader`] that two threads use at once —
//! what pipelining needs and ureq does not offer.
//!
//! [`dial`] and [`handshake`] are also how the SSE connections connect: one
//! way to reach the store, with the store's one rustls configuration.
//!
//! The socket has `TCP_NODELAY` (requests written back to back leave at
//! once). It has no TCP keepalive (unlike an SSE socket, it is never idle
//! for long while it matters): a connection that died while idle is found by the next
//! write or by the pipeline's answer deadline instead. A TLS connection is one rustls
//! [`ClientConnection`] behind a mutex that is never held across a socket
//! call: the writer encrypts under the lock into a buffer and writes the
//! buffer after releasing it; the reader reads the socket without the lock
//! and decrypts under it. So neither side can wait on the other while
//! blocked in the kernel, whatever the state of both directions' buffers.
//! Records the reader's processing asks to send (a key update) are flagged
//! for the writer ([`Reader::wants_write`], [`Writer::flush_tls`]): only
//! the writer writes to the socket, so records leave in order.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::error::{Error, Result, TransportErrorKind};
use crate::store::http::failure::{io_transport_error, io_transport_parts};
pub(crate) use crate::store::http::target::BaseUrl;

/// How to connect.
#[derive(Clone)]
pub(crate) struct ConnectSettings {
    /// Longest wait for the TCP connection, and again for the TLS handshake.
    pub(crate) connect_timeout: Duration,
    /// Longest wait for a write to make progress.
    pub(crate) write_timeout: Duration,
    /// TLS for `https://` targets.
    pub(crate) tls: Arc<ClientConfig>,
}

impl fmt::Debug for ConnectSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectSettings")
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}

/// The constant part of a `POST {path}` request with the headers ureq
/// sends for [`HttpStore`](super::HttpStore)'s calls: everything before the
/// `content-length` value. Built once per pipeline; [`encode_request`]
/// completes it per request.
pub(crate) fn request_head(target: &BaseUrl, authorization: &str) -> Vec<u8> {
    format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\nauthorization: {}\r\ncontent-type: application/json\r\n\
         user-agent: {}\r\naccept: */*\r\ncontent-length: ",
        target.rpc_path,
        target.host_header,
        authorization,
        super::client::USER_AGENT,
    )
    .into_bytes()
}

/// Appends a request carrying `body`: `head` (of [`request_head`]), the
/// body's length, the end of the head and the body.
pub(crate) fn encode_request(out: &mut Vec<u8>, head: &[u8], body: &[u8]) {
    out.extend_from_slice(head);
    // The length's decimal digits, without formatting machinery.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut len = body.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (len % 10) as u8;
        len /= 10;
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// An open connection, before it is split between two threads.
pub(crate) struct Connection {
    pub(crate) writer: Writer,
    pub(crate) reader: Reader,
    /// A handle for [`Connection::shutdown`] from a third place.
    pub(crate) socket: TcpStream,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.socket.peer_addr().ok())
            .field("tls", &self.writer.tls.is_some())
            .finish()
    }
}

/// Connects to `target`: resolves its host, tries each address within the
/// connect timeout, and for `https://` completes the TLS handshake (within
/// the connect timeout again). Errors are [`Error::Transport`] of kinds
/// `Dns`, `ConnectionRefused`, `Timeout`, `Tls` and the like, classified as
/// for ureq's connections.
pub(crate) fn connect(target: &BaseUrl, settings: &ConnectSettings) -> Result<Connection> {
    let tcp = dial(target, settings.connect_timeout)?;
    let tls = if target.tls {
        let mut conn = handshake(&tcp, target, &settings.tls, settings.connect_timeout)?;
        // Whole pipelined batches are encrypted at once (the batches are bounded).
        conn.set_buffer_limit(None);
        Some(Arc::new(Mutex::new(conn)))
    } else {
        None
    };
    let io = |e: io::Error| io_transport_error(&e);
    tcp.set_read_timeout(None).map_err(io)?;
    tcp.set_write_timeout(Some(settings.write_timeout).filter(|d| !d.is_zero()))
        .map_err(io)?;
    let wants_write = Arc::new(AtomicBool::new(false));
    Ok(Connection {
        writer: Writer {
            socket: tcp.try_clone().map_err(io)?,
            tls: tls.clone(),
            wants_write: Arc::clone(&wants_write),
            out: Vec::new(),
        },
        reader: Reader {
            socket: tcp.try_clone().map_err(io)?,
            tls,
            wants_write,
            cipher: vec![0; 32 * 1024].into_boxed_slice(),
            cipher_at: 0,
            cipher_len: 0,
        },
        socket: tcp,
    })
}

/// A TCP connection to `target` (`TCP_NODELAY` on): its host resolved,
/// each address tried within `connect_timeout` until one answers. The one
/// way the store's own connections (pipelined writes, SSE) dial.
pub(crate) fn dial(target: &BaseUrl, connect_timeout: Duration) -> Result<TcpStream> {
    let place = format!("{}:{}", target.host, target.port);
    let failed = |e: &io::Error| {
        let (kind, message) = io_transport_parts(e);
        Error::Transport {
            kind,
            message: format!("connecting to {place} failed: {message}"),
        }
    };
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| failed(&e))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, connect_timeout) {
            Ok(tcp) => {
                tcp.set_nodelay(true).map_err(|e| failed(&e))?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => failed(&e),
        None => Error::Transport {
            kind: TransportErrorKind::Dns,
            message: format!("{} resolves to no address", target.host),
        },
    })
}

/// The TLS handshake with `target` over `tcp` with `config` (the store's
/// one rustls configuration), within `timeout` for each read and write.
/// A refused certificate is an [`Error::Transport`] of kind `Tls` that says
/// which and why.
pub(crate) fn handshake(
    tcp: &TcpStream,
    target: &BaseUrl,
    config: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<ClientConnection> {
    let tls_error = |message: String| Error::Transport {
        kind: TransportErrorKind::Tls,
        message,
    };
    let name = ServerName::try_from(target.host.clone())
        .map_err(|e| tls_error(format!("{:?} is not a TLS server name: {e}", target.host)))?;
    let mut conn = ClientConnection::new(Arc::clone(config), name)
        .map_err(|e| tls_error(crate::tls::describe(&e)))?;
    let timeout = Some(timeout).filter(|d| !d.is_zero());
    let io = |e: io::Error| io_transport_error(&e);
    tcp.set_read_timeout(timeout).map_err(io)?;
    tcp.set_write_timeout(timeout).map_err(io)?;
    let mut socket = tcp;
    let place = format!("{}:{}", target.host, target.port);
    while conn.is_handshaking() {
        match conn.complete_io(&mut socket) {
            Ok((0, 0)) if conn.is_handshaking() => {
                return Err(tls_error(format!(
                    "{place} closed the connection during the TLS handshake"
                )))
            }
            Ok(_) => {}
            Err(e) => {
                let (kind, message) = io_transport_parts(&e);
                let what = match kind {
                    TransportErrorKind::Timeout => "took longer than the connect timeout".into(),
                    _ => format!("failed: {message}"),
                };
                return Err(Error::Transport {
                    kind,
                    message: format!("the TLS handshake with {place} {what}"),
                });
            }
        }
    }
    Ok(conn)
}

fn lock(tls: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    tls.lock().unwrap_or_else(|e| e.into_inner())
}

/// A failed [`Writer::send`].
#[derive(Debug)]
pub(crate) struct SendError {
    /// Some of the bytes may have reached the server.
    pub(crate) sent_any: bool,
    pub(crate) error: io::Error,
}

/// The sending half of a [`Connection`] (one thread).
pub(crate) struct Writer {
    socket: TcpStream,
    tls: Option<Arc<Mutex<ClientConnection>>>,
    wants_write: Arc<AtomicBool>,
    /// Encrypted bytes to write (reused).
    out: Vec<u8>,
}

impl Writer {
    /// Sends `bytes` (encrypted on a TLS connection); blocks until the
    /// socket took them all, or fails.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        match self.tls.clone() {
            None => write_all(&mut self.socket, bytes),
            Some(tls) => {
                self.out.clear();
                {
                    let mut conn = lock(&tls);
                    let encrypted = conn
                        .writer()
                        .write_all(bytes)
                        .and_then(|()| drain_tls(&mut conn, &mut self.out));
                    if let Err(error) = encrypted {
                        return Err(SendError {
                            sent_any: false,
                            error,
                        });
                    }
                }
                write_all(&mut self.socket, &self.out)
            }
        }
    }

    /// Writes the TLS records the reader's side queued (if any).
    pub(crate) fn flush_tls(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.clone() else {
            return Ok(());
        };
        if !self.wants_write.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        self.out.clear();
        drain_tls(&mut lock(&tls), &mut self.out)?;
        write_all(&mut self.socket, &self.out).map_err(|e| e.error)
    }
}

fn drain_tls(conn: &mut ClientConnection, out: &mut Vec<u8>) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(out)?;
    }
    Ok(())
}

fn write_all(socket: &mut TcpStream, bytes: &[u8]) -> Result<(), SendError> {
    let mut written = 0;
    while written < bytes.len() {
        match socket.write(&bytes[written..]) {
            Ok(0) => {
                return Err(SendError {
                    sent_any: written > 0,
                    error: io::ErrorKind::WriteZero.into(),
                })
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                return Err(SendError {
                    sent_any: written > 0,
                    error,
                })
            }
        }
    }
    Ok(())
}

/// The receiving half of a [`Connection`] (one thread): the decrypted
/// byte stream, ending (`Ok(0)`) when the server closes.
pub(crate) struct Reader {
    socket: TcpStream,
    tls: Option<Arc<Mutex<ClientConnection>>>,
    wants_write: Arc<AtomicBool>,
    /// Ciphertext read from the socket; `cipher_at..cipher_len` is not
    /// yet given to rustls.
    cipher: Box<[u8]>,
    cipher_at: usize,
    cipher_len: usize,
}

impl Reader {
    /// Whether decrypting queued TLS records to send, for
    /// [`Writer::flush_tls`].
    pub(crate) fn wants_write(&self) -> bool {
        self.wants_write.load(Ordering::Acquire)
    }
}

impl Read for Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.clone() else {
            return self.socket.read(out);
        };
        loop {
            {
                let mut conn = lock(&tls);
                match conn.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The server closed without close_notify: still the end.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                if self.cipher_at < self.cipher_len {
                    let mut pending = &self.cipher[self.cipher_at..self.cipher_len];
                    let taken = conn.read_tls(&mut pending)?;
                    if taken == 0 {
                        // close_notify came: nothing more will be read.
                        return Ok(0);
                    }
                    self.cipher_at += taken;
                    conn.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    if conn.wants_write() {
                        self.wants_write.store(true, Ordering::Release);
                    }
                    continue;
                }
            }
            // Outside the lock: the writer may encrypt meanwhile.
            self.cipher_at = 0;
            self.cipher_len = 0;
            let n = self.socket.read(&mut self.cipher)?;
            self.cipher_len = n;
            if n == 0 {
                let mut conn = lock(&tls);
                let _ = conn.read_tls(&mut io::empty());
                let _ = conn.process_new_packets();
                return match conn.reader().read(out) {
                    Ok(n) => Ok(n),
                    Err(_) => Ok(0),
                };
            }
        }
    }
}

impl Connection {
    /// Ends the connection in both directions from any thread: a blocked
    /// read returns the end, a blocked write fails.
    pub(crate) fn shutdown(socket: &TcpStream) {
        let _ = socket.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_requests_with_the_headers_of_ureq_calls() {
        let target = BaseUrl::parse("http://127.0.0.1:8080").unwrap();
        let mut out = Vec::new();
        encode_request(&mut out, &request_head(&target, "Bearer x"), b"[1]");
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut headers);
        let len = match request.parse(&out).unwrap() {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial => panic!("incomplete"),
        };
        assert_eq!((request.method, request.path), (Some("POST"), Some("/rpc")));
        let names: Vec<_> = request.headers.iter().map(|h| h.name).collect();
        assert_eq!(
            names,
            [
                "host",
                "authorization",
                "content-type",
                "user-agent",
                "accept",
                "content-length"
            ]
        );
        assert_eq!(&out[len..], b"[1]");
    }

    #[test]
    fn each_request_carries_its_own_content_length() {
        let target = BaseUrl::parse("http://127.0.0.1:8080").unwrap();
        let head = request_head(&target, "Bearer x");
        for len in [0, 1, 9, 10, 99, 100, 12_345, 1_000_000] {
            let body = vec![b'x'; len];
            let mut out = Vec::new();
            encode_request(&mut out, &head, &body);
            encode_request(&mut out, &head, b"[2]");
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut request = httparse::Request::new(&mut headers);
            let Ok(httparse::Status::Complete(at)) = request.parse(&out) else {
                panic!("incomplete");
            };
            let length = request
                .headers
                .iter()
                .find(|h| h.name == "content-length")
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                });
            assert_eq!(length, Some(len));
            assert_eq!(&out[at..at + len], &body[..]);
            assert!(out[at + len..].starts_with(b"POST /rpc HTTP/1.1\r\n"));
            assert!(out.ends_with(b"content-length: 3\r\n\r\n[2]"));
        }
    }

    #[test]
    fn a_refused_connection_is_classified() {
        // Bound, never listening: refuses, and no other test gets the port.
        let closed =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        closed
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let port = closed.local_addr().unwrap().as_socket().unwrap().port();
        let target = BaseUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let settings = ConnectSettings {
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            tls: crate::TlsSettings::new().rustls_client_config().unwrap(),
        };
        match connect(&target, &settings) {
            Err(Error::Transport { kind, .. }) => {
                assert_eq!(kind, TransportErrorKind::ConnectionRefused)
            }
            other => panic!("{other:?}"),
        }
    }
}
