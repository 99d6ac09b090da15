//! The `MessageStore` contract against `EmbeddedStore`, in a file of its own
//! per test and in memory.

mod contract;

use std::sync::Arc;

use eventodb_kit::{EmbeddedStore, MessageStore};

/// A store in a fresh SQLite file in its own temporary directory.
struct FileStore {
    store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

impl contract::Fixture for FileStore {
    fn store(&self) -> Arc<dyn MessageStore> {
        Arc::new(self.store.clone())
    }
}

fn file_store() -> FileStore {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("store.db")).unwrap();
    FileStore { store, _dir: dir }
}

/// A store on a second namespace of a shared file, which must behave exactly
/// like a fresh store (namespaces are isolated).
struct OtherNamespace {
    store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

impl contract::Fixture for OtherNamespace {
    fn store(&self) -> Arc<dyn MessageStore> {
        Arc::new(self.store.clone())
    }
}

fn other_namespace() -> OtherNamespace {
    let f = file_store();
    // Fill the default namespace first: the tenant's positions must not see it.
    for s in ["account-1", "account-123", "task-1", "sub-1", "hot-1"] {
        f.store
            .write(
                s,
                &eventodb_kit::NewMessage::new("Noise", serde_json::json!({})),
                &eventodb_kit::WriteOptions::new(),
            )
            .unwrap();
    }
    OtherNamespace {
        store: f.store.with_namespace("tenant-a"),
        _dir: f._dir,
    }
}

struct MemoryStore(EmbeddedStore);

impl contract::Fixture for MemoryStore {
    fn store(&self) -> Arc<dyn MessageStore> {
        Arc::new(self.0.clone())
    }
}

fn memory_store() -> MemoryStore {
    MemoryStore(EmbeddedStore::open_in_memory().unwrap())
}

mod file {
    use super::*;
    contract_tests!(file_store);
}

mod memory {
    use super::*;
    contract_tests!(memory_store);
}

mod namespaced {
    use super::*;
    contract_tests!(other_namespace);
}
