//! `stream.write` on the embedded store: one write ([`append`]) or many in
//! one transaction ([`append_many`]), through the same checks ([`check`]).

use std::borrow::Cow;

use rusqlite::{params, Connection, ErrorCode, TransactionBehavior};
use uuid::Uuid;

use crate::consumer_group::stream_hash;
use crate::error::{Error, Result};
use crate::message::{NewMessage, WriteOptions, WriteResult};
use crate::store::{check_write, WriteItem};
use crate::stream_name::category;
use crate::wire::json::to_stored_text;

/// A message ready to be inserted: positions decided, JSON encoded.
pub(crate) struct Row<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) id: &'a str,
    pub(crate) stream_name: &'a str,
    pub(crate) message_type: &'a str,
    pub(crate) position: i64,
    pub(crate) global_position: i64,
    pub(crate) data: Option<&'a str>,
    pub(crate) metadata: Option<&'a str>,
    pub(crate) time_ms: i64,
}

/// Inserts one row; a second message with the same id is [`Error::DuplicateId`].
pub(crate) fn insert(conn: &Connection, row: &Row<'_>) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO evento_store_messages
           (namespace, global_position, stream_name, position, id, category, cg_hash, type, data, metadata, time_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let result = stmt.execute(params![
        row.namespace,
        row.global_position,
        row.stream_name,
        row.position,
        row.id,
        category(row.stream_name),
        stream_hash(row.stream_name),
        row.message_type,
        row.data,
        row.metadata,
        row.time_ms,
    ]);
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e, "evento_store_messages.id") => Err(Error::DuplicateId {
            id: row.id.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Whether `e` is a UNIQUE constraint failure whose message names `column`.
pub(crate) fn is_unique_violation(e: &rusqlite::Error, column: &str) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(err, Some(msg)) => {
            err.code == ErrorCode::ConstraintViolation && msg.contains(column)
        }
        _ => false,
    }
}

/// The stream's version: position of its last message, -1 when empty.
pub(crate) fn stream_version(conn: &Connection, namespace: &str, stream: &str) -> Result<i64> {
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(MAX(position), -1) FROM evento_store_messages
         WHERE namespace = ?1 AND stream_name = ?2",
    )?;
    Ok(stmt.query_row(params![namespace, stream], |r| r.get(0))?)
}

/// The next global position of the namespace (1 for an empty one).
fn next_global_position(conn: &Connection, namespace: &str) -> Result<i64> {
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(MAX(global_position), 0) + 1 FROM evento_store_messages WHERE namespace = ?1",
    )?;
    Ok(stmt.query_row([namespace], |r| r.get(0))?)
}

/// A write that passed the checks EventoDB makes before it touches the
/// database, with its id decided and its JSON encoded.
pub(crate) struct Checked<'a> {
    stream: &'a str,
    message_type: &'a str,
    id: Cow<'a, str>,
    data: String,
    metadata: Option<String>,
    expected_version: Option<i64>,
}

/// EventoDB's checks of a write that need no database, in EventoDB's order
/// (stream name, message, id), and the encoding of its JSON. Every write
/// entry point of the embedded store goes through here, one write or many.
pub(crate) fn check<'a>(
    stream: &'a str,
    message: &'a NewMessage,
    options: &'a WriteOptions,
) -> Result<Checked<'a>> {
    check_write(stream, message)?;
    let id = match options.id.as_deref() {
        Some(id) if !id.is_empty() => {
            check_uuid(id).map_err(|detail| {
                Error::backend(format!(
                    "Failed to write message: invalid UUID format: {detail}"
                ))
            })?;
            Cow::Borrowed(id)
        }
        _ => Cow::Owned(Uuid::now_v7().to_string()),
    };
    Ok(Checked {
        stream,
        message_type: message.message_type(),
        id,
        // Numbers as EventoDB stores them (float64s), so that this store
        // reads back exactly what a read over HTTP gives.
        data: to_stored_text(message.data()),
        metadata: message.metadata().map(to_stored_text),
        expected_version: options.expected_version,
    })
}

