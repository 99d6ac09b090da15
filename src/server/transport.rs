//! A connection's byte stream as the server reads and writes it: plain TCP,
//! or a TLS session over it (`serve` with a certificate). Every byte the
//! server receives or sends on a connection goes through it — request
//! heads and bodies, `100 Continue`, answers alone or batched, SSE streams.
//!
//! A read of the socket waits at most until the connection's deadline (set
//! while a request head is awaited) and never longer than the idle timeout.
//! The TLS session reads through that same timed socket, so the deadline
//! and the idle timeout hold for TLS records too — the handshake included,
//! which happens in the first read, within the first request's head
//! deadline. Writes block at most the socket's write timeout (set by the
//! connection loop). Shutting the socket down from another thread (server
//! shutdown, eviction) ends a blocked read, plain or TLS.
//!
//! One thread owns a connection's `Transport` (inside its `BufReader`), so
//! the TLS session needs no lock.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection};

/// How long, after a refused TLS handshake, the client's remaining bytes
/// are read (and dropped) so that its alert is not lost to a reset.
const HANDSHAKE_LINGER: Duration = Duration::from_millis(200);

/// The stream of one connection: its timed socket and, with TLS, the
/// session over it.
pub(crate) struct Transport {
    socket: Socket,
    tls: Option<Box<ServerConnection>>,
}

/// The socket of one connection, with its read deadline.
struct Socket {
    socket: Arc<TcpStream>,
    /// Longest wait for one read (`None`: for ever).
    idle: Option<Duration>,
    /// No read waits past this (`None`: only `idle` applies).
    deadline: Option<Instant>,
    /// The read timeout last set on the socket (setting it is a system call).
    applied: Option<Option<Duration>>,
}

impl Transport {
    /// `socket`'s stream; a read waits at most `idle` (`None`: for ever).
    /// With `tls`, a TLS session whose handshake happens in the first read.
    pub(crate) fn new(
        socket: Arc<TcpStream>,
        idle: Option<Duration>,
        tls: Option<&Arc<ServerConfig>>,
    ) -> io::Result<Self> {
        let tls = match tls {
            Some(config) => Some(Box::new(
                ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?,
            )),
            None => None,
        };
        Ok(Transport {
            socket: Socket {
                socket,
                idle,
                deadline: None,
                applied: None,
            },
            tls,
        })
    }

    /// From now on no read waits past `deadline`; once it has passed, reads
    /// fail with [`io::ErrorKind::TimedOut`] — the only reads that do (the
    /// idle timeout is [`io::ErrorKind::WouldBlock`] on every platform).
    /// `None` lifts it.
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.socket.deadline = deadline;
    }

    /// Ends our side of the connection: a TLS session's `close_notify`
    /// first, then the socket's write side (reads go on).
    pub(crate) fn shutdown_write(&mut self) {
        if let Some(conn) = &mut self.tls {
            conn.send_close_notify();
            let _ = write_records(conn, &self.socket.socket);
        }
        let _ = self.socket.socket.shutdown(Shutdown::Write);
    }

    /// Whether the client has closed its side (checked without blocking).
    /// Over TLS, what the client sent is taken into the session (a
    /// `close_notify` alert is data on the socket, not an end of file).
    pub(crate) fn peer_closed(&mut self) -> bool {
        let socket = &*self.socket.socket;
        if socket.set_nonblocking(true).is_err() {
            return true;
        }
        let closed = match &mut self.tls {
            None => {
                let mut byte = [0u8; 1];
                match socket.peek(&mut byte) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) => e.kind() != io::ErrorKind::WouldBlock,
                }
            }
            Some(conn) => match conn.read_tls(&mut &*socket) {
                Ok(0) => true,
                Ok(_) => match conn.process_new_packets() {
                    Ok(state) => state.peer_has_closed(),
                    Err(_) => true,
                },
                Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            },
        };
        let _ = socket.set_nonblocking(false);
        closed
    }

    /// After a refused handshake (the alert is on its way): ends our side
    /// and drops what the client still sends for a moment, so that closing
    /// does not reset the connection before the client has read the alert.
    fn linger_after_handshake(&mut self) {
        let _ = self.socket.socket.shutdown(Shutdown::Write);
        self.socket.deadline = Some(Instant::now() + HANDSHAKE_LINGER);
        let mut buf = [0u8; 4096];
        let mut budget = 256 * 1024;
        while budget > 0 {
            match self.socket.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => budget -= n.min(budget),
            }
        }
    }
}

