//! [`StoreUrl`]: one string that says which [`MessageStore`] to use — an
//! EventoDB server over HTTP or an [`EmbeddedStore`] — for configuration
//! (`EVENTODB_URL`), the command line and code alike.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::db::DbOptions;
use crate::error::{Error, Result};
use crate::store::{EmbeddedStore, HttpStore, MessageStore};
use crate::tls::TlsSettings;
use crate::token::Token;

/// Where the message store is.
///
/// | URL | store |
/// | --- | --- |
/// | `http://host:port`, `https://host` | [`HttpStore`] (a token is required) |
/// | `embedded:///abs/path/events.db` | [`EmbeddedStore`] in that file |
/// | `embedded:relative/path.db` | [`EmbeddedStore`] in a file relative to the working directory |
/// | `embedded::memory:` | [`EmbeddedStore`] in memory (gone at exit) |
///
/// ```
/// use std::path::PathBuf;
/// use eventodb_kit::store::StoreUrl;
///
/// assert_eq!(StoreUrl::parse("embedded:///var/lib/app/events.db")?,
///            StoreUrl::Embedded(PathBuf::from("/var/lib/app/events.db")));
/// assert_eq!(StoreUrl::parse("embedded:data/events.db")?,
///            StoreUrl::Embedded(PathBuf::from("data/events.db")));
/// assert_eq!(StoreUrl::parse("embedded::memory:")?, StoreUrl::EmbeddedInMemory);
/// assert!(matches!(StoreUrl::parse("https://events.example.com")?, StoreUrl::Http(_)));
/// assert!(StoreUrl::parse("ftp://example.com").is_err());
/// # Ok::<(), eventodb_kit::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// An EventoDB server (or `eventodb-kit serve`) at this base URL.
    Http(String),
    /// An embedded store in this SQLite file.
    Embedded(PathBuf),
    /// An embedded store in memory.
    EmbeddedInMemory,
}

impl StoreUrl {
    /// Parses a store URL (see the table above).
    ///
    /// Errors: [`Error::InvalidInput`] for another scheme or an `embedded:`
    /// URL without a path.
    pub fn parse(url: &str) -> Result<StoreUrl> {
        let url = url.trim();
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            if url
                .split_once("://")
                .is_none_or(|(_, rest)| rest.is_empty())
            {
                return Err(Error::invalid(format!(
                    "store URL {url:?} has no host (e.g. http://127.0.0.1:8080)"
                )));
            }
            return Ok(StoreUrl::Http(url.trim_end_matches('/').to_string()));
        }
        if lower.starts_with("embedded:") {
            let rest = &url["embedded:".len()..];
            if rest == ":memory:" || rest == "//:memory:" {
                return Ok(StoreUrl::EmbeddedInMemory);
            }
            let path = match rest.strip_prefix("//") {
                // embedded:///abs/path: an empty host, then the absolute path.
                Some(after) if after.starts_with('/') => after,
                Some("") => "",
                Some(_) => {
                    return Err(Error::invalid(format!(
                        "store URL {url:?}: write embedded:///absolute/path.db (three slashes) \
                         or embedded:relative/path.db"
                    )))
                }
                None => rest,
            };
            if path.is_empty() {
                return Err(Error::invalid(format!(
                    "store URL {url:?} names no file: use embedded:///path/events.db, \
                     embedded:relative/path.db or embedded::memory:"
                )));
            }
            return Ok(StoreUrl::Embedded(PathBuf::from(path)));
        }
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        Err(Error::invalid(format!(
            "unsupported store URL scheme {scheme:?}: use http://, https:// or embedded: \
             (e.g. http://127.0.0.1:8080, embedded:///path/events.db, embedded::memory:)"
        )))
    }

    /// Whether this is an HTTP store (which needs a token).
    pub fn is_http(&self) -> bool {
        matches!(self, StoreUrl::Http(_))
    }

    /// Opens the store. An HTTP store needs `token` (its namespace is the
    /// token's); an embedded store is bound to the token's namespace when
    /// one is given (no authentication happens in-process), to `default`
    /// otherwise. `options` apply to an embedded store's file.
    ///
    /// Errors: [`Error::InvalidInput`] for an HTTP URL without a token or a
    /// token that does not parse (the message never contains the token);
    /// database errors opening an embedded file.
    pub fn open(&self, token: Option<&str>, options: DbOptions) -> Result<Arc<dyn MessageStore>> {
        self.open_with_tls(token, options, None)
    }

    /// Like [`StoreUrl::open`], with the TLS settings of an HTTP store.
    pub(crate) fn open_with_tls(
        &self,
        token: Option<&str>,
        options: DbOptions,
        tls: Option<&TlsSettings>,
    ) -> Result<Arc<dyn MessageStore>> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                Token::parse(t).map_err(|e| match e {
                    Error::InvalidInput(m) => Error::invalid(format!(
                        "the EventoDB token does not parse ({m}); a token looks like ns_<base64url namespace>_<64 hex>"
                    )),
                    other => other,
                })
            })
            .transpose()?;
        let embedded = |store: EmbeddedStore| -> Arc<dyn MessageStore> {
            match &token {
                Some(t) => Arc::new(store.with_namespace(t.namespace())),
                None => Arc::new(store),
            }
        };
        match self {
            StoreUrl::Http(url) => {
                let token = token.ok_or_else(|| {
                    Error::invalid(format!(
                        "the store at {url} is an EventoDB server and needs a namespace token: \
                         set EVENTODB_TOKEN (or KitBuilder::token) to ns_…"
                    ))
                })?;
                let builder = HttpStore::builder(url, token.expose_secret());
                let builder = match tls {
                    Some(tls) => builder.tls(tls.clone()),
                    None => builder,
                };
                Ok(Arc::new(builder.build()?))
            }
            StoreUrl::Embedded(path) => Ok(embedded(EmbeddedStore::open_with(path, options)?)),
            StoreUrl::EmbeddedInMemory => {
                Ok(embedded(EmbeddedStore::open_in_memory_with(options)?))
            }
        }
    }
}

