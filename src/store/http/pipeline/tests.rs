//! Pipelining over TLS: a small rustls server (certificates from a
//! self-signed CA made with rcgen) terminates TLS in front of a real
//! `serve`; the client trusts the CA through the store's `TlsSettings`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::json;

use crate::error::{Error, TransportErrorKind};
use crate::server::{Server, ServerConfig as ServeConfig};
use crate::store::http::response::ResponseReader;
use crate::store::http::HttpStore;
use crate::store::{MessageStore, StreamQuery, WriteItem};
use crate::{NewMessage, TlsSettings, WriteOptions};

const WAIT: Duration = Duration::from_secs(20);

/// A CA and a server certificate it signed for `names`.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

fn pki(names: &[&str]) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key: key.serialize_der(),
    }
}

/// Terminates TLS and forwards each request to `serve`, one at a time, in
/// order (a pipelining server: it reads the next request after answering
/// one).
struct TlsFront {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl TlsFront {
    fn start(pki: &Pki, backend: SocketAddr) -> TlsFront {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                pki.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone())),
            )
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let threads = Arc::new(Mutex::new(Vec::new()));
        let (stopping, open, serving) = (
            Arc::clone(&stop),
            Arc::clone(&sockets),
            Arc::clone(&threads),
        );
        let acceptor = thread::spawn(move || {
            for socket in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(socket) = socket else { continue };
                open.lock().unwrap().push(socket.try_clone().unwrap());
                let conn = ServerConnection::new(Arc::clone(&config)).unwrap();
                serving.lock().unwrap().push(thread::spawn(move || {
                    let _ = forward_all(StreamOwned::new(conn, socket), backend);
                }));
            }
        });
        TlsFront {
            addr,
            stop,
            sockets,
            threads,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            t.join().unwrap();
        }
        for s in self.sockets.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        for t in self.threads.lock().unwrap().drain(..) {
            t.join().unwrap();
        }
    }
}

/// Forwards requests from `tls` to `backend` and the answers back, until
/// the client closes.
fn forward_all(
    mut tls: StreamOwned<ServerConnection, TcpStream>,
    backend: SocketAddr,
) -> std::io::Result<()> {
    let mut to_server = TcpStream::connect(backend)?;
    let mut answers = ResponseReader::new(to_server.try_clone()?, 1 << 20);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let request = loop {
            if let Some(request) = take_request(&mut buf) {
                break request;
            }
            let n = tls.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        to_server.write_all(&request)?;
        let answer = answers
            .read_response()
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .expect("serve answers");
        let head = format!(
            "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.status,
            answer.body.len()
        );
        tls.write_all(&[head.as_bytes(), &answer.body].concat())?;
        tls.flush()?;
    }
}

fn take_request(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(buf).ok()? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let length: usize = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |h| {
            std::str::from_utf8(h.value).unwrap().parse().unwrap()
        });
    (buf.len() >= head + length).then(|| buf.drain(..head + length).collect())
}

fn trusting(pki: &Pki) -> TlsSettings {
    TlsSettings::new()
        .built_in_roots(false)
        .add_root_certificates_pem(&pki.ca_pem)
        .unwrap()
}

fn items(count: u64) -> Vec<WriteItem> {
    (0..count)
        .map(|n| {
            WriteItem::new(
                "secure-1",
                NewMessage::new("Sealed", json!({ "n": n })),
                WriteOptions::new().id(uuid::Uuid::now_v7().to_string()),
            )
        })
        .collect()
}

fn tls_kind(result: &crate::Result<crate::WriteResult>) -> bool {
    matches!(
        result,
        Err(Error::Transport {
            kind: TransportErrorKind::Tls,
            ..
        })
    )
}

#[test]
fn pipelined_writes_round_trip_over_tls() {
    let server = Server::start(ServeConfig::new()).unwrap();
    let pki = pki(&["127.0.0.1", "localhost"]);
    let front = TlsFront::start(&pki, server.addr());
    let token = server.default_token().unwrap().expose_secret().to_string();
    let url = format!("https://127.0.0.1:{}", front.addr.port());
    let store = HttpStore::builder(&url, &token)
        .tls(trusting(&pki))
        .build()
        .unwrap();

    let writes = items(300);
    let pipeline = store.open_pipeline().unwrap().unwrap();
    for (tag, item) in (0u64..).zip(&writes) {
        pipeline.send(tag, item.clone()).unwrap();
    }
    for (n, _) in writes.iter().enumerate() {
        let answer = pipeline.answers().recv_timeout(WAIT).unwrap();
        assert_eq!(answer.tag, n as u64);
        assert_eq!(answer.result.unwrap().position, n as i64);
    }
    let more = items(50);
    let results = store.write_many(&more);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let stored: Vec<String> = server
        .store()
        .get_stream("secure-1", &StreamQuery::new().batch_size(-1))
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    let sent: Vec<String> = writes
        .iter()
        .chain(&more)
        .map(|i| i.options.id.clone().unwrap())
        .collect();
    assert_eq!(stored, sent);
    drop(pipeline);
    drop(store);
    drop(front);
    server.shutdown();
}

