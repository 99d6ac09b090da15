//! An in-process TCP proxy that delays each direction by a fixed time, as
//! a long link does (pure latency: bytes are not slowed down, only late).
//! Both the kit and the server it talks to stay in this process; the
//! proxy sits between them, so a figure measured through it pays real
//! round trips.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    sockets: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running delay proxy; dropping it closes every connection and joins
/// its threads.
pub struct DelayProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl DelayProxy {
    /// Listens on 127.0.0.1 and forwards to `upstream`, each direction
    /// `one_way` late (a round trip costs twice that).
    pub fn start(upstream: SocketAddr, one_way: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("delay-proxy".into())
                .spawn(move || {
                    for client in listener.incoming() {
                        if shared.stop.load(Ordering::Acquire) {
                            return;
                        }
                        let Ok(client) = client else { continue };
                        let Ok(server) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        connect(&shared, client, server, one_way);
                    }
                })
                .unwrap()
        };
        DelayProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr); // wakes the acceptor
        for s in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let threads: Vec<_> = self.shared.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn connect(shared: &Arc<Shared>, client: TcpStream, server: TcpStream, one_way: Duration) {
    for s in [&client, &server] {
        s.set_nodelay(true).unwrap();
        shared.sockets.lock().unwrap().push(s.try_clone().unwrap());
    }
    let mut threads = shared.threads.lock().unwrap();
    threads.extend(pipe(
        client.try_clone().unwrap(),
        server.try_clone().unwrap(),
        one_way,
    ));
    threads.extend(pipe(server, client, one_way));
}

/// Copies `from` to `to`, each chunk `delay` after it was read: a reader
/// thread stamps chunks, a writer thread waits for each one's time.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) -> [JoinHandle<()>; 2] {
    let (tx, rx) = unbounded::<Option<(Instant, Vec<u8>)>>();
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(n) => {
                    if tx
                        .send(Some((Instant::now() + delay, buf[..n].to_vec())))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let writer = thread::spawn(move || {
        while let Ok(Some((due, bytes))) = rx.recv() {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    [reader, writer]
}
