//! Importing messages with their ids, positions and times kept (what
//! EventoDB's `/import` does), and clearing a namespace for `force=true`:
//! the batch insert, the NDJSON reader shared by the server's `/import` and
//! [`EmbeddedStore::import_ndjson`].

use std::io::BufRead;
use std::time::Instant;

use rusqlite::{ErrorCode, TransactionBehavior};

use super::write::{insert, Row};
use super::EmbeddedStore;
use crate::error::{Error, Result};
use crate::message::{is_too_deep, too_deep_message};
use crate::store::http::ImportSummary;
use crate::time::{parse_rfc3339, to_ms};
use crate::wire::json::{self, normalize_numbers};
use crate::wire::ndjson::{import_failure, ndjson_lines, Record};

/// Records per transaction (and per progress line).
pub(crate) const IMPORT_BATCH: usize = 1000;
/// The buffer of EventoDB's line reader (a `bufio.Scanner`): a line must
/// be shorter (it refuses a line that fills the buffer).
const MAX_LINE: usize = 1024 * 1024;

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
    /// The namespace is not registered (a server in test mode lets a token
    /// of an unknown namespace in).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    NamespaceNotFound,
    /// Anything else.
    Failed(Error),
}

/// How an NDJSON import ended (EventoDB's `/import` outcomes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImportOutcome {
    /// Every record was imported.
    Done {
        /// Records imported.
        imported: u64,
    },
    /// The import stopped; batches before the failing one stay imported.
    Failed {
        /// `INVALID_JSON`, `INVALID_RECORD`, `POSITION_EXISTS`, `IMPORT_FAILED`, `READ_ERROR`.
        code: &'static str,
        /// EventoDB's message.
        message: String,
        /// The line being read when the failing batch was flushed (for a
        /// line too long to read: the lines read before it; 0 = none).
        line: u64,
    },
}

/// Parses one NDJSON line into a row (`Ok(None)` for a blank line).
fn parse_line(raw: &[u8], line_no: u64) -> std::result::Result<Option<ImportRow>, ImportOutcome> {
    let fail = |code, message| ImportOutcome::Failed {
        code,
        message,
        line: line_no,
    };
    if raw.len() >= MAX_LINE {
        return Err(ImportOutcome::Failed {
            code: "READ_ERROR",
            message: "error reading input: bufio.Scanner: token too long".into(),
            line: line_no - 1,
        });
    }
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let too_deep = |field: &str| {
        fail(
            "INVALID_RECORD",
            format!(
                "invalid record at line {line_no}: {}",
                too_deep_message(field)
            ),
        )
    };
    let mut record: Record = serde_json::from_str(text).map_err(|e| {
        // serde_json stops reading at 128 levels: data or meta is deeper
        // than the record's own level plus the limit.
        if json::is_too_deep(&e) {
            return too_deep("data or meta");
        }
        fail(
            "INVALID_JSON",
            format!("malformed JSON at line {line_no}: {e}"),
        )
    })?;
    // The rule of every write (`NewMessage::validate`).
    if is_too_deep(&record.data) {
        return Err(too_deep("data"));
    }
    if is_too_deep(&record.meta) {
        return Err(too_deep("meta"));
    }
    let time = parse_rfc3339(&record.time).map_err(|_| {
        fail(
            "INVALID_RECORD",
            format!(
                "invalid record at line {line_no}: invalid time format: cannot parse {:?} as RFC3339",
                record.time
            ),
        )
    })?;
    normalize_numbers(&mut record.data);
    normalize_numbers(&mut record.meta);
    let json = |v: &serde_json::Value| (!v.is_null()).then(|| v.to_string());
    Ok(Some(ImportRow {
        data: json(&record.data),
        metadata: json(&record.meta),
        id: record.id,
        stream_name: record.stream,
        message_type: record.message_type,
        position: record.pos,
        global_position: record.gpos,
        time_ms: to_ms(time),
    }))
}

