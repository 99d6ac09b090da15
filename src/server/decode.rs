//! Reading a request body as EventoDB's Go decoder (`encoding/json`) does:
//! what it accepts that serde_json refuses (lone UTF-16 surrogates in
//! `\u` escapes become U+FFFD), and the texts of its syntax errors, which
//! EventoDB returns in `details.error` of `Malformed JSON request`.

use serde_json::Value;

use crate::message::MAX_JSON_DEPTH;

/// Parses `text` as Go would; `Err` holds Go's error text.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(e) if is_surrogate_error(&e) => {
            let repaired = replace_lone_surrogates(text);
            serde_json::from_str(&repaired).map_err(|e| go_error_text(&e, &repaired))
        }
        Err(e) => Err(go_error_text(&e, text)),
    }
}

fn is_surrogate_error(e: &serde_json::Error) -> bool {
    let m = e.to_string();
    m.starts_with("lone leading surrogate") || m.starts_with("unexpected end of hex escape")
}

/// `\uD800`–`\uDFFF` escapes that are not a high surrogate followed by a
/// low one, replaced by `\ufffd` (what Go decodes them to).
fn replace_lone_surrogates(text: &str) -> String {
    let bytes = text.as_bytes();
    let surrogate = |at: usize| -> Option<u16> {
        let hex = text.get(at + 2..at + 6)?;
        if bytes.get(at) != Some(&b'\\') || bytes.get(at + 1) != Some(&b'u') {
            return None;
        }
        u16::from_str_radix(hex, 16)
            .ok()
            .filter(|u| (0xD800..0xE000).contains(u))
    };
    let mut out = String::with_capacity(text.len());
    let (mut i, mut in_string, mut copied) = (0, false, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                if let Some(u) = surrogate(i) {
                    let paired = (0xD800..0xDC00).contains(&u)
                        && surrogate(i + 6).is_some_and(|l| l >= 0xDC00);
                    if paired {
                        i += 12;
                        continue;
                    }
                    out.push_str(&text[copied..i]);
                    out.push_str("\\ufffd");
                    i += 6;
                    copied = i;
                    continue;
                }
                // Skip the escaped character (it may be a quote).
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

/// The text Go's `encoding/json` gives for the error serde_json found.
fn go_error_text(e: &serde_json::Error, text: &str) -> String {
    if e.is_eof() {
        return "unexpected end of JSON input".to_string();
    }
    if crate::wire::json::is_too_deep(e) {
        // Go's text for its own limit (10 000 levels), with ours: serde_json
        // reads 127 levels, which leaves a message's data and metadata
        // what every other entry point of the kit accepts.
        return format!(
            "exceeded max depth: a request may nest arrays and objects {} levels deep ({} within message.data and message.metadata)",
            MAX_JSON_DEPTH + 2,
            MAX_JSON_DEPTH
        );
    }
    let message = e.to_string();
    // serde_json reports the 1-based line and byte column of the offending byte.
    let at = text
        .split_inclusive('\n')
        .take(e.line().saturating_sub(1))
        .map(str::len)
        .sum::<usize>()
        + e.column().saturating_sub(1);
    // Go scans bytes: a multi-byte character shows as its first byte.
    let found = text.as_bytes().get(at).map_or('?', |b| char::from(*b));
    let before = |n: usize| {
        at.checked_sub(n)
            .and_then(|i| text.as_bytes().get(i).copied())
    };
    let context = if message.starts_with("expected `:`") {
        "after object key".to_string()
    } else if message.starts_with("expected `,` or `}`") {
        "after object key:value pair".to_string()
    } else if message.starts_with("expected `,` or `]`") {
        "after array element".to_string()
    } else if message.starts_with("key must be a string")
        || (message.starts_with("trailing comma") && found == '}')
    {
        "looking for beginning of object key string".to_string()
    } else if message.starts_with("trailing characters") {
        "after top-level value".to_string()
    } else if message.starts_with("expected ident") {
        match literal_expectation(text, at) {
            Some(context) => context,
            None => "looking for beginning of value".to_string(),
        }
    } else if message.starts_with("invalid number") {
        match before(1) {
            Some(b'.') => "after decimal point in numeric literal",
            Some(b'e' | b'E') => "in exponent of numeric literal",
            Some(b'+' | b'-') if matches!(before(2), Some(b'e' | b'E')) => {
                "in exponent of numeric literal"
            }
            // A leading zero ends Go's number (`01` is `0` then `1`): the
            // digit after it is the next token of the enclosing value.
            Some(b'0') if !matches!(before(2), Some(b'0'..=b'9' | b'.')) => after_value(text, at),
            _ => "in numeric literal",
        }
        .to_string()
    } else if message.starts_with("number out of range") {
        return format!(
            "json: cannot unmarshal number {} into Go value of type float64",
            number_at(text, at)
        );
    } else if message.starts_with("control character") {
        "in string literal".to_string()
    } else if message.starts_with("invalid escape") {
        if before(1) == Some(b'\\') {
            "in string escape code".to_string()
        } else {
            // serde_json reads the four digits of a `\u` escape before it
            // complains; Go stops at the first one that is not hex.
            let escape = text.get(..at).and_then(|head| head.rfind("\\u"));
            let bad =
                escape.and_then(|u| text.get(u + 2..)?.chars().find(|c| !c.is_ascii_hexdigit()));
            let context = "in \\u hexadecimal character escape";
            return format!(
                "invalid character {} {context}",
                go_quote_char(bad.unwrap_or(found))
            );
        }
    } else {
        "looking for beginning of value".to_string()
    };
    format!("invalid character {} {context}", go_quote_char(found))
}

/// Go's context after a complete value that ends before byte `at`: in an
/// object, an array, or at the top level.
fn after_value(text: &str, at: usize) -> &'static str {
    let mut open = Vec::new();
    for b in crate::wire::json::outside_strings(&text.as_bytes()[..at]) {
        match b {
            b'[' | b'{' => open.push(b),
            b']' | b'}' => {
                open.pop();
            }
            _ => {}
        }
    }
    match open.last() {
        Some(b'{') => "after object key:value pair",
        Some(_) => "after array element",
        None => "after top-level value",
    }
}

/// `in literal true (expecting 'r')` for a misspelled `true`, `false` or `null`
/// whose wrong byte is at `at`.
fn literal_expectation(text: &str, at: usize) -> Option<String> {
    let start = text
        .get(..at)?
        .rfind(|c: char| !c.is_ascii_alphabetic())
        .map_or(0, |i| i + 1);
    let word = match text.as_bytes().get(start)? {
        b't' => "true",
        b'f' => "false",
        b'n' => "null",
        _ => return None,
    };
    let expected = word.as_bytes().get(at - start)?;
    Some(format!(
        "in literal {word} (expecting '{}')",
        *expected as char
    ))
}

/// The number literal around byte `at`.
fn number_at(text: &str, at: usize) -> &str {
    let numeric = |c: char| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-');
    let (Some(head), Some(tail)) = (text.get(..at), text.get(at..)) else {
        return "";
    };
    let start = head.rfind(|c| !numeric(c)).map_or(0, |i| i + 1);
    let end = tail.find(|c| !numeric(c)).map_or(text.len(), |i| at + i);
    &text[start..end]
}

/// A character quoted as Go's `encoding/json` quotes it in errors
/// (`strconv.Quote` with single quotes).
fn go_quote_char(c: char) -> String {
    let inner = match c {
        '\'' => "\\'".to_string(),
        '"' => "\"".to_string(),
        '\\' => "\\\\".to_string(),
        '\u{7}' => "\\a".to_string(),
        '\u{8}' => "\\b".to_string(),
        '\u{c}' => "\\f".to_string(),
        '\n' => "\\n".to_string(),
        '\r' => "\\r".to_string(),
        '\t' => "\\t".to_string(),
        '\u{b}' => "\\v".to_string(),
        c if (c as u32) < 0x20 || c == '\u{7f}' => format!("\\x{:02x}", c as u32),
        c if c.is_control() || c == '\u{a0}' || c == '\u{ad}' => format!("\\u{:04x}", c as u32),
        c => c.to_string(),
    };
    format!("'{inner}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(input: &str) -> String {
        parse(input).unwrap_err()
    }

    #[test]
    fn decoder_texts() {
        assert_eq!(text(""), "unexpected end of JSON input");
        assert_eq!(text("[\"stream.get\""), "unexpected end of JSON input");
        assert_eq!(text("[1] x"), "invalid character 'x' after top-level value");
        assert_eq!(
            text("nope"),
            "invalid character 'o' in literal null (expecting 'u')"
        );
        assert_eq!(
            text("x"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(
            text("[1.5e+x]"),
            "invalid character 'x' in exponent of numeric literal"
        );
        assert_eq!(
            text("[\"\\u12x4\"]"),
            "invalid character 'x' in \\u hexadecimal character escape"
        );
        assert_eq!(
            text(r#"{"x":01}"#),
            "invalid character '1' after object key:value pair"
        );
        assert_eq!(text("[-00]"), "invalid character '0' after array element");
        assert_eq!(text("01"), "invalid character '1' after top-level value");
        assert_eq!(text("[1.05x]"), "invalid character 'x' after array element");
        assert_eq!(
            text("[-1e400,2]"),
            "json: cannot unmarshal number -1e400 into Go value of type float64"
        );
        assert_eq!(
            text("[é]"),
            "invalid character 'Ã' looking for beginning of value"
        );
        assert_eq!(
            text("\u{feff}[]"),
            "invalid character 'ï' looking for beginning of value"
        );
        assert_eq!(
            text("[\"é\u{1}\"]"),
            "invalid character '\\x01' in string literal"
        );
    }

    #[test]
    fn nesting_beyond_the_reader_is_refused_with_the_limit() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(&deep(MAX_JSON_DEPTH + 2)).is_ok());
        let m = parse(&deep(MAX_JSON_DEPTH + 3)).unwrap_err();
        assert!(m.starts_with("exceeded max depth"), "{m}");
        assert!(m.contains("125 within message.data"), "{m}");
        // A megabyte of brackets stops at the limit: no stack overflow.
        assert!(parse(&"[".repeat(1 << 20))
            .unwrap_err()
            .starts_with("exceeded"));
        assert!(parse(&"{\"a\":".repeat(1 << 16))
            .unwrap_err()
            .starts_with("exceeded"));
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let v = parse(
            r#"["\ud800", "\udc00x", "\ud800\ud800", "\ud83d\ude00", "\\ud800", "a\"\ud800"]"#,
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                "\u{fffd}",
                "\u{fffd}x",
                "\u{fffd}\u{fffd}",
                "😀",
                "\\ud800",
                "a\"\u{fffd}"
            ])
        );
    }
}
