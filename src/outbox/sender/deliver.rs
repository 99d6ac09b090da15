//! Delivering one row through the [`MessageStore`], and sorting failures
//! into what to do next.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::Value;

use super::queue::OutboxRow;
use crate::error::Error;
use crate::message::{NewMessage, WriteOptions};
use crate::store::{MessageStore, StreamQuery};

/// What kind of failure, for the retry decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureClass {
    /// The store could not be reached (refused, reset, timeout, I/O, a 502,
    /// 503 or 504): every stream would fail alike, so the whole sender
    /// pauses and backs off.
    Unreachable,
    /// The store failed on this message but may not next time (5xx, busy
    /// database): this stream backs off, the others go on.
    Transient,
    /// The store refused the message and always will (version conflict,
    /// invalid request, auth, too large): dead-letter it.
    Permanent,
}

/// How a delivery attempt ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The store has the message; `duplicate` when it already had it.
    Delivered { duplicate: bool },
    /// The attempt failed.
    Failed { error: Error, class: FailureClass },
    /// Not tried (the stream failed earlier in this lane, or the sender is
    /// pausing or stopping).
    Skipped,
}

/// Sorts an error of [`MessageStore::write`].
pub(crate) fn classify(error: &Error) -> FailureClass {
    match error {
        Error::Transport {
            kind: crate::error::TransportErrorKind::InvalidUrl,
            ..
        } => FailureClass::Permanent,
        Error::Transport { .. } | Error::Timeout(_) | Error::Io(_) => FailureClass::Unreachable,
        Error::Conflict { .. }
        | Error::InvalidInput(_)
        | Error::Auth { .. }
        | Error::NotFound(_)
        | Error::Json(_) => FailureClass::Permanent,
        Error::Store { status, .. } if (400..500).contains(status) => FailureClass::Permanent,
        // A gateway in front of the store, or the store itself, says it
        // cannot serve anything right now.
        Error::Store {
            status: 502..=504, ..
        } => FailureClass::Unreachable,
        // 5xx, a failing local database of an embedded store, pool time-outs,
        // a store shutting down, anything new: worth another try.
        _ => FailureClass::Transient,
    }
}

/// Sends `row` with its own id and expected version.
///
/// "Id already exists" means an earlier attempt got through: delivered. A
/// version conflict on a row with an expected version may mean the same
/// (EventoDB checks the version before the id), so the stream is asked
/// whether the message at the expected position is this one.
pub(crate) fn deliver(store: &dyn MessageStore, row: &OutboxRow) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| try_deliver(store, row))) {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failed {
            error: Error::backend("the message store panicked while writing"),
            class: FailureClass::Transient,
        },
    }
}

fn try_deliver(store: &dyn MessageStore, row: &OutboxRow) -> Outcome {
    let message = match to_message(row) {
        Ok(m) => m,
        Err(error) => {
            return Outcome::Failed {
                error,
                class: FailureClass::Permanent,
            }
        }
    };
    let mut options = WriteOptions::new().id(row.id.clone());
    if let Some(v) = row.expected_version {
        options = options.expected_version(v);
    }
    match store.write(&row.stream, &message, &options) {
        Ok(_) => Outcome::Delivered { duplicate: false },
        Err(Error::DuplicateId { .. }) => Outcome::Delivered { duplicate: true },
        Err(error @ Error::Conflict { .. }) => match already_at_expected_position(store, row) {
            Ok(true) => Outcome::Delivered { duplicate: true },
            Ok(false) => Outcome::Failed {
                error,
                class: FailureClass::Permanent,
            },
            Err(check) => Outcome::Failed {
                class: classify(&check),
                error: check,
            },
        },
        Err(error) => Outcome::Failed {
            class: classify(&error),
            error,
        },
    }
}

/// Whether the message right after `row.expected_version` in its stream is `row`.
fn already_at_expected_position(store: &dyn MessageStore, row: &OutboxRow) -> crate::Result<bool> {
    let Some(expected) = row.expected_version else {
        return Ok(false);
    };
    let query = StreamQuery::new().position(expected + 1).batch_size(1);
    let found = store.get_stream(&row.stream, &query)?;
    Ok(found
        .first()
        .is_some_and(|m| m.position == expected + 1 && m.id.eq_ignore_ascii_case(&row.id)))
}

fn to_message(row: &OutboxRow) -> crate::Result<NewMessage> {
    let data: Value = serde_json::from_str(&row.data)?;
    let mut message = NewMessage::new(row.message_type.clone(), data);
    if let Some(metadata) = &row.metadata {
        message = message.with_metadata(serde_json::from_str(metadata)?);
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TransportErrorKind;

    #[test]
    fn classes() {
        let transport = |kind| Error::Transport {
            kind,
            message: "x".into(),
        };
        let store = |status: u16| Error::Store {
            status,
            code: "X".into(),
            message: "x".into(),
        };
        use FailureClass::*;
        assert_eq!(
            classify(&transport(TransportErrorKind::ConnectionRefused)),
            Unreachable
        );
        assert_eq!(
            classify(&transport(TransportErrorKind::ConnectionReset)),
            Unreachable
        );
        assert_eq!(
            classify(&transport(TransportErrorKind::InvalidUrl)),
            Permanent
        );
        assert_eq!(classify(&Error::Timeout("read".into())), Unreachable);
        assert_eq!(classify(&store(500)), Transient);
        assert_eq!(classify(&store(503)), Unreachable);
        assert_eq!(classify(&store(502)), Unreachable);
        assert_eq!(classify(&store(400)), Permanent);
        assert_eq!(classify(&store(413)), Permanent);
        assert_eq!(classify(&Error::InvalidInput("x".into())), Permanent);
        let auth = Error::Auth {
            status: 401,
            code: "AUTH_REQUIRED".into(),
            message: "x".into(),
        };
        assert_eq!(classify(&auth), Permanent);
        let conflict = Error::Conflict {
            stream: "a-1".into(),
            expected: 1,
            actual: Some(2),
        };
        assert_eq!(classify(&conflict), Permanent);
    }
}