fn deadline_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "request head deadline passed")
}

impl Socket {
    fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = match self.deadline {
            None => self.idle,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(deadline_error());
                }
                Some(self.idle.map_or(left, |idle| idle.min(left)))
            }
        };
        if self.applied != Some(timeout) {
            self.socket.set_read_timeout(timeout)?;
            self.applied = Some(timeout);
        }
        match (&*self.socket).read(buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) && self.deadline_passed() =>
            {
                Err(deadline_error())
            }
            // The idle timeout, which Windows reports as TimedOut (Unix as
            // WouldBlock): only the deadline's error may carry TimedOut,
            // which the connection takes for a late request head (408).
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                Err(io::Error::new(io::ErrorKind::WouldBlock, e))
            }
            other => other,
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.socket).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self.socket).flush()
    }
}

/// Writes every TLS record the session has queued.
fn write_records(conn: &mut ServerConnection, mut socket: &TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(&mut socket)?;
    }
    Ok(())
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(conn) = &mut self.tls else {
            return self.socket.read(buf);
        };
        let handshaking = conn.is_handshaking();
        match rustls::Stream::new(&mut **conn, &mut self.socket).read(buf) {
            // A client that left without close_notify: an ordinary end.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                log::debug!("TLS connection refused: {e}");
                if handshaking {
                    self.linger_after_handshake();
                }
                Err(e)
            }
            other => other,
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(conn) = &mut self.tls else {
            return self.socket.write(buf);
        };
        // Encrypted as it is taken, then sent; a failed send is this
        // write's error (the connection is finished then).
        let n = conn.writer().write(buf)?;
        write_records(conn, &self.socket.socket)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            None => self.socket.flush(),
            Some(conn) => write_records(conn, &self.socket.socket),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    fn plain(server: TcpStream, idle: Option<Duration>) -> Transport {
        Transport::new(Arc::new(server), idle, None).unwrap()
    }

    #[test]
    fn reads_stop_at_the_deadline() {
        let (mut client, server) = pair();
        let mut transport = plain(server, None);
        client.write_all(b"abc").unwrap();
        transport.set_deadline(Some(Instant::now() + Duration::from_secs(5)));
        let mut buf = [0; 8];
        let n = transport.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"abc");
        transport.set_deadline(Some(Instant::now() + Duration::from_millis(20)));
        let err = transport.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        transport.set_deadline(Some(Instant::now()));
        assert_eq!(
            transport.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::TimedOut,
            "a deadline that has passed fails without waiting"
        );
        transport.set_deadline(None);
        client.write_all(b"d").unwrap();
        assert_eq!(transport.read(&mut buf).unwrap(), 1);
    }

    #[test]
    fn an_idle_timeout_before_the_deadline_is_not_the_deadline() {
        let (_client, server) = pair();
        let mut transport = plain(server, Some(Duration::from_millis(20)));
        transport.set_deadline(Some(Instant::now() + Duration::from_secs(5)));
        let err = transport.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
    }

    #[test]
    fn the_idle_timeout_still_applies() {
        let (_client, server) = pair();
        let mut transport = plain(server, Some(Duration::from_millis(20)));
        let err = transport.read(&mut [0; 8]).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err}"
        );
    }

    fn tls_config() -> Arc<ServerConfig> {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        Arc::new(
            ServerConfig::builder_with_provider(crate::tls::provider())
                .with_protocol_versions(rustls::ALL_VERSIONS)
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.cert.der().clone()], key)
                .unwrap(),
        )
    }

    #[test]
    fn the_deadline_covers_the_tls_handshake() {
        // A client that connects and never says hello (or stops midway).
        let (mut client, server) = pair();
        let mut transport = Transport::new(Arc::new(server), None, Some(&tls_config())).unwrap();
        transport.set_deadline(Some(Instant::now() + Duration::from_millis(20)));
        let err = transport.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        // A client that is not speaking TLS is refused in the handshake.
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        transport.set_deadline(Some(Instant::now() + Duration::from_secs(5)));
        let err = transport.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }
}
