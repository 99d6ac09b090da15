//! The `eventodb-kit` commands that talk to a store, against the project's
//! server on 127.0.0.1: `drain` empties a backlog into it (and says so when
//! it cannot be reached), `export`/`import` move messages between an
//! embedded store and the server with ids and positions kept, `status`
//! still reports when the store is down.
#![cfg(feature = "cli")]

mod cli_support;
#[path = "common/closed_port.rs"]
mod closed_port;

use closed_port::ClosedPort;

use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{Kit, NewMessage};
use serde_json::{json, Value};

use cli_support::{cli, cli_env, contents, kit, s, write_messages};

fn server() -> (Server, String) {
    let server = Server::start(ServerConfig::new()).unwrap();
    let token = server.default_token().unwrap().expose_secret().to_string();
    (server, token)
}

/// A kit database whose outbox goes to `server` (namespace `default`), with
/// `n` messages waiting.
fn kit_with_backlog(dir: &std::path::Path, server: &Server, n: usize) -> (Kit, std::path::PathBuf) {
    let path = dir.join("device.db");
    let kit = Kit::builder()
        .database(&path)
        .store(server.http_store().unwrap())
        .build()
        .unwrap();
    for i in 0..n {
        kit.outbox()
            .write(
                &format!("reading-{}", i % 4),
                &NewMessage::new("Measured", json!({ "n": i })),
            )
            .unwrap();
    }
    (kit, path)
}

#[test]
fn drain_empties_a_backlog_into_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = server();
    let (kit, path) = kit_with_backlog(dir.path(), &server, 25);
    let url = server.url();

    // Unreachable store: exit 5, nothing sent, the backlog stays.
    let closed = ClosedPort::new();
    let dead = closed.url();
    let run = cli(&["drain", "--db", s(&path), "--url", &dead, "--token", &token]).expect(5);
    assert!(run.stderr.contains("unreachable"), "{run:?}");
    assert!(run.stderr.contains("nothing was changed"), "{run:?}");
    assert_eq!(kit.outbox().status().unwrap().unsent, 25);

    // URL and token from the environment, as the app has them.
    let run = cli_env(
        &["drain", "--db", s(&path), "--timeout", "20s", "--json"],
        &[("EVENTODB_URL", &url), ("EVENTODB_TOKEN", &token)],
    )
    .expect(0);
    let report = run.json();
    assert_eq!(report["drained"], true);
    assert_eq!(report["sent"], 25);
    assert_eq!(report["remaining"], 0);
    assert!(
        run.stderr.contains("drain: 25/25 messages"),
        "plain progress lines: {run:?}"
    );
    assert!(!run.stderr.contains(&token), "the token is never printed");
    assert_eq!(kit.outbox().status().unwrap().unsent, 0);
    assert_eq!(contents(server.store()).len(), 25);

    let text = cli(&["drain", "--db", s(&path), "--url", &url, "--token", &token])
        .expect(0)
        .stdout;
    assert!(text.contains("Nothing to send"), "{text}");

    // An http store needs a token.
    let run = cli(&["drain", "--db", s(&path), "--url", &url]).expect(2);
    assert!(run.stderr.contains("EVENTODB_TOKEN"), "{run:?}");
}

