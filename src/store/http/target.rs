//! Where the store's own connections go (pipelined writes, SSE
//! subscriptions, the watch hub): the parts of the store's base URL
//! (`http(s)://host[:port][/path]`) a raw HTTP/1.1 connection needs.

use crate::error::{Error, Result, TransportErrorKind};

/// Where requests go: the parts of the store's URL a raw connection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    /// `https://`.
    pub(crate) tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The `Host` header: the URL's host, with the port when it is not the
    /// scheme's default.
    pub(crate) host_header: String,
    /// The URL's path without a trailing slash (`""` for none), before
    /// `/rpc` and `/subscribe`.
    pub(crate) prefix: String,
    /// The request target of RPC calls: the prefix followed by `/rpc`.
    pub(crate) rpc_path: String,
}

impl BaseUrl {
    /// The parts of a base URL `http(s)://host[:port][/path]`.
    pub(crate) fn parse(base: &str) -> Result<BaseUrl> {
        let invalid = |why: &str| Error::Transport {
            kind: TransportErrorKind::InvalidUrl,
            message: format!("{why} in the store URL {base:?}"),
        };
        let (tls, rest) = if let Some(rest) = base.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = base.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(invalid("no http:// or https://"));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let path = tail.split(['?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or_default();
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| invalid("no ']'"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = match port {
            None | Some("") => default_port,
            Some(p) => p.parse().map_err(|_| invalid("a bad port"))?,
        };
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let host_header = if port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        let prefix = path.trim_end_matches('/').to_string();
        Ok(BaseUrl {
            tls,
            host: host.to_string(),
            port,
            host_header,
            rpc_path: format!("{prefix}/rpc"),
            prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_urls() {
        let t = BaseUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (
                t.tls,
                t.host.as_str(),
                t.port,
                t.host_header.as_str(),
                t.rpc_path.as_str()
            ),
            (false, "127.0.0.1", 8080, "127.0.0.1:8080", "/rpc")
        );
        let t = BaseUrl::parse("https://events.example.com/eventodb/").unwrap();
        assert_eq!(
            (t.tls, t.port, t.host_header.as_str(), t.rpc_path.as_str()),
            (true, 443, "events.example.com", "/eventodb/rpc")
        );
        assert_eq!(t.prefix, "/eventodb");
        let t = BaseUrl::parse("http://user:pw@[::1]:9000/x?y=1").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.host_header.as_str(),
                t.rpc_path.as_str()
            ),
            ("::1", 9000, "[::1]:9000", "/x/rpc")
        );
        let t = BaseUrl::parse("http://h:80").unwrap();
        assert_eq!(t.host_header, "h");
        for bad in ["ftp://h", "http://", "http://h:port", "http://[::1"] {
            assert!(
                matches!(
                    BaseUrl::parse(bad),
                    Err(Error::Transport {
                        kind: TransportErrorKind::InvalidUrl,
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }
}
