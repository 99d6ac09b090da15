//! Reading settings from environment variables — or from any lookup
//! function, so that parsing is testable without touching the process
//! environment. Shared by [`SenderConfig`](crate::SenderConfig),
//! [`ConsumerDefaults`](crate::consumer::ConsumerDefaults),
//! [`CleanupConfig`](crate::CleanupConfig) and [`KitBuilder`](crate::KitBuilder).
//!
//! Every error is [`Error::InvalidInput`] naming the variable and what it
//! expects; values are never secrets here except `EVENTODB_TOKEN`, whose
//! text no error repeats.

use std::str::FromStr;
use std::time::Duration;

use crate::consumer::ConsumerDefaults;
use crate::error::{Error, Result};
use crate::kit::{Kit, KitBuilder};
use crate::outbox::SenderConfig;
use crate::retry::RetryPolicy;
use crate::store::StoreUrl;
use crate::tls::{self, TlsSettings};
use crate::token::Token;

/// A variable lookup: `Some(value)` when set.
pub(crate) struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Vars<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Vars { lookup }
    }

    /// The trimmed value of `name`; unset and blank are both `None`.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// A duration written the humantime way (`250ms`, `30s`, `5m`, `7days`).
    pub(crate) fn duration(&self, name: &str) -> Result<Option<Duration>> {
        self.get(name).map(|v| parse_duration(name, &v)).transpose()
    }

    /// A duration that may be switched off (`off`, `none`, `never`):
    /// `None` unset, `Some(None)` off.
    pub(crate) fn optional_duration(&self, name: &str) -> Result<Option<Option<Duration>>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if is_off(&v) => Ok(Some(None)),
            Some(v) => parse_duration(name, &v).map(|d| Some(Some(d))),
        }
    }

    /// A whole number.
    pub(crate) fn number<T: FromStr>(&self, name: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.get(name).map(|v| parse_number(name, &v)).transpose()
    }

    /// A finite number.
    pub(crate) fn float(&self, name: &str) -> Result<Option<f64>> {
        self.get(name).map(|v| parse_float(name, &v)).transpose()
    }

    /// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`.
    pub(crate) fn flag(&self, name: &str) -> Result<Option<bool>> {
        self.get(name)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(Error::invalid(format!(
                    "{name} must be true or false (1/0, yes/no, on/off), not {v:?}"
                ))),
            })
            .transpose()
    }

    /// `base` with the `<PREFIX>_INITIAL_DELAY`, `_MAX_DELAY`, `_MULTIPLIER`,
    /// `_JITTER`, `_MAX_ATTEMPTS` and `_MAX_AGE` variables applied (the
    /// limits accept `off`).
    pub(crate) fn retry_policy(&self, prefix: &str, base: RetryPolicy) -> Result<RetryPolicy> {
        let var = |suffix: &str| format!("{prefix}_{suffix}");
        let mut retry = base;
        if let Some(d) = self.duration(&var("INITIAL_DELAY"))? {
            retry = retry.initial_delay(d);
        }
        if let Some(d) = self.duration(&var("MAX_DELAY"))? {
            retry = retry.max_delay(d);
        }
        if let Some(m) = self.float(&var("MULTIPLIER"))? {
            retry = retry.multiplier(m);
        }
        if let Some(j) = self.float(&var("JITTER"))? {
            retry = retry.jitter(j);
        }
        let attempts_var = var("MAX_ATTEMPTS");
        let max_attempts = match self.get(&attempts_var) {
            Some(v) if is_off(&v) => None,
            Some(v) => Some(parse_number::<u32>(&attempts_var, &v)?),
            None => retry.attempt_limit(),
        };
        let max_age = match self.optional_duration(&var("MAX_AGE"))? {
            Some(age) => age,
            None => retry.age_limit(),
        };
        retry = retry.forever();
        if let Some(n) = max_attempts {
            retry = retry.max_attempts(n);
        }
        if let Some(age) = max_age {
            retry = retry.max_age(age);
        }
        Ok(retry)
    }
}

