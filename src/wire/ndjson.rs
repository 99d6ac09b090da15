//! NDJSON records of `eventodb export` / `POST /import`, and the progress
//! lines `/import` answers with.
//!
//! A record is one JSON object per line with the keys `id, stream, type, pos,
//! gpos, data, meta, time` (in that order when exported; `meta` is `null`
//! when absent; `time` is RFC 3339).

use std::io::BufRead;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::message::{too_deep_message, Message, MAX_JSON_DEPTH};
use crate::time::format_rfc3339_seconds;
use crate::wire::json::normalize_numbers;

/// One exported message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Record {
    pub(crate) id: String,
    pub(crate) stream: String,
    #[serde(rename = "type")]
    pub(crate) message_type: String,
    pub(crate) pos: i64,
    pub(crate) gpos: i64,
    #[serde(
        serialize_with = "super::json::sorted",
        deserialize_with = "object_or_null"
    )]
    pub(crate) data: Value,
    #[serde(
        serialize_with = "super::json::sorted",
        deserialize_with = "object_or_null"
    )]
    pub(crate) meta: Value,
    pub(crate) time: String,
}

impl Record {
    /// The record of a message read from a store (numbers of data and
    /// metadata as float64s, as `eventodb export` writes them).
    pub(crate) fn from_message(m: &Message) -> Self {
        let mut data = m.data.clone();
        normalize_numbers(&mut data);
        let mut meta = m.metadata.clone().unwrap_or(Value::Null);
        normalize_numbers(&mut meta);
        Record {
            id: m.id.clone(),
            stream: m.stream_name.clone(),
            message_type: m.message_type.clone(),
            pos: m.position,
            gpos: m.global_position,
            data,
            meta,
            time: format_rfc3339_seconds(m.time),
        }
    }

    /// The record as one NDJSON line (Go encoding, with the newline).
    pub(crate) fn to_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        super::json::write_go(&mut out, self);
        out.push(b'\n');
        out
    }
}

/// `data` and `meta` are maps in EventoDB's record type: an object or `null`.
fn object_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let v = Value::deserialize(d)?;
    let kind = match &v {
        Value::Object(_) | Value::Null => return Ok(v),
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
    };
    Err(serde::de::Error::custom(format!(
        "json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
    )))
}

/// One `data:` line of an `/import` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Progress {
    /// The import failed at `line` and stopped.
    Failed {
        /// `INVALID_JSON`, `INVALID_RECORD`, `POSITION_EXISTS`, `IMPORT_FAILED`, `READ_ERROR`.
        error: String,
        /// What went wrong.
        message: String,
        /// The line being read when the failing batch was flushed (0, and
        /// left out, when there is none).
        #[serde(default, skip_serializing_if = "is_zero")]
        line: u64,
    },
    /// The import finished.
    Done {
        /// Always true.
        done: bool,
        /// Records imported.
        imported: u64,
        /// Seconds with one decimal, e.g. `0.3s`.
        elapsed: String,
    },
    /// A full batch of 1000 was committed.
    Batch {
        /// Records imported so far.
        imported: u64,
        /// Global position of the batch's last record.
        gpos: i64,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Whether the JSON text `text` nests arrays and objects more than `limit`
/// levels deep: a byte scan (strings skipped), nothing parsed or built.
pub(crate) fn text_nested_deeper_than(text: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    for b in super::json::outside_strings(text) {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether an NDJSON record line carries `data` or `meta` nested deeper
/// than [`MAX_JSON_DEPTH`] (the record object is one level more).
pub(crate) fn record_too_deep(line: &[u8]) -> bool {
    text_nested_deeper_than(line, MAX_JSON_DEPTH + 1)
}

/// The `INVALID_RECORD` message for a record at `line` whose data or meta
/// is nested too deep.
pub(crate) fn too_deep_record_message(line: u64) -> String {
    format!(
        "invalid record at line {line}: {}",
        too_deep_message("data or meta")
    )
}

/// The lines of `input` without their `\n` (a final newline ends the last
/// line; it does not start an empty one).
pub(crate) fn ndjson_lines(
    input: &mut dyn BufRead,
) -> impl Iterator<Item = std::io::Result<Vec<u8>>> + '_ {
    std::iter::from_fn(move || {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Some(Ok(line))
            }
            Err(e) => Some(Err(e)),
        }
    })
}

/// The error of a failed import (`/import`'s `{"error", "message", "line"}`).
pub(crate) fn import_failure(code: &str, message: String, line: u64) -> Error {
    match code {
        "INVALID_JSON" | "INVALID_RECORD" => Error::InvalidInput(message),
        "POSITION_EXISTS" => Error::Store {
            status: 409,
            code: code.to_string(),
            message: format!("{message} (import stopped at line {line})"),
        },
        _ => Error::Store {
            status: 500,
            code: code.to_string(),
            message: format!("{message} (import stopped at line {line})"),
        },
    }
}

impl Progress {
    /// The SSE-framed line: `data: {…}\n\n`.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn to_event(&self) -> Vec<u8> {
        let mut out = b"data: ".to_vec();
        super::json::write_go(&mut out, self);
        out.extend_from_slice(b"\n\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_scan_skips_strings() {
        assert!(!text_nested_deeper_than(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(text_nested_deeper_than(br#"{"a":[1,{"b":[]}]}"#, 3));
        assert!(!text_nested_deeper_than(br#"{"a":"[[[[{{{{\"[[["}"#, 1));
        assert!(text_nested_deeper_than(br#"{"a\\":[["x"]]}"#, 2));
        assert!(!record_too_deep(&[b'['; MAX_JSON_DEPTH + 1]));
        assert!(record_too_deep(&[b'['; MAX_JSON_DEPTH + 2]));
    }

    #[test]
    fn record_keys_in_export_order() {
        let r = Record {
            id: "i".into(),
            stream: "s-1".into(),
            message_type: "T".into(),
            pos: 0,
            gpos: 1,
            data: json!({"b": 1, "a": "<"}),
            meta: Value::Null,
            time: "2026-03-01T12:34:56Z".into(),
        };
        assert_eq!(
            String::from_utf8(r.to_line()).unwrap(),
            "{\"id\":\"i\",\"stream\":\"s-1\",\"type\":\"T\",\"pos\":0,\"gpos\":1,\"data\":{\"a\":\"\\u003c\",\"b\":1},\"meta\":null,\"time\":\"2026-03-01T12:34:56Z\"}\n"
        );
        let back: Record = serde_json::from_slice(&r.to_line()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn progress_lines() {
        let done = Progress::Done {
            done: true,
            imported: 3,
            elapsed: "0.0s".into(),
        };
        assert_eq!(
            String::from_utf8(done.to_event()).unwrap(),
            "data: {\"done\":true,\"imported\":3,\"elapsed\":\"0.0s\"}\n\n"
        );
        let batch: Progress = serde_json::from_str(r#"{"imported":1000,"gpos":1000}"#).unwrap();
        assert_eq!(
            batch,
            Progress::Batch {
                imported: 1000,
                gpos: 1000
            }
        );
        let failed: Progress =
            serde_json::from_str(r#"{"error":"INVALID_JSON","message":"m","line":2}"#).unwrap();
        assert!(matches!(failed, Progress::Failed { line: 2, .. }));
    }
}
