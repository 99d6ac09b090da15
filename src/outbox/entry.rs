//! What goes into the outbox: [`OutboxEntry`], and the checks and encoding
//! every row passes before anything is stored.

use std::borrow::Cow;

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::message::{NewMessage, WriteOptions};
use crate::store::check_stream_name;
use crate::store::embedded::write::{canonical_uuid, is_unique_violation};
use crate::time::now_ms;

/// Default limit on a message's JSON (data plus metadata): 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// One message of an [`Outbox::write_batch`](super::Outbox::write_batch): a
/// stream, a message and its write options.
///
/// ```
/// use eventodb_kit::outbox::OutboxEntry;
/// use eventodb_kit::{NewMessage, WriteOptions};
/// use serde_json::json;
///
/// let entry = OutboxEntry::new("account-7", NewMessage::new("Opened", json!({})))
///     .options(WriteOptions::new().expected_version(-1));
/// assert_eq!(entry.stream(), "account-7");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    stream: String,
    message: NewMessage,
    options: WriteOptions,
}

impl OutboxEntry {
    /// `message` for `stream`, with no options.
    pub fn new(stream: impl Into<String>, message: NewMessage) -> Self {
        OutboxEntry {
            stream: stream.into(),
            message,
            options: WriteOptions::new(),
        }
    }

    /// Write options (expected version, custom id, idempotency key).
    /// Defaults to none.
    pub fn options(mut self, options: WriteOptions) -> Self {
        self.options = options;
        self
    }

    /// The stream the message goes to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The message.
    pub fn message(&self) -> &NewMessage {
        &self.message
    }

    /// The write options.
    pub fn write_options(&self) -> &WriteOptions {
        &self.options
    }
}

/// Whether `id` is a UUID in canonical form: 36 characters, lowercase hex
/// digits, hyphens at 8, 13, 18 and 23.
fn is_canonical_uuid(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// A row that passed every check, encoded and with its message id decided.
#[derive(Debug)]
pub(crate) struct PreparedRow<'a> {
    pub(crate) id: Cow<'a, str>,
    pub(crate) stream: &'a str,
    pub(crate) message_type: &'a str,
    pub(crate) data: String,
    pub(crate) metadata: Option<String>,
    pub(crate) expected_version: Option<i64>,
    pub(crate) idempotency_key: Option<&'a str>,
}

/// Checks a message for the outbox and encodes it; nothing is stored.
///
/// The errors are [`Error::InvalidInput`] and say what is wrong, in
/// EventoDB's words where it has them.
pub(crate) fn prepare<'a>(
    stream: &'a str,
    message: &'a NewMessage,
    options: &'a WriteOptions,
    max_payload_bytes: usize,
) -> Result<PreparedRow<'a>> {
    check_stream_name(stream)?;
    message.validate()?;
    if let Some(expected) = options.expected_version {
        if expected < -1 {
            return Err(Error::invalid(format!(
                "options.expectedVersion must be -1 (empty stream) or a stream position, not {expected}"
            )));
        }
    }
    let id = match options.id.as_deref() {
        // Canonical already (the usual case): kept as it is.
        Some(id) if is_canonical_uuid(id) => Cow::Borrowed(id),
        // Any other form EventoDB accepts is stored, sent and compared in
        // its canonical form — one id whatever the case or the dashes, as
        // on EventoDB's Postgres backend.
        Some(id) if !id.is_empty() => Cow::Owned(canonical_uuid(id).map_err(|detail| {
            Error::invalid(format!("options.id {id:?} is not a valid UUID: {detail}"))
        })?),
        _ => Cow::Owned(Uuid::now_v7().to_string()),
    };
    if options.idempotency_key.as_deref() == Some("") {
        return Err(Error::invalid("options.idempotencyKey must not be empty"));
    }
    let data = serde_json::to_string(message.data())?;
    let metadata = message.metadata().map(serde_json::to_string).transpose()?;
    let size = data.len() + metadata.as_ref().map_or(0, String::len);
    if size > max_payload_bytes {
        return Err(Error::invalid(format!(
            "message is {size} bytes of JSON (data and metadata), over the outbox limit of {max_payload_bytes} bytes"
        )));
    }
    Ok(PreparedRow {
        id,
        stream,
        message_type: message.message_type(),
        data,
        metadata,
        expected_version: options.expected_version,
        idempotency_key: options.idempotency_key.as_deref(),
    })
}

