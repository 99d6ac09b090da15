//! A connection's byte stream as the server reads it: a read waits at most
//! until the connection's deadline (set while a request head is awaited),
//! and never longer than the idle timeout. A TLS session, when the server
//! has one, wraps this stream and so keeps both limits.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The socket of one connection, with its read deadline.
pub(crate) struct Transport {
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
    pub(crate) fn new(socket: Arc<TcpStream>, idle: Option<Duration>) -> Self {
        Transport {
            socket,
            idle,
            deadline: None,
            applied: None,
        }
    }

    /// From now on no read waits past `deadline`; once it has passed, reads
    /// fail with [`io::ErrorKind::TimedOut`]. `None` lifts it.
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// The socket (for SSE streams, which write to it directly).
    pub(crate) fn socket(&self) -> &TcpStream {
        &self.socket
    }

    fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

fn deadline_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "request head deadline passed")
}

impl Read for Transport {
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
            other => other,
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.socket).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self.socket).flush()
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

    #[test]
    fn reads_stop_at_the_deadline() {
        let (mut client, server) = pair();
        let mut transport = Transport::new(Arc::new(server), None);
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
    fn the_idle_timeout_still_applies() {
        let (_client, server) = pair();
        let mut transport = Transport::new(Arc::new(server), Some(Duration::from_millis(20)));
        let err = transport.read(&mut [0; 8]).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err}"
        );
    }
}
