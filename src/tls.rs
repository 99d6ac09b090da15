//! TLS settings for every connection an [`HttpStore`](crate::HttpStore)
//! opens: which certificate authorities to trust and which client
//! certificate to present.
//!
//! One [`TlsSettings`] value yields both configurations the store needs: a
//! ureq [`TlsConfig`](ureq::tls::TlsConfig) for RPC calls and an
//! `Arc<rustls::ClientConfig>` for the connections the kit opens itself (SSE
//! subscriptions, the watch hub). Both check the server's certificate chain,
//! its host name and its validity period; there is no switch to turn that off.
//!
//! PEM input is parsed when it is given, so a file that does not exist or
//! holds no certificate is an [`Error::InvalidInput`] at once, never a
//! connection failure later.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The certificate authorities an [`HttpStore`](crate::HttpStore) trusts and
/// the client certificate it presents (mutual TLS).
///
/// By default: the web's public roots built into the binary (Mozilla's, as
/// shipped by `webpki-roots`) and no client certificate. A fleet with its
/// own certificate authority trusts it *instead of* the built-in roots, or
/// on top of them:
///
/// ```
/// # fn demo(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> eventodb_kit::Result<()> {
/// use eventodb_kit::{HttpStore, TlsSettings};
///
/// let tls = TlsSettings::new()
///     .built_in_roots(false)                  // only the fleet's CA
///     .add_root_certificates_pem(ca_pem)?
///     .client_certificate_pem(cert_pem, key_pem)?; // the device's identity
/// let token = format!("ns_ZGVmYXVsdA_{}", "0".repeat(64));
/// let store = HttpStore::builder("https://events.example.com", &token)
///     .tls(tls)
///     .build()?;
/// # Ok(()) }
/// ```
///
/// From files, as `Kit::from_env` does with `EVENTODB_CA_CERT`,
/// `EVENTODB_CLIENT_CERT` and `EVENTODB_CLIENT_KEY`:
/// [`TlsSettings::add_root_certificates_file`] and
/// [`TlsSettings::client_certificate_files`].
///
/// Failures of the handshake are [`Error::Transport`] errors of kind
/// [`Tls`](crate::TransportErrorKind::Tls) whose message says what was
/// refused (an unknown certificate authority, a certificate for another
/// host, an expired certificate, a client certificate the server refused);
/// a sender pauses on them and never dead-letters.
#[derive(Clone)]
pub struct TlsSettings {
    extra_roots: Vec<CertificateDer<'static>>,
    built_in_roots: bool,
    platform_verifier: bool,
    identity: Option<Arc<Identity>>,
}

