//! The mapping of what goes wrong on a call to the kit's [`Error`]:
//! EventoDB's error answers (and a proxy's), and transport failures of
//! ureq calls and of the kit's own connections.

use std::time::Duration;

use super::client::CallContext;
use crate::error::{Error, TransportErrorKind};
use crate::wire::error::ErrorBody;
use crate::wire::undecodable;

/// Maps a non-2xx answer (with the `Retry-After` it came with) to the
/// kit's error.
pub(crate) fn answer_error(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    ctx: CallContext<'_>,
) -> Error {
    let parsed = ErrorBody::parse(body);
    let shown = || {
        let text = String::from_utf8_lossy(body);
        text.trim().chars().take(200).collect::<String>()
    };
    // A store that cannot serve now, or a rate limit (of a proxy, often):
    // whatever the body, wait as asked.
    if status == 429 || status == 503 {
        return Error::Unavailable {
            status,
            retry_after,
            message: parsed.map_or_else(shown, |e| e.message),
        };
    }
    let Some(e) = parsed else {
        return Error::Store {
            status,
            code: format!("HTTP_{status}"),
            message: shown(),
        };
    };
    match e.code.as_str() {
        "STREAM_VERSION_CONFLICT" => Error::Conflict {
            stream: ctx.stream.unwrap_or_default().to_string(),
            expected: e
                .detail_i64("expected")
                .or(ctx.expected_version)
                .unwrap_or_default(),
            actual: e.detail_i64("actual"),
        },
        "AUTH_REQUIRED" | "AUTH_INVALID_TOKEN" | "AUTH_UNAUTHORIZED" => Error::Auth {
            status,
            code: e.code,
            message: e.message,
        },
        _ if status == 401 || status == 403 => Error::Auth {
            status,
            code: e.code,
            message: e.message,
        },
        "INVALID_REQUEST" if status == 400 => Error::InvalidInput(e.message),
        "NAMESPACE_NOT_FOUND" => Error::NotFound(e.message),
        undecodable::CODE => undecodable::from_error_body(&e).unwrap_or(Error::Store {
            status,
            code: e.code,
            message: e.message,
        }),
        "BACKEND_ERROR" if is_duplicate_id(&e.message) => Error::DuplicateId {
            id: ctx.id.unwrap_or_default().to_string(),
        },
        _ => Error::Store {
            status,
            code: e.code,
            message: e.message,
        },
    }
}

/// The "id already exists" answers of EventoDB's SQLite and Postgres
/// backends (protocol §9).
pub(crate) fn is_duplicate_id(message: &str) -> bool {
    message.contains("UNIQUE constraint failed: messages.id")
        || message.contains("duplicate key value violates unique constraint \"messages_id\"")
}

/// Classifies a ureq failure (never carries the token: ureq redacts headers).
pub(crate) fn transport_error(e: ureq::Error) -> Error {
    use TransportErrorKind as K;
    let kind = match &e {
        ureq::Error::Io(io) => return io_transport_error(io),
        ureq::Error::Timeout(_) => K::Timeout,
        ureq::Error::HostNotFound => K::Dns,
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::RequireHttpsOnly(_) => {
            K::InvalidUrl
        }
        ureq::Error::Rustls(tls) => {
            return Error::Transport {
                kind: K::Tls,
                message: crate::tls::describe(tls),
            }
        }
        ureq::Error::Tls(_) | ureq::Error::Pem(_) => K::Tls,
        ureq::Error::TlsRequired => K::Tls,
        ureq::Error::Protocol(_) | ureq::Error::LargeResponseHeader(_, _) => K::Protocol,
        ureq::Error::ConnectionFailed => K::ConnectionRefused,
        _ => K::Other,
    };
    Error::Transport {
        kind,
        message: e.to_string(),
    }
}

/// Classifies an I/O failure of a connection.
pub(crate) fn io_transport_error(e: &std::io::Error) -> Error {
    let (kind, message) = io_transport_parts(e);
    Error::Transport { kind, message }
}

