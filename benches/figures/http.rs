//! `http_write_1`, `http_write_4`: `stream.write` requests/s through
//! `HttpStore` against `eventodb-kit serve` (a SQLite file in a temp dir),
//! next to the raw limit — plain ureq POSTs of the same body to a trivial
//! handler in the same process, with the same number of threads.
//!
//! `http_write_N_vs_storage` puts the HTTP rate next to the same writes
//! made directly into an `EmbeddedStore` file: the storage bound the server
//! works within (one SQLite commit per write).
//!
//! `http_category_get_30kb`: round trips/s of a ~30 KB `category.get`,
//! against the trivial handler answering 30 KB; `http_category_get_30kb_ms`
//! gives its latency next to a naive handler (no `TCP_NODELAY`, head and
//! body in two writes), which shows what Nagle's algorithm and delayed ACKs
//! cost when they are not handled.
//!
//! `http_poke_latency_ms`: write → SSE poke through `HttpStore`.
//!
//! `tls_write_1`, `tls_category_read_100`: `HttpStore` writes/s and
//! 100-message `category.get` reads/s over TLS to `serve` (a private CA made
//! with rcgen), next to the same over plain HTTP to a server set up the same
//! way: what TLS on a kept-alive connection costs. `tls_write_pipelined`:
//! 1000 writes through `HttpStore::write_many` (pipelined, batched by
//! `serve`) over TLS, next to the same over plain HTTP.
//!
//! `http_write_pipelined`: 1000 writes through `HttpStore::write_many`
//! (HTTP/1.1 pipelining on one connection) next to the same writes made one
//! per round trip with `HttpStore::write`.
//! `http_write_pipelined_raw`: `stream.write` requests/s to `serve` over one
//! raw TCP connection, 100 pipelined at a time (sent in one write, then the
//! 100 answers read), next to the same requests one per round trip on one
//! connection — raw sockets on the client side both times, so it measures
//! what the server gains from pipelining (answers in order, the waiting
//! writes in one transaction). Above 1 is the gain.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::store::WriteItem;
use eventodb_kit::{
    CategoryQuery, EmbeddedStore, HttpStore, MessageStore, NewMessage, SubscribeTarget,
    TlsSettings, WriteOptions,
};
use serde_json::json;

use crate::report::{best_of, Report};

const BUDGET: Duration = Duration::from_secs(2);
const STREAMS: u64 = 100;

pub fn run(report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::new().data_dir(dir.path())).unwrap();
    let store = server.http_store().unwrap();
    let write_answer = b"{\"globalPosition\":1,\"position\":0}\n".to_vec();
    let trivial = Trivial::start(write_answer, true);
    let embedded = EmbeddedStore::open(dir.path().join("embedded.db")).unwrap();
    for threads in [1, 4] {
        let kit = best_of(3, || kit_writes(&store, threads));
        let limit = best_of(3, || raw_writes(trivial.addr, threads));
        report.ratio(&format!("http_write_{threads}"), kit, limit);
        // Context: the same writes straight into an embedded store (the
        // storage the server itself cannot beat), same threads.
        let storage = best_of(2, || kit_writes(&embedded, threads));
        report.ratio(&format!("http_write_{threads}_vs_storage"), kit, storage);
    }
    write_pipelined(report, &store);
    category_get_30kb(report, &store);
    poke_latency(report, &store);
    let token = server.default_token().unwrap().expose_secret().to_string();
    pipelined_raw(report, server.addr(), &token);
    drop(store);
    server.shutdown();
    tls(report);
}

