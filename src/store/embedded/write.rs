//! `stream.write` on the embedded store.

use rusqlite::{params, Connection, ErrorCode, TransactionBehavior};
use uuid::Uuid;

use crate::consumer_group::stream_hash;
use crate::error::{Error, Result};
use crate::message::{NewMessage, WriteOptions, WriteResult};
use crate::store::check_stream_name;
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
    check_stream_name(stream)?;
    message.validate()?;
    let generated;
    let id = match options.id.as_deref() {
        Some(id) if !id.is_empty() => {
            check_uuid(id).map_err(|detail| {
                Error::backend(format!(
                    "Failed to write message: invalid UUID format: {detail}"
                ))
            })?;
            id
        }
        _ => {
            generated = Uuid::now_v7().to_string();
            &generated
        }
    };
    // Numbers as EventoDB stores them (float64s), so that this store reads
    // back exactly what a read over HTTP gives.
    let data = to_stored_text(message.data());
    let metadata = message.metadata().map(to_stored_text);

    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version = stream_version(&tx, namespace, stream)?;
    if let Some(expected) = options.expected_version {
        if expected != version {
            return Err(Error::Conflict {
                stream: stream.to_string(),
                expected,
                actual: Some(version),
            });
        }
    }
    let result = WriteResult {
        position: version + 1,
        global_position: next_global_position(&tx, namespace)?,
    };
    insert(
        &tx,
        &Row {
            namespace,
            id,
            stream_name: stream,
            message_type: message.message_type(),
            position: result.position,
            global_position: result.global_position,
            data: Some(&data),
            metadata: metadata.as_deref(),
            time_ms,
        },
    )?;
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
    use super::{canonical_uuid, check_uuid};

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
