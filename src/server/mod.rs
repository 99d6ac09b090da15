//! `eventodb-kit serve`: an EventoDB-compatible HTTP server over
//! [`EmbeddedStore`] (feature `server`).
//!
//! It speaks EventoDB 0.7's wire protocol — `POST /rpc` with every method,
//! `GET /subscribe` (SSE pokes), `POST /import`, `/health`, `/version` —
//! with EventoDB's validation order, error codes, statuses and messages,
//! namespaces and tokens (only sha256 hashes are stored), so EventoDB SDKs
//! and [`HttpStore`] can use it as they would use EventoDB.
//!
//! ```
//! use eventodb_kit::server::{Server, ServerConfig};
//! use eventodb_kit::{MessageStore, NewMessage, WriteOptions};
//!
//! // In memory, on 127.0.0.1 and a free port, with a fresh `default` token.
//! let server = Server::start(ServerConfig::new())?;
//! let store = server.http_store()?; // an HttpStore on the default namespace
//! store.write("account-1", &NewMessage::new("Opened", serde_json::json!({})), &WriteOptions::new())?;
//! assert_eq!(store.stream_version("account-1")?, Some(0));
//! println!("serving {}", server.url());
//! server.shutdown();
//! # Ok::<(), eventodb_kit::Error>(())
//! ```
//!
//! # Pipelining and limits
//!
//! Pipelined requests are answered in order, and the `stream.write` calls
//! already waiting on a connection are committed in one transaction (each
//! keeps its own authentication, validation and answer). A request head
//! must arrive within [`ServerConfig::head_timeout`] and fit in 64 KiB; a
//! request with two `Content-Length` headers is refused; when
//! [`ServerConfig::max_connections`] are open, the connection that has
//! waited longest for a request makes way for a new one.
//!
//! # Threads
//!
//! One acceptor thread and one thread per open connection (keep-alive
//! connections and SSE streams are long-lived, and a thread per connection
//! keeps everything synchronous). [`Server::shutdown`] (also run on drop)
//! stops accepting, lets requests in flight finish, closes idle connections
//! and SSE streams, and joins every thread.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::error::{Error, Result};
use crate::store::embedded::DEFAULT_NAMESPACE;
use crate::store::{EmbeddedStore, HttpStore};
use crate::token::Token;

mod batch;
mod conn;
mod decode;
mod http;
mod import;
mod methods;
mod metrics;
mod router;
mod rpc;
mod subscribe;
mod tls;
mod transport;

/// The EventoDB version the server reports (`/version`, `sys.version`,
/// `Server: EventoDB/…`): the protocol version it implements.
pub const EVENTODB_VERSION: &str = "0.7.0";

/// Name of the SQLite file the server keeps in `--data-dir`.
pub const DATA_FILE: &str = "eventodb-kit.sqlite";

/// Settings of a [`Server`]. Built with setters; [`Default`] holds every default.
#[derive(Clone)]
pub struct ServerConfig {
    host: String,
    port: u16,
    token: Option<String>,
    data_dir: Option<PathBuf>,
    test_mode: bool,
    version: String,
    max_connections: usize,
    idle_timeout: Duration,
    head_timeout: Duration,
    write_timeout: Duration,
    sse_liveness_interval: Duration,
    max_body: usize,
    public_metrics: bool,
    tls: Option<tls::TlsFiles>,
    client_ca: Option<tls::Pem>,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("data_dir", &self.data_dir)
            .field("test_mode", &self.test_mode)
            .field("version", &self.version)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("head_timeout", &self.head_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("sse_liveness_interval", &self.sse_liveness_interval)
            .field("max_body", &self.max_body)
            .field("public_metrics", &self.public_metrics)
            .field("tls", &self.tls)
            .field("client_ca", &self.client_ca)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".to_string(),
            port: 0,
            token: None,
            data_dir: None,
            test_mode: false,
            version: EVENTODB_VERSION.to_string(),
            max_connections: 1024,
            idle_timeout: Duration::from_secs(120),
            head_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            sse_liveness_interval: Duration::from_secs(5),
            max_body: 100 * 1024 * 1024,
            public_metrics: false,
            tls: None,
            client_ca: None,
        }
    }
}

impl ServerConfig {
    /// In memory, on 127.0.0.1, a free port, a generated `default` token.
    pub fn new() -> Self {
        Self::default()
    }

    /// The address to bind (`0.0.0.0` for every interface). Defaults to `127.0.0.1`.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// The port to listen on (0 = any free port; see [`Server::addr`]).
    /// Defaults to 0.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The token of the `default` namespace when the server creates it
    /// (it must be a token for `default`). Defaults to a freshly generated one.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Keeps the data in `dir/eventodb-kit.sqlite` (created if needed).
    /// Defaults to memory (lost at shutdown).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Relaxes authentication like EventoDB's `--test-mode`: requests
    /// without a usable token run in `default`, a token of an unknown
    /// namespace or with a wrong secret passes. Defaults to off.
    pub fn test_mode(mut self, on: bool) -> Self {
        self.test_mode = on;
        self
    }

