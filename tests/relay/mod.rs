//! A TCP relay in front of the project's server that can cut SSE: a real
//! network fault for the clients behind it, while RPCs keep flowing.
//!
//! Every connection is relayed byte for byte to the server. A connection
//! whose first request is `GET /subscribe` is an SSE stream:
//! [`Relay::cut_sse`] closes the open ones and closes new ones at once
//! (as a broken link would) until [`Relay::restore_sse`];
//! [`Relay::silence_sse`] makes the open ones go silent without closing
//! (a half-open connection: the server's bytes are dropped, both sockets
//! stay open), while new ones work.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// Both sockets of a relayed connection, whether it is SSE, and whether
/// the server's bytes are dropped.
type Link = (TcpStream, TcpStream, bool, Arc<AtomicBool>);

#[derive(Default)]
struct State {
    stop: AtomicBool,
    sse_blocked: AtomicBool,
    /// SSE streams relayed so far.
    sse_streams: AtomicUsize,
    links: Mutex<Vec<Link>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The relay; dropping it closes every connection and joins its threads.
pub struct Relay {
    addr: SocketAddr,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts relaying 127.0.0.1:<free port> to `upstream`.
    pub fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let s = Arc::clone(&state);
        let acceptor = thread::Builder::new()
            .name("test-relay-accept".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(client) = client {
                        accept(&s, client, upstream);
                    }
                }
            })
            .unwrap();
        Relay {
            addr,
            state,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:<port>` of the relay.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the SSE streams and refuses new ones until restored.
    pub fn cut_sse(&self) {
        self.state.sse_blocked.store(true, Ordering::SeqCst);
        let mut links = self.state.links.lock().unwrap();
        links.retain(|(client, server, sse, _)| {
            if *sse {
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            }
            !*sse
        });
    }

    /// Lets SSE streams through again.
    pub fn restore_sse(&self) {
        self.state.sse_blocked.store(false, Ordering::SeqCst);
    }

    /// The open SSE streams go silent for good without closing: what the
    /// server sends on them is dropped. New streams are relayed as usual.
    pub fn silence_sse(&self) {
        for (_, _, sse, muted) in self.state.links.lock().unwrap().iter() {
            if *sse {
                muted.store(true, Ordering::SeqCst);
            }
        }
    }

    /// How many SSE streams were relayed (connects of the clients' SSE).
    pub fn sse_streams(&self) -> usize {
        self.state.sse_streams.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        for (client, server, _, _) in self.state.links.lock().unwrap().drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        let threads: Vec<_> = self.state.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept(state: &Arc<State>, mut client: TcpStream, upstream: SocketAddr) {
    client.set_nodelay(true).unwrap();
    // Clients send their request at once; a silent one is dropped.
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // Enough of the request line to tell an SSE stream from an RPC.
    const SSE: &[u8] = b"GET /subscribe";
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while head.len() < SSE.len() && !head.contains(&b'\n') {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    client.set_read_timeout(None).unwrap();
    let sse = head.starts_with(SSE);
    if sse && state.sse_blocked.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    server.set_nodelay(true).unwrap();
    if server.write_all(&head).is_err() {
        return;
    }
    let mut links = state.links.lock().unwrap();
    // A cut between the check above and here must still close this one.
    if sse && state.sse_blocked.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
        return;
    }
    let muted = Arc::new(AtomicBool::new(false));
    links.push((
        client.try_clone().unwrap(),
        server.try_clone().unwrap(),
        sse,
        Arc::clone(&muted),
    ));
    if sse {
        state.sse_streams.fetch_add(1, Ordering::SeqCst);
    }
    drop(links);
    let mut threads = state.threads.lock().unwrap();
    threads.retain(|t| !t.is_finished());
    let never = Arc::new(AtomicBool::new(false));
    for (from, to, muted) in [
        (
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
            never,
        ),
        (server, client, muted),
    ] {
        threads.push(
            thread::Builder::new()
                .name("test-relay-copy".into())
                .spawn(move || copy(from, to, &muted))
                .unwrap(),
        );
    }
}

/// Copies until either side closes (dropping the bytes while `muted`),
/// then closes both directions.
fn copy(mut from: TcpStream, mut to: TcpStream, muted: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) if muted.load(Ordering::SeqCst) => {}
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
