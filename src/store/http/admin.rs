//! The rest of EventoDB's API on [`HttpStore`]: namespaces, system
//! information, `/health`, `/version`, and NDJSON import/export.

use std::io::{BufRead, Write};
use std::time::Instant;

use serde_json::Value;

use super::client::CallContext;
use super::failure::answer_error;
use super::HttpStore;
use crate::error::{Error, Result, TransportErrorKind};
use crate::namespace::{CreatedNamespace, DeletedNamespace, NamespaceInfo};

use crate::store::embedded::import::IMPORT_BATCH;
use crate::wire::ndjson::{
    import_failure, ndjson_lines, record_too_deep, too_deep_record_message, Progress,
};
use crate::wire::rpc::{self, unexpected};

/// Lines per request of [`HttpStore::import_ndjson`] (a multiple of the
/// server's batch of 1000).
const IMPORT_CHUNK_LINES: u64 = 10_000;
/// Bytes after which [`HttpStore::import_ndjson`] sends a request early.
const IMPORT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Finds, before anything is sent, a record whose data or meta is nested
/// deeper than [`MAX_JSON_DEPTH`](crate::message::MAX_JSON_DEPTH), and
/// where the last full batch of 1000 records ahead of it ends.
#[derive(Default)]
struct DepthGuard {
    records: u64,
    /// Bytes of the request body that the full batches take.
    keep: usize,
}

impl DepthGuard {
    /// Whether `line`, starting at byte `offset` of the request body, is a
    /// record nested too deep; otherwise counts it.
    fn refuses(&mut self, line: &[u8], offset: usize) -> bool {
        if line.trim_ascii().is_empty() {
            return false;
        }
        if record_too_deep(line) {
            return true;
        }
        self.records += 1;
        if self.records.is_multiple_of(IMPORT_BATCH as u64) {
            self.keep = offset + line.len() + 1;
        }
        false
    }
}

/// The failure at `line` of a request whose lines start at `first_line`
/// of the input, with its line numbers counted from the start of the input.
fn failure_at(code: &str, message: String, line: u64, first_line: u64) -> Error {
    let at = first_line - 1 + line;
    let message = message.replace(&format!("at line {line}:"), &format!("at line {at}:"));
    import_failure(code, message, at)
}

fn no_result() -> Error {
    Error::Transport {
        kind: TransportErrorKind::Protocol,
        message: "the /import answer ended without a result".into(),
    }
}

/// `sys.health`'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SystemHealth {
    /// `ok` when the server is healthy.
    pub status: String,
    /// The storage backend (EventoDB reports `unknown`).
    pub backend: String,
    /// Open backend connections (EventoDB reports 0).
    pub connections: i64,
}

/// The outcome of a successful [`HttpStore::import`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportSummary {
    /// Records imported.
    pub imported: u64,
    /// The server's timing, e.g. `0.3s`.
    pub elapsed: String,
}

impl HttpStore {
    /// `ns.create`: creates namespace `id` with `description`, and with
    /// `token` if given (it must be a token for `id`), else a fresh one.
    ///
    /// The returned token is the only copy: the server keeps a hash. Any
    /// valid token may create namespaces (EventoDB has no admin role).
    /// Errors: `Store` with code `NAMESPACE_EXISTS` (409) when `id` is taken.
    pub fn create_namespace(
        &self,
        id: &str,
        description: &str,
        token: Option<&str>,
    ) -> Result<CreatedNamespace> {
        let v = self.rpc("ns.create", rpc::ns_create_args(id, description, token))?;
        rpc::decode_created_namespace(&v)
    }

    /// `ns.delete`: deletes namespace `id` with all its messages; its token
    /// stops working. Unknown id: [`Error::NotFound`].
    pub fn delete_namespace(&self, id: &str) -> Result<DeletedNamespace> {
        let v = self.rpc("ns.delete", vec![id.into()])?;
        rpc::decode_deleted_namespace(&v)
    }

