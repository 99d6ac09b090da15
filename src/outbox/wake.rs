//! Wake-ups: a commit that adds outbox rows (or a requeue) signals the
//! senders at once, over crossbeam channels.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rusqlite::Connection;

use crate::error::Result;

/// A broadcast of "something changed" to any number of listeners.
///
/// Each listener has a channel of capacity one, so a burst of notifications
/// collapses into one pending wake-up and `notify` never blocks.
#[derive(Debug, Default)]
pub(crate) struct WakeHub {
    listeners: Mutex<Vec<Sender<()>>>,
    /// Bumped when rows behind a sender's scan position may have become
    /// sendable again (dead letters requeued).
    rescans: AtomicU64,
}

impl WakeHub {
    /// Wakes every listener (listeners that went away are forgotten).
    pub(crate) fn notify(&self) {
        let mut listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|l| !matches!(l.try_send(()), Err(TrySendError::Disconnected(()))));
    }

    /// Asks senders to scan the whole outbox again, and wakes them.
    pub(crate) fn notify_rescan(&self) {
        self.rescans.fetch_add(1, Ordering::AcqRel);
        self.notify();
    }

    /// How many rescans were asked for so far.
    pub(crate) fn rescan_generation(&self) -> u64 {
        self.rescans.load(Ordering::Acquire)
    }

    /// A new listener; dropping the receiver unsubscribes it.
    pub(crate) fn listen(&self) -> Receiver<()> {
        let (tx, rx) = bounded(1);
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        rx
    }
}

/// Makes the next commit of `conn`'s open transaction wake `hub`; a rollback
/// disarms it.
///
/// SQLite calls the commit hook just before the commit completes. A sender
/// woken by it claims rows in a `BEGIN IMMEDIATE` transaction, which waits
/// for the committing writer to finish and then sees its rows.
///
/// The hooks stay installed on the connection (as no-ops once used) until the
/// next call replaces them.
pub(crate) fn wake_on_commit(conn: &Connection, hub: &Arc<WakeHub>) -> Result<()> {
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let on_rollback = Arc::clone(&armed);
    let hub: Weak<WakeHub> = Arc::downgrade(hub);
    conn.commit_hook(Some(move || {
        if armed.swap(false, Ordering::AcqRel) {
            if let Some(hub) = hub.upgrade() {
                hub.notify();
            }
        }
        false // never veto the commit
    }))?;
    conn.rollback_hook(Some(move || on_rollback.store(false, Ordering::Release)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_collapse_and_dropped_listeners_are_forgotten() {
        let hub = WakeHub::default();
        let a = hub.listen();
        let b = hub.listen();
        hub.notify();
        hub.notify();
        assert_eq!(a.try_iter().count(), 1);
        drop(b);
        hub.notify();
        assert_eq!(hub.listeners.lock().unwrap().len(), 1);
        assert!(a.recv_timeout(Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn commit_wakes_and_rollback_does_not() {
        let hub = Arc::new(WakeHub::default());
        let rx = hub.listen();
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();

        let tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        wake_on_commit(&tx, &hub).unwrap();
        tx.rollback().unwrap();
        assert!(rx.try_recv().is_err(), "a rollback wakes nobody");
        // The disarmed hook stays quiet on later commits too.
        conn.execute("INSERT INTO t VALUES (2)", []).unwrap();
        assert!(rx.try_recv().is_err());

        let tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES (3)", []).unwrap();
        wake_on_commit(&tx, &hub).unwrap();
        tx.commit().unwrap();
        assert!(rx.try_recv().is_ok(), "a commit wakes");
        conn.execute("INSERT INTO t VALUES (4)", []).unwrap();
        assert!(rx.try_recv().is_err(), "only once");
    }
}