/// A client certificate chain and its key (never shown).
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            extra_roots: Vec::new(),
            built_in_roots: true,
            platform_verifier: false,
            identity: None,
        }
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("built_in_roots", &self.built_in_roots)
            .field("extra_roots", &self.extra_roots.len())
            .field("platform_verifier", &self.platform_verifier)
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl TlsSettings {
    /// The built-in web roots, no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the web's public roots built into the binary are trusted.
    /// Turn them off to trust only the certificate authorities added with
    /// [`TlsSettings::add_root_certificates_pem`]. Defaults to `true`.
    pub fn built_in_roots(mut self, trusted: bool) -> Self {
        self.built_in_roots = trusted;
        self
    }

    /// Trusts the certificate authorities in `pem` (one or more
    /// `CERTIFICATE` blocks), in addition to the others trusted.
    ///
    /// Errors: [`Error::InvalidInput`] when `pem` holds no certificate or
    /// one that cannot be a trust anchor.
    pub fn add_root_certificates_pem(mut self, pem: impl AsRef<[u8]>) -> Result<Self> {
        let certs = certificates_from_pem(pem.as_ref(), "CA certificate PEM")?;
        root_store(&certs, "CA certificate PEM")?;
        self.extra_roots.extend(certs);
        Ok(self)
    }

    /// Like [`TlsSettings::add_root_certificates_pem`], reading the PEM
    /// from the file at `path`.
    ///
    /// Errors: [`Error::InvalidInput`] naming the file when it cannot be
    /// read or holds no usable certificate.
    pub fn add_root_certificates_file(mut self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let what = format!("CA certificate file {}", path.display());
        let certs = certificates_from_pem(&read_file(path, &what)?, &what)?;
        root_store(&certs, &what)?;
        self.extra_roots.extend(certs);
        Ok(self)
    }

    /// Trusts the operating system's certificate store (through
    /// `rustls-platform-verifier`, which also checks revocation where the
    /// platform does) instead of the built-in roots. It cannot be combined
    /// with added roots (the store refuses that at build): install a private
    /// CA in the platform's store instead. Defaults to `false`.
    #[cfg(feature = "platform-verifier")]
    pub fn platform_verifier(mut self, on: bool) -> Self {
        self.platform_verifier = on;
        self
    }

    /// Presents this client certificate (mutual TLS): `chain_pem` holds the
    /// certificate first, then any intermediates; `key_pem` its private key
    /// (PKCS#8, PKCS#1 or SEC1). Defaults to none.
    ///
    /// Errors: [`Error::InvalidInput`] when either does not parse or the
    /// key does not belong to the certificate.
    pub fn client_certificate_pem(
        self,
        chain_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Result<Self> {
        let chain = certificates_from_pem(chain_pem.as_ref(), "client certificate PEM")?;
        let key = private_key_from_pem(key_pem.as_ref(), "client key PEM")?;
        self.with_identity(chain, key)
    }

    /// Like [`TlsSettings::client_certificate_pem`], reading the chain and
    /// the key from files.
    ///
    /// Errors: [`Error::InvalidInput`] naming the file that cannot be read
    /// or parsed, or saying that the key does not match the certificate.
    pub fn client_certificate_files(
        self,
        chain_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<Self> {
        let (chain_path, key_path) = (chain_path.as_ref(), key_path.as_ref());
        let what = format!("client certificate file {}", chain_path.display());
        let chain = certificates_from_pem(&read_file(chain_path, &what)?, &what)?;
        let what = format!("client key file {}", key_path.display());
        let key = private_key_from_pem(&read_file(key_path, &what)?, &what)?;
        self.with_identity(chain, key)
    }

    /// Whether a client certificate is set.
    pub fn has_client_certificate(&self) -> bool {
        self.identity.is_some()
    }

    pub(crate) fn with_identity(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self> {
        rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider()).map_err(
            |e| {
                Error::invalid(format!(
                    "the client key does not fit the client certificate: {e}"
                ))
            },
        )?;
        self.identity = Some(Arc::new(Identity { chain, key }));
        Ok(self)
    }

    /// Refuses settings that can verify no server.
    pub(crate) fn check(&self) -> Result<()> {
        if self.platform_verifier && !self.extra_roots.is_empty() {
            return Err(Error::invalid(
                "TLS: the platform verifier cannot be combined with added root certificates; \
                 install the CA in the platform's store or use the added roots without it",
            ));
        }
        if !self.platform_verifier && !self.built_in_roots && self.extra_roots.is_empty() {
            return Err(Error::invalid(
                "TLS: no certificate authority is trusted (built-in roots off and none added)",
            ));
        }
        Ok(())
    }

    /// The ureq configuration of the RPC agent.
    pub(crate) fn ureq_config(&self) -> ureq::tls::TlsConfig {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let roots = if self.platform_verifier {
            RootCerts::PlatformVerifier
        } else if self.extra_roots.is_empty() {
            RootCerts::WebPki
        } else {
            let built_in: &[CertificateDer<'static>] = if self.built_in_roots {
                webpki_root_certs::TLS_SERVER_ROOT_CERTS
            } else {
                &[]
            };
            built_in
                .iter()
                .chain(&self.extra_roots)
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect::<Vec<_>>()
                .into()
        };
        let client_cert = self.identity.as_ref().map(|id| {
            let chain: Vec<Certificate<'static>> = id
                .chain
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            // ureq takes keys as PEM (its key kinds are not public).
            let key = PrivateKey::from_pem(&key_pem(&id.key))
                .expect("a key rustls loaded is one ureq reads");
            ClientCert::new_with_certs(&chain, key)
        });
        TlsConfig::builder()
            .root_certs(roots)
            .client_cert(client_cert)
            .build()
    }

    /// The rustls configuration of the connections the kit opens itself
    /// (SSE, and any other raw connection of the store).
    pub(crate) fn rustls_client_config(&self) -> Result<Arc<ClientConfig>> {
        self.check()?;
        let provider = provider();
        let tls_error = |e: rustls::Error| Error::invalid(format!("TLS settings: {e}"));
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(tls_error)?;
        let builder = if self.platform_verifier {
            platform_builder(builder, &provider)?
        } else {
            let mut roots = RootCertStore::empty();
            if self.built_in_roots {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            for cert in &self.extra_roots {
                roots.add(cert.clone()).map_err(tls_error)?;
            }
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| Error::invalid(format!("TLS settings: {e}")))?;
            builder.with_webpki_verifier(verifier)
        };
        let config = match &self.identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(tls_error)?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

#[cfg(feature = "platform-verifier")]
fn platform_builder(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>,
    provider: &Arc<CryptoProvider>,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>> {
    let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(provider))
        .map_err(|e| Error::invalid(format!("TLS: the platform verifier is unusable: {e}")))?;
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier)))
}

#[cfg(not(feature = "platform-verifier"))]
fn platform_builder(
    _builder: rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>,
    _provider: &Arc<CryptoProvider>,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>> {
    unreachable!("platform_verifier is only settable with the platform-verifier feature")
}

/// `key` as PEM.
fn key_pem(key: &PrivateKeyDer<'_>) -> Vec<u8> {
    use base64::Engine as _;
    let (label, der) = match key {
        PrivateKeyDer::Pkcs1(k) => ("RSA PRIVATE KEY", k.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(k) => ("EC PRIVATE KEY", k.secret_sec1_der()),
        PrivateKeyDer::Pkcs8(k) => ("PRIVATE KEY", k.secret_pkcs8_der()),
        // `private_key_from_pem` admits only the three kinds above.
        _ => unreachable!("unsupported private key kind"),
    };
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem.into_bytes()
}

/// The process's default crypto provider, else ring (as ureq chooses).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Reads a PEM file; `what` names it in the error.
pub(crate) fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::invalid(format!("cannot read the {what}: {e}")))
}

/// Every `CERTIFICATE` block of `pem` (at least one).
pub(crate) fn certificates_from_pem(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid(format!("the {what} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::invalid(format!(
            "the {what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(certs)
}

/// The first private key of `pem` (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn private_key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key @ (PrivateKeyDer::Pkcs1(_) | PrivateKeyDer::Sec1(_) | PrivateKeyDer::Pkcs8(_))) => {
            Ok(key)
        }
        Ok(_) => Err(Error::invalid(format!(
            "the {what} holds a private key of an unsupported kind"
        ))),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(Error::invalid(format!(
            "the {what} holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
        ))),
        Err(e) => Err(Error::invalid(format!("the {what} is not valid PEM: {e}"))),
    }
}