/// Whether a value switches an optional limit off.
pub(crate) fn is_off(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "off" | "none" | "never")
}

pub(crate) fn parse_duration(name: &str, v: &str) -> Result<Duration> {
    humantime::parse_duration(v).map_err(|e| {
        Error::invalid(format!(
            "{name} must be a duration such as 250ms, 30s or 5m, not {v:?}: {e}"
        ))
    })
}

pub(crate) fn parse_number<T: FromStr>(name: &str, v: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    v.parse()
        .map_err(|e| Error::invalid(format!("{name} must be a whole number, not {v:?}: {e}")))
}

pub(crate) fn parse_float(name: &str, v: &str) -> Result<f64> {
    v.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .ok_or_else(|| Error::invalid(format!("{name} must be a number, not {v:?}")))
}

/// The process environment as a lookup.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl KitBuilder {
    /// A builder configured from the environment; its setters override
    /// what the environment said (`KitBuilder::from_env()?.database(..)`).
    ///
    /// | variable | what | default |
    /// | --- | --- | --- |
    /// | `EVENTODB_URL` | the store: `http(s)://host:port` (EventoDB or `eventodb-kit serve`), `embedded:///abs/path.db`, `embedded:relative/path.db` or `embedded::memory:` (see [`StoreUrl`]) | the embedded store in the kit's database file |
    /// | `EVENTODB_TOKEN` | the namespace token (`ns_…`); required with an `http(s)` URL; with an embedded URL it picks the namespace | none (namespace `default`) |
    /// | `EVENTODB_CA_CERT` | PEM file of the certificate authorities an `https` store's certificate must come from, *instead of* the built-in web roots (as `curl --cacert`); see [`TlsSettings::from_lookup`] | the built-in roots |
    /// | `EVENTODB_CLIENT_CERT`, `EVENTODB_CLIENT_KEY` | PEM files of the client certificate (chain) and its key, for servers that require mutual TLS; both or neither | none |
    /// | `EVENTODB_KIT_DB` | the kit's database file (outbox, positions, dead letters) | the `embedded:` URL's file; otherwise in memory, with a warning logged at build (lost at exit) |
    /// | `EVENTODB_KIT_LOG_SQL` | [`KitBuilder::log_sql`] (`true`/`false`) | `false` |
    /// | `CONSUMER_STALLED_AFTER` | [`KitBuilder::stalled_after`] | `60s` |
    /// | `OUTBOX_*` | [`KitBuilder::sender_config`], see [`SenderConfig::from_env`] | |
    /// | `CONSUMER_*` | [`KitBuilder::consumer_defaults`], see [`ConsumerDefaults::from_env`] | |
    ///
    /// (`CLEANUP_INTERVAL` and the retentions are read by
    /// [`CleanupConfig::from_env`](crate::CleanupConfig::from_env).)
    ///
    /// Errors: [`Error::InvalidInput`] naming the variable — an unknown URL
    /// scheme, an `http(s)` URL without `EVENTODB_TOKEN`, a token that does
    /// not parse (its text is never repeated), a value that does not parse,
    /// a certificate or key file that is missing or holds no PEM.
    pub fn from_env() -> Result<KitBuilder> {
        Self::from_lookup(process_env)
    }

    /// Like [`KitBuilder::from_env`], reading variables through `lookup`
    /// (for configuration kept elsewhere, and for tests).
    ///
    /// ```
    /// use eventodb_kit::KitBuilder;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let events = dir.path().join("events.db");
    /// let url = format!("embedded://{}", events.display());
    /// let kit = KitBuilder::from_lookup(|name| match name {
    ///     "EVENTODB_URL" => Some(url.clone()),
    ///     "CONSUMER_BATCH_SIZE" => Some("100".into()),
    ///     _ => None,
    /// })?
    /// .build()?;
    /// assert_eq!(kit.db().path(), Some(events.as_path())); // kit tables in the same file
    /// assert_eq!(kit.consumer_defaults().batch_size_value(), 100);
    ///
    /// let err = KitBuilder::from_lookup(|name| {
    ///     (name == "EVENTODB_URL").then(|| "http://127.0.0.1:8080".to_string())
    /// })
    /// .unwrap_err();
    /// assert!(err.to_string().contains("EVENTODB_TOKEN"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<KitBuilder> {
        let vars = Vars::new(&lookup);
        let mut builder = Kit::builder();
        let url = vars
            .get("EVENTODB_URL")
            .map(|u| {
                StoreUrl::parse(&u).map_err(|e| match e {
                    Error::InvalidInput(m) => Error::invalid(format!("EVENTODB_URL: {m}")),
                    other => other,
                })
            })
            .transpose()?;
        let token = vars.get("EVENTODB_TOKEN");
        if let Some(t) = &token {
            if let Err(e) = Token::parse(t) {
                let detail = match e {
                    Error::InvalidInput(m) => m,
                    other => other.to_string(),
                };
                return Err(Error::invalid(format!(
                    "EVENTODB_TOKEN does not parse ({detail}); a token looks like ns_<base64url namespace>_<64 hex>"
                )));
            }
        }
        if let Some(url) = &url {
            if url.is_http() && token.is_none() {
                return Err(Error::invalid(format!(
                    "EVENTODB_URL is {url}, an EventoDB server: set EVENTODB_TOKEN to its namespace token (ns_…)"
                )));
            }
            builder = builder.url(url.to_string());
        }
        if let Some(t) = token {
            builder = builder.token(t);
        }
        match (vars.get("EVENTODB_KIT_DB"), &url) {
            (Some(path), _) => builder = builder.database(path),
            (None, Some(StoreUrl::Embedded(path))) => builder = builder.database(path),
            (None, _) => builder.warn_in_memory = true,
        }
        if let Some(tls) = TlsSettings::from_lookup(&lookup)? {
            builder = builder.tls(tls);
        }
        if let Some(on) = vars.flag("EVENTODB_KIT_LOG_SQL")? {
            builder = builder.log_sql(on);
        }
        if let Some(after) = vars.duration("CONSUMER_STALLED_AFTER")? {
            builder = builder.stalled_after(after);
        }
        Ok(builder
            .consumer_defaults(ConsumerDefaults::from_lookup(&lookup)?)
            .sender_config(SenderConfig::from_lookup(&lookup)?))
    }
}

