//! A local port that refuses connections for as long as it is held.
//!
//! Binding a listener, reading its port and dropping it leaves a port that
//! nothing listens on — until another test of the same run (they run in
//! parallel, each with its servers) is given that port and a "refused"
//! test talks to a real server. A socket bound but never listening keeps
//! the port taken and answers every connection with a reset.

use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// A port on 127.0.0.1 that refuses connections while this lives.
pub struct ClosedPort {
    _socket: Socket,
    port: u16,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap();
        let port = socket
            .local_addr()
            .unwrap()
            .as_socket()
            .expect("an IP socket")
            .port();
        ClosedPort {
            _socket: socket,
            port,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
