//! The request side of [`HttpStore`](super::HttpStore): one shared ureq agent
//! and `/rpc` calls (their failures are mapped in [`super::failure`]).

use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use ureq::Agent;

use super::failure::{answer_error, io_transport_error, transport_error};
use super::target::BaseUrl;
use crate::error::{Error, Result, TransportErrorKind};
use crate::tls::TlsSettings;
use crate::token::Token;
use crate::wire::{rpc, undecodable};

/// What a failed call was doing, for errors that need it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CallContext<'a> {
    /// The stream written (for [`Error::Conflict`]).
    pub(crate) stream: Option<&'a str>,
    /// The expected version sent (for [`Error::Conflict`]).
    pub(crate) expected_version: Option<i64>,
    /// The message id sent (for [`Error::DuplicateId`]).
    pub(crate) id: Option<&'a str>,
}

/// The `User-Agent` of every request.
pub(crate) const USER_AGENT: &str = concat!("eventodb-kit/", env!("CARGO_PKG_VERSION"));

/// Timeouts, pool size and TLS of the store's connections.
#[derive(Clone)]
pub(crate) struct AgentSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) max_idle_connections: usize,
    /// The ureq side of the store's TLS settings (RPC calls, liveness
    /// probes): built once, when the store is built; clones share its
    /// roots and client certificate (`Arc`s).
    ureq_tls: ureq::tls::TlsConfig,
    /// The same trust as `tls` for the connections the kit opens itself
    /// (pipelined writes, SSE subscriptions, the watch hub): built once,
    /// from `tls`, when the store is built.
    rustls: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for AgentSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the TLS configurations: every root certificate would show.
        f.debug_struct("AgentSettings")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_idle_connections", &self.max_idle_connections)
            .finish_non_exhaustive()
    }
}

impl AgentSettings {
    /// The settings of a store: its ureq and rustls TLS configurations
    /// built from `tls`, once (the one place they come from).
    pub(crate) fn new(
        connect_timeout: Duration,
        read_timeout: Duration,
        max_idle_connections: usize,
        tls: TlsSettings,
    ) -> Result<AgentSettings> {
        let rustls = tls.rustls_client_config()?;
        Ok(AgentSettings {
            connect_timeout,
            read_timeout,
            max_idle_connections,
            ureq_tls: tls.ureq_config(),
            rustls,
        })
    }

    /// The TLS configuration of the store's own connections (pipelined
    /// writes, SSE subscriptions, the watch hub).
    pub(crate) fn rustls_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.rustls)
    }

    fn config(&self) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
        Agent::config_builder()
            .http_status_as_error(false)
            .no_delay(true)
            .timeout_connect(Some(self.connect_timeout))
            .tls_config(self.ureq_tls.clone())
            .user_agent(USER_AGENT)
    }

    /// The agent for RPC calls: reads time out, connections are reused.
    fn rpc_agent(&self) -> Agent {
        self.config()
            .timeout_per_read(Some(self.read_timeout))
            .timeout_per_write(Some(self.read_timeout))
            .max_idle_connections(self.max_idle_connections)
            .max_idle_connections_per_host(self.max_idle_connections)
            .build()
            .new_agent()
    }

    /// A fresh agent for one liveness probe of an SSE connection: reads
    /// time out, no pooling; shutting it down ends the probe at once.
    pub(crate) fn probe_agent(&self) -> Agent {
        self.config()
            .timeout_per_read(Some(self.read_timeout))
            .timeout_per_write(Some(self.read_timeout))
            .max_idle_connections(0)
            .build()
            .new_agent()
    }
}

