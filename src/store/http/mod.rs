//! [`HttpStore`]: the [`MessageStore`] of a real EventoDB server (or of
//! `eventodb-kit serve`), over HTTP with ureq — and, for writes kept in
//! flight, over its own pipelined HTTP/1.1 connections.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::bounded;
use serde_json::Value;

use crate::error::Result;
use crate::message::{Message, NewMessage, WriteOptions, WriteResult};
use crate::retry::RetryPolicy;
use crate::store::{
    CategoryInfo, CategoryQuery, MessageStore, StreamInfo, StreamListQuery, StreamQuery,
    SubscribeTarget, Subscription, WriteItem, WritePipeline,
};
use crate::token::Token;
use crate::wire::{rpc, undecodable};

mod admin;
mod builder;
mod client;
mod connection;
mod failure;
mod hub;
mod pipeline;
mod pipelining;
mod response;
mod retry_after;
mod sse;
mod status;
mod target;

pub use admin::{ImportSummary, SystemHealth};
pub use builder::HttpStoreBuilder;
pub use pipelining::Pipelining;
pub use status::{ConnectionSnapshot, ConnectionState, ConnectionStatus};

use client::{CallContext, Client};
use hub::Hub;
use pipelining::PipeliningState;
use sse::liveness::{Prober, Silence};
use sse::stream::SocketSettings;
use sse::{Endpoint, OnRefusal, PokeSink, SseWorker};

/// Pokes a subscription may have pending (as many as a replay, plus room
/// for live ones); more are dropped.
const SUBSCRIPTION_CAPACITY: usize = 2048;

/// A [`MessageStore`] on an EventoDB server, reached over HTTP(S).
///
/// The namespace is the token's: every call acts on it. One ureq agent is
/// shared by all calls (and clones), so connections are reused; requests
/// are sent with `TCP_NODELAY`. Errors map to [`Error`](crate::Error):
/// version conflicts to `Conflict`, "id already exists" (SQLite and Postgres
/// backends) to `DuplicateId`, 401/403 to `Auth`, 400 to `InvalidInput`,
/// unknown namespaces to `NotFound`, other answers to `Store`, and network
/// failures to a transient `Transport` error.
///
/// ```no_run
/// use eventodb_kit::{HttpStore, MessageStore, NewMessage, WriteOptions};
/// use serde_json::json;
///
/// let store = HttpStore::new("http://127.0.0.1:8080", "ns_ZGVmYXVsdA_…")?;
/// let at = store.write("account-1", &NewMessage::new("Opened", json!({})), &WriteOptions::new())?;
/// println!("written at global position {}", at.global_position);
/// # Ok::<(), eventodb_kit::Error>(())
/// ```
///
/// # Threads
///
/// `HttpStore` is cheap to clone (an `Arc`); clones share the agent and the
/// watch hub. [`MessageStore::subscribe`] starts one thread per
/// subscription, stopped and joined when the [`Subscription`] is dropped.
/// [`MessageStore::watch_category`] shares one `all=true` SSE connection
/// (one thread) among all watchers of the store; it ends when the last clone
/// of the store is dropped. Both reconnect with exponential backoff and
/// jitter ([`HttpStoreBuilder::reconnect_policy`]) while attempts fail, and
/// at once after a connection that had been up breaks; their state is
/// visible through [`HttpStore::watch_status`] and [`SseSubscription::status`].
///
/// # Connections that go quiet
///
/// EventoDB sends nothing on an idle event stream, and a connection that
/// died without a FIN or RST (NAT timeout, Wi-Fi handover) looks the same
/// as a quiet one. Every SSE socket has TCP keepalive on, so the operating
/// system ends a connection whose peer stopped answering; and after
/// [`HttpStoreBuilder::silence_timeout`] without a byte the store asks the
/// server (one small read over a fresh connection) whether anything was
/// written that the stream should have reported. Nothing: the connection is
/// quiet, not dead, and stays. Something, and its poke does not follow
/// within a short grace — or the server does not answer — : the connection
/// is dead, its state goes `Disconnected`, the watchers of
/// [`watch_category`](MessageStore::watch_category) are woken to read at
/// once, and it reconnects.
///
/// # TLS
///
/// `https://` URLs use rustls with the trust and client certificate of
/// [`HttpStoreBuilder::tls`] for every connection (RPC calls, pipelined
/// writes, subscriptions, the watch hub). Certificate failures are
/// [`Transport`](crate::Error::Transport) errors of kind
/// [`Tls`](crate::TransportErrorKind::Tls) that say what was refused.
///
/// Pipelined writes ([`MessageStore::open_pipeline`](#method.open_pipeline),
/// [`MessageStore::write_many`](#method.write_many)) use the store's own
/// HTTP/1.1 connections, not the agent's: a pipeline has a writer thread
/// and, while connected, a reader thread, both joined when it is dropped.
/// `write_many` keeps one pipeline between calls, dropped with the last
/// clone of the store.
#[derive(Clone)]
pub struct HttpStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    reconnect: RetryPolicy,
    silence: Silence,
    hub: Mutex<Option<Hub>>,
    /// Shared with clones and `with_token` stores (same server).
    pipelining: Arc<PipeliningState>,
    /// The pipeline `write_many` keeps between calls.
    idle_pipeline: Mutex<Option<WritePipeline>>,
}

