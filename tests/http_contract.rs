//! The `MessageStore` contract against `HttpStore`: over real HTTP to the
//! project's own server on 127.0.0.1 (a server per test, a fresh namespace
//! made with `ns.create`), or — when `EVENTODB_URL` and
//! `EVENTODB_ADMIN_TOKEN` are set — to that external EventoDB, with a fresh
//! namespace per test that is deleted afterwards. And once more over HTTPS
//! to the project's server with a private CA made in the test (`https`).
#![cfg(feature = "server")]

mod contract;
mod pki;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{HttpStore, MessageStore, RetryPolicy};

struct HttpFixture {
    store: HttpStore,
    admin: HttpStore,
    namespace: String,
    /// `None` when testing an external server.
    _server: Option<Server>,
}

impl contract::Fixture for HttpFixture {
    fn store(&self) -> Arc<dyn MessageStore> {
        Arc::new(self.store.clone())
    }
}

impl Drop for HttpFixture {
    fn drop(&mut self) {
        // Runs after a failed test too: external servers are left clean.
        if let Err(e) = self.admin.delete_namespace(&self.namespace) {
            eprintln!("could not delete namespace {}: {e}", self.namespace);
        }
    }
}

fn unique_namespace() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "kit-contract-{}-{}-{:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

fn client(url: &str, token: &str) -> HttpStore {
    HttpStore::builder(url, token)
        .reconnect_policy(
            RetryPolicy::new()
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(200)),
        )
        .build()
        .unwrap()
}

fn http_store() -> HttpFixture {
    let external = std::env::var("EVENTODB_URL")
        .ok()
        .zip(std::env::var("EVENTODB_ADMIN_TOKEN").ok());
    let (server, url, admin_token) = match external {
        Some((url, token)) => (None, url, token),
        None => {
            let server = Server::start(ServerConfig::new()).unwrap();
            let url = server.url();
            let token = server.default_token().unwrap().expose_secret().to_string();
            (Some(server), url, token)
        }
    };
    let admin = client(&url, &admin_token);
    let namespace = unique_namespace();
    let created = admin
        .create_namespace(&namespace, "eventodb-kit contract test", None)
        .unwrap();
    HttpFixture {
        store: client(&url, created.token.expose_secret()),
        admin,
        namespace,
        _server: server,
    }
}

/// The project's server over TLS, with a certificate of a private CA that
/// the client trusts instead of the built-in roots.
fn https_store() -> HttpFixture {
    let ca = pki::Ca::new("contract CA");
    let server = pki::tls_server(&ca.server(), None);
    let url = server.url();
    let admin_token = server.default_token().unwrap().expose_secret().to_string();
    let admin = pki::store(&url, &admin_token, pki::trusting(&ca));
    let namespace = unique_namespace();
    let created = admin
        .create_namespace(&namespace, "eventodb-kit contract test over TLS", None)
        .unwrap();
    HttpFixture {
        store: pki::store(&url, created.token.expose_secret(), pki::trusting(&ca)),
        admin,
        namespace,
        _server: Some(server),
    }
}

mod http {
    use super::*;
    contract_tests!(http_store);
}

mod https {
    use super::*;
    contract_tests!(https_store);
}
