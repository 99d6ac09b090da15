//! `POST /import[?force=true]`: NDJSON records into the caller's namespace
//! (protocol §11), answered with SSE-framed progress lines, all at the end.

use std::time::Instant;

use super::http::Request;
use super::http::Response;
use super::router::{error, Caller};
use super::Shared;
use crate::store::embedded::import::{ImportError, ImportRow};
use crate::time::{parse_rfc3339, to_ms};
use crate::wire::json::normalize_numbers;
use crate::wire::ndjson::{Progress, Record};

/// Records per transaction (and per progress line).
const BATCH: usize = 1000;
/// Longest line accepted (bufio.Scanner's limit in EventoDB).
const MAX_LINE: usize = 1024 * 1024;

pub(crate) fn handle(shared: &Shared, caller: &Caller, request: &Request) -> Response {
    let started = Instant::now();
    let store = shared.store.with_namespace(&caller.namespace);
    if request.query_param("force").as_deref() == Some("true") {
        if let Err(e) = store.clear_messages() {
            return error(
                500,
                "CLEAR_FAILED",
                &format!("Failed to clear namespace: {e}"),
            );
        }
    }
    let mut out = Vec::new();
    let mut batch: Vec<ImportRow> = Vec::with_capacity(BATCH);
    let mut imported = 0u64;
    let fail = |out: &mut Vec<u8>, code: &str, message: String, line: u64| {
        out.extend_from_slice(
            &Progress::Failed {
                error: code.to_string(),
                message,
                line,
            }
            .to_event(),
        );
    };
    let flush = |batch: &mut Vec<ImportRow>, line: u64| -> Result<(), (String, String, u64)> {
        let result = store.import_rows(batch);
        batch.clear();
        result.map_err(|e| match e {
            ImportError::Exists { global_position } => (
                "POSITION_EXISTS".to_string(),
                format!("global position already exists: {global_position}"),
                line,
            ),
            ImportError::Failed(e) => ("IMPORT_FAILED".to_string(), e.to_string(), line),
        })
    };
    let mut line_no = 0u64;
    let body = request.body.strip_suffix(b"\n").unwrap_or(&request.body);
    for raw in body.split(|b| *b == b'\n') {
        line_no += 1;
        if raw.len() > MAX_LINE {
            fail(
                &mut out,
                "READ_ERROR",
                "bufio.Scanner: token too long".into(),
                line_no,
            );
            return respond(out);
        }
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let mut record: Record = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                fail(
                    &mut out,
                    "INVALID_JSON",
                    format!("malformed JSON at line {line_no}: {e}"),
                    line_no,
                );
                return respond(out);
            }
        };
        let time = match parse_rfc3339(&record.time) {
            Ok(t) => t,
            Err(_) => {
                fail(
                    &mut out,
                    "INVALID_RECORD",
                    format!(
                        "invalid record at line {line_no}: invalid time format: cannot parse {:?} as RFC3339",
                        record.time
                    ),
                    line_no,
                );
                return respond(out);
            }
        };
        normalize_numbers(&mut record.data);
        normalize_numbers(&mut record.meta);
        let json = |v: &serde_json::Value| (!v.is_null()).then(|| v.to_string());
        batch.push(ImportRow {
            data: json(&record.data),
            metadata: json(&record.meta),
            id: record.id,
            stream_name: record.stream,
            message_type: record.message_type,
            position: record.pos,
            global_position: record.gpos,
            time_ms: to_ms(time),
        });
        if batch.len() == BATCH {
            let last_gpos = batch.last().map_or(0, |r| r.global_position);
            let count = batch.len() as u64;
            if let Err((code, message, line)) = flush(&mut batch, line_no) {
                fail(&mut out, &code, message, line);
                return respond(out);
            }
            imported += count;
            out.extend_from_slice(
                &Progress::Batch {
                    imported,
                    gpos: last_gpos,
                }
                .to_event(),
            );
        }
    }
    if !batch.is_empty() {
        let count = batch.len() as u64;
        if let Err((code, message, line)) = flush(&mut batch, line_no) {
            fail(&mut out, &code, message, line);
            return respond(out);
        }
        imported += count;
    }
    out.extend_from_slice(
        &Progress::Done {
            done: true,
            imported,
            elapsed: format!("{:.1}s", started.elapsed().as_secs_f64()),
        }
        .to_event(),
    );
    respond(out)
}

fn respond(body: Vec<u8>) -> Response {
    Response::new(200, "text/event-stream", body)
        .header("Cache-Control", "no-cache")
        .header("Connection", "keep-alive")
        .header("X-Accel-Buffering", "no")
}
