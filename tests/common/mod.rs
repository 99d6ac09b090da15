//! Helpers shared by the outbox tests: kits on temporary files, fast sender
//! settings, and reading back what reached a store.

#![allow(dead_code)]

pub mod closed_port;
pub mod proxy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long tests wait for something that should happen soon.
pub const WAIT: Duration = Duration::from_secs(20);

use eventodb_kit::outbox::{OutboxEntry, SenderConfig};
use eventodb_kit::{
    CategoryQuery, Kit, Message, MessageStore, NewMessage, RetryPolicy, StreamQuery,
};

/// A kit whose database (outbox and embedded store) is a file in its own
/// temporary directory.
pub struct TestKit {
    pub kit: Kit,
    pub dir: tempfile::TempDir,
}

impl TestKit {
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("app.db")
    }

    /// Another kit (own pool, own store handle) on the same file.
    pub fn reopen(&self) -> Kit {
        kit_on(&self.path())
    }
}

pub fn kit() -> TestKit {
    let dir = tempfile::tempdir().unwrap();
    let kit = kit_on(&dir.path().join("app.db"));
    TestKit { kit, dir }
}

pub fn kit_on(path: &Path) -> Kit {
    Kit::builder().database(path).build().unwrap()
}

/// A kit whose outbox is in `app.db` in `dir` and whose store is `store`:
/// a separate embedded store (in `store.db`, say, so the store can fail on
/// its own) or an `HttpStore`.
pub fn kit_with_store(dir: &Path, store: impl MessageStore + 'static) -> Kit {
    Kit::builder()
        .database(dir.join("app.db"))
        .store(store)
        .build()
        .unwrap()
}

/// Sender settings for tests: quick retries, a short lease, a poll slow
/// enough that tests relying on wake-ups would notice if they were missing.
pub fn fast() -> SenderConfig {
    SenderConfig::new()
        .retry(
            RetryPolicy::new()
                .initial_delay(Duration::from_millis(5))
                .max_delay(Duration::from_millis(100)),
        )
        .lease_duration(Duration::from_millis(600))
        .poll_interval(Duration::from_millis(200))
}

/// `n` outbox entries `Counted {"i": i}` for `stream`, `i` from `from` on.
pub fn entries(stream: &str, from: usize, n: usize) -> Vec<OutboxEntry> {
    (from..from + n)
        .map(|i| {
            OutboxEntry::new(
                stream,
                NewMessage::new("Counted", serde_json::json!({ "i": i })),
            )
        })
        .collect()
}

/// Message ids of `stream`, in stream order.
pub fn ids_in(store: &dyn MessageStore, stream: &str) -> Vec<String> {
    store
        .get_stream(stream, &StreamQuery::new().batch_size(-1))
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect()
}

/// Every message of the store's namespace, in global order.
pub fn all_messages(store: &dyn MessageStore) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    loop {
        let from = out.last().map_or(1, |m| m.global_position + 1);
        let page = store
            .get_category("", &CategoryQuery::new().position(from).batch_size(10_000))
            .unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Message ids per stream, in stream order.
pub fn ids_by_stream(store: &dyn MessageStore) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in all_messages(store) {
        map.entry(m.stream_name).or_default().push(m.id);
    }
    map
}

/// Outbox message ids per stream, in commit order, straight from the table.
pub fn outbox_ids_by_stream(kit: &Kit) -> BTreeMap<String, Vec<String>> {
    kit.db()
        .read(|c| {
            let mut stmt = c.prepare("SELECT stream, id FROM evento_outbox ORDER BY seq")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for row in rows {
                let (stream, id) = row?;
                map.entry(stream).or_default().push(id);
            }
            Ok(map)
        })
        .unwrap()
}

/// Names of this process's live threads (Linux), to prove threads end.
pub fn thread_names() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

/// Environment variable that turns a test binary into a child process
/// playing a role (see [`spawn_child`]).
pub const CHILD_ROLE: &str = "EVENTODB_KIT_TEST_CHILD_ROLE";
/// The database file a child works on.
pub const CHILD_DB: &str = "EVENTODB_KIT_TEST_CHILD_DB";

/// Re-runs this test binary as a child process that runs only the test
/// `entry` with `role` and `db` in its environment. The entry test does its
/// role's work when the variable is set (and nothing otherwise).
pub fn spawn_child(entry: &str, role: &str, db: &Path) -> std::process::Child {
    spawn_child_with(entry, role, db, &[])
}

/// Like [`spawn_child`], with more environment variables for the child.
pub fn spawn_child_with(
    entry: &str,
    role: &str,
    db: &Path,
    vars: &[(&str, &str)],
) -> std::process::Child {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([entry, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE, role)
        .env(CHILD_DB, db)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    for (name, value) in vars {
        command.env(name, value);
    }
    command.spawn().unwrap()
}

/// The role this process was started for, with its database, if it is a child.
pub fn child_role() -> Option<(String, PathBuf)> {
    let role = std::env::var(CHILD_ROLE).ok()?;
    let db = std::env::var_os(CHILD_DB)?;
    Some((role, PathBuf::from(db)))
}

/// Polls `condition` until it holds, failing the test after `limit`. Only
/// for conditions no event announces (another process's progress).
pub fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
