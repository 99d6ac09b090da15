//! What a command works on: the kit's database (`--db`, opened only if it
//! exists) and the store (`--url`, `--token`, `--namespace`).
//!
//! `--url` is read by the library's [`StoreUrl`] — the parser behind
//! `KitBuilder::url` and `EVENTODB_URL` in `Kit::from_env` — so the tool
//! accepts exactly what the app does. On top of it the tool adds its own
//! rules: it never creates a database or store file, it refuses
//! `embedded::memory:` (a store that lives inside one process), and
//! `--namespace` picks the namespace of an embedded store.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use eventodb_kit::store::embedded::DEFAULT_NAMESPACE;
use eventodb_kit::{
    DbOptions, EmbeddedStore, Error, HttpStore, Kit, KitBuilder, MessageStore, StoreUrl,
    TlsSettings, Token,
};

use crate::exit::{CliError, CliResult, NOT_FOUND};

/// What `--url` accepts, for hints.
const URL_FORMS: &str =
    "http(s)://host:port (an EventoDB server, with --token), embedded:///abs/path.db or embedded:rel/path.db";

/// Where the kit's database and the store are.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The kit's local database file (the one the app passes to
    /// `Kit::builder().database(..)`). Must exist: it is never created.
    /// Defaults to the file of an embedded --url, as `Kit::from_env` does.
    #[arg(long, env = "EVENTODB_KIT_DB", value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// The store, as the app's EVENTODB_URL: http(s)://host:port (an
    /// EventoDB server, with --token), embedded:///abs/path.db or
    /// embedded:rel/path.db. Defaults to the embedded store inside the --db
    /// file.
    #[arg(long, env = "EVENTODB_URL", value_name = "URL")]
    pub url: Option<String>,
    /// The namespace token (ns_…): required for an http(s) store, whose
    /// namespace is the token's; with an embedded store it picks the
    /// namespace, as in the app.
    #[arg(
        long,
        env = "EVENTODB_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Namespace of an embedded store. Defaults to the token's namespace,
    /// else "default". With an http(s) store it must match the token's.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// PEM file of the CAs an https store's certificate must come from,
    /// instead of the built-in web roots.
    #[arg(long, env = "EVENTODB_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// PEM file of the client certificate (chain) for a server that
    /// requires mutual TLS; needs --client-key.
    #[arg(
        long,
        env = "EVENTODB_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM file of the --client-cert's private key.
    #[arg(
        long,
        env = "EVENTODB_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

/// An opened store, with what a user needs to recognise it.
#[derive(Clone)]
pub enum Store {
    Http(HttpStore),
    Embedded(EmbeddedStore, PathBuf),
}

impl Store {
    pub fn as_dyn(&self) -> Arc<dyn MessageStore> {
        match self {
            Store::Http(s) => Arc::new(s.clone()),
            Store::Embedded(s, _) => Arc::new(s.clone()),
        }
    }

    pub fn namespace(&self) -> &str {
        match self {
            Store::Http(s) => s.namespace(),
            Store::Embedded(s, _) => s.namespace(),
        }
    }

    /// The store as a URL that `--url` accepts.
    pub fn label(&self) -> String {
        match self {
            Store::Http(s) => s.url().to_string(),
            Store::Embedded(_, path) => StoreUrl::Embedded(path.clone()).to_string(),
        }
    }