impl fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStore")
            .field("url", &self.inner.client.base())
            .field("namespace", &self.namespace())
            .finish()
    }
}

impl HttpStore {
    /// A store at `url` (e.g. `http://127.0.0.1:8080`) acting on the
    /// namespace of `token`, with default settings.
    pub fn new(url: &str, token: &str) -> Result<HttpStore> {
        Self::builder(url, token).build()
    }

    /// Configures a store at `url` with `token`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use eventodb_kit::HttpStore;
    ///
    /// let token = format!("ns_ZGVmYXVsdA_{}", "0".repeat(64));
    /// let store = HttpStore::builder("http://127.0.0.1:8080", &token)
    ///     .connect_timeout(Duration::from_secs(2))
    ///     .read_timeout(Duration::from_secs(10))
    ///     .build()?;
    /// assert_eq!(store.url(), "http://127.0.0.1:8080");
    /// assert!(!format!("{store:?}").contains("000000"), "the token never shows");
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    pub fn builder(url: &str, token: &str) -> HttpStoreBuilder {
        HttpStoreBuilder::new(url, token)
    }

    fn from_client(
        client: Client,
        reconnect: RetryPolicy,
        silence: Silence,
        pipelining: Arc<PipeliningState>,
    ) -> HttpStore {
        HttpStore {
            inner: Arc::new(Inner {
                client,
                reconnect: reconnect.forever(),
                silence,
                hub: Mutex::new(None),
                pipelining,
                idle_pipeline: Mutex::new(None),
            }),
        }
    }

    /// The same server and settings, acting on the namespace of `token`
    /// (shares the connection pool and what was learned about pipelining;
    /// has its own watch hub).
    pub fn with_token(&self, token: &Token) -> HttpStore {
        let client = self.inner.client.with_token(token.clone());
        Self::from_client(
            client,
            self.inner.reconnect.clone(),
            self.inner.silence,
            Arc::clone(&self.inner.pipelining),
        )
    }

    /// Whether this store's [`WritePipeline`]s keep several writes in
    /// flight on a connection, or fell back to one at a time because the
    /// server (or a proxy in front of it) does not answer pipelined
    /// requests. Shared by the store's clones; see
    /// [`MessageStore::open_pipeline`](#method.open_pipeline) for the signs.
    ///
    /// ```
    /// use eventodb_kit::store::http::Pipelining;
    /// use eventodb_kit::HttpStore;
    ///
    /// let token = format!("ns_ZGVmYXVsdA_{}", "0".repeat(64));
    /// let store = HttpStore::new("http://127.0.0.1:8080", &token)?;
    /// assert_eq!(store.pipelining(), Pipelining::On);
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    pub fn pipelining(&self) -> Pipelining {
        self.inner.pipelining.pipelining()
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        self.inner.client.base()
    }

