//! Importing messages with their ids, positions and times kept (what
//! EventoDB's `/import` does), and clearing a namespace for `force=true`.

use rusqlite::{ErrorCode, TransactionBehavior};

use super::write::{insert, Row};
use super::EmbeddedStore;
use crate::error::{Error, Result};

/// A message to import as it is.
#[derive(Debug, Clone)]
pub(crate) struct ImportRow {
    pub(crate) id: String,
    pub(crate) stream_name: String,
    pub(crate) message_type: String,
    pub(crate) position: i64,
    pub(crate) global_position: i64,
    /// JSON text; `None` stores SQL NULL (read back as `null`).
    pub(crate) data: Option<String>,
    pub(crate) metadata: Option<String>,
    pub(crate) time_ms: i64,
}

/// Why an import batch failed (and was rolled back).
#[derive(Debug)]
pub(crate) enum ImportError {
    /// A row's global position, stream position or id exists already.
    Exists {
        /// The global position of the row that collided.
        global_position: i64,
    },
    /// Anything else.
    Failed(Error),
}

impl EmbeddedStore {
    /// Inserts `rows` into this handle's namespace in one transaction,
    /// without checks beyond the unique indexes and without pokes.
    pub(crate) fn import_rows(&self, rows: &[ImportRow]) -> std::result::Result<(), ImportError> {
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| ImportError::Failed(e.into()))?;
        for r in rows {
            let row = Row {
                namespace: &self.namespace,
                id: &r.id,
                stream_name: &r.stream_name,
                message_type: &r.message_type,
                position: r.position,
                global_position: r.global_position,
                data: r.data.as_deref(),
                metadata: r.metadata.as_deref(),
                time_ms: r.time_ms,
            };
            match insert(&tx, &row) {
                Ok(()) => {}
                Err(Error::DuplicateId { .. }) => {
                    return Err(ImportError::Exists {
                        global_position: r.global_position,
                    })
                }
                Err(Error::Db(e))
                    if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) =>
                {
                    return Err(ImportError::Exists {
                        global_position: r.global_position,
                    })
                }
                Err(e) => return Err(ImportError::Failed(e)),
            }
        }
        tx.commit().map_err(|e| ImportError::Failed(e.into()))
    }

    /// Deletes every message of this handle's namespace (its global
    /// positions start again at 1).
    pub(crate) fn clear_messages(&self) -> Result<()> {
        self.writer().execute(
            "DELETE FROM evento_store_messages WHERE namespace = ?1",
            [&*self.namespace],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MessageStore, StreamQuery};
    use crate::{NewMessage, WriteOptions};

    fn row(id: &str, position: i64, global_position: i64) -> ImportRow {
        ImportRow {
            id: id.into(),
            stream_name: "imp-1".into(),
            message_type: "T".into(),
            position,
            global_position,
            data: None,
            metadata: Some("{\"a\":1}".into()),
            time_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn imports_keep_positions_and_collisions_roll_back() {
        let store = EmbeddedStore::open_in_memory().unwrap();
        store
            .import_rows(&[row("a", 0, 5), row("b", 1, 9)])
            .unwrap();
        let read = store.get_stream("imp-1", &StreamQuery::new()).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!((read[1].position, read[1].global_position), (1, 9));
        assert!(read[0].data.is_null());
        let next = store
            .write(
                "imp-1",
                &NewMessage::new("T", serde_json::json!({})),
                &WriteOptions::new(),
            )
            .unwrap();
        assert_eq!((next.position, next.global_position), (2, 10));
        for clash in [row("a", 7, 70), row("z", 0, 71), row("y", 8, 9)] {
            match store.import_rows(&[row("c", 20, 20), clash.clone()]) {
                Err(ImportError::Exists { global_position }) => {
                    assert_eq!(global_position, clash.global_position)
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            store
                .get_stream("imp-1", &StreamQuery::new())
                .unwrap()
                .len(),
            3
        );
        store.clear_messages().unwrap();
        assert!(store
            .get_stream("imp-1", &StreamQuery::new())
            .unwrap()
            .is_empty());
    }
}
