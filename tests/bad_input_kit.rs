//! Bad input when opening a kit (`KitBuilder::build`, `Db::open`): unusable
//! paths fail at once with a permanent error naming the path and the
//! reason, never after a pool's time-out with a transient one; afterwards a
//! kit on a good path works (outbox write, delivery, read).

mod bad_input_support;

use std::path::Path;
use std::time::Duration;

use bad_input_support::{invalid, outbox_still_delivers};
use eventodb_kit::{Db, DbOptions, Disposition, Error, Kit, KitBuilder};

/// A pool time-out short enough that a kit that waited for its pool would
/// fail this test quickly (with `Error::Pool`) instead of hanging.
fn quick() -> DbOptions {
    DbOptions::new().pool_timeout(Duration::from_millis(200))
}

fn build(path: impl AsRef<Path>) -> Result<Kit, Error> {
    Kit::builder()
        .database(path.as_ref())
        .db_options(quick())
        .build()
}

/// The error is permanent, `InvalidInput`, and names the path; returns
/// its message.
#[track_caller]
fn permanent(result: Result<impl std::fmt::Debug, Error>, path: &str) -> String {
    let err = result.unwrap_err();
    assert_eq!(err.disposition(), Disposition::DeadLetter, "{err}");
    assert!(!err.is_transient(), "{err}");
    let m = invalid::<()>(Err(err));
    assert!(m.contains(path), "the error names {path}: {m}");
    m
}

/// A kit on a good file in `dir` works: write, deliver, read.
#[track_caller]
fn a_good_kit_works(dir: &Path) {
    let kit = Kit::builder()
        .database(dir.join("good.db"))
        .build()
        .unwrap();
    outbox_still_delivers(&kit);
}

#[test]
fn a_path_in_a_missing_directory_fails_at_once_for_good() {
    // Defect 4: the pool retried for 30 s, then Error::Pool (transient).
    let m = permanent(build("/nonexistent-dir/x.db"), "/nonexistent-dir/x.db");
    assert!(m.contains("No such file or directory"), "{m}");
    a_good_kit_works(tempfile::tempdir().unwrap().path());
}

#[test]
fn db_open_in_a_missing_directory_fails_at_once_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone").join("app.db");
    let text = path.display().to_string();
    let m = permanent(Db::open_with(&path, quick()), &text);
    assert!(m.contains("No such file or directory"), "{m}");
    assert!(!path.parent().unwrap().exists(), "nothing was created");
    a_good_kit_works(dir.path());
}

#[test]
fn an_empty_path_is_refused() {
    // Defect 5: every pooled connection got a private temporary database.
    let dir = tempfile::tempdir().unwrap();
    assert!(invalid(build("")).contains("empty"));
    assert!(invalid(Db::open("")).contains("empty"));
    a_good_kit_works(dir.path());
}

#[test]
fn memory_spelled_as_a_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for path in [
        ":memory:",
        "file::memory:",
        "file:shared?mode=memory&cache=shared",
    ] {
        let m = invalid(build(path));
        assert!(m.contains("in-memory"), "{path}: {m}");
    }
    // In memory is spelled explicitly, and works.
    let kit = Kit::builder().build().unwrap();
    outbox_still_delivers(&kit);
    a_good_kit_works(dir.path());
}

#[test]
fn a_directory_as_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().display().to_string();
    let m = permanent(build(dir.path()), &text);
    assert!(m.contains("directory"), "{m}");
    a_good_kit_works(dir.path());
}

#[test]
fn a_path_under_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain.txt");
    std::fs::write(&file, "x").unwrap();
    let path = file.join("app.db");
    let m = permanent(build(&path), &path.display().to_string());
    assert!(m.contains("not a directory"), "{m}");
    a_good_kit_works(dir.path());
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    let text = "my notes, not a database\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let m = permanent(build(&path), &path.display().to_string());
    assert!(m.contains("not an SQLite database"), "{m}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    a_good_kit_works(dir.path());
}

#[test]
fn a_database_that_can_only_be_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    Db::open(&path).unwrap();
    // SQLite's URI form opens it read-only (whoever runs the test: file
    // permissions do not stop root).
    let uri = format!("file:{}?mode=ro", path.display());
    let m = permanent(build(&uri), &uri);
    assert!(m.contains("can only be read"), "{m}");
    let kit = Kit::builder().database(&path).build().unwrap();
    outbox_still_delivers(&kit);
}

#[test]
fn unusable_store_urls_and_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let with = |url: &str| Kit::builder().database(&db).url(url);
    let secret = "ns_ZGVmYXVsdA_zz";
    let cases: Vec<(KitBuilder, &str)> = vec![
        (with("ftp://example.com"), "unsupported store URL scheme"),
        (with("http://"), "has no host"),
        (with("http://127.0.0.1:1"), "token"),
        (with("embedded:"), "names no file"),
        (with("embedded://relative.db"), "three slashes"),
        (with("http://127.0.0.1:1").token(secret), "token"),
    ];
    for (builder, expected) in cases {
        let m = invalid(builder.build());
        assert!(m.contains(expected), "{m}");
        assert!(!m.contains("zz"), "no token in errors: {m}");
    }
    a_good_kit_works(dir.path());
}

#[test]
fn an_embedded_url_in_a_missing_directory_fails_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("missing").join("events.db");
    let url = format!("embedded://{}", events.display());
    let result = Kit::builder()
        .database(dir.path().join("app.db"))
        .url(url)
        .db_options(quick())
        .build();
    permanent(result, &events.display().to_string());
    a_good_kit_works(dir.path());
}

#[test]
fn the_pool_wait_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(
        dir.path().join("app.db"),
        DbOptions::new()
            .pool_size(1)
            .pool_timeout(Duration::from_millis(50)),
    )
    .unwrap();
    let held = db.connection().unwrap();
    let err = db.connection().unwrap_err();
    assert!(matches!(err, Error::Pool(_)), "{err}");
    assert!(err.is_transient(), "all connections busy: try again later");
    drop(held);
    db.connection().unwrap();
    a_good_kit_works(dir.path());
}
