//! In-process pokes: every committed write is offered to the matching
//! subscribers over bounded crossbeam channels. A full channel drops the poke
//! (the subscriber already has wake-ups pending), so a slow subscriber never
//! blocks a writer.

use std::sync::{Arc, Mutex, Weak};

use crossbeam_channel::{Sender, TrySendError};

use crate::consumer_group::ConsumerGroup;
use crate::store::Poke;
use crate::stream_name::category;

/// Room for live pokes beyond the replayed ones (EventoDB buffers 100).
pub(super) const LIVE_CAPACITY: usize = 1024;

#[derive(Debug)]
pub(super) enum Filter {
    Stream(String),
    Category(String, Option<ConsumerGroup>),
    All,
}

#[derive(Debug)]
struct Subscriber {
    id: u64,
    namespace: String,
    filter: Filter,
    /// Stream position (stream filter) or global position (others) from
    /// which live pokes are forwarded.
    from: i64,
    sender: Sender<Poke>,
}

impl Subscriber {
    fn wants(&self, namespace: &str, poke: &Poke) -> bool {
        if self.namespace != namespace {
            return false;
        }
        match &self.filter {
            Filter::Stream(s) => *s == poke.stream && poke.position >= self.from,
            Filter::Category(c, group) => {
                (c.is_empty() || category(&poke.stream) == c)
                    && group.is_none_or(|g| g.contains(&poke.stream))
                    && poke.global_position >= self.from
            }
            Filter::All => poke.global_position >= self.from,
        }
    }
}

/// The subscribers of one embedded store.
#[derive(Debug, Default)]
pub(super) struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    subscribers: Vec<Subscriber>,
}

/// Removes its subscriber from the registry when dropped.
pub(super) struct Unsubscribe {
    registry: Weak<Registry>,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            let mut inner = registry.lock();
            inner.subscribers.retain(|s| s.id != self.id);
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a subscriber; dropping the returned guard removes it.
    pub(super) fn add(
        self: &Arc<Self>,
        namespace: &str,
        filter: Filter,
        from: i64,
        sender: Sender<Poke>,
    ) -> Unsubscribe {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.subscribers.push(Subscriber {
            id,
            namespace: namespace.to_string(),
            filter,
            from,
            sender,
        });
        Unsubscribe {
            registry: Arc::downgrade(self),
            id,
        }
    }

    /// Offers `poke` to every matching subscriber without blocking.
    pub(super) fn publish(&self, namespace: &str, poke: &Poke) {
        let mut inner = self.lock();
        inner.subscribers.retain(|s| {
            if !s.wants(namespace, poke) {
                return true;
            }
            !matches!(
                s.sender.try_send(poke.clone()),
                Err(TrySendError::Disconnected(_))
            )
        });
    }

    /// Number of live subscribers (for tests and metrics).
    pub(super) fn len(&self) -> usize {
        self.lock().subscribers.len()
    }
}