impl TlsSettings {
    /// TLS settings from `EVENTODB_CA_CERT`, `EVENTODB_CLIENT_CERT` and
    /// `EVENTODB_CLIENT_KEY` (file paths), as [`KitBuilder::from_env`] reads
    /// them; `None` when none is set.
    ///
    /// `EVENTODB_CA_CERT` replaces the built-in web roots (as `curl
    /// --cacert` does): a fleet's own CA, and only it. Use
    /// [`TlsSettings::add_root_certificates_file`] to trust a CA on top of
    /// them.
    ///
    /// Errors: [`Error::InvalidInput`] naming the variable when its file is
    /// missing, unreadable or holds no PEM certificate (or key), when the
    /// key does not belong to the certificate, or when only one of
    /// `EVENTODB_CLIENT_CERT` and `EVENTODB_CLIENT_KEY` is set.
    ///
    /// ```
    /// use eventodb_kit::TlsSettings;
    ///
    /// let err = TlsSettings::from_lookup(|name| {
    ///     (name == "EVENTODB_CA_CERT").then(|| "/nonexistent/ca.pem".to_string())
    /// })
    /// .unwrap_err();
    /// assert!(err.to_string().contains("EVENTODB_CA_CERT"));
    /// assert!(TlsSettings::from_lookup(|_| None)?.is_none());
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<TlsSettings>> {
        let vars = Vars::new(&lookup);
        let named = |name: &'static str| {
            move |e: Error| match e {
                Error::InvalidInput(m) => Error::invalid(format!("{name}: {m}")),
                other => other,
            }
        };
        let ca = vars.get("EVENTODB_CA_CERT");
        let cert = vars.get("EVENTODB_CLIENT_CERT");
        let key = vars.get("EVENTODB_CLIENT_KEY");
        if ca.is_none() && cert.is_none() && key.is_none() {
            return Ok(None);
        }
        let mut settings = TlsSettings::new();
        if let Some(path) = ca {
            settings = settings
                .built_in_roots(false)
                .add_root_certificates_file(path)
                .map_err(named("EVENTODB_CA_CERT"))?;
        }
        match (cert, key) {
            (Some(cert), Some(key)) => {
                let what = format!("client certificate file {cert}");
                let chain = tls::read_file(cert.as_ref(), &what)
                    .and_then(|pem| tls::certificates_from_pem(&pem, &what))
                    .map_err(named("EVENTODB_CLIENT_CERT"))?;
                let what = format!("client key file {key}");
                let key = tls::read_file(key.as_ref(), &what)
                    .and_then(|pem| tls::private_key_from_pem(&pem, &what))
                    .map_err(named("EVENTODB_CLIENT_KEY"))?;
                settings = settings
                    .with_identity(chain, key)
                    .map_err(named("EVENTODB_CLIENT_KEY"))?;
            }
            (Some(_), None) => return Err(Error::invalid(
                "EVENTODB_CLIENT_CERT is set but EVENTODB_CLIENT_KEY is not: set both (PEM files)",
            )),
            (None, Some(_)) => return Err(Error::invalid(
                "EVENTODB_CLIENT_KEY is set but EVENTODB_CLIENT_CERT is not: set both (PEM files)",
            )),
            (None, None) => {}
        }
        Ok(Some(settings))
    }

    /// [`TlsSettings::from_lookup`] on the process environment.
    pub fn from_env() -> Result<Option<TlsSettings>> {
        Self::from_lookup(process_env)
    }
}

