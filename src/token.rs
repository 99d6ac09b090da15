//! EventoDB namespace tokens: `ns_<base64url(namespace)>_<64 hex>`.
//!
//! A token names its namespace, so the kit reads the namespace out of it. The
//! secret part never shows in `Debug` or `Display`.

use std::fmt;

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A parsed namespace token. Cheap to clone; redacted in `Debug` and `Display`.
///
/// ```
/// use eventodb_kit::Token;
/// let t = Token::parse(&format!("ns_ZGVmYXVsdA_{}", "0".repeat(64)))?;
/// assert_eq!(t.namespace(), "default");
/// assert!(!format!("{t:?}").contains("000000"));
/// assert!(Token::parse("not-a-token").is_err());
/// # Ok::<(), eventodb_kit::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    secret: String,
    namespace: String,
}

impl Token {
    /// Parses a token; a malformed one is [`Error::InvalidInput`] with
    /// EventoDB's parse message (e.g. `invalid token format: missing 'ns_' prefix`).
    pub fn parse(token: &str) -> Result<Token> {
        let namespace = parse_namespace(token).map_err(Error::InvalidInput)?;
        Ok(Token {
            secret: token.to_string(),
            namespace,
        })
    }

    /// Mints a fresh token for `namespace` with 32 random bytes.
    pub fn generate(namespace: &str) -> Result<Token> {
        if namespace.is_empty() {
            return Err(Error::invalid("namespace ID must be a non-empty string"));
        }
        let mut random = [0u8; 32];
        getrandom::fill(&mut random)
            .map_err(|e| Error::backend(format!("failed to generate token: {e}")))?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let secret = format!("ns_{}_{hex}", URL_SAFE_NO_PAD.encode(namespace));
        Ok(Token {
            secret,
            namespace: namespace.to_string(),
        })
    }

    /// The namespace this token is for.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The token text, for sending it to a server. Keep it out of logs.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    /// `sha256(token)` as lowercase hex: what a server stores instead of the token.
    pub fn sha256_hex(&self) -> String {
        sha256_hex(&self.secret)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("namespace", &self.namespace)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<token for namespace {:?}>", self.namespace)
    }
}