/// Inserts a prepared row in the caller's transaction and returns the id of
/// the message: its own, or — when its idempotency key was written before —
/// the first row's.
///
/// `INSERT … ON CONFLICT DO NOTHING` on the unique index of keys, then a
/// read-back: two writers of one key can never both insert, whatever the
/// timing.
pub(crate) fn insert(conn: &Connection, namespace: &str, row: &PreparedRow<'_>) -> Result<String> {
    // Without a key there is nothing to deduplicate: the plain statement
    // skips the upsert machinery.
    let sql = if row.idempotency_key.is_some() {
        "INSERT INTO evento_outbox
           (id, namespace, stream, type, data, metadata, expected_version, idempotency_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (namespace, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
    } else {
        "INSERT INTO evento_outbox
           (id, namespace, stream, type, data, metadata, expected_version, idempotency_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let inserted = stmt
        .execute(params![
            row.id,
            namespace,
            row.stream,
            row.message_type,
            row.data,
            row.metadata,
            row.expected_version,
            row.idempotency_key,
            now_ms(),
        ])
        .map_err(|e| {
            if is_unique_violation(&e, "evento_outbox.id") {
                Error::DuplicateId {
                    id: row.id.to_string(),
                }
            } else {
                e.into()
            }
        })?;
    if inserted == 1 {
        return Ok(row.id.to_string());
    }
    let key = row
        .idempotency_key
        .expect("only an idempotency key conflict skips the insert");
    conn.prepare_cached(
        "SELECT id FROM evento_outbox WHERE namespace = ?1 AND idempotency_key = ?2",
    )?
    .query_row(params![namespace, key], |r| r.get(0))
    .optional()?
    .ok_or_else(|| Error::NotFound(format!("outbox row with idempotency key {key:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(stream: &str, msg: NewMessage, opts: WriteOptions, max: usize) -> String {
        match prepare(stream, &msg, &opts, max) {
            Err(Error::InvalidInput(m)) => m,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn bad_input_is_named() {
        let ok = || NewMessage::new("T", json!({}));
        let none = WriteOptions::new;
        assert_eq!(
            err("", ok(), none(), 100),
            "streamName must be a non-empty string"
        );
        assert_eq!(
            err("s-1", NewMessage::new("", json!({})), none(), 100),
            "message.type must be a non-empty string"
        );
        assert_eq!(
            err("s-1", NewMessage::new("T", json!(5)), none(), 100),
            "message.data must be an object"
        );
        assert_eq!(
            err("s-1", ok().with_metadata(json!([])), none(), 100),
            "message.metadata must be an object"
        );
        assert!(err("s-1", ok(), none().id("abc"), 100).contains("invalid UUID length: 3"));
        assert!(err("s-1", ok(), none().expected_version(-2), 100).contains("not -2"));
        assert!(err("s-1", ok(), none().idempotency_key(""), 100).contains("must not be empty"));
        let big = NewMessage::new("T", json!({ "x": "a".repeat(100) }));
        assert!(err("s-1", big, none(), 100).contains("over the outbox limit of 100 bytes"));
    }

    #[test]
    fn ids_are_uuid_v7_unless_given() {
        let msg = NewMessage::new("T", json!({}));
        let opts = WriteOptions::new();
        let row = prepare("s-1", &msg, &opts, 100).unwrap();
        assert_eq!(Uuid::parse_str(&row.id).unwrap().get_version_num(), 7);
        let canonical = "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87";
        let custom = WriteOptions::new().id(canonical);
        let row = prepare("s-1", &msg, &custom, 100).unwrap();
        assert!(matches!(row.id, Cow::Borrowed(_)), "kept as given");
        for form in [
            "0190B6A4-6A3E-7C3E-9B1A-3F2D1C0B9A87",
            "{0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87}",
            "urn:uuid:0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87",
            "0190b6a46a3e7c3e9b1a3f2d1c0b9a87",
        ] {
            let opts = WriteOptions::new().id(form);
            assert_eq!(
                prepare("s-1", &msg, &opts, 100).unwrap().id,
                canonical,
                "{form}"
            );
        }
        assert!(!is_canonical_uuid("0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a8g"));
        assert!(!is_canonical_uuid("0190b6a4x6a3e-7c3e-9b1a-3f2d1c0b9a87"));
        let empty = WriteOptions::new().id("");
        assert_eq!(prepare("s-1", &msg, &empty, 100).unwrap().id.len(), 36);
    }
}
