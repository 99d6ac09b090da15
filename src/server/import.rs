//! `POST /import[?force=true]`: NDJSON records into the caller's namespace
//! (protocol §11), answered with SSE-framed progress lines, all at the end.

use std::time::Instant;

use super::http::Request;
use super::http::Response;
use super::router::{error, Caller};
use super::Shared;
use crate::store::embedded::import::ImportOutcome;
use crate::wire::ndjson::Progress;

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
    let body = request.body.strip_suffix(b"\n").unwrap_or(&request.body);
    let lines = body.split(|b| *b == b'\n').map(|l| Ok(l.to_vec()));
    let outcome = store.import_lines(lines, |imported, gpos| {
        out.extend_from_slice(&Progress::Batch { imported, gpos }.to_event());
    });
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
