//! Certificates made at run time for the TLS tests (nothing is checked
//! in): a private CA, server certificates for 127.0.0.1 / localhost (valid,
//! expired, for another host), client certificates, and a second CA that
//! nobody trusts.

#![allow(dead_code)]

use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{HttpStore, RetryPolicy, TlsSettings};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use std::time::Duration;

/// A certificate and its key, in PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// A certificate authority that issues certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    /// The CA certificate (what clients or servers trust).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose, expired: bool) -> Pair {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "eventodb-kit test");
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self) -> Pair {
        self.issue(
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            false,
        )
    }

    /// A server certificate for another host only.
    pub fn server_for(&self, host: &str) -> Pair {
        self.issue(&[host], ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A server certificate for 127.0.0.1 that expired in 2021.
    pub fn expired_server(&self) -> Pair {
        self.issue(
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            true,
        )
    }

    /// A client certificate (a device's identity).
    pub fn client(&self, name: &str) -> Pair {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth, false)
    }
}

/// A server over TLS with `pair`, requiring client certificates of
/// `client_ca` when given.
pub fn tls_server(pair: &Pair, client_ca: Option<&Ca>) -> Server {
    let mut config = ServerConfig::new().tls_pem(pair.cert.clone(), pair.key.clone());
    if let Some(ca) = client_ca {
        config = config.client_ca_pem(ca.pem());
    }
    Server::start(config).unwrap()
}

/// Trusts `ca` only.
pub fn trusting(ca: &Ca) -> TlsSettings {
    TlsSettings::new()
        .built_in_roots(false)
        .add_root_certificates_pem(ca.pem())
        .unwrap()
}

/// An `HttpStore` on `url` with `tls` and quick reconnects.
pub fn store(url: &str, token: &str, tls: TlsSettings) -> HttpStore {
    HttpStore::builder(url, token)
        .tls(tls)
        .reconnect_policy(
            RetryPolicy::new()
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(200)),
        )
        .build()
        .unwrap()
}
