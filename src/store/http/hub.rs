//! The watch hub: one `all=true` SSE connection per [`HttpStore`](super::HttpStore)
//! whose pokes are fanned out to category watchers over channels.
//!
//! Watchers keep their channel while the connection is down and comes back;
//! in the meantime they get no pokes and fall back to polling by their own
//! timeout. When the connection breaks (or is found dead after a silence)
//! and when it is back, every watcher gets a wake-up ([`Poke::is_wake_up`])
//! so that it reads at once instead of at its next poll. A watcher's [`Subscription`] removes it from the hub when dropped;
//! the hub's thread ends with the last handle of its store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crossbeam_channel::{bounded, Sender};

use super::sse::{Endpoint, OnRefusal, PokeSink, SseWorker};
use super::status::ConnectionStatus;
use crate::error::Result;
use crate::store::{Poke, SubscribeTarget, Subscription};
use crate::stream_name::category;

/// Pokes a watcher may have pending; more are dropped (they are only wake-ups).
const WATCH_CAPACITY: usize = 64;

struct Watcher {
    id: u64,
    category: String,
    sender: Sender<Poke>,
}

#[derive(Default)]
struct Watchers {
    next_id: AtomicU64,
    list: Mutex<Vec<Watcher>>,
}

impl Watchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watcher>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PokeSink for Watchers {
    fn deliver(&self, poke: Poke) -> bool {
        let cat = category(&poke.stream);
        self.lock().retain(|w| {
            if !w.category.is_empty() && w.category != cat {
                return true;
            }
            w.sender.deliver(poke.clone())
        });
        // The hub lives as long as its store, watched or not.
        true
    }

    /// Wakes every watcher: the connection broke (pokes stop, so read now
    /// and poll from here on) or came back (writes made while it was down
    /// were not poked).
    fn link_changed(&self, _up: bool) {
        self.lock().retain(|w| w.sender.deliver(Poke::wake_up()));
    }
}

/// Removes a watcher from the hub when its subscription is dropped.
struct Unwatch {
    watchers: Weak<Watchers>,
    id: u64,
}

impl Drop for Unwatch {
    fn drop(&mut self) {
        if let Some(w) = self.watchers.upgrade() {
            w.lock().retain(|w| w.id != self.id);
        }
    }
}

/// The shared connection and its watchers.
pub(crate) struct Hub {
    watchers: Arc<Watchers>,
    worker: SseWorker,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("watchers", &self.watchers.lock().len())
            .field("status", self.worker.status())
            .finish()
    }
}

impl Hub {
    /// Starts the hub's connection thread.
    pub(crate) fn start(endpoint: Endpoint) -> Result<Hub> {
        let watchers = Arc::new(Watchers::default());
        let worker = SseWorker::spawn(
            endpoint,
            SubscribeTarget::all(0),
            Arc::clone(&watchers) as Arc<dyn PokeSink>,
            OnRefusal::Retry,
            "eventodb-watch-hub",
        )?;
        Ok(Hub { watchers, worker })
    }

    /// The shared connection's state.
    pub(crate) fn status(&self) -> &ConnectionStatus {
        self.worker.status()
    }

    /// A new watcher of `category` (`""`: every category).
    pub(crate) fn watch(&self, category: &str) -> Subscription {
        let (sender, receiver) = bounded(WATCH_CAPACITY);
        let id = self.watchers.next_id.fetch_add(1, Ordering::Relaxed);
        self.watchers.lock().push(Watcher {
            id,
            category: category.to_string(),
            sender,
        });
        let guard = Unwatch {
            watchers: Arc::downgrade(&self.watchers),
            id,
        };
        Subscription::new(receiver, guard)
    }

    /// Number of registered watchers.
    pub(crate) fn watcher_count(&self) -> usize {
        self.watchers.lock().len()
    }
}
