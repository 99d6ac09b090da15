//! `Retry-After` (RFC 9110 §10.2.3): how long a store or a proxy that
//! answered 429 or 503 asks the client to wait, given in seconds or as an
//! HTTP date.

use std::time::{Duration, SystemTime};

/// The wait a `Retry-After` value asks for, at `now`: whole seconds, or
/// the time until an HTTP date (zero once it has passed). `None` when the
/// value is neither.
pub(crate) fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds: as long as it gets.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// The `Retry-After` among `headers` (name, value), parsed at `now`.
pub(crate) fn from_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    now: SystemTime,
) -> Option<Duration> {
    headers
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
        .and_then(|value| parse(value, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        // RFC 850 and asctime dates are HTTP dates too.
        assert_eq!(
            parse("Sunday, 06-Nov-94 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse("Sun Nov  6 08:49:38 1994", now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date that passed: no wait"
        );
        assert_eq!(
            parse("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-1", "1.5", "soon"] {
            assert_eq!(parse(bad, now), None, "{bad:?}");
        }
        let headers = [("Content-Type", &b"text/plain"[..]), ("retry-after", b"2")];
        assert_eq!(from_headers(headers, now), Some(Duration::from_secs(2)));
    }
}