    /// The token (redacted in `Debug` and `Display`).
    pub fn token(&self) -> &Token {
        self.inner.client.token()
    }

    /// Calls any RPC method with positional arguments and returns its raw
    /// result — an escape hatch for methods the kit does not wrap.
    ///
    /// ```no_run
    /// # fn demo(store: &eventodb_kit::HttpStore) -> eventodb_kit::Result<()> {
    /// let health = store.call("sys.health", vec![])?;
    /// assert_eq!(health["status"], "ok");
    /// # Ok(()) }
    /// ```
    pub fn call(&self, method: &str, args: Vec<Value>) -> Result<Value> {
        self.rpc(method, args)
    }

    fn rpc(&self, method: &str, args: Vec<Value>) -> Result<Value> {
        self.inner.client.rpc(method, args, CallContext::default())
    }

    /// The undecoded body of a 2xx answer (reads of messages, decoded one
    /// by one when one cannot be: see [`crate::wire::undecodable`]).
    fn rpc_body(&self, method: &str, args: Vec<Value>) -> Result<Vec<u8>> {
        self.inner
            .client
            .rpc_body(method, args, CallContext::default())
    }

    fn endpoint(&self) -> Endpoint {
        let client = &self.inner.client;
        let settings = client.settings();
        let silence = self.inner.silence;
        Endpoint {
            target: Arc::clone(client.url()),
            authorization: client.authorization().to_string(),
            socket: SocketSettings {
                connect_timeout: settings.connect_timeout,
                keepalive_idle: silence.timeout / 2,
                keepalive_interval: silence.timeout / 10,
                tls: settings.rustls_config(),
            },
            read_timeout: settings.read_timeout,
            reconnect: self.inner.reconnect.clone(),
            silence,
            prober: Prober {
                rpc_url: client.rpc_url().to_string(),
                authorization: client.authorization().to_string(),
                settings: settings.clone(),
                namespace: client.token().namespace().to_string(),
            },
        }
    }

    /// Like [`MessageStore::subscribe`], with access to the connection state.
    ///
    /// The subscription connects (and reconnects, resuming after the last
    /// poke) on its own thread. An `all` subscription, which EventoDB does
    /// not replay, waits for its first connection attempt to finish (at most
    /// the connect timeout) so that writes made after this call are seen. A
    /// refusal by the store (401/403, bad parameters) ends the subscription:
    /// its channel closes and [`ConnectionSnapshot::last_error`] says why.
    pub fn subscribe_sse(&self, target: &SubscribeTarget) -> Result<SseSubscription> {
        let (sender, receiver) = bounded(SUBSCRIPTION_CAPACITY);
        let worker = SseWorker::spawn(
            self.endpoint(),
            target.clone(),
            Arc::new(sender) as Arc<dyn PokeSink>,
            OnRefusal::Stop,
            "eventodb-subscribe",
        )?;
        let status = worker.status().clone();
        if matches!(target, SubscribeTarget::All { .. }) {
            self.wait_first_attempt(&status);
        }
        Ok(SseSubscription {
            subscription: Subscription::new(receiver, worker),
            status,
        })
    }

    /// Waits until the first attempt of a connection ended one way or the other.
    fn wait_first_attempt(&self, status: &ConnectionStatus) {
        let bound = self.inner.client.settings().connect_timeout + Duration::from_secs(1);
        status.wait_until(bound, |s| {
            s.connects > 0 || s.disconnects > 0 || s.state == ConnectionState::Stopped
        });
    }

