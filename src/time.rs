//! Timestamps: milliseconds internally, RFC 3339 UTC on the wire.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Latest instant humantime can render (9999-12-31T23:59:59Z).
const MAX_UNIX_SECONDS: u64 = 253_402_300_799;

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

/// Milliseconds since the Unix epoch (negative before it).
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => millis(d),
        Err(e) => -millis(e.duration()),
    }
}

/// `d` in whole milliseconds, `i64::MAX` at most.
pub(crate) fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// The instant `ms` milliseconds after the Unix epoch.
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// The end of a wait of some timeout; a timeout too long to add to
/// [`Instant::now`] (`Duration::MAX`, say: "no limit") never ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// `timeout` from now.
    pub(crate) fn after(timeout: Duration) -> Self {
        Deadline(Instant::now().checked_add(timeout))
    }

    /// Time left (zero once passed; `Duration::MAX` for a wait without end).
    pub(crate) fn remaining(&self) -> Duration {
        self.0.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        })
    }
}

fn clamp(t: SystemTime) -> SystemTime {
    let max = UNIX_EPOCH + Duration::from_secs(MAX_UNIX_SECONDS);
    t.clamp(UNIX_EPOCH, max)
}

/// `YYYY-MM-DDTHH:MM:SSZ`: what EventoDB's SQLite backend sends (whole seconds).
///
/// Instants outside 1970..=9999 are clamped to that range.
pub fn format_rfc3339_seconds(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(clamp(t)).to_string()
}

/// RFC 3339 with up to 9 fractional digits, trailing zeros (and a zero
/// fraction) dropped — Go's `RFC3339Nano` layout.
pub fn format_rfc3339_nanos(t: SystemTime) -> String {
    let full = humantime::format_rfc3339_nanos(clamp(t)).to_string();
    // full = "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"
    let body = full.trim_end_matches('Z');
    let trimmed = body.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}Z")
}

/// Parses an RFC 3339 UTC time with or without a fraction of 1–9 digits
/// (`2026-03-01T12:34:56Z`, `2026-03-01T12:34:56.123456Z`), and also accepts
/// a numeric offset such as `+02:00`.
pub fn parse_rfc3339(s: &str) -> Result<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339(s) {
        return Ok(t);
    }
    parse_with_offset(s).ok_or_else(|| Error::invalid(format!("invalid time format: {s:?}")))
}

/// `…±HH:MM` offsets, which humantime does not read.
fn parse_with_offset(s: &str) -> Option<SystemTime> {
    if s.len() < 6 {
        return None;
    }
    let (body, offset) = s.split_at(s.len() - 6);
    let sign = match offset.as_bytes()[0] {
        b'+' => 1i64,
        b'-' => -1i64,
        _ => return None,
    };
    if offset.as_bytes()[3] != b':' {
        return None;
    }
    let hours: i64 = offset[1..3].parse().ok()?;
    let minutes: i64 = offset[4..6].parse().ok()?;
    let utc = humantime::parse_rfc3339(&format!("{body}Z")).ok()?;
    let shift = Duration::from_secs(((hours * 60 + minutes) * 60) as u64);
    // local = utc + offset, so utc = local - offset.
    Some(if sign > 0 { utc - shift } else { utc + shift })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_formats() {
        let t = parse_rfc3339("2026-03-01T12:34:56Z").unwrap();
        assert_eq!(format_rfc3339_seconds(t), "2026-03-01T12:34:56Z");
        let f = parse_rfc3339("2026-03-01T12:34:56.120000Z").unwrap();
        assert_eq!(format_rfc3339_nanos(f), "2026-03-01T12:34:56.12Z");
        assert_eq!(format_rfc3339_nanos(t), "2026-03-01T12:34:56Z");
        assert_eq!(format_rfc3339_seconds(f), "2026-03-01T12:34:56Z");
        let nanos = parse_rfc3339("2026-03-01T12:34:56.123456789Z").unwrap();
        assert_eq!(
            format_rfc3339_nanos(nanos),
            "2026-03-01T12:34:56.123456789Z"
        );
        let offset = parse_rfc3339("2026-03-01T14:34:56+02:00").unwrap();
        assert_eq!(offset, t);
        assert!(parse_rfc3339("yesterday").is_err());
        assert_eq!(
            from_ms(to_ms(f)),
            parse_rfc3339("2026-03-01T12:34:56.12Z").unwrap()
        );
        assert_eq!(to_ms(from_ms(-5)), -5);
    }
}
