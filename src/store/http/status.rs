//! The state of an SSE connection, observable from other threads.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::time::Deadline;

/// Where an SSE connection (a subscription or the watch hub) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connecting, or waiting for the response headers. (A real EventoDB
    /// sends the headers of a stream or category subscription only with the
    /// first poke, so such a subscription may stay here while it is idle;
    /// silence checks apply to that wait as well.)
    Connecting,
    /// Connected: pokes flow.
    Connected,
    /// The connection failed or broke (or was found dead after a silence);
    /// the next attempt comes at once after a connection that had been up,
    /// after a growing backoff delay while attempts keep failing.
    Disconnected,
    /// Ended for good: the owner stopped it, or the store refused it
    /// permanently (see [`ConnectionSnapshot::last_error`]).
    Stopped,
}

/// A consistent view of a [`ConnectionStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionSnapshot {
    /// The current state.
    pub state: ConnectionState,
    /// How many times the connection was established.
    pub connects: u64,
    /// How many attempts failed or established connections broke.
    pub disconnects: u64,
    /// The latest failure, if any (never contains the token).
    pub last_error: Option<String>,
    /// How many times a silent connection was checked with the store
    /// (see [`HttpStoreBuilder::silence_timeout`](crate::HttpStoreBuilder::silence_timeout)).
    pub liveness_checks: u64,
}

/// A cheap, cloneable handle on the state of an SSE connection.
///
/// Every change wakes the `wait_*` methods, so a test (or a health check)
/// can wait for the connection to go down or come back without sleeping:
///
/// ```no_run
/// # fn demo(store: &eventodb_kit::HttpStore) -> eventodb_kit::Result<()> {
/// use std::time::Duration;
/// use eventodb_kit::ConnectionState;
///
/// let status = store.watch_status();
/// if !status.wait_for_state(ConnectionState::Connected, Duration::from_secs(5)) {
///     eprintln!("no live pokes yet: consumers poll ({:?})", status.snapshot().last_error);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConnectionStatus {
    shared: Arc<(Mutex<ConnectionSnapshot>, Condvar)>,
}

impl fmt::Debug for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

impl ConnectionStatus {
    pub(crate) fn new() -> Self {
        ConnectionStatus {
            shared: Arc::new((
                Mutex::new(ConnectionSnapshot {
                    state: ConnectionState::Connecting,
                    connects: 0,
                    disconnects: 0,
                    last_error: None,
                    liveness_checks: 0,
                }),
                Condvar::new(),
            )),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ConnectionSnapshot> {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut ConnectionSnapshot)) {
        f(&mut self.lock());
        self.shared.1.notify_all();
    }

    pub(crate) fn connecting(&self) {
        self.update(|s| s.state = ConnectionState::Connecting);
    }

    pub(crate) fn connected(&self) {
        self.update(|s| {
            s.state = ConnectionState::Connected;
            s.connects += 1;
        });
    }

    pub(crate) fn liveness_checked(&self) {
        self.update(|s| s.liveness_checks += 1);
    }

    pub(crate) fn disconnected(&self, error: String) {
        self.update(|s| {
            s.state = ConnectionState::Disconnected;
            s.disconnects += 1;
            s.last_error = Some(error);
        });
    }

    pub(crate) fn stopped(&self, error: Option<String>) {
        self.update(|s| {
            s.state = ConnectionState::Stopped;
            if error.is_some() {
                s.last_error = error;
            }
        });
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.lock().state
    }

    /// State, counters and last error, read together.
    pub fn snapshot(&self) -> ConnectionSnapshot {
        self.lock().clone()
    }

    /// Waits up to `timeout` until `condition` holds; returns whether it did.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&ConnectionSnapshot) -> bool,
    ) -> bool {
        let deadline = Deadline::after(timeout);
        let mut guard = self.lock();
        loop {
            if condition(&guard) {
                return true;
            }
            let left = deadline.remaining();
            if left.is_zero() {
                return false;
            }
            guard = self
                .shared
                .1
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits up to `timeout` for `state`; returns whether it was reached.
    pub fn wait_for_state(&self, state: ConnectionState, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.state == state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_see_changes_from_other_threads() {
        let status = ConnectionStatus::new();
        let s2 = status.clone();
        let t = std::thread::spawn(move || {
            s2.connected();
            s2.disconnected("refused".into());
        });
        assert!(status.wait_until(Duration::from_secs(10), |s| s.disconnects == 1));
        t.join().unwrap();
        let snap = status.snapshot();
        assert_eq!(snap.connects, 1);
        assert_eq!(snap.last_error.as_deref(), Some("refused"));
        assert!(!status.wait_for_state(ConnectionState::Connected, Duration::from_millis(1)));
        status.stopped(None);
        assert_eq!(status.state(), ConnectionState::Stopped);
        assert_eq!(status.snapshot().last_error.as_deref(), Some("refused"));
    }

    #[test]
    fn a_wait_without_limit_is_allowed() {
        let status = ConnectionStatus::new();
        let s2 = status.clone();
        let t = std::thread::spawn(move || s2.connected());
        assert!(status.wait_for_state(ConnectionState::Connected, Duration::MAX));
        t.join().unwrap();
    }
}