#[test]
fn an_untrusted_or_misnamed_certificate_is_a_tls_error() {
    let server = Server::start(ServeConfig::new()).unwrap();
    let token = server.default_token().unwrap().expose_secret().to_string();

    // Not signed by anything the default (webpki) roots trust.
    let pki_ok = pki(&["127.0.0.1"]);
    let front = TlsFront::start(&pki_ok, server.addr());
    let url = format!("https://127.0.0.1:{}", front.addr.port());
    let store = HttpStore::new(&url, &token).unwrap();
    let results = store.write_many(&items(5));
    assert!(results.iter().all(tls_kind), "{results:?}");
    let message = results[0].as_ref().unwrap_err().to_string();
    assert!(message.contains("certificate"), "{message}");

    // Trusted CA, but the certificate names another host.
    let pki_other = pki(&["events.example.com"]);
    let front = TlsFront::start(&pki_other, server.addr());
    let url = format!("https://127.0.0.1:{}", front.addr.port());
    let store = HttpStore::builder(&url, &token)
        .tls(trusting(&pki_other))
        .build()
        .unwrap();
    let results = store.write_many(&items(3));
    assert!(results.iter().all(tls_kind), "{results:?}");
    assert_eq!(
        server.store().stream_version("secure-1").unwrap(),
        None,
        "nothing was written"
    );
}

/// What `HttpStore::write` refuses before sending is refused alike in a
/// pipeline — never sent, answered in its turn with the same error.
#[test]
fn pipelined_writes_get_the_checks_of_write() {
    let server = Server::start(ServeConfig::new()).unwrap();
    let token = server.default_token().unwrap().expose_secret().to_string();
    let store = HttpStore::new(&server.url(), &token).unwrap();
    let mut deep = json!({});
    for _ in 0..crate::message::MAX_JSON_DEPTH {
        deep = json!({ "a": deep });
    }
    let good = |n: u64| {
        WriteItem::new(
            "checked-1",
            NewMessage::new("T", json!({ "n": n })),
            WriteOptions::new(),
        )
    };
    let empty_stream = WriteItem::new("", NewMessage::new("T", json!({})), WriteOptions::new());
    let too_deep = WriteItem::new("checked-1", NewMessage::new("T", deep), WriteOptions::new());
    let no_type = WriteItem::new(
        "checked-1",
        NewMessage::new("", json!({})),
        WriteOptions::new(),
    );
    let refusal = |item: &WriteItem| {
        store
            .write(&item.stream, &item.message, &item.options)
            .unwrap_err()
            .to_string()
    };
    let expect = |results: Vec<crate::Result<crate::WriteResult>>, items: &[WriteItem]| {
        assert_eq!(results.len(), items.len());
        for (result, item) in results.iter().zip(items) {
            if crate::store::check_write(&item.stream, &item.message).is_err() {
                match result {
                    Err(e @ Error::InvalidInput(_)) => assert_eq!(e.to_string(), refusal(item)),
                    other => panic!("{item:?}: {other:?}"),
                }
            } else {
                assert!(result.is_ok(), "{result:?}");
            }
        }
    };

    // Refusals first in line (no connection yet), between and after sent writes.
    let items = vec![
        empty_stream.clone(),
        too_deep.clone(),
        good(0),
        no_type.clone(),
        good(1),
        empty_stream.clone(),
        too_deep.clone(),
        good(2),
        too_deep.clone(),
    ];
    expect(store.write_many(&items), &items);
    // Only refusals, on the kept pipeline's idle connection.
    let items = vec![too_deep.clone(), empty_stream.clone()];
    expect(store.write_many(&items), &items);

    let pipeline = store.open_pipeline().unwrap().unwrap();
    let items: Vec<_> = (3..40)
        .map(|n| {
            if n % 3 == 0 {
                too_deep.clone()
            } else {
                good(n)
            }
        })
        .collect();
    for (tag, item) in (0u64..).zip(&items) {
        pipeline.send(tag, item.clone()).unwrap();
    }
    let answers: Vec<_> = (0..items.len())
        .map(|_| pipeline.answers().recv_timeout(WAIT).unwrap())
        .collect();
    let tags: Vec<u64> = answers.iter().map(|a| a.tag).collect();
    assert_eq!(
        tags,
        (0..items.len() as u64).collect::<Vec<_>>(),
        "in order"
    );
    expect(answers.into_iter().map(|a| a.result).collect(), &items);

    let stored = server
        .store()
        .get_stream("checked-1", &StreamQuery::new().batch_size(-1))
        .unwrap();
    let ns: Vec<i64> = stored
        .iter()
        .map(|m| m.data["n"].as_i64().unwrap())
        .collect();
    let sent: Vec<i64> = (0..40).filter(|n| n < &3 || n % 3 != 0).collect();
    assert_eq!(ns, sent, "nothing refused was sent");
    drop(pipeline);
    drop(store);
    server.shutdown();
}