    /// Checks that the store answers an authenticated call, so a command
    /// fails early (exit 5 or a token error) rather than half-way.
    pub fn check_reachable(&self) -> CliResult {
        let Store::Http(store) = self else {
            return Ok(());
        };
        match store.stream_version("eventodb-kit-probe") {
            Ok(_) => Ok(()),
            Err(e @ Error::Transport { .. }) => Err(CliError::from(e).hint(format!(
                "check that the store at {} is running and reachable, and that --url (or \
                 EVENTODB_URL) is right; nothing was changed",
                store.url()
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

/// Parses a `--url` with the library's [`StoreUrl`], refusing a store in
/// memory.
fn parse_url(url: &str) -> CliResult<StoreUrl> {
    let parsed = StoreUrl::parse(url).map_err(|e| {
        let message = match e {
            Error::InvalidInput(m) => m,
            other => other.to_string(),
        };
        CliError::usage(format!("--url: {message}")).hint(format!("pass --url {URL_FORMS}"))
    })?;
    if parsed == StoreUrl::EmbeddedInMemory {
        return Err(CliError::usage(
            "--url embedded::memory: is a store that lives only inside the process that opened it; \
             this tool runs in another process and cannot see it",
        )
        .hint(format!(
            "point --url at a store the app keeps: {URL_FORMS} (an app that keeps its store in \
             memory can only be inspected from inside, with kit.metrics())"
        )));
    }
    Ok(parsed)
}

impl TargetArgs {
    /// The kit's database: `--db`, else the file of an embedded `--url`
    /// (where `Kit::from_env` keeps its tables too).
    pub fn db_path(&self) -> CliResult<PathBuf> {
        if let Some(db) = &self.db {
            return Ok(db.clone());
        }
        if let Some(url) = &self.url {
            if let StoreUrl::Embedded(path) = parse_url(url)? {
                return Ok(path);
            }
        }
        Err(
            CliError::usage("this command needs the kit's database: --db FILE").hint(
                "pass --db with the file the app gives to Kit::builder().database(..), or set \
                 EVENTODB_KIT_DB (with an http(s) --url the database is still a local file)",
            ),
        )
    }

    /// Opens the kit with the settings of `builder`: the existing database
    /// and the store.
    fn open_kit(&self, builder: KitBuilder) -> CliResult<(Kit, Store)> {
        let path = self.db_path()?;
        let db = eventodb_kit::Db::open_existing(&path, DbOptions::new().pool_size(4)).map_err(
            |e| match e {
                Error::NotFound(_) => CliError::new(
                    NOT_FOUND,
                    format!("there is no database file at {}", path.display()),
                )
                .hint(
                    "check the path (this tool never creates a database): pass the file the app \
                     gives to Kit::builder().database(..)",
                ),
                Error::InvalidInput(m) => CliError::failure(m).hint(
                    "pass the kit's database (the file the app gives to Kit::builder().database(..)), \
                     not another SQLite file",
                ),
                other => other.into(),
            },
        )?;
        let store = self.open_store(false)?;
        let kit = builder.db(db).shared_store(store.as_dyn()).build()?;
        Ok((kit, store))
    }

    /// Opens the kit (the existing database and the store), and warns when
    /// the database has rows only in other namespaces than the one worked
    /// on.
    pub fn open_kit_checked(&self) -> CliResult<(Kit, Store)> {
        self.open_kit_checked_with(Kit::builder())
    }

    /// Like [`TargetArgs::open_kit_checked`], with the settings of
    /// `builder` (the database and the store are set here).
    pub fn open_kit_checked_with(&self, builder: KitBuilder) -> CliResult<(Kit, Store)> {
        let (kit, store) = self.open_kit(builder)?;
        let namespaces = kit.db().namespaces()?;
        if !namespaces.is_empty() && !namespaces.iter().any(|n| n == kit.namespace()) {
            eprintln!(
                "eventodb-kit: note: the database has nothing for namespace {:?}, but has rows for {}; \
                 pass --namespace NS (embedded store) or the --url and --token the app uses",
                kit.namespace(),
                namespaces
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok((kit, store))
    }

    /// `--token`, unless blank.
    fn token(&self) -> Option<&str> {
        self.token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// The TLS settings of `--ca-cert`, `--client-cert` and `--client-key`.
    fn tls(&self) -> CliResult<TlsSettings> {
        let mut tls = TlsSettings::new();
        if let Some(ca) = &self.ca_cert {
            tls = tls
                .built_in_roots(false)
                .add_root_certificates_file(ca)
                .map_err(|e| {
                    CliError::usage(format!("--ca-cert: {e}"))
                        .hint("pass a PEM file of the server's CA certificate")
                })?;
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            tls = tls.client_certificate_files(cert, key).map_err(|e| {
                CliError::usage(format!("--client-cert/--client-key: {e}"))
                    .hint("pass the PEM files of the client certificate and its key")
            })?;
        }
        Ok(tls)
    }

    /// Opens the store: `--url`, else the embedded store in `--db`. With
    /// `create`, a missing embedded file is created (import into a new
    /// file); otherwise it must exist.
    pub fn open_store(&self, create: bool) -> CliResult<Store> {
        let url = match (&self.url, &self.db) {
            (Some(url), _) => parse_url(url)?,
            (None, Some(db)) => StoreUrl::Embedded(db.clone()),
            (None, None) => {
                return Err(CliError::usage("no store given").hint(
                    "pass --url (or set EVENTODB_URL), or --db FILE to use the embedded store in the kit's database",
                ))
            }
        };
        let bad_token = |e: Error| {
            CliError::usage(e.to_string())
                .hint("pass the namespace token the app uses: --token ns_… (or EVENTODB_TOKEN)")
        };
        match url {
            StoreUrl::Http(url) => {
                let token = self.token().ok_or_else(|| {
                    CliError::usage(format!(
                        "the store at {url} is an EventoDB server and needs a token"
                    ))
                    .hint(
                        "pass --token or set EVENTODB_TOKEN (a token of the namespace to work on)",
                    )
                })?;
                let store = HttpStore::builder(&url, token)
                    .tls(self.tls()?)
                    .build()
                    .map_err(bad_token)?;
                if let Some(ns) = &self.namespace {
                    if ns != store.namespace() {
                        return Err(CliError::usage(format!(
                            "--namespace {ns:?} does not match the token, which is for namespace {:?}",
                            store.namespace()
                        ))
                        .hint("drop --namespace, or pass a token of that namespace"));
                    }
                }
                Ok(Store::Http(store))
            }
            StoreUrl::Embedded(path) => {
                if !create && !path.is_file() {
                    return Err(CliError::new(
                        NOT_FOUND,
                        format!("there is no embedded store file at {}", path.display()),
                    )
                    .hint("check the path (this tool only creates a store file for `import --create`)"));
                }
                let namespace = match (&self.namespace, self.token()) {
                    (Some(ns), _) => ns.clone(),
                    (None, Some(token)) => Token::parse(token)
                        .map_err(bad_token)?
                        .namespace()
                        .to_string(),
                    (None, None) => DEFAULT_NAMESPACE.to_string(),
                };
                let store = EmbeddedStore::open(&path)?.with_namespace(&namespace);
                Ok(Store::Embedded(store, path))
            }
            other => Err(
                CliError::usage(format!("--url {other} cannot be opened by this tool"))
                    .hint(format!("pass --url {URL_FORMS}")),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_parser_with_the_tools_rules() {
        assert_eq!(
            parse_url("embedded:data/events.db").unwrap(),
            StoreUrl::Embedded("data/events.db".into())
        );
        for bad in [
            "embedded::memory:",
            "embedded://rel.db",
            "embedded:",
            "ftp://x",
            "app.db",
        ] {
            let err = parse_url(bad).unwrap_err();
            assert_eq!(err.code, crate::exit::USAGE, "{bad}");
            assert!(err.hint.is_some(), "{bad}");
        }
        let memory = parse_url("embedded::memory:").unwrap_err();
        assert!(
            memory.message.contains("inside the process"),
            "{}",
            memory.message
        );
    }
}
