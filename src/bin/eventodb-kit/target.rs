//! What a command works on: the kit's database (`--db`, opened only if it
//! exists) and the store (`--url`, `--token`, `--namespace`).
//!
//! Store URLs: `http(s)://host:port` is an EventoDB server (with a token);
//! `embedded:///abs/path.db` and `embedded:rel/path.db` are embedded stores
//! in SQLite files; without `--url`, the embedded store inside the `--db`
//! file (the `Kit` default layout).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use eventodb_kit::store::embedded::DEFAULT_NAMESPACE;
use eventodb_kit::{DbOptions, EmbeddedStore, Error, HttpStore, Kit, MessageStore};

use crate::exit::{CliError, CliResult, NOT_FOUND};

/// Where the kit's database and the store are.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The kit's local database file (the one the app passes to
    /// `Kit::builder().database(..)`). Must exist: it is never created.
    #[arg(long, env = "EVENTODB_KIT_DB", value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// The store: http(s)://host:port (an EventoDB server, with --token),
    /// embedded:///abs/path.db or embedded:rel/path.db. Defaults to the
    /// embedded store inside the --db file.
    #[arg(long, env = "EVENTODB_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Token for an http(s) store; its namespace is the one worked on.
    #[arg(
        long,
        env = "EVENTODB_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Namespace of an embedded store. Defaults to "default" (with an http
    /// store the token's namespace is used, and this must match it).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
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

    /// `http://127.0.0.1:8080` or `embedded:/path/app.db`.
    pub fn label(&self) -> String {
        match self {
            Store::Http(s) => s.url().to_string(),
            Store::Embedded(_, path) => format!("embedded:{}", path.display()),
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

/// How a store URL is to be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreUrl {
    Http(String),
    Embedded(PathBuf),
}

/// Parses a `--url`.
pub fn parse_url(url: &str) -> CliResult<StoreUrl> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(StoreUrl::Http(url.to_string()));
    }
    if let Some(rest) = url.strip_prefix("embedded:") {
        if rest == ":memory:" {
            return Err(CliError::usage(
                "embedded::memory: is a store that lives only inside one process; this tool cannot see it",
            )
            .hint("point --url at the file of an embedded store: embedded:///abs/path.db or embedded:rel/path.db"));
        }
        let path = match rest.strip_prefix("//") {
            Some(abs) if abs.starts_with('/') => abs,
            Some(_) => {
                return Err(CliError::usage(format!(
                    "{url:?} has no absolute path after embedded://"
                ))
                .hint("write embedded:///abs/path.db (three slashes) or embedded:rel/path.db"))
            }
            None => rest,
        };
        if path.is_empty() {
            return Err(CliError::usage("embedded: needs a file path")
                .hint("write embedded:///abs/path.db or embedded:rel/path.db"));
        }
        return Ok(StoreUrl::Embedded(PathBuf::from(path)));
    }
    Err(CliError::usage(format!("unknown store URL {url:?}")).hint(
        "use http(s)://host:port (an EventoDB server, with --token), embedded:///abs/path.db or embedded:rel/path.db",
    ))
}

impl TargetArgs {
    /// The `--db` path, required.
    pub fn db_path(&self) -> CliResult<&Path> {
        self.db.as_deref().ok_or_else(|| {
            CliError::usage("this command needs the kit's database: --db FILE")
                .hint("pass --db with the file the app gives to Kit::builder().database(..), or set EVENTODB_KIT_DB")
        })
    }

    /// Opens the kit: the existing database and the store.
    pub fn open_kit(&self) -> CliResult<(Kit, Store)> {
        let path = self.db_path()?;
        let db = eventodb_kit::Db::open_existing(path, DbOptions::new().pool_size(4)).map_err(
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
        let kit = Kit::builder().db(db).shared_store(store.as_dyn()).build()?;
        Ok((kit, store))
    }

    /// Like [`TargetArgs::open_kit`], and warns when the database has rows
    /// only in other namespaces than the one worked on.
    pub fn open_kit_checked(&self) -> CliResult<(Kit, Store)> {
        let (kit, store) = self.open_kit()?;
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

    /// Opens the store: `--url`, else the embedded store in `--db`. With
    /// `create`, a missing embedded file is created (import into a new
    /// file); otherwise it must exist.
    pub fn open_store(&self, create: bool) -> CliResult<Store> {
        let url = match &self.url {
            Some(url) => parse_url(url)?,
            None => match &self.db {
                Some(db) => StoreUrl::Embedded(db.clone()),
                None => {
                    return Err(CliError::usage("no store given").hint(
                        "pass --url (or set EVENTODB_URL), or --db FILE to use the embedded store in the kit's database",
                    ))
                }
            },
        };
        match url {
            StoreUrl::Http(url) => {
                let token = self.token.as_deref().ok_or_else(|| {
                    CliError::usage(format!("the store at {url} needs a token")).hint(
                        "pass --token or set EVENTODB_TOKEN (a token of the namespace to work on)",
                    )
                })?;
                let store = HttpStore::builder(&url, token)
                    .connect_timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|e| {
                        CliError::usage(e.to_string()).hint(
                            "check --url (http(s)://host:port) and --token (ns_<namespace>_<hex>)",
                        )
                    })?;
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
                let ns = self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
                let store = EmbeddedStore::open(&path)?.with_namespace(ns);
                Ok(Store::Embedded(store, path))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080").unwrap(),
            StoreUrl::Http("http://127.0.0.1:8080".into())
        );
        assert_eq!(
            parse_url("embedded:///var/lib/app/events.db").unwrap(),
            StoreUrl::Embedded("/var/lib/app/events.db".into())
        );
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
            assert_eq!(
                parse_url(bad).unwrap_err().code,
                crate::exit::USAGE,
                "{bad}"
            );
        }
    }
}