    /// The version reported by `/version` and `sys.version`. Defaults to
    /// [`EVENTODB_VERSION`].
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Most connections open at once. When all are taken, a new connection
    /// takes the place of the one that has waited longest for a request (a
    /// client trickling a request head, or an idle keep-alive connection),
    /// which is closed; only when every connection is inside a request (or
    /// an SSE stream) is the new one answered 503. Defaults to 1024.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long an idle keep-alive connection stays open (zero: for ever).
    /// Defaults to 120 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a client may take to send a request head (request line and
    /// headers): counted from the connection's start for its first request,
    /// and from the first byte for later ones (the wait between requests is
    /// the idle timeout's). A client that has not sent a whole head by then
    /// gets 408 and the connection closes, so slow clients cannot hold
    /// connections for ever (zero: no limit). Bodies are not covered (a
    /// large import may take long); each read of one waits at most the idle
    /// timeout. Defaults to 10 s.
    pub fn head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = timeout;
        self
    }

    /// How long a write may block on a client that does not read (the
    /// connection is then dropped); this also bounds how long shutdown can
    /// wait for such a client (zero: no limit). Defaults to 30 s.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How often an idle SSE stream checks whether its client has gone
    /// (EventoDB only notices at the next poke). Defaults to 5 s.
    pub fn sse_liveness_interval(mut self, interval: Duration) -> Self {
        self.sse_liveness_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Largest request body accepted (413 beyond). Defaults to 100 MiB.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Serves `GET /metrics` (the server's figures in the Prometheus text
    /// format, an addition to EventoDB's endpoints) without a token. With
    /// `false` it needs the `default` namespace's token, since it names every
    /// namespace (test mode lets any request in, as elsewhere). Defaults to
    /// `false`.
    pub fn public_metrics(mut self, public: bool) -> Self {
        self.public_metrics = public;
        self
    }

    /// Serves HTTPS with the certificate chain (server certificate first)
    /// and private key in these PEM files (`serve --tls-cert --tls-key`,
    /// `EVENTODB_TLS_CERT`, `EVENTODB_TLS_KEY`). They are read at
    /// [`Server::start`]. Defaults to plain HTTP.
    pub fn tls_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls = Some(tls::TlsFiles {
            cert: tls::Pem::File(cert.into()),
            key: tls::Pem::File(key.into()),
        });
        self
    }

    /// Like [`ServerConfig::tls_files`], with the PEM text itself.
    ///
    /// ```
    /// use eventodb_kit::server::ServerConfig;
    /// # let (cert_pem, key_pem) = (Vec::new(), Vec::new());
    /// let config = ServerConfig::new().tls_pem(cert_pem, key_pem);
    /// assert!(format!("{config:?}").contains("<PEM bytes>"), "keys never show");
    /// ```
    pub fn tls_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.tls = Some(tls::TlsFiles {
            cert: tls::Pem::Bytes(cert.into()),
            key: tls::Pem::Bytes(key.into()),
        });
        self
    }

    /// Requires a client certificate issued by a CA in this PEM file
    /// (mutual TLS; `serve --client-ca`, `EVENTODB_TLS_CLIENT_CA`); a
    /// client without one, or with one of another CA, is refused in the
    /// handshake. Needs [`ServerConfig::tls_files`] or
    /// [`ServerConfig::tls_pem`]. Defaults to none (any client).
    pub fn client_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(tls::Pem::File(path.into()));
        self
    }

    /// Like [`ServerConfig::client_ca_file`], with the PEM text itself.
    pub fn client_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.client_ca = Some(tls::Pem::Bytes(pem.into()));
        self
    }
}

/// State shared by the acceptor and the connection threads.
pub(crate) struct Shared {
    pub(crate) store: EmbeddedStore,
    pub(crate) test_mode: bool,
    pub(crate) version: String,
    /// `EventoDB/<version>`.
    pub(crate) server_header: String,
    pub(crate) idle_timeout: Duration,
    pub(crate) head_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) sse_liveness_interval: Duration,
    pub(crate) max_body: usize,
    pub(crate) max_connections: usize,
    /// `/metrics` needs no token.
    pub(crate) public_metrics: bool,
    /// HTTPS when set.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// Request counters and latencies for `/metrics`.
    pub(crate) metrics: metrics::ServerMetrics,
    pub(crate) stopping: AtomicBool,
    /// Disconnects when the server stops (SSE streams select on it).
    pub(crate) stop: Receiver<()>,
    pub(crate) connections: conn::Connections,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// A running server. [`Server::shutdown`] (or drop) stops it.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<Sender<()>>,
    acceptor: Option<JoinHandle<()>>,
    default_token: Option<Token>,
    generated: bool,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("test_mode", &self.shared.test_mode)
            .field("store", &self.shared.store)
            .finish()
    }
}

