//! [`HttpStoreBuilder`]: the settings of an [`HttpStore`] — timeouts, the
//! SSE reconnect and silence rules, and the TLS settings every connection
//! of the store uses.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::client::{AgentSettings, Client};
use super::pipelining::PipeliningState;
use super::sse::liveness::Silence;
use super::HttpStore;
use crate::error::Result;
use crate::retry::RetryPolicy;
use crate::tls::TlsSettings;
use crate::token::Token;

/// Default of [`HttpStoreBuilder::silence_timeout`].
const SILENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Configures an [`HttpStore`]; see [`HttpStore::builder`].
#[derive(Clone)]
pub struct HttpStoreBuilder {
    url: String,
    token: String,
    connect_timeout: Duration,
    read_timeout: Duration,
    max_idle_connections: usize,
    reconnect: RetryPolicy,
    silence: Silence,
    tls: TlsSettings,
}

impl fmt::Debug for HttpStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStoreBuilder")
            .field("url", &self.url)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_idle_connections", &self.max_idle_connections)
            .field("reconnect", &self.reconnect)
            .field("silence_timeout", &self.silence.timeout)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl HttpStoreBuilder {
    pub(super) fn new(url: &str, token: &str) -> Self {
        HttpStoreBuilder {
            url: url.to_string(),
            token: token.to_string(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            max_idle_connections: 32,
            reconnect: RetryPolicy::new()
                .initial_delay(Duration::from_secs(1))
                .max_delay(Duration::from_secs(30)),
            silence: Silence::new(SILENCE_TIMEOUT),
            tls: TlsSettings::new(),
        }
    }

    /// Longest wait for a TCP (and TLS) connection. Defaults to 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Longest wait for each read or write of a request (not of an SSE
    /// stream, which may be silent for ever). Defaults to 30 s.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Idle connections kept for reuse. Defaults to 32.
    pub fn max_idle_connections(mut self, n: usize) -> Self {
        self.max_idle_connections = n;
        self
    }

    /// Backoff between SSE reconnection attempts (subscriptions and the
    /// watch hub) while they keep failing. After an established connection
    /// breaks, the first attempt goes at once (once: a connection that
    /// breaks again before the policy's first delay has passed counts as a
    /// failure). Defaults to 1 s doubling to 30 s, ±20 % jitter, forever
    /// (attempt and age limits of the policy are ignored).
    pub fn reconnect_policy(mut self, policy: RetryPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// How long an SSE connection (a subscription or the watch hub) may be
    /// silent before the store checks whether it is quiet or dead (see
    /// "Connections that go quiet" on [`HttpStore`]); also sets its TCP
    /// keepalive (first probe after half of it). A quiet, healthy connection
    /// costs one small request per period and is never reconnected; a dead
    /// one is noticed within about this time once something is written
    /// (plus a grace of a quarter of it, at most 3 s). Defaults to 30 s.
    pub fn silence_timeout(mut self, timeout: Duration) -> Self {
        self.silence = Silence::new(timeout.max(Duration::from_millis(1)));
        self
    }

    /// The certificate authorities to trust and the client certificate to
    /// present on `https://` connections (see [`TlsSettings`]). Defaults to
    /// [`TlsSettings::new`]: the built-in web roots, no client certificate.
    pub fn tls(mut self, tls: TlsSettings) -> Self {
        self.tls = tls;
        self
    }

    /// Checks the URL and the token and builds the store (no request is sent).
    ///
    /// Errors: [`Error::InvalidInput`](crate::Error::InvalidInput) for a URL
    /// that is not `http(s)://host…`, a token that does not parse, or TLS
    /// settings that trust no certificate authority.
    pub fn build(self) -> Result<HttpStore> {
        let token = Token::parse(&self.token)?;
        let settings = AgentSettings::new(
            self.connect_timeout,
            self.read_timeout,
            self.max_idle_connections,
            self.tls,
        )?;
        let client = Client::new(&self.url, token, settings)?;
        let pipelining = Arc::new(PipeliningState::new(client.base()));
        Ok(HttpStore::from_client(
            client,
            self.reconnect,
            self.silence,
            pipelining,
        ))
    }
}
