//! The whole pipeline over mutual TLS, as a fleet deploys it: a private CA
//! for the server, another for the devices, `serve` requiring client
//! certificates, and a device kit configured only from the environment
//! (`EVENTODB_CA_CERT`, `EVENTODB_CLIENT_CERT`, `EVENTODB_CLIENT_KEY`):
//! outbox → sender → `serve` over HTTPS → consumer woken by SSE pokes over
//! TLS. The certificates are made on the spot with `rcgen`.
//!
//! ```text
//! cargo run --example tls
//! ```

use std::path::Path;
use std::time::Duration;

use eventodb_kit::outbox::Delivery;
use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{
    Error, HttpStore, KitBuilder, MessageStore, NewMessage, TlsSettings, WriteOptions,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::json;

/// A self-signed certificate authority.
fn authority(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

/// A certificate for `names` issued by `ca`, as (certificate, key) PEM.
fn issue(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), rcgen::Error> {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn save(dir: &Path, name: &str, pem: &str) -> std::io::Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, pem)?;
    Ok(path.display().to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();

    // The server's CA and certificate (for 127.0.0.1), the devices' CA and
    // one device's certificate, as the files a deployment would ship.
    let server_ca = authority("fleet server CA")?;
    let device_ca = authority("fleet device CA")?;
    let (server_cert, server_key) = issue(
        &server_ca,
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (device_cert, device_key) = issue(
        &device_ca,
        &["device-0042"],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let server_cert = save(d, "server.pem", &server_cert)?;
    let server_key = save(d, "server.key", &server_key)?;
    let client_ca = save(d, "device-ca.pem", &device_ca.pem())?;
    let ca_cert = save(d, "server-ca.pem", &server_ca.pem())?;
    let client_cert = save(d, "device.pem", &device_cert)?;
    let client_key = save(d, "device.key", &device_key)?;

    // `eventodb-kit serve --tls-cert server.pem --tls-key server.key --client-ca device-ca.pem`
    let server = Server::start(
        ServerConfig::new()
            .tls_files(&server_cert, &server_key)
            .client_ca_file(&client_ca),
    )?;
    let token = server
        .default_token()
        .expect("generated")
        .expose_secret()
        .to_string();
    println!("serving on {} (client certificates required)", server.url());

    // The device: everything from its environment.
    let env = [
        ("EVENTODB_URL", server.url()),
        ("EVENTODB_TOKEN", token.clone()),
        ("EVENTODB_CA_CERT", ca_cert.clone()),
        ("EVENTODB_CLIENT_CERT", client_cert),
        ("EVENTODB_CLIENT_KEY", client_key),
        ("EVENTODB_KIT_DB", d.join("device.db").display().to_string()),
    ];
    let kit = KitBuilder::from_lookup(|name| {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })?
    .build()?;

    let consumer = kit
        .consumer("reading", "dashboard")
        // Practically never polls: what it handles came by push over TLS.
        .poll_interval(Duration::from_secs(3600))
        .spawn(|msg, _tx| {
            println!(
                "  handled {} {} (global position {})",
                msg.message_type, msg.data, msg.global_position
            );
            Ok::<(), Error>(())
        })?;
    let sender = kit.spawn_sender(kit.sender_config().clone())?;
    let mut last = String::new();
    for n in 1..=3 {
        last = kit.outbox().write(
            &format!("reading-{n}"),
            &NewMessage::new("Measured", json!({ "celsius": 20 + n })),
        )?;
    }
    let delivery = sender.wait_until_sent(&last, Duration::from_secs(10))?;
    assert_eq!(delivery, Delivery::Sent);
    let head = kit
        .store()
        .last_message("reading-3", None)?
        .expect("delivered")
        .global_position;
    consumer.wait_for_position(head, Duration::from_secs(10))?;
    println!("delivered and handled over mutual TLS");

    // A client without a device certificate is refused, and told why.
    let trust_only = TlsSettings::new()
        .built_in_roots(false)
        .add_root_certificates_file(&ca_cert)?;
    let anonymous = HttpStore::builder(&server.url(), &token)
        .tls(trust_only)
        .build()?;
    let refused = anonymous.write(
        "reading-9",
        &NewMessage::new("Measured", json!({})),
        &WriteOptions::new(),
    );
    println!("without a client certificate: {}", refused.unwrap_err());

    sender.shutdown();
    consumer.shutdown();
    server.shutdown();
    Ok(())
}