impl Kit {
    /// A kit configured from the environment: `KitBuilder::from_env()?.build()`
    /// (see [`KitBuilder::from_env`] for the variables).
    pub fn from_env() -> Result<Kit> {
        KitBuilder::from_env()?.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_variables_with_a_prefix() {
        let lookup = |name: &str| match name {
            "X_RETRY_INITIAL_DELAY" => Some("50ms".to_string()),
            "X_RETRY_MAX_ATTEMPTS" => Some("off".to_string()),
            "X_RETRY_MAX_AGE" => Some("1h".to_string()),
            _ => None,
        };
        let vars = Vars::new(&lookup);
        let base = RetryPolicy::new().max_attempts(5);
        let r = vars.retry_policy("X_RETRY", base).unwrap();
        assert_eq!(r.delay_after(1), Duration::from_millis(50));
        assert_eq!(r.attempt_limit(), None);
        assert_eq!(r.age_limit(), Some(Duration::from_secs(3600)));
        let unset = |_: &str| None;
        let kept = Vars::new(&unset)
            .retry_policy("X_RETRY", RetryPolicy::new().max_attempts(5))
            .unwrap();
        assert_eq!(kept.attempt_limit(), Some(5));
    }

    #[test]
    fn flags_and_blank_values() {
        let lookup = |name: &str| match name {
            "A" => Some(" yes ".to_string()),
            "B" => Some("   ".to_string()),
            "C" => Some("maybe".to_string()),
            _ => None,
        };
        let vars = Vars::new(&lookup);
        assert_eq!(vars.flag("A").unwrap(), Some(true));
        assert_eq!(vars.flag("B").unwrap(), None);
        let err = vars.flag("C").unwrap_err().to_string();
        assert!(err.contains('C') && err.contains("maybe"), "{err}");
    }
}
