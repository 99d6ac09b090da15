//! `GET /metrics`: the server's own figures in the Prometheus text format —
//! an addition to EventoDB's surface (EventoDB answers 404 there).
//!
//! * `eventodb_kit_server_requests_total{path,method,status}` — requests by
//!   endpoint (`/rpc`, `/subscribe`, `/import`, `/health`, `/version`,
//!   `/metrics`, `other`), HTTP method and status;
//! * `eventodb_kit_server_rpc_calls_total{method,status}` — `/rpc` calls by
//!   RPC method (`unknown` for names EventoDB does not have) and status;
//! * `eventodb_kit_server_request_duration_seconds{path}` — a summary
//!   (0.5/0.95/0.99) of the time from a parsed request to its answer
//!   (SSE streams are counted when they start, not timed);
//! * `eventodb_kit_server_pipelined_transactions_total` and
//!   `eventodb_kit_server_pipelined_writes_total` — transactions that
//!   committed pipelined `stream.write` calls together, and the calls in them;
//! * `eventodb_kit_server_connections_closed_total{reason}` — connections
//!   the server closed to protect itself: `head_timeout` (no complete request
//!   head in time), `evicted` (the slot went to a new connection), `refused`
//!   (503, every slot busy);
//! * gauges: open connections, SSE subscribers, namespaces, each
//!   namespace's newest global position, uptime, and `…_info{version}`.
//!
//! It needs the `default` namespace's token (as a bearer token or
//! `?token=`), as every other endpoint needs a token, because it names every
//! namespace; test mode relaxes that as it does elsewhere, and
//! [`ServerConfig::public_metrics`](super::ServerConfig::public_metrics)
//! opens it for scrapers without credentials.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Shared;
use crate::metrics::prometheus::{Exposition, Kind};
use crate::metrics::Histogram;

/// The endpoints requests are counted by (anything else is `other`).
const PATHS: [&str; 7] = [
    "/rpc",
    "/subscribe",
    "/import",
    "/health",
    "/version",
    "/metrics",
    "other",
];

/// EventoDB's RPC methods (anything else is `unknown`).
const RPC_METHODS: [&str; 13] = [
    "stream.write",
    "stream.get",
    "stream.last",
    "stream.version",
    "category.get",
    "ns.create",
    "ns.delete",
    "ns.list",
    "ns.info",
    "ns.streams",
    "ns.categories",
    "sys.version",
    "sys.health",
];

const HTTP_METHODS: [&str; 7] = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"];

fn path_index(path: &str) -> usize {
    PATHS
        .iter()
        .position(|p| *p == path)
        .unwrap_or(PATHS.len() - 1)
}

/// The label of an RPC method name.
pub(crate) fn rpc_method_label(method: &str) -> &'static str {
    RPC_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("unknown")
}

fn http_method_label(method: &str) -> &'static str {
    HTTP_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// The server's counters, shared by its connection threads.