/// The rest of EventoDB's checks (the expected version) and the insert, on a
/// connection inside a write transaction. `global_position` gives the
/// namespace's next global position when the caller knows it.
fn apply(
    conn: &Connection,
    namespace: &str,
    write: &Checked<'_>,
    time_ms: i64,
    global_position: Option<i64>,
) -> Result<WriteResult> {
    let version = stream_version(conn, namespace, write.stream)?;
    if let Some(expected) = write.expected_version {
        if expected != version {
            return Err(Error::Conflict {
                stream: write.stream.to_string(),
                expected,
                actual: Some(version),
            });
        }
    }
    let result = WriteResult {
        position: version + 1,
        global_position: match global_position {
            Some(next) => next,
            None => next_global_position(conn, namespace)?,
        },
    };
    insert(
        conn,
        &Row {
            namespace,
            id: &write.id,
            stream_name: write.stream,
            message_type: write.message_type,
            position: result.position,
            global_position: result.global_position,
            data: Some(&write.data),
            metadata: write.metadata.as_deref(),
            time_ms,
        },
    )?;
    Ok(result)
}

/// Appends `message` to `stream` in its own `BEGIN IMMEDIATE` transaction,
/// with EventoDB's checks in EventoDB's order.
pub(super) fn append(
    conn: &mut Connection,
    namespace: &str,
    stream: &str,
    message: &NewMessage,
    options: &WriteOptions,
    time_ms: i64,
) -> Result<WriteResult> {
    let write = check(stream, message, options)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let result = apply(&tx, namespace, &write, time_ms, None)?;
    tx.commit()?;
    Ok(result)
}

/// The canonical form of a UUID that [`check_uuid`] accepts: 36
/// characters, lowercase, hyphenated (what EventoDB's Postgres backend
/// stores and answers).
pub(crate) fn canonical_uuid(s: &str) -> std::result::Result<String, String> {
    check_uuid(s)?;
    let core = match s.len() {
        38 => &s[1..37],
        45 => &s[9..],
        _ => s,
    };
    let hex: String = core
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// Appends every item in one `BEGIN IMMEDIATE` transaction, each inside a
/// savepoint of its own: an item that fails (the same checks as
/// [`append`], in the same order) is rolled back alone, consumes no
/// position and leaves no row, and the items after it go on. One outcome
/// per item, in order. When the transaction itself fails (begin, a
/// savepoint, the commit), nothing is stored and every item reports that
/// error — an outcome decided inside a transaction that did not commit
/// (a conflict with an earlier item of the batch, say) would not be true.
pub(super) fn append_many(
    conn: &mut Connection,
    namespace: &str,
    items: &[WriteItem],
    now_ms: impl Fn() -> i64,
) -> Vec<Result<WriteResult>> {
    if items.is_empty() {
        return Vec::new();
    }
    let outcome = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(items.len());
        let mut next_global = None;
        {
            let mut savepoint = tx.prepare_cached("SAVEPOINT evento_write")?;
            let mut release = tx.prepare_cached("RELEASE evento_write")?;
            let mut rollback = tx.prepare_cached("ROLLBACK TO evento_write")?;
            for item in items {
                let write = match check(&item.stream, &item.message, &item.options) {
                    Ok(write) => write,
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                };
                savepoint.execute([])?;
                let outcome = apply(&tx, namespace, &write, now_ms(), next_global);
                match &outcome {
                    // Positions are MAX + 1 and nobody else writes inside
                    // this transaction: the next one follows this one.
                    Ok(written) => next_global = Some(written.global_position + 1),
                    Err(_) => {
                        rollback.execute([])?;
                    }
                }
                release.execute([])?;
                results.push(outcome);
            }
        }
        tx.commit()?;
        Ok::<_, Error>(results)
    })();
    match outcome {
        Ok(results) => results,
        Err(e) => {
            let mut every = Vec::with_capacity(items.len());
            every.extend((1..items.len()).map(|_| Err(copy_of(&e))));
            every.push(Err(e));
            every
        }
    }
}