/// The trust anchors `certs` (from the `what` named in the error): each
/// must be able to serve as one.
pub(crate) fn root_store(certs: &[CertificateDer<'static>], what: &str) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert.clone()).map_err(|e| {
            Error::invalid(format!(
                "the {what} holds a certificate that cannot be a CA: {e}"
            ))
        })?;
    }
    Ok(store)
}

/// What a TLS failure means for the user: which certificate was refused
/// and why, in words.
pub(crate) fn describe(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C};
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => format!(
                "the server's certificate is not signed by a trusted certificate authority \
                 (unknown CA: add the server's CA, e.g. EVENTODB_CA_CERT): {e}"
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the server's certificate is not valid for this host name (hostname mismatch): {e}"
            ),
            C::Expired | C::ExpiredContext { .. } => {
                format!("the server's certificate has expired: {e}")
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("the server's certificate is not valid yet (check the clock): {e}")
            }
            C::Revoked => format!("the server's certificate has been revoked: {e}"),
            _ => format!("the server's certificate was refused: {e}"),
        },
        rustls::Error::AlertReceived(A::CertificateRequired) => format!(
            "the server requires a client certificate and none was presented \
             (set EVENTODB_CLIENT_CERT and EVENTODB_CLIENT_KEY): {e}"
        ),
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => format!("the server refused the client certificate: {e}"),
        _ => format!("TLS failure: {e}"),
    }
}

/// The rustls error inside an I/O error, if that is what it carries.
pub(crate) fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_cannot_be_used_and_names_it() {
        let err = TlsSettings::new()
            .add_root_certificates_pem("not pem")
            .unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let err = TlsSettings::new()
            .add_root_certificates_file("/nonexistent/ca.pem")
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.contains("/nonexistent/ca.pem")),
            "{err}"
        );
        let err = TlsSettings::new()
            .built_in_roots(false)
            .check()
            .unwrap_err();
        assert!(
            err.to_string().contains("no certificate authority"),
            "{err}"
        );
        assert!(TlsSettings::new().check().is_ok());
        assert!(TlsSettings::new().rustls_client_config().is_ok());
        assert!(format!("{:?}", TlsSettings::new()).contains("built_in_roots: true"));
    }

    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn roots_instead_of_or_on_top_of_the_built_in_ones() {
        let only = TlsSettings::new()
            .built_in_roots(false)
            .add_root_certificates_pem(ca_pem())
            .unwrap();
        assert!(only.rustls_client_config().is_ok());
        assert!(matches!(
            only.ureq_config().root_certs(),
            ureq::tls::RootCerts::Specific(certs) if certs.len() == 1
        ));
        let both = TlsSettings::new()
            .add_root_certificates_pem(ca_pem())
            .unwrap();
        assert!(matches!(
            both.ureq_config().root_certs(),
            ureq::tls::RootCerts::Specific(certs) if certs.len() > 100
        ));
        assert!(matches!(
            TlsSettings::new().ureq_config().root_certs(),
            ureq::tls::RootCerts::WebPki
        ));
    }

    #[cfg(feature = "platform-verifier")]
    #[test]
    fn the_platform_store_stands_alone() {
        let platform = TlsSettings::new().platform_verifier(true);
        assert!(platform.check().is_ok());
        assert!(matches!(
            platform.ureq_config().root_certs(),
            ureq::tls::RootCerts::PlatformVerifier
        ));
        let mixed = platform.add_root_certificates_pem(ca_pem()).unwrap();
        let err = mixed.check().unwrap_err().to_string();
        assert!(err.contains("platform verifier"), "{err}");
    }
}
