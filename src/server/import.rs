//! `POST /import[?force=true]`: NDJSON records into the caller's namespace
//! (protocol §11), answered with SSE-framed progress lines, all at the end.

use std::time::Instant;

use super::http::Request;
use super::http::Response;
use super::router::{error, Caller};
use super::Shared;
use crate::store::embedded::import::{import_lines_into, ImportError, ImportOutcome};
use crate::wire::ndjson::Progress;

pub(crate) fn handle(shared: &Shared, caller: &Caller, request: &Request) -> Response {
    let started = Instant::now();
    let store = shared.store.with_namespace(&caller.namespace);
    if request.query_param("force").as_deref() == Some("true") {
        // Test mode lets a token of an unknown namespace in; EventoDB then
        // fails every data operation.
        let cleared = match caller.exists {
            true => store.clear_messages().map_err(|e| e.to_string()),
            false => Err("namespace not found".to_string()),
        };
        if let Err(e) = cleared {
            return error(
                500,
                "CLEAR_FAILED",
                &format!("Failed to clear namespace: {e}"),
            );
        }
    }
    let mut out = Vec::new();
    let body = request.body.strip_suffix(b"\n").unwrap_or(&request.body);
    let lines = body.split(|b| *b == b'\n').map(|l| Ok(l.to_vec()));
    let on_batch = |imported, gpos| {
        out.extend_from_slice(&Progress::Batch { imported, gpos }.to_event());
    };
    let outcome = match caller.exists {
        true => store.import_lines(lines, on_batch),
        false => import_lines_into(lines, on_batch, |_| Err(ImportError::NamespaceNotFound)),
    };
    let last = match outcome {
        ImportOutcome::Done { imported } => Progress::Done {
            done: true,
            imported,
            elapsed: format!("{:.1}s", started.elapsed().as_secs_f64()),
        },
        ImportOutcome::Failed {
            code,
            message,
            line,
        } => Progress::Failed {
            error: code.to_string(),
            message,
            line,
        },
    };
    out.extend_from_slice(&last.to_event());
    Response::new(200, "text/event-stream", out)
        .header("Cache-Control", "no-cache")
        .header("Connection", "keep-alive")
        .header("X-Accel-Buffering", "no")
}
