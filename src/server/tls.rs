//! HTTPS for `serve`: the rustls server configuration (certificate, key,
//! optional client-certificate verification), loaded and checked at start.
//! Each connection's TLS session lives in its
//! [`Transport`](super::transport::Transport).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use crate::error::{Error, Result};
use crate::tls::{certificates_from_pem, private_key_from_pem, provider, read_file, root_store};

/// PEM input: a file, or the bytes themselves.
#[derive(Clone)]
pub(crate) enum Pem {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(path) => path.fmt(f),
            Pem::Bytes(_) => f.write_str("<PEM bytes>"),
        }
    }
}

impl Pem {
    /// The bytes and a name for errors (`what` says what it holds).
    fn load(&self, what: &str) -> Result<(Vec<u8>, String)> {
        match self {
            Pem::File(path) => {
                let what = format!("{what} file {}", path.display());
                Ok((read_file(path, &what)?, what))
            }
            Pem::Bytes(bytes) => Ok((bytes.clone(), format!("{what} PEM"))),
        }
    }
}

/// The TLS settings of a server as configured (loaded at start).
#[derive(Clone, Debug)]
pub(crate) struct TlsFiles {
    pub(crate) cert: Pem,
    pub(crate) key: Pem,
}

impl TlsFiles {
    /// Loads and checks everything: certificate chain, key (matching it),
    /// and the CAs of `client_ca` when client certificates are required.
    pub(crate) fn load(&self, client_ca: Option<&Pem>) -> Result<Arc<ServerConfig>> {
        let (pem, what) = self.cert.load("TLS certificate")?;
        let chain = certificates_from_pem(&pem, &what)?;
        let (pem, what) = self.key.load("TLS key")?;
        let key = private_key_from_pem(&pem, &what)?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| Error::invalid(format!("TLS: {e}")))?;
        let builder = match client_ca {
            Some(ca) => {
                let (pem, what) = ca.load("client CA")?;
                let roots = root_store(&certificates_from_pem(&pem, &what)?, &what)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| Error::invalid(format!("TLS client verification: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| {
            Error::invalid(format!("the TLS key does not fit the TLS certificate: {e}"))
        })?;
        Ok(Arc::new(config))
    }
}