#[test]
fn export_import_round_trip_between_embedded_store_and_server() {
    let dir = tempfile::tempdir().unwrap();
    let (device, path) = kit(dir.path());
    write_messages(&device, "order", 7);
    write_messages(&device, "invoice", 3);
    let (server, token) = server();
    let url = server.url();
    let file = dir.path().join("export.ndjson");

    let run = cli(&["export", "--db", s(&path), "--output", s(&file), "--json"]).expect(0);
    assert_eq!(run.json()["exported"], 10);
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10);
    let keys: Vec<&String> = lines[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys.len(),
        8,
        "id, stream, type, pos, gpos, data, meta, time: {keys:?}"
    );
    // Export never overwrites.
    cli(&["export", "--db", s(&path), "--output", s(&file)]).expect(1);

    let run = cli(&[
        "import",
        "--url",
        &url,
        "--token",
        &token,
        "--input",
        s(&file),
        "--json",
    ])
    .expect(0);
    assert_eq!(run.json()["imported"], 10);
    let on_device = contents(device.store().as_ref());
    assert_eq!(
        contents(server.store()),
        on_device,
        "same ids, streams and positions"
    );

    // Again: the positions exist; the error says what to do.
    let run = cli(&[
        "import",
        "--url",
        &url,
        "--token",
        &token,
        "--input",
        s(&file),
    ])
    .expect(1);
    assert!(
        run.stderr.contains("POSITION_EXISTS") && run.stderr.contains("--force"),
        "{run:?}"
    );
    // --force deletes first: asks, and refuses without a terminal.
    let run = cli(&[
        "import",
        "--url",
        &url,
        "--token",
        &token,
        "--input",
        s(&file),
        "--force",
    ])
    .expect(4);
    assert!(run.stderr.contains("deletes every message"), "{run:?}");
    cli(&[
        "import",
        "--url",
        &url,
        "--token",
        &token,
        "--input",
        s(&file),
        "--force",
        "--yes",
    ])
    .expect(0);
    assert_eq!(contents(server.store()), on_device);

    // One category from the server to stdout, into a new embedded file.
    let run = cli(&[
        "export",
        "--url",
        &url,
        "--token",
        &token,
        "--category",
        "invoice",
    ])
    .expect(0);
    assert_eq!(run.stdout.lines().count(), 3);
    assert!(run.stderr.contains("Exported 3 messages"), "{run:?}");
    let copy = dir.path().join("copy.db");
    let target = format!("embedded:{}", copy.display());
    cli(&["import", "--url", &target]).expect(3); // no such file, not created
    assert!(!copy.exists());
    let mut import = cli_support::command();
    import
        .args(["import", "--url", &target, "--create", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = import.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(run.stdout.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let copied = eventodb_kit::EmbeddedStore::open(&copy).unwrap();
    let invoices: Vec<_> = on_device
        .into_iter()
        .filter(|m| m.1.starts_with("invoice-"))
        .collect();
    assert_eq!(contents(&copied), invoices);

    // A malformed line is named.
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(&bad, "\n{not json}\n").unwrap();
    let run = cli(&["import", "--url", &target, "--input", s(&bad)]).expect(1);
    assert!(run.stderr.contains("line 2"), "{run:?}");
}

#[test]
fn status_reports_what_it_can_when_the_store_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = server();
    let (kit, path) = kit_with_backlog(dir.path(), &server, 2);
    kit.checkpoints().set("reading", "chart", 0).unwrap();
    drop(server);
    let closed = ClosedPort::new();
    let dead = closed.url();
    let status = |json: bool| {
        let mut args = vec![
            "status",
            "--db",
            s(&path),
            "--url",
            &dead,
            "--token",
            &token,
        ];
        if json {
            args.push("--json");
        }
        cli(&args).expect(5)
    };
    let run = status(true);
    let status_json = run.json();
    assert_eq!(status_json["outbox"]["backlog"], 2);
    assert!(status_json["store_error"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    assert_eq!(status_json["consumers"][0]["position"], 0);
    assert_eq!(status_json["consumers"][0]["lag"], Value::Null);
    assert_eq!(status_json["consumers"][0]["stalled"], false);
    assert_eq!(run.error_json()["error"]["exit_code"], 5);
    let run = status(false);
    assert!(run.stdout.contains("backlog        2 messages"), "{run:?}");
    assert!(run.stdout.contains("the store is unreachable"), "{run:?}");
    assert!(run.stdout.contains("lags are unknown"), "{run:?}");

    // With no consumer there is no lag to read; the store is still checked.
    kit.checkpoints().reset("reading", "chart").unwrap();
    assert!(status(true).json()["store_error"]
        .as_str()
        .unwrap()
        .contains("unreachable"));
}