/// Reads NDJSON `lines` (without their newlines) in batches of 1000 and
/// hands each batch to `insert`, as EventoDB's `/import` does; calls
/// `on_batch(imported so far, last global position)` after each full batch.
pub(crate) fn import_lines_into<I>(
    lines: I,
    mut on_batch: impl FnMut(u64, i64),
    mut insert: impl FnMut(&[ImportRow]) -> std::result::Result<(), ImportError>,
) -> ImportOutcome
where
    I: IntoIterator<Item = std::io::Result<Vec<u8>>>,
{
    let mut batch: Vec<ImportRow> = Vec::with_capacity(IMPORT_BATCH);
    let mut imported = 0u64;
    let mut line_no = 0u64;
    let mut flush =
        |batch: &mut Vec<ImportRow>, line: u64| -> std::result::Result<(), ImportOutcome> {
            let result = insert(batch);
            batch.clear();
            result.map_err(|e| {
                let (code, message) = match e {
                    ImportError::Exists { global_position } => (
                        "POSITION_EXISTS",
                        format!("global position already exists: {global_position}"),
                    ),
                    ImportError::NamespaceNotFound => {
                        ("IMPORT_FAILED", "namespace not found".to_string())
                    }
                    ImportError::Failed(e) => ("IMPORT_FAILED", e.to_string()),
                };
                ImportOutcome::Failed {
                    code,
                    message,
                    line,
                }
            })
        };
    for raw in lines {
        line_no += 1;
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => {
                return ImportOutcome::Failed {
                    code: "READ_ERROR",
                    message: format!("error reading input: {e}"),
                    line: line_no - 1,
                }
            }
        };
        match parse_line(&raw, line_no) {
            Ok(Some(row)) => batch.push(row),
            Ok(None) => continue,
            Err(failed) => return failed,
        }
        if batch.len() == IMPORT_BATCH {
            let last_gpos = batch.last().map_or(0, |r| r.global_position);
            let count = batch.len() as u64;
            if let Err(failed) = flush(&mut batch, line_no) {
                return failed;
            }
            imported += count;
            on_batch(imported, last_gpos);
        }
    }
    if !batch.is_empty() {
        let count = batch.len() as u64;
        if let Err(failed) = flush(&mut batch, line_no) {
            return failed;
        }
        imported += count;
    }
    ImportOutcome::Done { imported }
}

impl EmbeddedStore {
    /// [`import_lines_into`] this handle's namespace.
    pub(crate) fn import_lines<I>(&self, lines: I, on_batch: impl FnMut(u64, i64)) -> ImportOutcome
    where
        I: IntoIterator<Item = std::io::Result<Vec<u8>>>,
    {
        import_lines_into(lines, on_batch, |rows| self.import_rows(rows))
    }

    /// Loads NDJSON records — EventoDB's export format, as written by
    /// [`store::ndjson::export`](crate::store::ndjson::export) or `eventodb
    /// export` — into this handle's namespace, keeping their ids, positions
    /// and times, in transactions of 1000 records (what EventoDB's
    /// `/import` does). With `force`, every message of the namespace is
    /// deleted first. Calls `on_batch` with the number imported so far after
    /// each batch of 1000. Imported messages are not poked.
    ///
    /// Errors: a malformed record is [`Error::InvalidInput`] naming its
    /// line; a global position, stream position or id that exists already
    /// is [`Error::Store`] with code `POSITION_EXISTS`. Batches before the
    /// failing one stay imported.
    ///
    /// ```
    /// use eventodb_kit::{EmbeddedStore, MessageStore, StreamQuery};
    ///
    /// let store = EmbeddedStore::open_in_memory()?;
    /// let ndjson = br#"{"id":"0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87","stream":"account-1","type":"Opened","pos":0,"gpos":7,"data":{},"meta":null,"time":"2026-03-01T12:34:56Z"}"#;
    /// let summary = store.import_ndjson(&mut &ndjson[..], false, &mut |_| {})?;
    /// assert_eq!(summary.imported, 1);
    /// assert_eq!(store.get_stream("account-1", &StreamQuery::new())?[0].global_position, 7);
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    pub fn import_ndjson(
        &self,
        input: &mut dyn BufRead,
        force: bool,
        on_batch: &mut dyn FnMut(u64),
    ) -> Result<ImportSummary> {
        let started = Instant::now();
        if force {
            self.clear_messages()?;
        }
        match self.import_lines(ndjson_lines(input), |imported, _| on_batch(imported)) {
            ImportOutcome::Done { imported } => Ok(ImportSummary {
                imported,
                elapsed: format!("{:.1}s", started.elapsed().as_secs_f64()),
            }),
            ImportOutcome::Failed {
                code,
                message,
                line,
            } => Err(import_failure(code, message, line)),
        }
    }

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