    /// `ns.list`: every namespace, newest first (`message_count` is 0 there).
    pub fn list_namespaces(&self) -> Result<Vec<NamespaceInfo>> {
        let v = self.rpc("ns.list", vec![])?;
        rpc::decode_namespace_list(&v)
    }

    /// `ns.info`: one namespace with its message count. Unknown id:
    /// [`Error::NotFound`].
    pub fn namespace_info(&self, id: &str) -> Result<NamespaceInfo> {
        let v = self.rpc("ns.info", vec![id.into()])?;
        rpc::decode_namespace_info(&v)
    }

    /// `sys.version`: the server's version (`0.7.0`, `dev`, …).
    pub fn system_version(&self) -> Result<String> {
        let v = self.rpc("sys.version", vec![])?;
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| unexpected("version", &v))
    }

    /// `sys.health`.
    pub fn system_health(&self) -> Result<SystemHealth> {
        let v = self.rpc("sys.health", vec![])?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(SystemHealth {
            status: text("status").ok_or_else(|| unexpected("health", &v))?,
            backend: text("backend").unwrap_or_default(),
            connections: v.get("connections").and_then(Value::as_i64).unwrap_or(0),
        })
    }

    /// `GET /health` (no token needed): `Ok(())` when the server answers
    /// `{"status":"ok"}`.
    pub fn health(&self) -> Result<()> {
        let v = self.inner.client.get_public("/health")?;
        match v.get("status").and_then(Value::as_str) {
            Some("ok") => Ok(()),
            _ => Err(unexpected("health", &v)),
        }
    }

    /// `GET /version` (no token needed): the server's version.
    pub fn server_version(&self) -> Result<String> {
        let v = self.inner.client.get_public("/version")?;
        v.get("version")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| unexpected("version", &v))
    }

    /// `POST /import`: loads NDJSON records (as written by
    /// [`HttpStore::export`] or `eventodb export`) into this namespace,
    /// keeping their ids, positions and times. With `force`, every message
    /// of the namespace is deleted first. Imported messages are not poked.
    ///
    /// Errors: a malformed record is `InvalidInput` (the message names the
    /// line); a position or id that exists already is `Store` with code
    /// `POSITION_EXISTS` (409). Batches of 1000 before the failing one stay
    /// imported. A record nested too deep is refused before it is sent
    /// (see [`HttpStore::import_ndjson`]).
    pub fn import(&self, ndjson: &[u8], force: bool) -> Result<ImportSummary> {
        let mut guard = DepthGuard::default();
        let mut offset = 0;
        for (i, line) in ndjson.split(|b| *b == b'\n').enumerate() {
            if guard.refuses(line, offset) {
                return self.refuse_deep_record(&ndjson[..guard.keep], force, 1, i as u64 + 1);
            }
            offset += line.len() + 1;
        }
        match self.post_import(ndjson, force)? {
            Progress::Done {
                imported, elapsed, ..
            } => Ok(ImportSummary { imported, elapsed }),
            Progress::Failed {
                error,
                message,
                line,
            } => Err(import_failure(&error, message, line)),
            Progress::Batch { .. } => Err(no_result()),
        }
    }

    /// Like [`HttpStore::import`], reading the records from `input` and
    /// sending them in requests of at most 10 000 lines (4 MiB), so a large
    /// export needs neither one huge request nor all of it in memory. With
    /// `force`, the namespace is cleared by the first request. Calls
    /// `on_batch` with the number imported so far after each request.
    ///
    /// As with one request, the requests before a failing one stay
    /// imported; the error's line numbers count from the start of `input`.
    ///
    /// A record whose `data` or `meta` is nested deeper than
    /// [`MAX_JSON_DEPTH`](crate::message::MAX_JSON_DEPTH) is refused before
    /// it is sent (EventoDB would take it, but no reader could read it
    /// back), as the kit's own `/import` refuses it: the batches of 1000
    /// ahead of it are imported, then the import stops with
    /// [`Error::InvalidInput`] (`invalid record at line L: …`).
    pub fn import_ndjson(
        &self,
        input: &mut dyn BufRead,
        force: bool,
        on_batch: &mut dyn FnMut(u64),
    ) -> Result<ImportSummary> {
        let started = Instant::now();
        let mut lines = ndjson_lines(input);
        let mut imported = 0u64;
        let mut first_line = 1u64;
        let mut force = force;
        loop {
            let mut chunk = Vec::new();
            let mut count = 0u64;
            let mut ended = false;
            let mut guard = DepthGuard::default();
            while count < IMPORT_CHUNK_LINES && chunk.len() < IMPORT_CHUNK_BYTES {
                match lines.next() {
                    Some(line) => {
                        let line = line?;
                        if guard.refuses(&line, chunk.len()) {
                            chunk.truncate(guard.keep);
                            let at = first_line + count;
                            return self.refuse_deep_record(&chunk, force, first_line, at);
                        }
                        chunk.extend_from_slice(&line);
                        chunk.push(b'\n');
                        count += 1;
                    }
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            if count > 0 || force {
                match self.post_import(&chunk, force)? {
                    Progress::Done { imported: n, .. } => {
                        imported += n;
                        on_batch(imported);
                    }
                    Progress::Failed {
                        error,
                        message,
                        line,
                    } => {
                        return Err(failure_at(&error, message, line, first_line));
                    }
                    Progress::Batch { .. } => return Err(no_result()),
                }
                force = false;
            }
            first_line += count;
            if ended {
                return Ok(ImportSummary {
                    imported,
                    elapsed: format!("{:.1}s", started.elapsed().as_secs_f64()),
                });
            }
        }
    }

    /// Refuses the record at `line`, nested deeper than the kit reads back
    /// (EventoDB itself would take it), as the kit's own `/import` does:
    /// first `before` — the batches of 1000 records ahead of it, which an
    /// import keeps — is imported, then the import stops with an
    /// `INVALID_RECORD` error.
    /// `before` starts at line `first_line` of the input; `line` counts
    /// from the start of the input.
    fn refuse_deep_record(
        &self,
        before: &[u8],
        force: bool,
        first_line: u64,
        line: u64,
    ) -> Result<ImportSummary> {
        if !before.is_empty() || force {
            if let Progress::Failed {
                error,
                message,
                line,
            } = self.post_import(before, force)?
            {
                return Err(failure_at(&error, message, line, first_line));
            }
        }
        Err(import_failure(
            "INVALID_RECORD",
            too_deep_record_message(line),
            line,
        ))
    }

    /// One `POST /import`; its last progress line.
    fn post_import(&self, ndjson: &[u8], force: bool) -> Result<Progress> {
        let path = if force {
            "/import?force=true"
        } else {
            "/import"
        };
        let (status, wait, body) = self.inner.client.post_raw(path, ndjson)?;
        if !(200..300).contains(&status) {
            return Err(answer_error(status, &body, wait, CallContext::default()));
        }
        let text = String::from_utf8_lossy(&body);
        let mut last = None;
        for line in text.lines() {
            if let Some(data) = line.strip_prefix("data:") {
                last = Some(
                    serde_json::from_str::<Progress>(data.trim_start()).map_err(|e| {
                        Error::Transport {
                            kind: TransportErrorKind::Protocol,
                            message: format!("unexpected /import progress line: {e}"),
                        }
                    })?,
                );
            }
        }
        last.ok_or_else(no_result)
    }

    /// Writes every message of this namespace to `out` as NDJSON, one record
    /// per line in global order — the format of `eventodb export`, which
    /// [`HttpStore::import`] reads. Returns the number of records.
    pub fn export(&self, out: &mut dyn Write) -> Result<u64> {
        crate::store::ndjson::export(self, "", out, &mut |_| {})
    }
}