/// Base URL, credentials and the shared agent.
pub(crate) struct Client {
    base: String,
    /// `base` parsed for the store's own connections (pipelined writes,
    /// SSE): parsed once, shared with `with_token` clients.
    url: Arc<BaseUrl>,
    rpc_url: String,
    authorization: String,
    token: Token,
    agent: Agent,
    settings: AgentSettings,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.base)
            .field("namespace", &self.token.namespace())
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn new(url: &str, token: Token, settings: AgentSettings) -> Result<Client> {
        let base = url.trim_end_matches('/').to_string();
        let valid = ["http://", "https://"]
            .iter()
            .any(|scheme| base.len() > scheme.len() && base.starts_with(scheme));
        if !valid {
            return Err(Error::invalid(format!(
                "EventoDB URL must start with http:// or https:// and name a host, got {base:?}"
            )));
        }
        // What the store's own connections need of the URL, checked now.
        let url = BaseUrl::parse(&base).map_err(|e| match e {
            Error::Transport { message, .. } => Error::invalid(message),
            other => other,
        })?;
        Ok(Client {
            url: Arc::new(url),
            rpc_url: format!("{base}/rpc"),
            authorization: format!("Bearer {}", token.expose_secret()),
            agent: settings.rpc_agent(),
            base,
            token,
            settings,
        })
    }

    /// The same server and settings with another token (sharing the agent
    /// and its connection pool).
    pub(crate) fn with_token(&self, token: Token) -> Client {
        Client {
            authorization: format!("Bearer {}", token.expose_secret()),
            token,
            agent: self.agent.clone(),
            base: self.base.clone(),
            url: Arc::clone(&self.url),
            rpc_url: self.rpc_url.clone(),
            settings: self.settings.clone(),
        }
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The base URL's parts, for the store's own connections.
    pub(crate) fn url(&self) -> &Arc<BaseUrl> {
        &self.url
    }

    pub(crate) fn token(&self) -> &Token {
        &self.token
    }

    pub(crate) fn authorization(&self) -> &str {
        &self.authorization
    }

    pub(crate) fn settings(&self) -> &AgentSettings {
        &self.settings
    }

    /// Calls `method` with `args` and returns the decoded result.
    pub(crate) fn rpc(
        &self,
        method: &str,
        args: Vec<Value>,
        ctx: CallContext<'_>,
    ) -> Result<Value> {
        post_rpc(
            &self.agent,
            &self.rpc_url,
            &self.authorization,
            method,
            args,
            ctx,
        )
    }

    /// Calls `method` with `args` and returns the body of a 2xx answer
    /// undecoded (for answers that need more care than one JSON value).
    pub(crate) fn rpc_body(
        &self,
        method: &str,
        args: Vec<Value>,
        ctx: CallContext<'_>,
    ) -> Result<Vec<u8>> {
        let (status, wait, bytes) = send_rpc(
            &self.agent,
            &self.rpc_url,
            &self.authorization,
            method,
            args,
        )?;
        if !(200..300).contains(&status) {
            return Err(answer_error(status, &bytes, wait, ctx));
        }
        Ok(bytes)
    }

    /// `{base}/rpc`.
    pub(crate) fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    /// `GET {base}{path}` without credentials (`/health`, `/version`).
    pub(crate) fn get_public(&self, path: &str) -> Result<Value> {
        let response = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let wait = retry_after(&response);
        let bytes = read_body(response)?;
        if !(200..300).contains(&status) {
            return Err(answer_error(status, &bytes, wait, CallContext::default()));
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Transport {
            kind: TransportErrorKind::Protocol,
            message: format!("the answer of {path} is not JSON: {e}"),
        })
    }

    /// `POST {base}{path_and_query}` with `body`, returning status,
    /// `Retry-After` and body.
    pub(crate) fn post_raw(
        &self,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<(u16, Option<Duration>, Vec<u8>)> {
        let response = self
            .agent
            .post(format!("{}{path_and_query}", self.base))
            .header("Authorization", &self.authorization)
            .header("Content-Type", "application/x-ndjson")
            .send(body)
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let wait = retry_after(&response);
        Ok((status, wait, read_body(response)?))
    }
}

/// `POST rpc_url` of `method` with `args` on `agent`, decoded.
pub(crate) fn post_rpc(
    agent: &Agent,
    rpc_url: &str,
    authorization: &str,
    method: &str,
    args: Vec<Value>,
    ctx: CallContext<'_>,
) -> Result<Value> {
    let (status, wait, bytes) = send_rpc(agent, rpc_url, authorization, method, args)?;
    decode_answer(method, status, &bytes, wait, ctx)
}

/// `POST rpc_url` of `method` with `args` on `agent`: status,
/// `Retry-After` and body.
fn send_rpc(
    agent: &Agent,
    rpc_url: &str,
    authorization: &str,
    method: &str,
    args: Vec<Value>,
) -> Result<(u16, Option<Duration>, Vec<u8>)> {
    let body = rpc::request(method, args);
    let response = agent
        .post(rpc_url)
        .header("Authorization", authorization)
        .header("Content-Type", "application/json")
        .send(&body[..])
        .map_err(transport_error)?;
    let status = response.status().as_u16();
    let wait = retry_after(&response);
    Ok((status, wait, read_body(response)?))
}

/// The `Retry-After` of a ureq response, if any.
pub(crate) fn retry_after(response: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    super::retry_after::from_headers(headers, std::time::SystemTime::now())
}

/// Reads a whole response body (no size limit: a `category.get` of 10 000
/// large messages is legitimately big).
pub(crate) fn read_body(response: ureq::http::Response<ureq::Body>) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_reader()
        .read_to_end(&mut bytes)
        .map_err(|e| io_transport_error(&e))?;
    Ok(bytes)
}

/// The result of an RPC answer with `status`, `body` and its
/// `Retry-After` (the one mapping of ureq calls and pipelined writes).
pub(crate) fn decode_answer(
    method: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    ctx: CallContext<'_>,
) -> Result<Value> {
    if !(200..300).contains(&status) {
        return Err(answer_error(status, body, retry_after, ctx));
    }
    serde_json::from_slice(body).map_err(|e| undecodable::not_json(method, &e))
}