/// A copy of a transaction's failure, for each item it failed.
fn copy_of(e: &Error) -> Error {
    match e {
        Error::Db(rusqlite::Error::SqliteFailure(code, message)) => {
            Error::Db(rusqlite::Error::SqliteFailure(*code, message.clone()))
        }
        other => Error::backend(format!("Failed to write message: {other}")),
    }
}

/// Go's `uuid.Parse` acceptance rules: 36-char canonical, 38-char `{…}`,
/// 45-char `urn:uuid:…` or 32 hex digits; any version, any case.
pub(crate) fn check_uuid(s: &str) -> std::result::Result<(), String> {
    let b = s.as_bytes();
    let canonical: &[u8] = match b.len() {
        36 => b,
        45 => {
            if !b[..9].eq_ignore_ascii_case(b"urn:uuid:") {
                return Err(format!(
                    "invalid urn prefix: {:?}",
                    String::from_utf8_lossy(&b[..9])
                ));
            }
            &b[9..]
        }
        38 => &b[1..],
        32 => {
            return if b.iter().all(u8::is_ascii_hexdigit) {
                Ok(())
            } else {
                Err("invalid UUID format".into())
            };
        }
        n => return Err(format!("invalid UUID length: {n}")),
    };
    let dashes = [8, 13, 18, 23];
    if dashes.iter().any(|&i| canonical[i] != b'-') {
        return Err("invalid UUID format".into());
    }
    let hex_ok = canonical[..36]
        .iter()
        .enumerate()
        .filter(|(i, _)| !dashes.contains(i))
        .all(|(_, c)| c.is_ascii_hexdigit());
    if hex_ok {
        Ok(())
    } else {
        Err("invalid UUID format".into())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use rusqlite::Connection;
    use serde_json::json;

    use super::{append_many, canonical_uuid, check_uuid};
    use crate::error::Error;
    use crate::message::{NewMessage, WriteOptions};
    use crate::store::{EmbeddedStore, MessageStore, SubscribeTarget, WriteItem};

    const ID: &str = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";

    fn item(stream: &str, n: i64, options: WriteOptions) -> WriteItem {
        WriteItem::new(stream, NewMessage::new("Event", json!({ "n": n })), options)
    }

    /// A connection with the store's tables, counting its commits.
    fn counted_connection() -> (Connection, Arc<AtomicU32>) {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        let schema = super::super::store_schema();
        crate::migrate::migrate_to(&mut conn, schema, schema.latest()).unwrap();
        let commits = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&commits);
        conn.commit_hook(Some(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            false
        }))
        .unwrap();
        (conn, commits)
    }

    fn rows(conn: &Connection) -> Vec<(String, i64, i64)> {
        let mut stmt = conn
            .prepare(
                "SELECT stream_name, position, global_position FROM evento_store_messages
                 ORDER BY global_position",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn many_writes_commit_once_and_failures_leave_nothing() {
        let (mut conn, commits) = counted_connection();
        let items = [
            item("a-1", 0, WriteOptions::new().id(ID)),
            item("a-1", 1, WriteOptions::new().id(ID)),
            item("a-1", 2, WriteOptions::new().expected_version(7)),
            WriteItem::new(
                "a-1",
                NewMessage::new("Event", json!([1])),
                WriteOptions::new(),
            ),
            item("", 4, WriteOptions::new()),
            item("a-1", 5, WriteOptions::new().expected_version(0)),
            item("b-1", 6, WriteOptions::new()),
        ];
        let results = append_many(&mut conn, "default", &items, || 0);
        assert_eq!(
            commits.load(Ordering::SeqCst),
            1,
            "one transaction for the whole slice"
        );
        assert_eq!(results.len(), items.len());
        let positions: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().ok().map(|w| (w.position, w.global_position)))
            .collect();
        assert_eq!(
            positions,
            [
                Some((0, 1)),
                None,
                None,
                None,
                None,
                Some((1, 2)),
                Some((0, 3))
            ]
        );
        assert!(matches!(results[1], Err(Error::DuplicateId { .. })));
        assert!(matches!(
            results[2],
            Err(Error::Conflict {
                expected: 7,
                actual: Some(0),
                ..
            })
        ));
        assert!(
            matches!(&results[3], Err(Error::InvalidInput(m)) if m == "message.data must be an object")
        );
        assert!(
            matches!(&results[4], Err(Error::InvalidInput(m)) if m == "streamName must be a non-empty string")
        );
        assert_eq!(
            rows(&conn),
            [
                ("a-1".to_string(), 0, 1),
                ("a-1".to_string(), 1, 2),
                ("b-1".to_string(), 0, 3)
            ],
            "failed items left no row and consumed no position"
        );
        assert!(append_many(&mut conn, "default", &[], || 0).is_empty());
        assert_eq!(
            commits.load(Ordering::SeqCst),
            1,
            "an empty slice opens no transaction"
        );
    }

    #[test]
    fn a_failed_commit_fails_every_item() {
        let (mut conn, _) = counted_connection();
        // A deferred foreign key that every insert violates: the inserts
        // succeed and the commit fails.
        conn.execute_batch(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
             CREATE TRIGGER violate AFTER INSERT ON evento_store_messages
               BEGIN INSERT INTO child VALUES (42); END;",
        )
        .unwrap();
        let items = [
            item("a-1", 0, WriteOptions::new()),
            item("a-1", 1, WriteOptions::new().expected_version(0)),
            item("a-1", 2, WriteOptions::new().expected_version(0)),
        ];
        let results = append_many(&mut conn, "default", &items, || 0);
        assert_eq!(results.len(), 3);
        for result in &results {
            match result {
                Err(Error::Db(e)) => assert_eq!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::ConstraintViolation),
                    "{e}"
                ),
                other => panic!("expected the commit's error, got {other:?}"),
            }
        }
        assert!(rows(&conn).is_empty());
        assert!(conn.is_autocommit(), "no transaction is left open");
        // The connection is usable again.
        conn.execute_batch("DROP TRIGGER violate").unwrap();
        let again = append_many(&mut conn, "default", &items[..2], || 0);
        assert!(again.iter().all(Result::is_ok), "{again:?}");
    }

    #[test]
    fn pokes_follow_the_commit_for_successes_only() {
        let store = EmbeddedStore::open_in_memory().unwrap();
        let sub = store.subscribe(&SubscribeTarget::all(0)).unwrap();
        let results = store.write_many(&[
            item("a-1", 0, WriteOptions::new()),
            item("a-1", 1, WriteOptions::new().expected_version(5)),
            item("b-1", 2, WriteOptions::new()),
        ]);
        assert!(results[1].is_err());
        // Published before write_many returned.
        let pokes: Vec<_> = sub
            .drain()
            .into_iter()
            .map(|p| (p.stream, p.global_position))
            .collect();
        assert_eq!(pokes, [("a-1".to_string(), 1), ("b-1".to_string(), 2)]);
    }

    #[test]
    fn canonical_forms() {
        let canonical = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";
        for form in [
            canonical.to_string(),
            canonical.to_uppercase(),
            format!("{{{canonical}}}"),
            format!("urn:uuid:{}", canonical.to_uppercase()),
            format!("URN:UUID:{canonical}"),
            canonical.replace('-', ""),
        ] {
            assert_eq!(canonical_uuid(&form).unwrap(), canonical, "{form}");
        }
        assert_eq!(canonical_uuid("abc").unwrap_err(), "invalid UUID length: 3");
    }

    #[test]
    fn uuid_forms() {
        let canonical = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";
        assert!(check_uuid(canonical).is_ok());
        assert!(check_uuid(&canonical.to_uppercase()).is_ok());
        assert!(check_uuid(&format!("{{{canonical}}}")).is_ok());
        assert!(check_uuid(&format!("urn:uuid:{canonical}")).is_ok());
        assert!(check_uuid(&canonical.replace('-', "")).is_ok());
        assert_eq!(check_uuid("abc").unwrap_err(), "invalid UUID length: 3");
        assert_eq!(
            check_uuid("0190b6a4x6a3e-7c3e-9b1a-3f2d1c0b9a87").unwrap_err(),
            "invalid UUID format"
        );
        assert_eq!(
            check_uuid("g190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87").unwrap_err(),
            "invalid UUID format"
        );
    }
}