/// TLS vs plain HTTP, same server settings, one kept-alive connection.
fn tls(report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates();
    let secure = Server::start(
        ServerConfig::new()
            .data_dir(dir.path().join("tls"))
            .tls_pem(cert, key),
    )
    .unwrap();
    let plain = Server::start(ServerConfig::new().data_dir(dir.path().join("plain"))).unwrap();
    let token = secure.default_token().unwrap().expose_secret().to_string();
    let trust = TlsSettings::new()
        .built_in_roots(false)
        .add_root_certificates_pem(ca)
        .unwrap();
    let over_tls = HttpStore::builder(&secure.url(), &token)
        .tls(trust)
        .build()
        .unwrap();
    let over_plain = plain.http_store().unwrap();
    let kit = best_of(3, || kit_writes(&over_tls, 1));
    let limit = best_of(3, || kit_writes(&over_plain, 1));
    report.ratio("tls_write_1", kit, limit);
    let message = NewMessage::new("Read", payload());
    for store in [&over_tls, &over_plain] {
        for n in 0..100 {
            store
                .write(
                    &format!("read100-{}", n % 10),
                    &message,
                    &WriteOptions::new(),
                )
                .unwrap();
        }
    }
    let reads = |store: &HttpStore| {
        let query = CategoryQuery::new();
        rate_on_threads(1, |_, _| {
            assert_eq!(store.get_category("read100", &query).unwrap().len(), 100);
        })
    };
    let kit = best_of(3, || reads(&over_tls));
    let limit = best_of(3, || reads(&over_plain));
    report.ratio("tls_category_read_100", kit, limit);
    let writes: Vec<WriteItem> = (0..1000)
        .map(|i| {
            WriteItem::new(
                format!("tls-piped-{}", i % STREAMS),
                NewMessage::new("Deposited", payload()),
                WriteOptions::new(),
            )
        })
        .collect();
    let pipelined = |store: &HttpStore| {
        // Warm-up: the store's pipeline is open (and its handshake done).
        assert!(store.write_many(&writes[..10]).iter().all(|r| r.is_ok()));
        best_of(3, || {
            let start = Instant::now();
            let results = store.write_many(&writes);
            let elapsed = start.elapsed();
            assert!(results.iter().all(|r| r.is_ok()));
            writes.len() as f64 / elapsed.as_secs_f64()
        })
    };
    let kit = pipelined(&over_tls);
    let limit = pipelined(&over_plain);
    report.ratio("tls_write_pipelined", kit, limit);
}

/// A private CA's certificate, and a server certificate for 127.0.0.1
/// with its key (PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn payload() -> serde_json::Value {
    json!({ "amount": 125, "currency": "EUR", "note": "monthly savings transfer" })
}

