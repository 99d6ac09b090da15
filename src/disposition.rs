//! What to do about an error, decided by what it is about — the one
//! classification the sender, the consumers and the command-line tool use.
//!
//! | the error is about | examples | [`Disposition`] |
//! | --- | --- | --- |
//! | the link or the store as a whole | connection refused, reset or timed out, DNS, TLS, HTTP 408, 502, 504, 429 and 503 ([`Error::Unavailable`]: the outbox sender waits for its `Retry-After`), other 4xx such as 404 (not an EventoDB there) | [`Pause`](Disposition::Pause)`(`[`Unreachable`](PauseReason::Unreachable)`)` |
//! | the credentials | HTTP 401, 403, the namespace is gone | [`Pause`](Disposition::Pause)`(`[`AuthRefused`](PauseReason::AuthRefused)`)` |
//! | this message, but maybe not next time | other 5xx, a busy or failing database, a store shutting down | [`Retry`](Disposition::Retry) |
//! | this message, for good | invalid input (400), too large (413), a malformed custom id (EventoDB's 500 `invalid UUID format`), a version conflict on an expected version the application set, an id taken by another message, JSON that does not decode, a stored message that cannot be decoded | [`DeadLetter`](Disposition::DeadLetter) |
//!
//! A pause never uses up a message's attempts and never dead-letters
//! anything: whoever pauses checks the store on a short schedule and goes
//! on when it answers again.
//!
//! ```
//! use eventodb_kit::{Disposition, Error, PauseReason};
//!
//! let refused = Error::Auth { status: 403, code: "AUTH_UNAUTHORIZED".into(), message: "no".into() };
//! assert_eq!(refused.disposition(), Disposition::Pause(PauseReason::AuthRefused));
//! assert_eq!(Error::InvalidInput("message.data must be an object".into()).disposition(), Disposition::DeadLetter);
//! ```

use std::fmt;

use crate::error::{Error, TransportErrorKind};

/// What to do about an [`Error`]; see the [module docs](self) for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Disposition {
    /// About the link, the credentials or the store as a whole: every
    /// message would fail alike. Pause all work against the store, check on
    /// a schedule whether it is back, never dead-letter.
    Pause(PauseReason),
    /// About this message, but maybe not next time: retry it (and hold
    /// back what must come after it) with backoff.
    Retry,
    /// About this message, for good: dead-letter it and go on.
    DeadLetter,
}

/// Why work against a store is paused.
///
/// Serializes (metrics, `eventodb-kit status --json`) as its
/// [`label`](PauseReason::label): `"unreachable"`, `"auth_refused"`,
/// `"tls_refused"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PauseReason {
    /// The store cannot be reached, or says it cannot serve right now.
    Unreachable,
    /// The store refused the token (401, 403), or its namespace is gone.
    AuthRefused,
    /// The TLS handshake failed: a certificate was refused, by either side.
    TlsRefused,
}

impl PauseReason {
    /// A stable name for the reason: `unreachable`, `auth_refused`,
    /// `tls_refused` — what the sender's lease row stores, what JSON shows
    /// and the `reason` label of the Prometheus series.
    ///
    /// ```
    /// use eventodb_kit::PauseReason;
    /// assert_eq!(PauseReason::AuthRefused.label(), "auth_refused");
    /// ```
    pub fn label(self) -> &'static str {
        match self {
            PauseReason::Unreachable => "unreachable",
            PauseReason::AuthRefused => "auth_refused",
            PauseReason::TlsRefused => "tls_refused",
        }
    }

    /// Every reason, in the order of the Prometheus series.
    pub(crate) const ALL: [PauseReason; 3] = [
        PauseReason::Unreachable,
        PauseReason::AuthRefused,
        PauseReason::TlsRefused,
    ];

    /// The reason named `label` (see [`label`](PauseReason::label)).
    pub(crate) fn from_label(label: &str) -> Option<PauseReason> {
        Self::ALL.into_iter().find(|r| r.label() == label)
    }
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PauseReason::Unreachable => "store unreachable",
            PauseReason::AuthRefused => "token refused",
            PauseReason::TlsRefused => "TLS certificate refused",
        })
    }
}

