//! The rest of EventoDB's API on [`HttpStore`]: namespaces, system
//! information, `/health`, `/version`, and NDJSON import/export.

use std::io::{BufRead, Write};
use std::time::Instant;

use serde_json::Value;

use super::client::{answer_error, CallContext};
use super::HttpStore;
use crate::error::{Error, Result, TransportErrorKind};
use crate::namespace::{CreatedNamespace, DeletedNamespace, NamespaceInfo};

use crate::wire::ndjson::{import_failure, ndjson_lines, Progress};
use crate::wire::rpc::{self, unexpected};

/// Lines per request of [`HttpStore::import_ndjson`] (a multiple of the
/// server's batch of 1000).
const IMPORT_CHUNK_LINES: u64 = 10_000;
/// Bytes after which [`HttpStore::import_ndjson`] sends a request early.
const IMPORT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

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
    /// imported.
    pub fn import(&self, ndjson: &[u8], force: bool) -> Result<ImportSummary> {
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
            while count < IMPORT_CHUNK_LINES && chunk.len() < IMPORT_CHUNK_BYTES {
                match lines.next() {
                    Some(line) => {
                        chunk.extend_from_slice(&line?);
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
                        let at = first_line - 1 + line;
                        let message =
                            message.replace(&format!("at line {line}:"), &format!("at line {at}:"));
                        return Err(import_failure(&error, message, at));
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

    /// One `POST /import`; its last progress line.
    fn post_import(&self, ndjson: &[u8], force: bool) -> Result<Progress> {
        let path = if force {
            "/import?force=true"
        } else {
            "/import"
        };
        let (status, body) = self.inner.client.post_raw(path, ndjson)?;
        if !(200..300).contains(&status) {
            return Err(answer_error(status, &body, CallContext::default()));
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
