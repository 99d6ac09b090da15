//! What a kit spawned and is still alive: the senders and consumers whose
//! live figures [`Kit::metrics`](crate::Kit::metrics) and
//! [`Kit::health`](crate::Kit::health) add to what the database says.
//!
//! The registry holds weak references to the components' shared state, so
//! it never keeps a component alive: dropping a handle still ends its
//! threads, and the entry disappears once they are gone.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::consumer::ConsumerShared;
use crate::outbox::SenderShared;

/// A consumer the kit spawned.
#[derive(Debug)]
struct ConsumerEntry {
    category: String,
    consumer_id: String,
    shared: Weak<ConsumerShared>,
}

/// A live consumer: its key and its shared state.
#[derive(Debug, Clone)]
pub(crate) struct LiveConsumer {
    pub(crate) category: String,
    pub(crate) consumer_id: String,
    pub(crate) shared: Arc<ConsumerShared>,
}

#[derive(Debug, Default)]
struct Inner {
    senders: Vec<Weak<SenderShared>>,
    consumers: Vec<ConsumerEntry>,
}

impl Inner {
    fn prune(&mut self) {
        self.senders.retain(|w| w.strong_count() > 0);
        self.consumers.retain(|c| c.shared.strong_count() > 0);
    }
}

/// The live components of one kit (shared by its clones).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add_sender(&self, shared: &Arc<SenderShared>) {
        let mut inner = self.lock();
        inner.prune();
        inner.senders.push(Arc::downgrade(shared));
    }

    pub(crate) fn add_consumer(
        &self,
        category: &str,
        consumer_id: &str,
        shared: &Arc<ConsumerShared>,
    ) {
        let mut inner = self.lock();
        inner.prune();
        inner.consumers.push(ConsumerEntry {
            category: category.to_string(),
            consumer_id: consumer_id.to_string(),
            shared: Arc::downgrade(shared),
        });
    }

    /// The senders still alive, oldest first.
    pub(crate) fn senders(&self) -> Vec<Arc<SenderShared>> {
        let mut inner = self.lock();
        inner.prune();
        inner.senders.iter().filter_map(Weak::upgrade).collect()
    }

    /// The consumers still alive; of several with one key (a consumer
    /// spawned again while an old handle is kept), the newest.
    pub(crate) fn consumers(&self) -> Vec<LiveConsumer> {
        let mut inner = self.lock();
        inner.prune();
        let mut out: Vec<LiveConsumer> = Vec::new();
        for entry in inner.consumers.iter().rev() {
            let Some(shared) = entry.shared.upgrade() else {
                continue;
            };
            if out
                .iter()
                .any(|c| c.category == entry.category && c.consumer_id == entry.consumer_id)
            {
                continue;
            }
            out.push(LiveConsumer {
                category: entry.category.clone(),
                consumer_id: entry.consumer_id.clone(),
                shared,
            });
        }
        out.reverse();
        out
    }
}
