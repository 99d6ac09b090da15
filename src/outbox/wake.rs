//! Wake-ups: a commit that adds outbox rows (or a requeue) signals the
//! senders at once, over crossbeam channels.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rusqlite::Connection;

use crate::error::Result;

/// A broadcast of "something changed" to any number of listeners.
///
/// Each listener has a channel of capacity one, so a burst of notifications
/// collapses into one pending wake-up and `notify` never blocks. Listeners
/// that went away are forgotten at the next `notify` or `listen`, so waiters
/// that come and go while nothing happens leave nothing behind.
#[derive(Debug, Default)]
pub(crate) struct WakeHub {
    /// Each listener's channel, and a token that is dead once it is dropped.
    listeners: Mutex<Vec<(Sender<()>, Weak<()>)>>,
    /// Bumped when rows behind a sender's scan position may have become
    /// sendable again (dead letters requeued).
    rescans: AtomicU64,
}

impl WakeHub {
    /// Wakes every listener (listeners that went away are forgotten).
    pub(crate) fn notify(&self) {
        self.lock().retain(|(tx, alive)| {
            alive.strong_count() > 0
                && !matches!(tx.try_send(()), Err(TrySendError::Disconnected(())))
        });
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Sender<()>, Weak<()>)>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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

    /// A new listener; dropping it unsubscribes it.
    pub(crate) fn listen(&self) -> Listener {
        let (tx, rx) = bounded(1);
        let alive = Arc::new(());
        let mut listeners = self.lock();
        listeners.retain(|(_, alive)| alive.strong_count() > 0);
        listeners.push((tx, Arc::downgrade(&alive)));
        Listener { rx, _alive: alive }
    }
}

/// The wake-ups of one listener of a [`WakeHub`]: a receiver (through
/// `Deref`) that unsubscribes when dropped.
#[derive(Debug)]
pub(crate) struct Listener {
    rx: Receiver<()>,
    _alive: Arc<()>,
}

impl Deref for Listener {
    type Target = Receiver<()>;

    fn deref(&self) -> &Receiver<()> {
        &self.rx
    }
}

/// Makes the next commit of `conn`'s open transaction wake `hub`; a rollback
/// disarms it.
///
/// Inside a write transaction the kit runs itself ([`Db::write`](crate::Db::write),
/// a consumer batch, a replay) the wake-up is handed to that transaction's
/// scope and runs after its commit: no hook is installed, so the
/// connection's own hooks stay as they are.
///
/// Otherwise (the application's own transaction) it installs a commit and a
/// rollback hook. SQLite calls the commit hook just before the commit
/// completes; a sender woken by it claims rows in a `BEGIN IMMEDIATE`
/// transaction, which waits for the committing writer to finish and then
/// sees its rows. SQLite keeps one hook of each kind per connection, so
/// these replace any the application set on `conn`, and stay installed (as
/// no-ops once used) until the next call replaces them.
pub(crate) fn wake_on_commit(conn: &Connection, hub: &Arc<WakeHub>) -> Result<()> {
    let weak = Arc::downgrade(hub);
    let deferred = crate::write_scope::after_commit(
        conn.path().unwrap_or_default(),
        Box::new(move || {
            if let Some(hub) = weak.upgrade() {
                hub.notify();
            }
        }),
    );
    if deferred.is_ok() {
        return Ok(());
    }
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
    fn listeners_that_went_away_are_forgotten_without_a_notification() {
        // Waiters that give up while nothing happens (say, `wait_until_sent`
        // called again and again while the store is offline) must not pile up.
        let hub = WakeHub::default();
        let live = hub.listen();
        for _ in 0..1000 {
            drop(hub.listen());
        }
        assert!(hub.listeners.lock().unwrap().len() <= 2);
        hub.notify();
        assert!(live.try_recv().is_ok(), "the live listener is still woken");
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
