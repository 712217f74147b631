//! The one way a Unix time in milliseconds is written for people: RFC 3339 in UTC with
//! milliseconds (`2026-12-05T06:30:00.123Z`), in messages, `/status`, reports and tables. A leaf
//! module, so every other one (storage's health, the segment header's text, the agent, mc-restore)
//! can use it.

use chrono::{DateTime, SecondsFormat, Utc};

/// `unix_ms` as RFC 3339 with milliseconds, UTC; a time chrono cannot represent as `<N> ms`.
pub fn format_ms(unix_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(unix_ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{unix_ms} ms"))
}

/// As [`format_ms`], with 0 and negative times (never, in the agent's counters) as `None`.
pub fn format_ms_if_set(unix_ms: i64) -> Option<String> {
    (unix_ms > 0).then(|| format_ms(unix_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_in_utc() {
        assert_eq!(format_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(i64::MAX), format!("{} ms", i64::MAX));
        assert_eq!(format_ms_if_set(0), None);
        assert_eq!(
            format_ms_if_set(1_700_000_000_000).as_deref(),
            Some("2023-11-14T22:13:20.000Z")
        );
    }
}