    /// The state of the shared connection behind
    /// [`watch_category`](MessageStore::watch_category), starting it if
    /// it is not running yet.
    pub fn watch_status(&self) -> ConnectionStatus {
        match self.with_hub(|hub| hub.status().clone()) {
            Ok(status) => status,
            // Only a failure to spawn a thread gets here.
            Err(e) => {
                let status = ConnectionStatus::new();
                status.stopped(Some(e.to_string()));
                status
            }
        }
    }

    /// Number of live watchers on the shared connection.
    pub fn watcher_count(&self) -> usize {
        let hub = self.inner.hub.lock().unwrap_or_else(|e| e.into_inner());
        hub.as_ref().map_or(0, Hub::watcher_count)
    }

    fn with_hub<T>(&self, f: impl FnOnce(&Hub) -> T) -> Result<T> {
        let mut slot = self.inner.hub.lock().unwrap_or_else(|e| e.into_inner());
        let started = slot.is_none();
        if started {
            *slot = Some(Hub::start(self.endpoint())?);
        }
        let hub = slot.as_ref().expect("the hub was just started");
        if started {
            self.wait_first_attempt(hub.status());
        }
        Ok(f(hub))
    }
}

/// A subscription of an [`HttpStore`] with its connection state.
#[derive(Debug)]
pub struct SseSubscription {
    subscription: Subscription,
    status: ConnectionStatus,
}

impl SseSubscription {
    /// The pokes.
    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    /// The connection's state.
    pub fn status(&self) -> &ConnectionStatus {
        &self.status
    }

    /// Just the pokes (the status handle can be cloned first).
    pub fn into_subscription(self) -> Subscription {
        self.subscription
    }
}

impl MessageStore for HttpStore {
    fn namespace(&self) -> &str {
        self.token().namespace()
    }

    fn write(
        &self,
        stream: &str,
        message: &NewMessage,
        options: &WriteOptions,
    ) -> Result<WriteResult> {
        // Refused here with EventoDB's own messages, before a round trip —
        // and data nested deeper than the kit reads back, which EventoDB
        // itself would take. (Pipelined writes make the same checks, in
        // the pipeline's writer thread.)
        crate::store::check_write(stream, message)?;
        let ctx = CallContext {
            stream: Some(stream),
            expected_version: options.expected_version,
            id: options.id.as_deref(),
        };
        let args = rpc::write_args(stream, message, options);
        let v = self.inner.client.rpc("stream.write", args, ctx)?;
        rpc::decode_write_result(&v)
    }

    /// Pipelined on one connection (HTTP/1.1): all the requests are
    /// written back to back and the answers read in order, so the items
    /// cost about one round trip instead of one each. Each result is what
    /// [`write`](MessageStore::write) would return for the item, except
    /// that a broken connection leaves the outcome of the items sent on it
    /// unknown (a `Transport` error of kind `ConnectionReset` or `Timeout`;
    /// see [`open_pipeline`](#method.open_pipeline)). The store keeps the
    /// pipeline (and its connection) for the next call; a call made while
    /// another runs opens its own. One item is written with `write`.
    fn write_many(&self, items: &[WriteItem]) -> Vec<Result<WriteResult>> {
        if items.len() <= 1 {
            return items
                .iter()
                .map(|i| self.write(&i.stream, &i.message, &i.options))
                .collect();
        }
        self.write_pipelined(items)
    }

