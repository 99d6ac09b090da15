//! The rustls configuration of [`HttpStore`](super::HttpStore)'s own
//! connections (the pipelined ones; ureq keeps its own for the rest): the
//! one place it is chosen.
//!
//! By default it verifies as ureq does by default: the webpki root
//! certificates, SNI, the server's name checked against its certificate,
//! TLS 1.2 and 1.3 with the `ring` provider. A store built with other trust
//! settings puts its own [`ClientConfig`] in
//! [`AgentSettings::tls`](super::client::AgentSettings) and every pipelined
//! connection uses that instead.

use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};

/// Where a pipelined connection's TLS settings come from: the store's own
/// configuration if it has one, else [`default_config`].
pub(crate) fn client_config(custom: Option<&Arc<ClientConfig>>) -> Arc<ClientConfig> {
    match custom {
        Some(config) => Arc::clone(config),
        None => default_config(),
    }
}

/// ureq's default verification: webpki roots, SNI, TLS 1.2 and 1.3, `ring`
/// (built once per process).
pub(crate) fn default_config() -> Arc<ClientConfig> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    Arc::clone(DEFAULT.get_or_init(|| {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Arc::new(config_with_roots(roots))
    }))
}

/// A configuration that trusts `roots` (and nothing else), verifying as
/// [`default_config`] does.
pub(crate) fn config_with_roots(roots: RootCertStore) -> ClientConfig {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .expect("the ring provider supports every TLS version rustls has")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_built_once_and_sends_sni() {
        let a = default_config();
        let b = client_config(None);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.enable_sni);
        let custom = Arc::new(config_with_roots(RootCertStore::empty()));
        assert!(Arc::ptr_eq(&client_config(Some(&custom)), &custom));
    }
}