impl Server {
    /// Opens the store, ensures the `default` namespace, binds and starts
    /// serving. Returns once the server accepts connections.
    ///
    /// Errors: [`Error::InvalidInput`] for a token that does not parse or is
    /// not for `default`, or TLS files that cannot be read or used (naming
    /// the file); [`Error::Io`] when the address cannot be bound.
    pub fn start(config: ServerConfig) -> Result<Server> {
        let tls = match (&config.tls, &config.client_ca) {
            (Some(files), client_ca) => Some(files.load(client_ca.as_ref())?),
            (None, Some(_)) => {
                return Err(Error::invalid(
                    "a client CA needs TLS: give the server a certificate and key too",
                ))
            }
            (None, None) => None,
        };
        let token = match &config.token {
            Some(text) => {
                let t = Token::parse(text)?;
                if t.namespace() != DEFAULT_NAMESPACE {
                    return Err(Error::invalid(format!(
                        "the server token must be for namespace 'default', not '{}'",
                        t.namespace()
                    )));
                }
                Some(t)
            }
            None => None,
        };
        let store = open_store(config.data_dir.as_deref())?;
        let created = store.ensure_namespace(DEFAULT_NAMESPACE, token.as_ref())?;
        let generated = token.is_none() && created.is_some();
        let default_token = token.or(created);

        let listener = TcpListener::bind((config.host.as_str(), config.port))?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = bounded(0);
        let shared = Arc::new(Shared {
            store,
            test_mode: config.test_mode,
            server_header: format!("EventoDB/{}", config.version),
            version: config.version,
            idle_timeout: config.idle_timeout,
            head_timeout: config.head_timeout,
            write_timeout: config.write_timeout,
            sse_liveness_interval: config.sse_liveness_interval,
            max_body: config.max_body,
            max_connections: config.max_connections,
            public_metrics: config.public_metrics,
            tls,
            metrics: metrics::ServerMetrics::default(),
            stopping: AtomicBool::new(false),
            stop: stop_rx,
            connections: conn::Connections::new(),
        });
        let acceptor = conn::spawn_acceptor(listener, Arc::clone(&shared))?;
        let server = Server {
            addr,
            shared,
            stop: Some(stop_tx),
            acceptor: Some(acceptor),
            default_token,
            generated,
        };
        log::info!("eventodb-kit serving on {}", server.url());
        Ok(server)
    }

    /// The address the server listens on (with the actual port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>` (`https://` with TLS), for clients.
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The `default` namespace's token when known: the configured one, or
    /// the one generated at this start. `None` when `default` already
    /// existed in the data directory and no token was configured (only its
    /// hash is stored). A configured token is returned even if `default`
    /// already existed with another one — as EventoDB, the server then keeps
    /// the stored hash, and this token will be refused.
    pub fn default_token(&self) -> Option<&Token> {
        self.default_token.as_ref()
    }

    /// Whether [`Server::default_token`] was generated at this start (the
    /// binary prints it once, as EventoDB does).
    pub fn generated_default_token(&self) -> bool {
        self.generated
    }

    /// The store behind the server (namespace `default`).
    pub fn store(&self) -> &EmbeddedStore {
        &self.shared.store
    }

    /// An [`HttpStore`] on this server's `default` namespace (with default
    /// TLS settings: for a server with a private CA use
    /// [`HttpStore::builder`] with [`tls`](crate::HttpStoreBuilder::tls)).
    ///
    /// Errors: [`Error::InvalidInput`] when the default token is unknown
    /// (see [`Server::default_token`]).
    pub fn http_store(&self) -> Result<HttpStore> {
        let token = self.default_token.as_ref().ok_or_else(|| {
            Error::invalid(
                "the default namespace's token is unknown (it existed before this start)",
            )
        })?;
        HttpStore::new(&self.url(), token.expose_secret())
    }

    /// Stops accepting, lets requests in flight finish, ends SSE streams and
    /// idle connections, and joins every thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.stop.take();
        // Wake the acceptor's blocking accept().
        let _ = TcpStream::connect_timeout(&wake_address(self.addr), Duration::from_secs(1));
        let _ = acceptor.join();
        self.shared.connections.close_reads();
        self.shared.connections.join_all();
        log::info!("eventodb-kit server on {} stopped", self.addr);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Where to connect to reach a listener bound to `addr`.
fn wake_address(addr: SocketAddr) -> SocketAddr {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    target
}

fn open_store(data_dir: Option<&Path>) -> Result<EmbeddedStore> {
    match data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            EmbeddedStore::open(dir.join(DATA_FILE))
        }
        None => EmbeddedStore::open_in_memory(),
    }
}