/// The kind and message of [`io_transport_error`], for callers that say
/// more (what was being connected to, say).
pub(crate) fn io_transport_parts(e: &std::io::Error) -> (TransportErrorKind, String) {
    use std::io::ErrorKind as Io;
    use TransportErrorKind as K;
    if let Some(tls) = crate::tls::rustls_error(e) {
        return (K::Tls, crate::tls::describe(tls));
    }
    let kind = match e.kind() {
        Io::ConnectionRefused => K::ConnectionRefused,
        Io::ConnectionReset
        | Io::ConnectionAborted
        | Io::BrokenPipe
        | Io::UnexpectedEof
        | Io::NotConnected => K::ConnectionReset,
        Io::TimedOut | Io::WouldBlock => K::Timeout,
        // rustls reports handshake and record failures as InvalidData.
        Io::InvalidData => K::Tls,
        // std's getaddrinfo failures carry no kind of their own.
        _ if e.to_string().starts_with("failed to lookup address") => K::Dns,
        _ => K::Other,
    };
    (kind, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CallContext<'static> {
        CallContext {
            stream: Some("a-1"),
            expected_version: Some(5),
            id: Some("0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87"),
        }
    }

    #[test]
    fn maps_eventodb_answers() {
        let conflict = br#"{"error":{"code":"STREAM_VERSION_CONFLICT","message":"Expected version 5, stream is at version 1","details":{"actual":1,"expected":5}}}"#;
        match answer_error(409, conflict, None, ctx()) {
            Error::Conflict {
                stream,
                expected,
                actual,
            } => assert_eq!((stream.as_str(), expected, actual), ("a-1", 5, Some(1))),
            other => panic!("{other:?}"),
        }
        let pg = br#"{"error":{"code":"STREAM_VERSION_CONFLICT","message":"version conflict: expected version does not match stream version"}}"#;
        assert!(matches!(
            answer_error(409, pg, None, ctx()),
            Error::Conflict {
                expected: 5,
                actual: None,
                ..
            }
        ));
        let sqlite_dup = br#"{"error":{"code":"BACKEND_ERROR","message":"Failed to write message: failed to insert message: constraint failed: UNIQUE constraint failed: messages.id (2067)"}}"#;
        let pg_dup = br#"{"error":{"code":"BACKEND_ERROR","message":"Failed to write message: ERROR: duplicate key value violates unique constraint \"messages_id\" (SQLSTATE 23505)"}}"#;
        for body in [&sqlite_dup[..], &pg_dup[..]] {
            match answer_error(500, body, None, ctx()) {
                Error::DuplicateId { id } => assert_eq!(id, ctx().id.unwrap()),
                other => panic!("{other:?}"),
            }
        }
        let auth = br#"{"error":{"code":"AUTH_UNAUTHORIZED","message":"Token not authorized for namespace","details":{"namespace":"x"}}}"#;
        assert!(matches!(
            answer_error(403, auth, None, ctx()),
            Error::Auth { status: 403, .. }
        ));
        let invalid =
            br#"{"error":{"code":"INVALID_REQUEST","message":"message.data must be an object"}}"#;
        match answer_error(400, invalid, None, ctx()) {
            Error::InvalidInput(m) => assert_eq!(m, "message.data must be an object"),
            other => panic!("{other:?}"),
        }
        let nf = br#"{"error":{"code":"NAMESPACE_NOT_FOUND","message":"Namespace 'x' not found"}}"#;
        assert!(matches!(
            answer_error(404, nf, None, ctx()),
            Error::NotFound(_)
        ));
        let backend = answer_error(
            500,
            br#"{"error":{"code":"BACKEND_ERROR","message":"Failed to get messages: disk I/O error"}}"#,
            None,
            ctx(),
        );
        assert!(backend.is_transient());
        match answer_error(502, b"<html>Bad Gateway</html>", None, ctx()) {
            e @ Error::Store { status: 502, .. } => assert!(e.is_transient()),
            other => panic!("{other:?}"),
        }
        assert!(!answer_error(413, b"Request Entity Too Large", None, ctx()).is_transient());
    }

    #[test]
    fn unavailable_answers_carry_their_retry_after() {
        let second = Some(Duration::from_secs(1));
        match answer_error(429, b"Too Many Requests", second, ctx()) {
            e @ Error::Unavailable {
                status: 429,
                retry_after: Some(_),
                ..
            } => {
                assert_eq!(e.retry_after(), second);
                assert_eq!(
                    e.disposition(),
                    crate::Disposition::Pause(crate::PauseReason::Unreachable)
                );
                assert!(e.to_string().contains("Too Many Requests"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let busy = br#"{"error":{"code":"SERVER_BUSY","message":"every connection is busy"}}"#;
        match answer_error(503, busy, None, ctx()) {
            Error::Unavailable {
                status: 503,
                retry_after: None,
                message,
            } => assert_eq!(message, "every connection is busy"),
            other => panic!("{other:?}"),
        }
        // 502 and 504 say nothing about waiting: a plain store error.
        assert!(matches!(
            answer_error(504, b"", second, ctx()),
            Error::Store { status: 504, .. }
        ));
    }

    #[test]
    fn classifies_io_failures() {
        use std::io::{Error as IoError, ErrorKind};
        let kind = |k| match io_transport_error(&IoError::from(k)) {
            Error::Transport { kind, .. } => kind,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            kind(ErrorKind::ConnectionRefused),
            TransportErrorKind::ConnectionRefused
        );
        assert_eq!(
            kind(ErrorKind::ConnectionReset),
            TransportErrorKind::ConnectionReset
        );
        assert_eq!(kind(ErrorKind::TimedOut), TransportErrorKind::Timeout);
        assert_eq!(kind(ErrorKind::InvalidData), TransportErrorKind::Tls);
        assert!(io_transport_error(&IoError::from(ErrorKind::BrokenPipe)).is_transient());
    }
}