impl Error {
    /// What to do about this error (see [`disposition`](crate::disposition)).
    pub fn disposition(&self) -> Disposition {
        use Disposition::*;
        use PauseReason::*;
        match self {
            Error::Transport { kind, .. } => match kind {
                TransportErrorKind::Tls => Pause(TlsRefused),
                _ => Pause(Unreachable),
            },
            Error::Timeout(_) | Error::Io(_) => Pause(Unreachable),
            Error::Auth { .. } => Pause(AuthRefused),
            Error::Store {
                status, message, ..
            } => match status {
                401 | 403 => Pause(AuthRefused),
                // EventoDB's test mode, for a token of a namespace that is gone.
                500 if message.contains("namespace not found") => Pause(AuthRefused),
                // EventoDB refuses a malformed custom id with a 500: no retry
                // can make the id well-formed.
                500 if message.contains("invalid UUID format") => DeadLetter,
                400 | 409 | 413 | 414 | 422 => DeadLetter,
                502..=504 => Pause(Unreachable),
                500..=599 => Retry,
                // 404, 405, 408, 429 and the like: something other than the
                // store answers, or it wants us to slow down.
                _ => Pause(Unreachable),
            },
            Error::Unavailable { .. } => Pause(Unreachable),
            Error::Db(e) => db_disposition(e),
            Error::Pool(_) | Error::Shutdown | Error::Handler { .. } => Retry,
            Error::Conflict { .. }
            | Error::DuplicateId { .. }
            | Error::NotFound(_)
            | Error::InvalidInput(_)
            | Error::Undecodable { .. }
            | Error::Json(_) => DeadLetter,
        }
    }
}

/// A database failure: the environment (busy, locked, full, I/O, out of
/// memory) is worth a retry; what the statement itself did wrong
/// (a constraint, a type mismatch, a row that is not there) is not.
pub(crate) fn db_disposition(e: &rusqlite::Error) -> Disposition {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(
            DatabaseBusy
            | DatabaseLocked
            | DiskFull
            | SystemIoFailure
            | CannotOpen
            | OutOfMemory
            | ReadOnly
            | FileLockingProtocolFailed
            | OperationInterrupted,
        ) => Disposition::Retry,
        _ => Disposition::DeadLetter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(status: u16) -> Error {
        Error::Store {
            status,
            code: "X".into(),
            message: "x".into(),
        }
    }

    #[test]
    fn statuses() {
        use Disposition::*;
        use PauseReason::*;
        for (status, expected) in [
            (400, DeadLetter),
            (401, Pause(AuthRefused)),
            (403, Pause(AuthRefused)),
            (404, Pause(Unreachable)),
            (408, Pause(Unreachable)),
            (409, DeadLetter),
            (413, DeadLetter),
            (429, Pause(Unreachable)),
            (500, Retry),
            (501, Retry),
            (502, Pause(Unreachable)),
            (503, Pause(Unreachable)),
            (504, Pause(Unreachable)),
        ] {
            assert_eq!(store(status).disposition(), expected, "{status}");
        }
        let gone = Error::backend("Failed to write message: namespace not found");
        assert_eq!(gone.disposition(), Pause(AuthRefused));
        let bad_id =
            Error::backend("Failed to write message: invalid UUID format: invalid UUID length: 3");
        assert_eq!(bad_id.disposition(), DeadLetter);
    }

    #[test]
    fn transport_and_local() {
        use Disposition::*;
        let transport = |kind| Error::Transport {
            kind,
            message: "x".into(),
        };
        assert_eq!(
            transport(TransportErrorKind::ConnectionReset).disposition(),
            Pause(PauseReason::Unreachable)
        );
        assert_eq!(
            transport(TransportErrorKind::Tls).disposition(),
            Pause(PauseReason::TlsRefused)
        );
        assert_eq!(
            Error::Timeout("read".into()).disposition(),
            Pause(PauseReason::Unreachable)
        );
        assert_eq!(Error::Shutdown.disposition(), Retry);
        let busy = Error::Unavailable {
            status: 429,
            retry_after: Some(std::time::Duration::from_secs(1)),
            message: "slow down".into(),
        };
        assert_eq!(busy.disposition(), Pause(PauseReason::Unreachable));
        let conflict = Error::Conflict {
            stream: "a-1".into(),
            expected: 1,
            actual: Some(2),
        };
        assert_eq!(conflict.disposition(), DeadLetter);
        assert_eq!(
            Error::DuplicateId { id: "x".into() }.disposition(),
            DeadLetter
        );
    }
}