    /// HTTP/1.1 pipelining of `stream.write` requests: two threads
    /// (`eventodb-pipe-write`, `eventodb-pipe-read`) and one keep-alive
    /// connection at a time, opened at the first write (plain or TLS, with
    /// the store's connect timeout). Writes queued together leave in one
    /// socket write; each answer is mapped exactly as
    /// [`write`](MessageStore::write) maps it and comes back in order. Every
    /// write sent gets exactly one answer while the pipeline lives;
    /// dropping it shuts the connection down and joins both threads at
    /// once (if a connection is being opened, once that attempt ends: at
    /// most the connect timeout after name resolution).
    ///
    /// When things go wrong:
    ///
    /// - **A write fails the checks [`write`](MessageStore::write) makes
    ///   before sending** (an empty stream name, a message that does not
    ///   [validate](NewMessage::validate)): it gets the same error, in its
    ///   turn, and is never sent.
    /// - **The connection breaks** (closed, reset, no answer for the read
    ///   timeout): each write sent on it and not answered gets
    ///   `Err(Error::Transport { kind: ConnectionReset | Timeout, .. })` —
    ///   its outcome is unknown, it may or may not be stored (resending it
    ///   with the same id is safe). Writes not sent yet go out on a new
    ///   connection.
    /// - **The server answers with `Connection: close`** (or HTTP/1.0
    ///   without keep-alive): it processed nothing sent after that request
    ///   (RFC 9112 §9.6), so the writes after it are sent again on a new
    ///   connection, without an error.
    /// - **Connecting fails** (refused, timeout, DNS, TLS — or the server
    ///   closes a new connection before the first request went out): that
    ///   write and every write queued at that moment get the error; the
    ///   next write tries again.
    /// - **The server does not pipeline**: when it closes the connection
    ///   after its first answer while more requests were outstanding, on
    ///   two connections in a row; when it answers the first request and
    ///   then nothing for the stall timeout (10 smoothed round trips,
    ///   between 1 s and the read timeout; the read timeout before a round
    ///   trip was measured) while others wait — those get
    ///   unknown-outcome `Timeout` errors —; or when it answers with
    ///   HTTP/1.0: every pipeline of the store (and of its clones) sends one
    ///   write at a time from then on, on keep-alive connections.
    ///   [`HttpStore::pipelining`] and [`WritePipeline::fallback`] say
    ///   why, and the `eventodb_kit::store::http` log target says so once
    ///   at warn.
    ///
    /// There is never more than one connection per pipeline, and never a
    /// retry loop: a connection is opened only for writes waiting to go.
    fn open_pipeline(&self) -> Result<Option<WritePipeline>> {
        self.new_pipeline().map(Some)
    }

    fn get_stream(&self, stream: &str, query: &StreamQuery) -> Result<Vec<Message>> {
        let body = self.rpc_body("stream.get", rpc::stream_get_args(stream, query))?;
        undecodable::decode_message_list("stream.get", &body, Some(stream))
    }

    fn last_message(&self, stream: &str, message_type: Option<&str>) -> Result<Option<Message>> {
        let body = self.rpc_body("stream.last", rpc::stream_last_args(stream, message_type))?;
        undecodable::decode_last_message("stream.last", &body, stream)
    }

    fn stream_version(&self, stream: &str) -> Result<Option<i64>> {
        let v = self.rpc("stream.version", vec![stream.into()])?;
        rpc::decode_version(&v)
    }

    fn get_category(&self, category: &str, query: &CategoryQuery) -> Result<Vec<Message>> {
        let body = self.rpc_body("category.get", rpc::category_get_args(category, query))?;
        undecodable::decode_message_list("category.get", &body, None)
    }

    fn list_streams(&self, query: &StreamListQuery) -> Result<Vec<StreamInfo>> {
        let v = self.rpc("ns.streams", rpc::ns_streams_args(query))?;
        rpc::decode_stream_infos(&v)
    }

    fn list_categories(&self) -> Result<Vec<CategoryInfo>> {
        let v = self.rpc("ns.categories", vec![])?;
        rpc::decode_category_infos(&v)
    }

    fn subscribe(&self, target: &SubscribeTarget) -> Result<Subscription> {
        Ok(self.subscribe_sse(target)?.into_subscription())
    }

    /// Shares one `all=true` SSE connection among all watchers of this store
    /// (see [`HttpStore::watch_status`]). The first call starts it and waits
    /// for its first connection attempt; while it is down, watchers get no
    /// pokes and keep their channel.
    fn watch_category(&self, category: &str) -> Result<Subscription> {
        self.with_hub(|hub| hub.watch(category))
    }
}
