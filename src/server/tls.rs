//! HTTPS for `serve`: the rustls server configuration (certificate, key,
//! optional client-certificate verification) and [`Stream`], the
//! connection type the connection loop reads and writes — plain TCP, or
//! TLS over it.
//!
//! A `Stream` and its clones share one TLS session; they are used by the
//! connection's own thread only, one call at a time (reading a request,
//! then writing its answer, or an SSE handler writing). The TCP socket
//! underneath stays reachable ([`Stream::tcp`]) for timeouts and for the
//! shutdown that wakes a blocked read from another thread.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use crate::error::{Error, Result};
use crate::tls::{certificates_from_pem, private_key_from_pem, provider, read_file};

/// PEM input: a file, or the bytes themselves.
#[derive(Clone)]
pub(crate) enum Pem {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(path) => path.fmt(f),
            Pem::Bytes(_) => f.write_str("<PEM bytes>"),
        }
    }
}

impl Pem {
    /// The bytes and a name for errors (`what` says what it holds).
    fn load(&self, what: &str) -> Result<(Vec<u8>, String)> {
        match self {
            Pem::File(path) => {
                let what = format!("{what} file {}", path.display());
                Ok((read_file(path, &what)?, what))
            }
            Pem::Bytes(bytes) => Ok((bytes.clone(), format!("{what} PEM"))),
        }
    }
}

/// The TLS settings of a server as configured (loaded at start).
#[derive(Clone, Debug)]
pub(crate) struct TlsFiles {
    pub(crate) cert: Pem,
    pub(crate) key: Pem,
    pub(crate) client_ca: Option<Pem>,
}

impl TlsFiles {
    /// Loads and checks everything: certificate chain, key (matching it),
    /// and the client CAs when client certificates are required.
    pub(crate) fn load(&self) -> Result<Arc<ServerConfig>> {
        let (pem, what) = self.cert.load("TLS certificate")?;
        let chain = certificates_from_pem(&pem, &what)?;
        let (pem, what) = self.key.load("TLS key")?;
        let key = private_key_from_pem(&pem, &what)?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| Error::invalid(format!("TLS: {e}")))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let (pem, what) = ca.load("client CA")?;
                let mut roots = RootCertStore::empty();
                for cert in certificates_from_pem(&pem, &what)? {
                    roots.add(cert).map_err(|e| {
                        Error::invalid(format!(
                            "the {what} holds a certificate that cannot be a CA: {e}"
                        ))
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| Error::invalid(format!("TLS client verification: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| {
            Error::invalid(format!("the TLS key does not fit the TLS certificate: {e}"))
        })?;
        Ok(Arc::new(config))
    }
}

/// A server connection: plain TCP, or TLS over it.
pub(crate) struct Stream {
    tcp: TcpStream,
    tls: Option<Arc<Mutex<ServerConnection>>>,
}

impl Stream {
    /// Wraps an accepted socket; with `config`, the TLS handshake happens
    /// on the first read (on the connection's own thread).
    pub(crate) fn new(tcp: TcpStream, config: Option<&Arc<ServerConfig>>) -> io::Result<Stream> {
        let tls = match config {
            Some(config) => {
                let conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
                Some(Arc::new(Mutex::new(conn)))
            }
            None => None,
        };
        Ok(Stream { tcp, tls })
    }

    /// Another handle on the same connection (and TLS session).
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        Ok(Stream {
            tcp: self.tcp.try_clone()?,
            tls: self.tls.clone(),
        })
    }

    /// The TCP socket underneath (timeouts, non-blocking peeks).
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Shuts down one side; ending the write side of a TLS connection sends
    /// its close_notify first.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            if let Some(conn) = &self.tls {
                let mut conn = lock(conn);
                conn.send_close_notify();
                let mut tcp = &self.tcp;
                let _ = conn.write_tls(&mut tcp);
            }
        }
        self.tcp.shutdown(how)
    }

    /// Whether the client has closed its side (checked without blocking).
    pub(crate) fn peer_closed(&self) -> bool {
        if self.tcp.set_nonblocking(true).is_err() {
            return true;
        }
        let closed = match &self.tls {
            None => {
                let mut byte = [0u8; 1];
                match self.tcp.peek(&mut byte) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) => e.kind() != io::ErrorKind::WouldBlock,
                }
            }
            // Whatever the client sent must go through TLS: a close_notify
            // alert is data on the socket, not an end of file.
            Some(conn) => {
                let mut conn = lock(conn);
                let mut tcp = &self.tcp;
                match conn.read_tls(&mut tcp) {
                    Ok(0) => true,
                    Ok(_) => match conn.process_new_packets() {
                        Ok(state) => state.peer_has_closed(),
                        Err(_) => true,
                    },
                    Err(e) => e.kind() != io::ErrorKind::WouldBlock,
                }
            }
        };
        let _ = self.tcp.set_nonblocking(false);
        closed
    }

    /// After a failed handshake: the alert is on its way; end our side and
    /// read what the client still sends for a moment, so that closing does
    /// not reset the connection before the client has read the alert.
    fn linger(&self) {
        let _ = self.tcp.shutdown(Shutdown::Write);
        let _ = self.tcp.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 4096];
        let mut budget = 256 * 1024;
        let mut tcp = &self.tcp;
        while budget > 0 {
            match tcp.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => budget -= n.min(budget),
            }
        }
    }
}

fn lock(conn: &Mutex<ServerConnection>) -> MutexGuard<'_, ServerConnection> {
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(conn) = &self.tls else {
            return (&self.tcp).read(buf);
        };
        let result = {
            let mut conn = lock(conn);
            let mut tcp = &self.tcp;
            rustls::Stream::new(&mut *conn, &mut tcp).read(buf)
        };
        match result {
            // A client that left without close_notify: an ordinary end.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                log::debug!("TLS connection refused: {e}");
                if lock(conn).is_handshaking() {
                    self.linger();
                }
                Err(e)
            }
            other => other,
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(conn) = &self.tls else {
            return (&self.tcp).write(buf);
        };
        let mut conn = lock(conn);
        let mut tcp = &self.tcp;
        rustls::Stream::new(&mut *conn, &mut tcp).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        let Some(conn) = &self.tls else {
            return (&self.tcp).flush();
        };
        let mut conn = lock(conn);
        let mut tcp = &self.tcp;
        rustls::Stream::new(&mut *conn, &mut tcp).flush()
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}
