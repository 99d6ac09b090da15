//! Write transactions open on this thread, per database file: so that a
//! second write on the same file from the same thread — the classic being a
//! consumer handler that calls `kit.outbox().write(..)` instead of
//! `write_in(tx, ..)` — fails at once instead of waiting for its own
//! transaction until the busy timeout; and so that wake-ups asked for inside
//! such a transaction (an outbox row written with `write_in`) run after it
//! commits, without a commit hook on the connection.
//!
//! The kit enters a scope around every write transaction it runs itself
//! ([`Db::write`](crate::Db::write), consumer batches, replays); a
//! transaction the application opens on its own connection has none.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A wake-up to run once the transaction commits.
pub(crate) type AfterCommit = Box<dyn FnOnce()>;

struct Open {
    id: u64,
    file: Arc<str>,
    after_commit: Vec<AfterCommit>,
}

thread_local! {
    static OPEN: RefCell<Vec<Open>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A name for an in-memory database (which has no file), unique in the
/// process.
pub(crate) fn memory_name() -> Arc<str> {
    Arc::from(format!(
        ":memory:{}",
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Whether `file` names an in-memory database.
fn is_memory(file: &str) -> bool {
    file.starts_with(":memory:")
}

/// Whether this thread has a write transaction open on `file`.
pub(crate) fn held(file: &str) -> bool {
    OPEN.with(|open| open.borrow().iter().any(|o| &*o.file == file))
}

/// The error for a second write transaction on a file from one thread.
pub(crate) fn nested_write_error(what: &str) -> Error {
    Error::invalid(format!(
        "{what} would wait for the write transaction this thread already has open on the same \
         database file (a consumer handler's, a replay's or Db::write's) until the busy timeout; \
         write through that transaction instead: tx.execute(..), or \
         kit.outbox().write_in(tx, ..) to emit a message (the sender delivers it once the \
         transaction commits)"
    ))
}

/// This thread's write transaction on one database file, from before
/// `BEGIN` until after `COMMIT`; leaving it without [`WriteScope::committed`]
/// (a rollback, an error) drops the wake-ups asked for inside.
#[must_use]
pub(crate) struct WriteScope {
    id: u64,
}

impl WriteScope {
    /// Enters a write transaction on `file`. Errors when this thread already
    /// has one open on it (the second would wait for the first).
    pub(crate) fn enter(file: &Arc<str>) -> Result<WriteScope> {
        if held(file) {
            return Err(nested_write_error("a second write transaction"));
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        OPEN.with(|open| {
            open.borrow_mut().push(Open {
                id,
                file: Arc::clone(file),
                after_commit: Vec::new(),
            })
        });
        Ok(WriteScope { id })
    }

    /// The transaction committed: runs the wake-ups asked for inside it.
    pub(crate) fn committed(self) {
        for wake in self.take() {
            wake();
        }
    }

    fn take(&self) -> Vec<AfterCommit> {
        OPEN.with(|open| {
            let mut open = open.borrow_mut();
            match open.iter().position(|o| o.id == self.id) {
                Some(i) => open.remove(i).after_commit,
                None => Vec::new(),
            }
        })
    }
}

impl Drop for WriteScope {
    fn drop(&mut self) {
        drop(self.take());
    }
}

/// Runs `wake` after the commit of this thread's open write transaction on
/// `file` (`""`: an in-memory database — the innermost one). Gives `wake`
/// back when there is no such transaction.
pub(crate) fn after_commit(file: &str, wake: AfterCommit) -> std::result::Result<(), AfterCommit> {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let found = open.iter_mut().rev().find(|o| {
            if file.is_empty() {
                is_memory(&o.file)
            } else {
                &*o.file == file
            }
        });
        match found {
            Some(o) => {
                o.after_commit.push(wake);
                Ok(())
            }
            None => Err(wake),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn nested_scopes_on_one_file_are_refused_and_wakes_run_after_commit_only() {
        let a: Arc<str> = Arc::from("/tmp/a.db");
        let b: Arc<str> = Arc::from("/tmp/b.db");
        let outer = WriteScope::enter(&a).unwrap();
        assert!(WriteScope::enter(&a).is_err());
        let other = WriteScope::enter(&b).unwrap();
        let woken = Rc::new(Cell::new(0));
        let w = Rc::clone(&woken);
        assert!(after_commit("/tmp/a.db", Box::new(move || w.set(w.get() + 1))).is_ok());
        let w = Rc::clone(&woken);
        assert!(after_commit("/tmp/b.db", Box::new(move || w.set(w.get() + 10))).is_ok());
        drop(other); // rolled back: its wake-up is dropped
        assert_eq!(woken.get(), 0);
        outer.committed();
        assert_eq!(woken.get(), 1);
        assert!(!held("/tmp/a.db"));
        assert!(after_commit("/tmp/a.db", Box::new(|| ())).is_err());
    }
}