impl FromStr for StoreUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        StoreUrl::parse(s)
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Http(url) => f.write_str(url),
            StoreUrl::Embedded(path) if path.is_absolute() => {
                write!(f, "embedded://{}", path.display())
            }
            StoreUrl::Embedded(path) => write!(f, "embedded:{}", path.display()),
            StoreUrl::EmbeddedInMemory => f.write_str("embedded::memory:"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for url in [
            "http://127.0.0.1:8080",
            "https://events.example.com",
            "embedded:///var/lib/app/events.db",
            "embedded:data/events.db",
            "embedded::memory:",
        ] {
            assert_eq!(StoreUrl::parse(url).unwrap().to_string(), url);
        }
        assert_eq!(
            StoreUrl::parse("HTTP://Host:1/").unwrap(),
            StoreUrl::Http("HTTP://Host:1".into())
        );
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        for (url, says) in [
            ("ftp://x", "unsupported store URL scheme \"ftp\""),
            (
                "localhost:8080",
                "unsupported store URL scheme \"localhost\"",
            ),
            ("embedded:", "names no file"),
            ("embedded://", "names no file"),
            ("embedded://host/file.db", "three slashes"),
            ("http://", "no host"),
        ] {
            let err = StoreUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn http_needs_a_good_token_and_never_shows_it() {
        let url = StoreUrl::parse("http://127.0.0.1:9").unwrap();
        let err = url
            .open(None, DbOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("EVENTODB_TOKEN"), "{err}");
        let secretish = "ns_ZGVmYXVsdA_notsixtyfourhexcharacterssecretsecret";
        let err = url
            .open(Some(secretish), DbOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not parse"), "{err}");
        assert!(!err.contains("secretsecret"), "{err}");
        let good = format!("ns_dGVuYW50LWE_{}", "0".repeat(64));
        let store = url.open(Some(&good), DbOptions::default()).unwrap();
        assert_eq!(store.namespace(), "tenant-a");
        let embedded = StoreUrl::EmbeddedInMemory
            .open(Some(&good), DbOptions::default())
            .unwrap();
        assert_eq!(embedded.namespace(), "tenant-a");
    }
}
