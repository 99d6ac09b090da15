//! The one error type of the kit.

use std::fmt;
use std::time::Duration;

/// A `Result` whose error defaults to the kit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the kit, in variants a caller can act on.
///
/// Use [`Error::is_transient`] to decide whether retrying the same operation
/// later can succeed. Tokens never appear in any variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An `expectedVersion` write found the stream at another version.
    ///
    /// `actual` is `None` when the store did not say (EventoDB's Postgres
    /// backend reports conflicts without details).
    #[error("version conflict on stream {stream:?}: expected version {expected}, stream is at version {}", fmt_actual(.actual))]
    Conflict {
        /// The stream that was written.
        stream: String,
        /// The version the writer expected.
        expected: i64,
        /// The version the stream was at, when known (`-1` = empty stream).
        actual: Option<i64>,
    },
    /// A message with this id already exists in the namespace.
    ///
    /// The outbox treats this as "already delivered": a resend after an
    /// ambiguous failure finds the first attempt's message in the store.
    #[error("message id {id:?} already exists in the store")]
    DuplicateId {
        /// The id that was written twice.
        id: String,
    },
    /// The thing asked for does not exist (namespace, dead letter, outbox row, …).
    #[error("not found: {0}")]
    NotFound(String),
    /// The store refused the credentials (HTTP 401 or 403).
    #[error("not authorized ({code}): {message}")]
    Auth {
        /// HTTP status: 401 (missing or malformed token) or 403 (token not valid for the namespace).
        status: u16,
        /// EventoDB error code, e.g. `AUTH_UNAUTHORIZED`.
        code: String,
        /// EventoDB's message.
        message: String,
    },
    /// The caller passed something the kit or the store cannot accept.
    ///
    /// The text says what is wrong, in EventoDB's words where EventoDB has them
    /// (e.g. `message.data must be an object`).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The store could not be reached or the connection failed mid-request.
    #[error("transport error ({kind}): {message}")]
    Transport {
        /// What kind of failure.
        kind: TransportErrorKind,
        /// Human-readable detail (never contains the token).
        message: String,
    },
    /// The store answered with an error that has no more specific variant.
    #[error("store error {code} (HTTP {status}): {message}")]
    Store {
        /// HTTP status (500 for embedded backend errors).
        status: u16,
        /// EventoDB error code, e.g. `BACKEND_ERROR`, `NAMESPACE_EXISTS`.
        code: String,
        /// EventoDB's message.
        message: String,
    },
    /// The store (or a proxy in front of it) cannot serve now and says so:
    /// HTTP 503 (unavailable, overloaded) or 429 (too many requests, a rate
    /// limit), with how long to wait when it said (`Retry-After`).
    ///
    /// Work against the store pauses ([`Disposition::Pause`](crate::Disposition::Pause)
    /// with [`PauseReason::Unreachable`](crate::PauseReason::Unreachable));
    /// the outbox sender does not try again before `retry_after` (at most
    /// five minutes).
    #[error("store unavailable (HTTP {status}{}): {message}", fmt_retry_after(.retry_after))]
    Unavailable {
        /// HTTP status: 503 or 429.
        status: u16,
        /// How long the store asked to wait (`Retry-After`, given in
        /// seconds or as an HTTP date), if it did.
        retry_after: Option<Duration>,
        /// The store's message, or the start of the answer's body.
        message: String,
    },
    /// The local SQLite database failed.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// No database connection could be taken from the pool in time.
    #[error("connection pool error: {0}")]
    Pool(#[from] r2d2::Error),
    /// A JSON value could not be encoded or decoded.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// An I/O error outside the database (files, sockets of the server).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A wait ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The component was shut down while the call was in progress.
    #[error("shut down")]
    Shutdown,
    /// A stored message cannot be decoded: its data or metadata is not JSON
    /// the kit can read back (nested deeper than 128 levels, say — written
    /// before the stores refused such data, or by other means).
    ///
    /// A read returns the messages before it; a read that starts at it fails
    /// with this error, which names it, so a reader can deal with it and go
    /// on after it — on the embedded store and over HTTP alike (from
    /// EventoDB, which stores any depth, and from `serve`, which answers
    /// such a read with a `MESSAGE_UNDECODABLE` error naming the message). A consumer treats it as a failure of that message
    /// (retries, then dead-letters it or halts, by its failure policy).
    #[error("message {id} (global position {global_position}, stream {stream:?}) cannot be decoded: {reason}")]
    Undecodable {
        /// The message's id.
        id: String,
        /// Its stream.
        stream: String,
        /// Its type.
        message_type: String,
        /// Its position in the stream.
        position: i64,
        /// Its global position.
        global_position: i64,
        /// Why it cannot be decoded.
        reason: String,
    },
    /// A consumer's (or a replay's) handler failed on a message and the kit
    /// stopped there.
    #[error(
        "handler failed on message {message_id} (global position {global_position}): {message}"
    )]
    Handler {
        /// The message's id.
        message_id: String,
        /// The message's global position.
        global_position: i64,
        /// The handler's error (or panic message).
        message: String,
    },
}

