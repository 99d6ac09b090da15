//! Helpers for the command-line tests: run the real `eventodb-kit` binary
//! (no terminal, a clean environment) against kit databases made with the
//! library.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventodb_kit::{Kit, MessageStore, NewMessage, WriteOptions};
use serde_json::{json, Value};

pub const DEADLINE: Duration = Duration::from_secs(20);

/// What a run of the tool printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The JSON error on stderr (with `--json`).
    pub fn error_json(&self) -> Value {
        let line = self.stderr.lines().last().unwrap_or_default();
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr does not end in JSON ({e}): {self:?}"))
    }

    #[track_caller]
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "exit code; {self:#?}");
        self
    }
}

pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventodb-kit"));
    for var in [
        "EVENTODB_URL",
        "EVENTODB_TOKEN",
        "EVENTODB_KIT_DB",
        "EVENTODB_PORT",
        "EVENTODB_DATA_DIR",
        "EVENTODB_TEST_MODE",
        "EVENTODB_PUBLIC_METRICS",
        "CONSUMER_STALLED_AFTER",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs the tool with `args` (no terminal: stdin is empty, output piped).
pub fn cli(args: &[&str]) -> Run {
    cli_env(args, &[])
}

/// Like [`cli`], with environment variables.
pub fn cli_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run eventodb-kit");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A kit database (with its embedded store) in `dir`.
pub fn kit(dir: &Path) -> (Kit, PathBuf) {
    let path = dir.join("app.db");
    let kit = Kit::builder().database(&path).build().unwrap();
    (kit, path)
}

pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Writes `n` messages to streams `{category}-0..3` of the kit's store;
/// returns their global positions.
pub fn write_messages(kit: &Kit, category: &str, n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| {
            kit.store()
                .write(
                    &format!("{category}-{}", i % 3),
                    &NewMessage::new("Happened", json!({ "n": i })),
                    &WriteOptions::new(),
                )
                .unwrap()
                .global_position
        })
        .collect()
}

/// Runs consumer `id` of `category` until its position reaches `until`;
/// returns the global positions its handler ran on.
pub fn run_consumer(kit: &Kit, category: &str, id: &str, until: i64) -> Vec<i64> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let consumer = kit
        .consumer(category, id)
        .spawn(move |msg, _tx| {
            sink.lock().unwrap().push(msg.global_position);
            Ok(())
        })
        .unwrap();
    consumer.wait_for_position(until, DEADLINE).unwrap();
    consumer.shutdown();
    let seen = seen.lock().unwrap().clone();
    seen
}

/// The saved position of a consumer.
pub fn position(kit: &Kit, category: &str, id: &str) -> Option<i64> {
    kit.checkpoints()
        .get(category, id)
        .unwrap()
        .map(|c| c.position)
}

/// Every message of the store, as `(id, stream, position, global position)`.
pub fn contents(store: &dyn MessageStore) -> Vec<(String, String, i64, i64)> {
    store
        .get_category("", &eventodb_kit::CategoryQuery::new().batch_size(-1))
        .unwrap()
        .into_iter()
        .map(|m| (m.id, m.stream_name, m.position, m.global_position))
        .collect()
}
