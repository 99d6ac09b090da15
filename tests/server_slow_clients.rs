//! 1,100 clients that each send part of a request head and then nothing do
//! not lock a normal client out of `eventodb-kit serve` (1,024 connections
//! by default): the slot of the connection that has waited longest for a
//! request goes to the new one.
//!
//! The test holds 1,100 sockets and the server up to 1,024 more, so it needs
//! about 2,300 file descriptors. Many Linux machines (Docker's defaults,
//! systemd's) give a process a soft limit of 1,024 under a much higher hard
//! one: the test then runs itself again in a child whose shell raised the
//! soft limit (`ulimit -n`). Only where the hard limit is too low as well
//! does it run smaller — fewer slow clients, fewer slots, still more slow
//! clients than slots — and says so. It takes a few seconds: the slow
//! clients connect faster than the server accepts, and a connection beyond
//! the listen backlog waits for TCP to try again (1 s).
#![cfg(feature = "server")]

mod support;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use eventodb_kit::server::{Server, ServerConfig};
use support::{get, read_answer};

const SLOW_CLIENTS: usize = 1_100;
/// `ServerConfig`'s default.
const SLOTS: usize = 1_024;
/// Set in the child that runs the test under a raised limit.
const CHILD: &str = "EVENTODB_KIT_TEST_SLOW_CLIENTS_CHILD";
const TEST: &str = "a_normal_client_gets_through_1100_slow_ones";

/// File descriptors the test needs with `slow` slow clients: theirs, the
/// server's side of each, and room for the rest of the process.
fn needed(slow: usize) -> u64 {
    2 * slow as u64 + 256
}

#[test]
fn a_normal_client_gets_through_1100_slow_ones() {
    if std::env::var_os(CHILD).is_some() {
        return run(SLOW_CLIENTS, SLOTS);
    }
    let Some((soft, hard)) = fd_limits() else {
        return run(SLOW_CLIENTS, SLOTS);
    };
    let want = needed(SLOW_CLIENTS);
    if soft >= want {
        run(SLOW_CLIENTS, SLOTS);
    } else if hard >= want {
        // The shell raises the soft limit for the child (any process may,
        // up to the hard limit); the child runs only this test.
        let status = std::process::Command::new("sh")
            .args([
                "-c",
                r#"ulimit -n "$1" && exec "$0" "$2" --exact --nocapture --test-threads=1"#,
            ])
            .arg(std::env::current_exe().unwrap())
            .arg(want.to_string())
            .arg(TEST)
            .env(CHILD, "1")
            .status()
            .unwrap();
        assert!(status.success(), "the child run failed: {status}");
    } else {
        // Same shape, smaller: more slow clients than slots, as above.
        let slow = ((hard.saturating_sub(256)) / 2) as usize;
        let slots = slow * SLOTS / SLOW_CLIENTS;
        eprintln!(
            "{TEST}: this process may open only {hard} files (hard limit), {want} are needed for \
             {SLOW_CLIENTS} slow clients; running with {slow} slow clients against {slots} \
             connection slots instead"
        );
        assert!(
            slots >= 8,
            "the file limit ({hard}) is too low for this test"
        );
        run(slow, slots);
    }
}

/// Soft and hard limits on open files, as the shell reports them.
fn fd_limits() -> Option<(u64, u64)> {
    if !cfg!(unix) {
        return None;
    }
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -Sn; ulimit -Hn"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut values = text.lines().map(|l| match l.trim() {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    });
    Some((values.next()??, values.next()??))
}

fn run(slow: usize, slots: usize) {
    // A head deadline longer than the test: only the slots' rule lets the
    // normal client in, not slow clients timing out.
    let config = ServerConfig::new()
        .max_connections(slots)
        .head_timeout(Duration::from_secs(600));
    let server = Server::start(config).unwrap();
    let token = server.default_token().unwrap().expose_secret().to_string();
    let trickling: Vec<TcpStream> = (0..slow)
        .map(|i| {
            let mut s = TcpStream::connect(server.addr()).unwrap_or_else(|e| {
                panic!("slow client {i} could not connect: {e}");
            });
            s.write_all(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Le")
                .unwrap();
            s
        })
        .collect();

    // A normal client, with every slow client still there.
    let mut client = TcpStream::connect(server.addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = r#"["stream.write","normal-1",{"type":"T","data":{}}]"#;
    let request = format!(
        "POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(request.as_bytes()).unwrap();
    let answer = read_answer(&mut BufReader::new(client));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "{\"globalPosition\":1,\"position\":0}\n");

    let metrics = get(&server.url(), "/metrics", Some(&token)).body;
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
    };
    let reason = |r: &str| {
        value(&format!(
            "eventodb_kit_server_connections_closed_total{{reason=\"{r}\"}}"
        ))
    };
    assert_eq!(reason("refused"), 0.0, "nobody was answered 503");
    let evicted = reason("evicted");
    assert!(
        evicted >= (slow - slots + 1) as f64,
        "{evicted} slow clients made way"
    );
    drop(trickling);
}