/// `sha256(text)` as lowercase hex.
pub(crate) fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// EventoDB's token parser (protocol §2.1), with its exact messages.
fn parse_namespace(token: &str) -> std::result::Result<String, String> {
    let rest = token
        .strip_prefix("ns_")
        .ok_or("invalid token format: missing 'ns_' prefix")?;
    let parts: Vec<&str> = rest.split('_').collect();
    if parts.len() != 2 {
        return Err(format!(
            "invalid token format: expected 2 parts after prefix, got {}",
            parts.len()
        ));
    }
    let (encoded, random) = (parts[0], parts[1]);
    if random.len() != 64 {
        return Err(format!(
            "invalid token format: random part must be 64 hex characters, got {}",
            random.len()
        ));
    }
    if let Some(b) = random.bytes().find(|b| !b.is_ascii_hexdigit()) {
        // Go's `%#U` of the byte: `U+0067 'g'`, without the quoted
        // character when it is not printable.
        let c = char::from(b);
        let shown = if c.is_control() || c == '\u{a0}' || c == '\u{ad}' {
            String::new()
        } else {
            format!(" '{c}'")
        };
        return Err(format!(
            "invalid token format: random part is not valid hexadecimal: encoding/hex: invalid byte: U+{:04X}{shown}",
            b
        ));
    }
    let bytes = GO_RAW_URL.decode(encoded).map_err(|e| {
        format!(
            "invalid token format: namespace part is not valid base64url: {}",
            go_base64_error(&e, encoded)
        )
    })?;
    if bytes.is_empty() {
        return Err("invalid token format: namespace is empty".to_string());
    }
    // Go converts the bytes with string(b): invalid UTF-8 is kept byte-wise;
    // the closest Rust equivalent is a lossy conversion.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Go's `base64.RawURLEncoding` for decoding: no padding, and (not being
/// `Strict`) it ignores the unused bits of the last symbol.
const GO_RAW_URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Renders a base64 error the way Go's `encoding/base64` does: the offset
/// of the first byte it could not use.
fn go_base64_error(e: &base64::DecodeError, input: &str) -> String {
    let offset = match e {
        base64::DecodeError::InvalidByte(offset, _)
        | base64::DecodeError::InvalidLastSymbol(offset, _) => *offset,
        // The length counts the symbols read; Go names the dangling one.
        base64::DecodeError::InvalidLength(len) => len.saturating_sub(1),
        base64::DecodeError::InvalidPadding => input.find('=').unwrap_or(0),
    };
    format!("illegal base64 data at input byte {offset}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(t: &str) -> String {
        match Token::parse(t) {
            Err(Error::InvalidInput(m)) => m,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn parses_protocol_examples() {
        let zeros = "0".repeat(64);
        assert_eq!(
            Token::parse(&format!("ns_ZGVmYXVsdA_{zeros}"))
                .unwrap()
                .namespace(),
            "default"
        );
        assert_eq!(
            Token::parse(&format!("ns_dGVuYW50LWE_{zeros}"))
                .unwrap()
                .namespace(),
            "tenant-a"
        );
        assert_eq!(
            Token::parse(&format!("ns_ZGVmYXVsdA_{}", "AbCdEf".repeat(10) + "0000"))
                .unwrap()
                .namespace(),
            "default"
        );
    }

    #[test]
    fn trailing_bits_are_ignored_as_in_go() {
        // "YR" is "YQ" ('a') with unused bits set: Go's non-strict decoder accepts it.
        let t = Token::parse(&format!("ns_YR_{}", "0".repeat(64))).unwrap();
        assert_eq!(t.namespace(), "a");
    }

    #[test]
    fn rejects_in_protocol_order() {
        let zeros = "0".repeat(64);
        assert_eq!(err("abc"), "invalid token format: missing 'ns_' prefix");
        assert_eq!(
            err("ns_a_b_c"),
            "invalid token format: expected 2 parts after prefix, got 3"
        );
        assert_eq!(
            err("ns_ZGVmYXVsdA_abc"),
            "invalid token format: random part must be 64 hex characters, got 3"
        );
        let hex_error = |random: &str| {
            err(&format!("ns_ZGVmYXVsdA_{random}"))
                .strip_prefix("invalid token format: random part is not valid hexadecimal: ")
                .unwrap()
                .to_string()
        };
        assert_eq!(
            hex_error(&"g".repeat(64)),
            "encoding/hex: invalid byte: U+0067 'g'"
        );
        // Go names the first byte that is not hex, as a rune.
        assert_eq!(
            hex_error(&format!("é{}", "0".repeat(62))),
            "encoding/hex: invalid byte: U+00C3 'Ã'"
        );
        assert_eq!(
            hex_error(&format!("\t{}", "0".repeat(63))),
            "encoding/hex: invalid byte: U+0009"
        );
        assert_eq!(
            err(&format!("ns_Z!_{zeros}")),
            "invalid token format: namespace part is not valid base64url: illegal base64 data at input byte 1"
        );
        // Go's texts: the dangling symbol, the padding that RawURLEncoding refuses.
        for (encoded, offset) in [("YWJjZ", 4), ("YQ==", 2)] {
            assert_eq!(
                err(&format!("ns_{encoded}_{zeros}")),
                format!("invalid token format: namespace part is not valid base64url: illegal base64 data at input byte {offset}")
            );
        }
        assert_eq!(
            err(&format!("ns__{zeros}")),
            "invalid token format: namespace is empty"
        );
    }

    #[test]
    fn generated_tokens_parse_and_hide() {
        let t = Token::generate("tenant-a").unwrap();
        let again = Token::parse(t.expose_secret()).unwrap();
        assert_eq!(again.namespace(), "tenant-a");
        assert_eq!(t.sha256_hex().len(), 64);
        assert!(!format!("{t:?} {t}").contains(&t.expose_secret()[14..]));
    }
}
