//! Running the application's handler: inside a savepoint of the batch's
//! transaction, with panics caught and errors turned into text for the
//! dead-letter table.

use std::any::Any;
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};

use rusqlite::{CachedStatement, Connection, Transaction};

use crate::error::{Error, Result};
use crate::message::Message;

/// Why a handler run failed.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// The handler's error (or panic message) as text.
    pub(crate) error: String,
    /// The error is a kit [`Error`] (or `rusqlite::Error`) that fails the same
    /// way every time.
    pub(crate) permanent: bool,
}

/// A handler with its error type erased.
pub(crate) type BoxedHandler =
    Box<dyn FnMut(&Message, &Transaction<'_>) -> Result<(), Failure> + Send>;

/// Boxes a handler closure.
pub(crate) fn boxed<F, E>(mut handler: F) -> BoxedHandler
where
    F: FnMut(&Message, &Transaction<'_>) -> Result<(), E> + Send + 'static,
    E: Display + 'static,
{
    Box::new(move |message, tx| handler(message, tx).map_err(|e| failure_of(&e)))
}

fn failure_of<E: Display + 'static>(error: &E) -> Failure {
    Failure {
        error: error.to_string(),
        permanent: is_permanent(error),
    }
}

/// Whether `error` is one the kit can classify as permanent: its own
/// [`Error`] or a `rusqlite::Error` (possibly boxed) that is not transient.
fn is_permanent(error: &dyn Any) -> bool {
    type Boxed = Box<dyn std::error::Error + Send + Sync>;
    type BoxedLocal = Box<dyn std::error::Error>;
    let inner: Option<&(dyn std::error::Error + 'static)> =
        if let Some(b) = error.downcast_ref::<Boxed>() {
            Some(b.as_ref())
        } else if let Some(b) = error.downcast_ref::<BoxedLocal>() {
            Some(b.as_ref())
        } else {
            None
        };
    let kit = error
        .downcast_ref::<Error>()
        .or_else(|| inner.and_then(|e| e.downcast_ref::<Error>()));
    if let Some(e) = kit {
        return !e.is_transient();
    }
    let sqlite = error
        .downcast_ref::<rusqlite::Error>()
        .or_else(|| inner.and_then(|e| e.downcast_ref::<rusqlite::Error>()));
    match sqlite {
        Some(e) => !matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ),
        None => false,
    }
}

/// Runs `handler` on `message`, turning a panic into a failure.
pub(crate) fn run<H>(
    handler: &mut H,
    message: &Message,
    tx: &Transaction<'_>,
) -> Result<(), Failure>
where
    H: FnMut(&Message, &Transaction<'_>) -> Result<(), Failure> + ?Sized,
{
    match catch_unwind(AssertUnwindSafe(|| handler(message, tx))) {
        Ok(result) => result,
        Err(payload) => Err(Failure {
            error: format!("handler panicked: {}", panic_text(payload.as_ref())),
            permanent: false,
        }),
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// The statements that frame each message's work inside a batch
/// transaction, prepared once per batch: a savepoint per message, released to
/// keep the work or rolled back to undo it alone.
pub(crate) struct Savepoints<'c> {
    savepoint: CachedStatement<'c>,
    release: CachedStatement<'c>,
    rollback: CachedStatement<'c>,
}

impl<'c> Savepoints<'c> {
    pub(crate) fn prepare(conn: &'c Connection) -> Result<Self> {
        Ok(Savepoints {
            savepoint: conn.prepare_cached("SAVEPOINT evento_message")?,
            release: conn.prepare_cached("RELEASE evento_message")?,
            rollback: conn.prepare_cached("ROLLBACK TO evento_message")?,
        })
    }

    /// Marks the start of one message's work.
    pub(crate) fn begin(&mut self) -> Result<()> {
        self.savepoint.execute([])?;
        Ok(())
    }

    /// Keeps the message's work.
    pub(crate) fn keep(&mut self) -> Result<()> {
        self.release.execute([])?;
        Ok(())
    }

    /// Undoes the message's work (and only it).
    pub(crate) fn undo(&mut self) -> Result<()> {
        self.rollback.execute([])?;
        self.keep()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_kit_and_sqlite_errors() {
        assert!(is_permanent(&Error::InvalidInput("bad data".into())));
        assert!(!is_permanent(&Error::Timeout("slow".into())));
        let boxed: Box<dyn std::error::Error + Send + Sync> =
            Box::new(Error::InvalidInput("x".into()));
        assert!(is_permanent(&boxed));
        assert!(is_permanent(&rusqlite::Error::QueryReturnedNoRows));
        assert!(!is_permanent(&"some text".to_string()));
        assert!(!is_permanent(&std::io::Error::other("io")));
    }
}