pub(crate) struct ServerMetrics {
    started: Instant,
    /// (path index, HTTP method, status) → requests.
    requests: Mutex<BTreeMap<(usize, &'static str, u16), u64>>,
    /// (RPC method, status) → calls.
    rpc: Mutex<BTreeMap<(&'static str, u16), u64>>,
    durations: Vec<Histogram>,
    /// Transactions of pipelined writes, and the writes in them.
    write_batches: AtomicU64,
    batched_writes: AtomicU64,
    /// Connections closed, by [`Closed`] reason.
    closed: [AtomicU64; 3],
}

/// Why the server closed a connection on its own.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Closed {
    /// No complete request head before the deadline.
    HeadTimeout = 0,
    /// Its slot went to a new connection while it waited for a request.
    Evicted = 1,
    /// Answered 503: every slot was busy inside a request.
    Refused = 2,
}

const CLOSED_REASONS: [&str; 3] = ["head_timeout", "evicted", "refused"];

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics {
            started: Instant::now(),
            requests: Mutex::default(),
            rpc: Mutex::default(),
            durations: PATHS.iter().map(|_| Histogram::default()).collect(),
            write_batches: AtomicU64::new(0),
            batched_writes: AtomicU64::new(0),
            closed: Default::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ServerMetrics {
    /// Counts a request to `path` answered with `status` after `took`
    /// (`None` for a stream, which is not timed).
    pub(crate) fn request(&self, path: &str, method: &str, status: u16, took: Option<Duration>) {
        let index = path_index(path);
        *lock(&self.requests)
            .entry((index, http_method_label(method), status))
            .or_default() += 1;
        if let Some(took) = took {
            self.durations[index].record(took);
        }
    }

    /// Counts an `/rpc` call.
    pub(crate) fn rpc_call(&self, method: &'static str, status: u16) {
        *lock(&self.rpc).entry((method, status)).or_default() += 1;
    }

    /// Counts a transaction of `writes` pipelined `stream.write` calls.
    pub(crate) fn write_batch(&self, writes: usize) {
        self.write_batches.fetch_add(1, Ordering::Relaxed);
        self.batched_writes
            .fetch_add(writes as u64, Ordering::Relaxed);
    }

    /// Transactions of pipelined writes so far, and the writes in them.
    #[cfg(test)]
    pub(crate) fn write_batches(&self) -> (u64, u64) {
        (
            self.write_batches.load(Ordering::Relaxed),
            self.batched_writes.load(Ordering::Relaxed),
        )
    }

    /// Counts a connection the server closed on its own.
    pub(crate) fn closed(&self, reason: Closed) {
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition of everything, with gauges read now.
    pub(crate) fn render(&self, shared: &Shared) -> String {
        let mut e = Exposition::new();
        let name = "eventodb_kit_server_info";
        e.family(
            name,
            Kind::Gauge,
            "The EventoDB protocol version served (always 1).",
        )
        .sample(name, &[("version", &shared.version)], 1.0);
        let name = "eventodb_kit_server_uptime_seconds";
        e.family(name, Kind::Gauge, "Seconds since the server started.")
            .sample(name, &[], self.started.elapsed().as_secs_f64());

        let name = "eventodb_kit_server_requests_total";
        e.family(
            name,
            Kind::Counter,
            "Requests answered, by endpoint, HTTP method and status.",
        );
        for ((path, method, status), n) in lock(&self.requests).iter() {
            let status = status.to_string();
            e.sample(
                name,
                &[
                    ("path", PATHS[*path]),
                    ("method", method),
                    ("status", &status),
                ],
                *n as f64,
            );
        }
        let name = "eventodb_kit_server_rpc_calls_total";
        e.family(name, Kind::Counter, "/rpc calls by RPC method and status.");
        for ((method, status), n) in lock(&self.rpc).iter() {
            let status = status.to_string();
            e.sample(name, &[("method", method), ("status", &status)], *n as f64);
        }
        let name = "eventodb_kit_server_request_duration_seconds";
        e.family(
            name,
            Kind::Summary,
            "Time from a parsed request to its answer, by endpoint (streams are not timed).",
        );
        for (i, path) in PATHS.iter().enumerate() {
            let h = &self.durations[i];
            if h.count() > 0 {
                e.summary(name, &[("path", path)], &h.summary());
            }
        }

        let name = "eventodb_kit_server_pipelined_transactions_total";
        e.family(
            name,
            Kind::Counter,
            "Transactions that committed pipelined stream.write calls together.",
        )
        .sample(name, &[], self.write_batches.load(Ordering::Relaxed) as f64);
        let name = "eventodb_kit_server_pipelined_writes_total";
        e.family(
            name,
            Kind::Counter,
            "stream.write calls committed together with the calls pipelined behind or before them.",
        )
        .sample(
            name,
            &[],
            self.batched_writes.load(Ordering::Relaxed) as f64,
        );
        let name = "eventodb_kit_server_connections_closed_total";
        e.family(
            name,
            Kind::Counter,
            "Connections the server closed on its own, by reason (head_timeout, evicted, refused).",
        );
        for (reason, n) in CLOSED_REASONS.iter().zip(&self.closed) {
            e.sample(
                name,
                &[("reason", reason)],
                n.load(Ordering::Relaxed) as f64,
            );
        }

        let name = "eventodb_kit_server_open_connections";
        e.family(
            name,
            Kind::Gauge,
            "Open client connections (SSE streams included).",
        )
        .sample(name, &[], shared.connections.len() as f64);
        let name = "eventodb_kit_server_sse_subscribers";
        e.family(name, Kind::Gauge, "Live /subscribe streams.")
            .sample(name, &[], shared.store.subscriber_count() as f64);
        match shared.store.namespace_heads() {
            Ok(heads) => {
                let name = "eventodb_kit_server_namespaces";
                e.family(name, Kind::Gauge, "Registered namespaces.")
                    .sample(name, &[], heads.len() as f64);
                let name = "eventodb_kit_server_namespace_head_position";
                e.family(
                    name,
                    Kind::Gauge,
                    "Newest global position of each namespace (its message count, positions being gapless).",
                );
                for (namespace, head) in &heads {
                    e.sample(name, &[("namespace", namespace)], *head as f64);
                }
            }
            Err(err) => log::warn!("/metrics could not read the namespaces: {err}"),
        }
        e.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(rpc_method_label("stream.write"), "stream.write");
        assert_eq!(rpc_method_label("drop.tables"), "unknown");
        assert_eq!(http_method_label("BREW"), "other");
        assert_eq!(PATHS[path_index("/nope")], "other");
        assert_eq!(PATHS[path_index("/rpc")], "/rpc");
    }
}