fn fmt_retry_after(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(", retry after {}s", d.as_secs_f64().ceil() as u64),
        None => String::new(),
    }
}

fn fmt_actual(actual: &Option<i64>) -> String {
    match actual {
        Some(v) => v.to_string(),
        None => "unknown".to_string(),
    }
}

/// The kinds of [`Error::Transport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// Nothing listened at the address.
    ConnectionRefused,
    /// The connection broke while the request was in flight; the request may
    /// or may not have been processed.
    ConnectionReset,
    /// Connecting or reading took longer than configured.
    Timeout,
    /// The host name could not be resolved.
    Dns,
    /// TLS negotiation failed.
    Tls,
    /// The peer spoke something that is not the expected HTTP/EventoDB dialect.
    Protocol,
    /// The URL or configuration is unusable (this one is not transient).
    InvalidUrl,
    /// Any other I/O failure.
    Other,
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::ConnectionRefused => "connection refused",
            Self::ConnectionReset => "connection reset",
            Self::Timeout => "timeout",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Protocol => "protocol",
            Self::InvalidUrl => "invalid url",
            Self::Other => "other",
        };
        f.write_str(s)
    }
}

impl Error {
    /// Whether retrying the same operation later can succeed: every error
    /// whose [`disposition`](Error::disposition) is not
    /// [`DeadLetter`](crate::Disposition::DeadLetter).
    ///
    /// Transient: the link or the store as a whole (transport failures,
    /// time-outs, 408, 429, 502–504, 401/403 — a token can be fixed), other
    /// 5xx, a busy, full or failing database, pool time-outs, a shutdown.
    /// Not transient: invalid input, conflicts, duplicate ids, not found,
    /// JSON that does not decode, a constraint violation.
    ///
    /// ```
    /// use eventodb_kit::Error;
    /// assert!(!Error::InvalidInput("x".into()).is_transient());
    /// assert!(Error::Timeout("read".into()).is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        !matches!(self.disposition(), crate::Disposition::DeadLetter)
    }

    /// How long the store asked to wait before the next request
    /// (`Retry-After` of a 429 or 503 answer: [`Error::Unavailable`]), if
    /// it did.
    ///
    /// ```
    /// use std::time::Duration;
    /// use eventodb_kit::Error;
    /// let busy = Error::Unavailable { status: 429, retry_after: Some(Duration::from_secs(2)), message: "slow down".into() };
    /// assert_eq!(busy.retry_after(), Some(Duration::from_secs(2)));
    /// assert_eq!(busy.to_string(), "store unavailable (HTTP 429, retry after 2s): slow down");
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    pub(crate) fn backend(message: impl Into<String>) -> Self {
        Error::Store {
            status: 500,
            code: "BACKEND_ERROR".to_string(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_classification() {
        let refused = Error::Transport {
            kind: TransportErrorKind::ConnectionRefused,
            message: "x".into(),
        };
        assert!(refused.is_transient());
        let bad_url = Error::Transport {
            kind: TransportErrorKind::InvalidUrl,
            message: "x".into(),
        };
        assert!(bad_url.is_transient(), "a configuration can be fixed");
        assert!(Error::backend("boom").is_transient());
        let conflict = Error::Conflict {
            stream: "a-1".into(),
            expected: 1,
            actual: Some(2),
        };
        assert!(!conflict.is_transient());
        assert_eq!(
            conflict.to_string(),
            "version conflict on stream \"a-1\": expected version 1, stream is at version 2"
        );
        assert!(!Error::DuplicateId { id: "x".into() }.is_transient());
    }
}
