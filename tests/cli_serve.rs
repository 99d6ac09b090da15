//! `eventodb-kit serve` run as a user runs it: it prints its address and the
//! generated token, `/metrics` needs that token unless `--public-metrics`
//! (or `EVENTODB_PUBLIC_METRICS`) opens it, HTTPS with client certificates
//! from `EVENTODB_TLS_*` / `--client-ca`, and SIGTERM stops it cleanly.
#![cfg(feature = "cli")]

mod cli_support;
mod pki;
mod support;

use cli_support::{command, DEADLINE};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Stdio};
use support::{get, rpc};

/// A running `eventodb-kit serve`, killed if the test ends without stopping it.
struct Serving {
    child: Option<Child>,
    stdout: Option<BufReader<ChildStdout>>,
    /// The first line it printed.
    banner: String,
    url: String,
}

impl Serving {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Serving {
        let mut cmd = command();
        cmd.args(["serve", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("run eventodb-kit serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let banner = line(&mut stdout);
        let url = banner
            .split_once("listening on ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {banner:?}"))
            .to_string();
        Serving {
            child: Some(child),
            stdout: Some(stdout),
            banner,
            url,
        }
    }

    /// The token it printed under `DEFAULT NAMESPACE TOKEN:`.
    fn printed_token(&mut self) -> String {
        let stdout = self.stdout.as_mut().unwrap();
        assert_eq!(line(stdout), "DEFAULT NAMESPACE TOKEN:");
        line(stdout)
    }

    /// Sends SIGTERM; returns the exit code and what it printed after.
    fn terminate(mut self) -> (Option<i32>, String) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        let signal = |name: &str| {
            std::process::Command::new("kill")
                .args([name, &pid])
                .status()
                .unwrap()
        };
        assert!(signal("-TERM").success());
        let mut stdout = self.stdout.take().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let waiter = std::thread::spawn(move || {
            let mut rest = String::new();
            stdout.read_to_string(&mut rest).unwrap();
            let code = child.wait().unwrap().code();
            let _ = tx.send((code, rest));
        });
        let ended = rx.recv_timeout(DEADLINE);
        if ended.is_err() {
            signal("-KILL");
        }
        waiter.join().unwrap();
        ended.expect("serve did not end within the deadline after SIGTERM")
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

#[test]
fn metrics_need_the_printed_token_unless_public() {
    let mut closed = Serving::start(&[], &[]);
    assert!(!closed.banner.contains("public"), "{}", closed.banner);
    let token = closed.printed_token();
    assert_eq!(get(&closed.url, "/metrics", None).status, 401);
    let answer = get(&closed.url, "/metrics", Some(&token));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.contains("# TYPE"), "{answer:?}");

    let mut open = Serving::start(&["--public-metrics"], &[]);
    assert!(open.banner.contains("public /metrics"), "{}", open.banner);
    let token = open.printed_token();
    let answer = get(&open.url, "/metrics", None);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.contains("# TYPE"), "{answer:?}");
    // Only /metrics is opened: the store still needs a token.
    let call = r#"["stream.version", "account-1"]"#;
    assert_eq!(rpc(&open.url, None, call).status, 401);
    assert_eq!(rpc(&open.url, Some(&token), call).status, 200);

    // The same from the environment, as EventoDB's flags; =false keeps it closed.
    let env = Serving::start(&[], &[("EVENTODB_PUBLIC_METRICS", "true")]);
    assert_eq!(get(&env.url, "/metrics", None).status, 200);
    let off = Serving::start(&["--public-metrics=false"], &[]);
    assert_eq!(get(&off.url, "/metrics", None).status, 401);
}

#[test]
fn https_with_client_certificates_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let save = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let ca = pki::Ca::new("fleet CA");
    let devices = pki::Ca::new("device CA");
    let server = ca.server();
    let (cert, key) = (
        save("server.pem", &server.cert),
        save("server.key", &server.key),
    );
    let client_ca = save("devices.pem", &devices.pem());
    let mut serving = Serving::start(
        &["--client-ca", &client_ca],
        &[("EVENTODB_TLS_CERT", &cert), ("EVENTODB_TLS_KEY", &key)],
    );
    assert!(serving.url.starts_with("https://"), "{}", serving.banner);
    assert!(
        serving.banner.contains("client certificates required"),
        "{}",
        serving.banner
    );
    let token = serving.printed_token();
    let device = devices.client("device-1");
    let tls = pki::trusting(&ca)
        .client_certificate_pem(&device.cert, &device.key)
        .unwrap();
    let store = pki::store(&serving.url, &token, tls);
    assert_eq!(
        eventodb_kit::MessageStore::stream_version(&store, "a-1").unwrap(),
        None
    );
    let anonymous = pki::store(&serving.url, &token, pki::trusting(&ca));
    assert!(eventodb_kit::MessageStore::stream_version(&anonymous, "a-1").is_err());

    // A key file that does not exist stops it at once, naming the file.
    let run = cli_support::cli(&[
        "serve",
        "--port",
        "0",
        "--tls-cert",
        &cert,
        "--tls-key",
        "/nonexistent/server.key",
    ]);
    let failed = run.expect(1);
    assert!(
        failed.stderr.contains("/nonexistent/server.key"),
        "{failed:?}"
    );
}

#[test]
fn sigterm_stops_serve_cleanly() {
    let serving = Serving::start(&["--public-metrics"], &[]);
    assert_eq!(get(&serving.url, "/metrics", None).status, 200);
    let (code, rest) = serving.terminate();
    assert_eq!(code, Some(0));
    assert!(rest.contains("shutting down"), "{rest:?}");
}

#[test]
fn help_explains_public_metrics() {
    let run = cli_support::cli(&["serve", "--help"]).expect(0);
    assert!(run.stdout.contains("--public-metrics"), "{run:?}");
    assert!(run.stdout.contains("EVENTODB_PUBLIC_METRICS"), "{run:?}");
}

#[test]
fn limits_from_flags_and_environment() {
    use std::io::Write;
    let help = cli_support::cli(&["serve", "--help"]).expect(0);
    for flag in [
        "--max-connections",
        "EVENTODB_MAX_CONNECTIONS",
        "--max-body",
        "EVENTODB_MAX_BODY",
        "--head-timeout",
        "EVENTODB_HEAD_TIMEOUT",
        "--idle-timeout",
        "EVENTODB_IDLE_TIMEOUT",
        "--write-timeout",
        "EVENTODB_WRITE_TIMEOUT",
    ] {
        assert!(help.stdout.contains(flag), "{flag} in {help:?}");
    }
    let mut serving = Serving::start(
        &["--max-body", "1KiB"],
        &[("EVENTODB_HEAD_TIMEOUT", "200ms")],
    );
    let token = serving.printed_token();
    let big = format!(
        r#"["stream.write","s-1",{{"type":"T","data":{{"x":"{}"}}}}]"#,
        "x".repeat(2000)
    );
    assert_eq!(rpc(&serving.url, Some(&token), &big).status, 413);
    let small = r#"["stream.write","s-1",{"type":"T","data":{}}]"#;
    assert_eq!(rpc(&serving.url, Some(&token), small).status, 200);
    // A head that never ends: 408 once the deadline from the environment passes.
    let addr = serving.url.trim_start_matches("http://").to_string();
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(DEADLINE)).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let bad = cli_support::cli(&["serve", "--port", "0", "--max-body", "10MB"]).expect(2);
    assert!(bad.stderr.contains("KiB, MiB or GiB"), "{bad:?}");
}
