//! Running the application's handler: with panics caught, its errors
//! classified by the kit's one [`Disposition`] model and turned into text
//! for the dead-letter table, and — when a batch goes message by message —
//! inside a savepoint that rolls back on drop.

use std::any::Any;
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};

use rusqlite::{CachedStatement, Connection, Transaction};

use crate::disposition::{db_disposition, Disposition};
use crate::error::{Error, Result};
use crate::message::Message;

/// Why a handler run failed.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// The handler's error (or panic message) as text.
    pub(crate) error: String,
    /// What the error is about: the store or the link as a whole (pause,
    /// do not use up the message's attempts), this message maybe not next
    /// time (retry), or this message for good.
    pub(crate) disposition: Disposition,
}

impl Failure {
    /// A failure that fails the same way every time.
    pub(crate) fn permanent(&self) -> bool {
        self.disposition == Disposition::DeadLetter
    }

    /// What the failure is about, in words.
    pub(crate) fn disposition_text(&self) -> String {
        match self.disposition {
            Disposition::Pause(reason) => reason.to_string(),
            Disposition::Retry => "worth a retry".to_string(),
            Disposition::DeadLetter => "fails for good".to_string(),
        }
    }
}

/// A failure with the kit's [`Error`]: classified by [`Error::disposition`]
/// (as [`classify`] would).
impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            error: e.to_string(),
            disposition: e.disposition(),
        }
    }
}

/// A handler with its error type erased.
pub(crate) type BoxedHandler =
    Box<dyn FnMut(&Message, &Transaction<'_>) -> Result<(), Failure> + Send>;

/// Boxes a handler returning the kit's [`Result`].
pub(crate) fn boxed<F>(mut handler: F) -> BoxedHandler
where
    F: FnMut(&Message, &Transaction<'_>) -> Result<()> + Send + 'static,
{
    Box::new(move |message, tx| handler(message, tx).map_err(Failure::from))
}

/// Boxes a handler with an error type of its own.
pub(crate) fn boxed_typed<F, E>(mut handler: F) -> BoxedHandler
where
    F: FnMut(&Message, &Transaction<'_>) -> Result<(), E> + Send + 'static,
    E: Display + 'static,
{
    Box::new(move |message, tx| {
        handler(message, tx).map_err(|e| Failure {
            error: e.to_string(),
            disposition: classify(&e),
        })
    })
}

/// The disposition of a handler's error of any type: the kit's [`Error`]
/// and `rusqlite::Error` (also boxed) by [`Error::disposition`]; anything
/// else is worth a retry.
pub(crate) fn classify(error: &dyn Any) -> Disposition {
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
        return e.disposition();
    }
    let sqlite = error
        .downcast_ref::<rusqlite::Error>()
        .or_else(|| inner.and_then(|e| e.downcast_ref::<rusqlite::Error>()));
    match sqlite {
        Some(e) => db_disposition(e),
        None => Disposition::Retry,
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
            disposition: Disposition::Retry,
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

/// The statements that frame one message's work inside a transaction when
/// it goes message by message, prepared once per transaction.
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

    /// Starts one message's work. Unless [kept](MessageWork::keep), it is
    /// undone when the guard goes — also on an early `?` or a panic — so no
    /// savepoint is ever left open in the transaction.
    pub(crate) fn begin(&mut self) -> Result<MessageWork<'_, 'c>> {
        self.savepoint.execute([])?;
        Ok(MessageWork {
            statements: self,
            open: true,
        })
    }
}

/// One message's work inside a savepoint: [`MessageWork::keep`] releases
/// it, dropping the guard rolls it back.
pub(crate) struct MessageWork<'s, 'c> {
    statements: &'s mut Savepoints<'c>,
    open: bool,
}

impl MessageWork<'_, '_> {
    /// Keeps the message's work.
    pub(crate) fn keep(mut self) -> Result<()> {
        self.open = false;
        self.statements.release.execute([])?;
        Ok(())
    }

    /// Undoes the message's work (and only it).
    pub(crate) fn undo(mut self) -> Result<()> {
        self.open = false;
        self.statements.rollback.execute([])?;
        self.statements.release.execute([])?;
        Ok(())
    }
}

impl Drop for MessageWork<'_, '_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.statements.rollback.execute([]);
            let _ = self.statements.release.execute([]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disposition::PauseReason;

    #[test]
    fn classifies_kit_and_sqlite_errors_by_their_disposition() {
        use Disposition::*;
        assert_eq!(
            classify(&Error::InvalidInput("bad data".into())),
            DeadLetter
        );
        assert_eq!(
            classify(&Error::Timeout("slow".into())),
            Pause(PauseReason::Unreachable)
        );
        let auth = Error::Auth {
            status: 403,
            code: "AUTH_UNAUTHORIZED".into(),
            message: "no".into(),
        };
        assert_eq!(classify(&auth), Pause(PauseReason::AuthRefused));
        let boxed: Box<dyn std::error::Error + Send + Sync> =
            Box::new(Error::InvalidInput("x".into()));
        assert_eq!(classify(&boxed), DeadLetter);
        assert_eq!(classify(&rusqlite::Error::QueryReturnedNoRows), DeadLetter);
        assert_eq!(classify(&"some text".to_string()), Retry);
        assert_eq!(classify(&std::io::Error::other("io")), Retry);
    }

    #[test]
    fn a_message_guard_rolls_back_when_dropped_unkept() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut savepoints = Savepoints::prepare(&tx).unwrap();
            let work = savepoints.begin().unwrap();
            tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
            work.keep().unwrap();
            let mut early_exit = || -> Result<()> {
                let _work = savepoints.begin()?;
                tx.execute("INSERT INTO t VALUES (2)", [])?;
                Err(Error::InvalidInput("an early `?`".into()))
            };
            assert!(early_exit().is_err());
        }
        // No savepoint is left open: the transaction commits as usual.
        tx.commit().unwrap();
        let rows: Vec<i64> = conn
            .prepare("SELECT x FROM t")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows, [1]);
    }
}