/// Runs `op(thread, i)` on `threads` threads for about `BUDGET` after a
/// warm-up; returns operations per second.
fn rate_on_threads(threads: usize, op: impl Fn(usize, u64) + Sync) -> f64 {
    let measuring = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let elapsed = thread::scope(|s| {
        for t in 0..threads {
            let (op, measuring, stop, done) = (&op, &measuring, &stop, &done);
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    op(t, i);
                    i += 1;
                    if measuring.load(Ordering::Relaxed) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        thread::sleep(BUDGET / 10);
        measuring.store(true, Ordering::Relaxed);
        let start = Instant::now();
        thread::sleep(BUDGET);
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        elapsed
    });
    done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

fn kit_writes(store: &dyn MessageStore, threads: usize) -> f64 {
    let message = NewMessage::new("Deposited", payload());
    rate_on_threads(threads, |t, i| {
        let stream = format!("account-{}", (t as u64 * 7919 + i) % STREAMS);
        store
            .write(&stream, &message, &WriteOptions::new())
            .unwrap();
    })
}

fn raw_writes(addr: SocketAddr, threads: usize) -> f64 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_idle_connections_per_host(32)
        .build()
        .new_agent();
    let url = format!("http://{addr}/rpc");
    let token = format!("Bearer ns_ZGVmYXVsdA_{}", "0".repeat(64));
    rate_on_threads(threads, |t, i| {
        let stream = format!("account-{}", (t as u64 * 7919 + i) % STREAMS);
        let body = serde_json::to_vec(&json!([
            "stream.write",
            stream,
            { "type": "Deposited", "data": payload() }
        ]))
        .unwrap();
        let mut response = agent
            .post(&url)
            .header("Authorization", &token)
            .header("Content-Type", "application/json")
            .send(&body[..])
            .unwrap();
        let _: serde_json::Value =
            serde_json::from_slice(&response.body_mut().read_to_vec().unwrap()).unwrap();
    })
}

/// Writes/s of 1000 writes in one `write_many` (pipelined) vs the same
/// writes one `write` at a time.
fn write_pipelined(report: &mut Report, store: &HttpStore) {
    const WRITES: u64 = 1000;
    let writes: Vec<WriteItem> = (0..WRITES)
        .map(|i| {
            WriteItem::new(
                format!("piped-{}", i % STREAMS),
                NewMessage::new("Deposited", payload()),
                WriteOptions::new(),
            )
        })
        .collect();
    // Warm-up: the pipeline and ureq's pooled connection are open.
    assert!(store.write_many(&writes[..10]).iter().all(|r| r.is_ok()));
    store
        .write(&writes[0].stream, &writes[0].message, &writes[0].options)
        .unwrap();
    let pipelined = best_of(3, || {
        let start = Instant::now();
        let results = store.write_many(&writes);
        let elapsed = start.elapsed();
        assert!(results.iter().all(|r| r.is_ok()));
        WRITES as f64 / elapsed.as_secs_f64()
    });
    let sequential = best_of(3, || {
        let start = Instant::now();
        for w in &writes {
            store.write(&w.stream, &w.message, &w.options).unwrap();
        }
        WRITES as f64 / start.elapsed().as_secs_f64()
    });
    report.ratio("http_write_pipelined", pipelined, sequential);
}

fn category_get_30kb(report: &mut Report, store: &HttpStore) {
    // 100 messages of ~250 bytes each: a ~30 KB answer.
    let filler = "x".repeat(160);
    for n in 0..100 {
        let msg = NewMessage::new("Filled", json!({ "n": n, "filler": filler }));
        store
            .write(&format!("big30-{}", n % 10), &msg, &WriteOptions::new())
            .unwrap();
    }
    let answer_len = serde_json::to_vec(&store.call("category.get", vec![json!("big30")]).unwrap())
        .unwrap()
        .len();
    let query = CategoryQuery::new();
    let kit_times = timed(300, || {
        assert_eq!(store.get_category("big30", &query).unwrap().len(), 100);
    });
    let mut body = vec![b' '; answer_len];
    body[0] = b'[';
    body[answer_len - 1] = b']';
    let good = Trivial::start(body.clone(), true);
    let naive = Trivial::start(body, false);
    let agent: ureq::Agent = ureq::Agent::new_with_defaults();
    let fetch = |addr: SocketAddr| {
        let mut r = agent
            .post(format!("http://{addr}/rpc"))
            .send("[\"category.get\",\"big30\"]")
            .unwrap();
        assert_eq!(
            r.body_mut()
                .with_config()
                .limit(1 << 20)
                .read_to_vec()
                .unwrap()
                .len(),
            answer_len
        );
    };
    let limit_times = timed(300, || fetch(good.addr));
    let naive_times = timed(30, || fetch(naive.addr));
    let rate = |t: &[Duration]| t.len() as f64 / t.iter().sum::<Duration>().as_secs_f64();
    report.ratio(
        "http_category_get_30kb",
        rate(&kit_times),
        rate(&limit_times),
    );
    report.figure(
        "http_category_get_30kb_ms",
        &[
            ("bytes", answer_len as f64),
            ("p50", percentile_ms(&kit_times, 0.50)),
            ("p99", percentile_ms(&kit_times, 0.99)),
            ("limit_p50", percentile_ms(&limit_times, 0.50)),
            ("naive_p50", percentile_ms(&naive_times, 0.50)),
        ],
    );
}

fn poke_latency(report: &mut Report, store: &HttpStore) {
    let sub = store.subscribe_sse(&SubscribeTarget::all(0)).unwrap();
    let message = NewMessage::new("Poked", payload());
    let times = timed(300, || {
        let written = store
            .write("poked-1", &message, &WriteOptions::new())
            .unwrap();
        loop {
            let poke = sub
                .subscription()
                .recv_timeout(Duration::from_secs(5))
                .unwrap();
            if poke.global_position == written.global_position {
                break;
            }
        }
    });
    report.figure(
        "http_poke_latency_ms",
        &[
            ("p50", percentile_ms(&times, 0.50)),
            ("p99", percentile_ms(&times, 0.99)),
            ("max", percentile_ms(&times, 1.0)),
        ],
    );
}

/// Requests in flight at once in `http_write_pipelined_raw`.
const PIPELINE: usize = 100;

fn pipelined_raw(report: &mut Report, addr: SocketAddr, token: &str) {
    let requests: Vec<Vec<u8>> = (0..STREAMS)
        .map(|n| {
            let body = serde_json::to_string(&json!([
                "stream.write",
                format!("piped-{n}"),
                { "type": "Deposited", "data": payload() }
            ]))
            .unwrap();
            format!(
                "POST /rpc HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();
    let window: Vec<u8> = requests
        .iter()
        .cycle()
        .take(PIPELINE)
        .flatten()
        .copied()
        .collect();
    let connect = || {
        let socket = TcpStream::connect(addr).unwrap();
        socket.set_nodelay(true).unwrap();
        let reader = BufReader::new(socket.try_clone().unwrap());
        (socket, reader)
    };
    let (mut socket, mut reader) = connect();
    let pipelined = best_of(3, || {
        crate::report::rate(BUDGET, PIPELINE as u64, || {
            socket.write_all(&window).unwrap();
            for _ in 0..PIPELINE {
                read_write_answer(&mut reader);
            }
        })
    });
    let (mut socket, mut reader) = connect();
    let mut n = 0;
    let one_by_one = best_of(3, || {
        crate::report::rate(BUDGET, 1, || {
            n += 1;
            socket.write_all(&requests[n % requests.len()]).unwrap();
            read_write_answer(&mut reader);
        })
    });
    report.ratio("http_write_pipelined_raw", pipelined, one_by_one);
}

/// Reads one `stream.write` answer and checks it is a success.
fn read_write_answer(reader: &mut BufReader<TcpStream>) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
}

/// Durations of `n` runs of `op` (after 10 % warm-up runs).
fn timed(n: usize, mut op: impl FnMut()) -> Vec<Duration> {
    for _ in 0..n / 10 {
        op();
    }
    (0..n)
        .map(|_| {
            let start = Instant::now();
            op();
            start.elapsed()
        })
        .collect()
}

fn percentile_ms(times: &[Duration], q: f64) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort();
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// A trivial HTTP handler: reads a request, answers `body`. With `good`,
/// sockets have `TCP_NODELAY` and answers leave in one write; without, head
/// and body are written separately with Nagle's algorithm on (the naive setup).
struct Trivial {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Trivial {
    fn start(body: Vec<u8>, good: bool) -> Trivial {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let body = Arc::new(body);
        let flag = Arc::clone(&stop);
        let acceptor = thread::spawn(move || {
            for socket in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(socket) = socket else { continue };
                let body = Arc::clone(&body);
                // Ends when the client closes its connection.
                thread::spawn(move || trivial_connection(socket, &body, good));
            }
        });
        Trivial {
            addr,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for Trivial {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn trivial_connection(socket: TcpStream, body: &[u8], good: bool) {
    socket.set_nodelay(good).unwrap();
    let mut reader = BufReader::new(socket.try_clone().unwrap());
    let mut out = socket;
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    loop {
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut request = vec![0; length];
        if reader.read_exact(&mut request).is_err() {
            return;
        }
        let written = if good {
            let mut all = head.clone().into_bytes();
            all.extend_from_slice(body);
            out.write_all(&all)
        } else {
            out.write_all(head.as_bytes())
                .and_then(|_| out.write_all(body))
        };
        if written.is_err() {
            return;
        }
    }
}
