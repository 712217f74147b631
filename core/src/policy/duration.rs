//! Durations (`30s`, `15m`, `4h`, `7d`, `1h30m`, `500ms`) and byte sizes (`16MiB`, `1000000`) as
//! written in policy files: parsing with messages that show the accepted forms, and printing
//! them back in the same compact form.
//!
//! Hand-written rather than `humantime` because humantime accepts `15 minutes` and `2 days 3h`
//! (forms we want to refuse, so one policy reads like every other) and its messages are its own.

use std::time::Duration;

/// The forms a duration may take, quoted in every duration error.
pub const DURATION_FORMS: &str =
    "write a number and a unit without spaces: 500ms, 30s, 15m, 4h, 7d, or combined from the largest unit down like 1h30m";

/// The forms a size may take, quoted in every size error.
pub const SIZE_FORMS: &str =
    "write a whole number of bytes (1000000) or a number and one of the units B, KiB, MiB, GiB, KB, MB, GB without spaces (16MiB)";

/// Duration units, largest first; the order in which combined durations must name them.
const DURATION_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a policy duration. The error is the reason only (the caller adds the field and
/// [`DURATION_FORMS`]).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("the duration is empty".into());
    }
    let mut total_ms: u64 = 0;
    // Index into DURATION_UNITS of the last unit seen: the next must be strictly smaller.
    let mut last_unit: Option<usize> = None;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("`{text}` is not a duration"));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        if unit_len == 0 {
            return Err(if after.is_empty() {
                format!("`{text}` has no unit (is `{number}` seconds, minutes, hours?)")
            } else {
                format!("`{text}` is not a duration")
            });
        }
        let (unit, after) = after.split_at(unit_len);
        let Some(index) = DURATION_UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("`{text}` has an unknown unit `{unit}`"));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(format!(
                "`{text}` repeats a unit or names them out of order"
            ));
        }
        last_unit = Some(index);
        let value: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is too large"))?;
        total_ms = value
            .checked_mul(DURATION_UNITS[index].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("`{text}` is too large"))?;
        rest = after;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Prints a duration the way a policy writes it: `15m`, `4h`, `1h30m`, `7d`, `500ms`, `0s`.
/// Sub-millisecond parts are dropped (policies cannot express them).
pub fn format_duration(duration: Duration) -> String {
    let mut ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, unit_ms) in DURATION_UNITS {
        let count = ms / unit_ms;
        if count > 0 {
            out.push_str(&format!("{count}{unit}"));
            ms %= unit_ms;
        }
    }
    out
}

/// Size units and their multipliers; a bare number is bytes.
const SIZE_UNITS: [(&str, u64); 7] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
];

/// Parses a policy size (`16MiB`, `512KiB`, `1GiB`, `1000000`). The error is the reason only.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("`{text}` is not a size"));
    }
    let (number, unit) = text.split_at(digits);
    let multiplier = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, m)| *m)
            .ok_or_else(|| format!("`{text}` has an unknown unit `{unit}`"))?
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Prints a size in the largest binary unit that divides it exactly: `16MiB`, `1000000B`.
pub fn format_size(bytes: u64) -> String {
    for (unit, multiplier) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= multiplier && bytes.is_multiple_of(multiplier) {
            return format!("{}{unit}", bytes / multiplier);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        for (text, ms) in [
            ("30s", 30_000),
            ("15m", 900_000),
            ("4h", 14_400_000),
            ("7d", 604_800_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("1s500ms", 1_500),
            ("0s", 0),
            ("2d12h", 216_000_000),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for (text, needle) in [
            ("", "empty"),
            ("15", "no unit"),
            ("15 minutes", "not a duration"),
            ("15minutes", "unknown unit `minutes`"),
            ("1w", "unknown unit `w`"),
            ("30m1h", "out of order"),
            ("1m1m", "repeats"),
            ("-5s", "not a duration"),
            ("1.5h", "not a duration"),
            ("99999999999999999999s", "too large"),
            ("9999999999999999d", "too large"),
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn durations_print_as_written() {
        for text in [
            "15m", "4h", "1h30m", "7d", "500ms", "1s500ms", "0s", "2d12h",
        ] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(format_duration(parsed), text);
        }
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
    }

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("16MiB", 16 << 20),
            ("512KiB", 512 << 10),
            ("1GiB", 1 << 30),
            ("1000000", 1_000_000),
            ("10B", 10),
            ("2MB", 2_000_000),
            ("3KB", 3_000),
            ("1GB", 1_000_000_000),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for (text, needle) in [
            ("16 MiB", "unknown unit ` MiB`"),
            ("16mib", "unknown unit"),
            ("MiB", "not a size"),
            ("99999999999GiB", "too large"),
        ] {
            let err = parse_size(text).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        assert_eq!(format_size(16 << 20), "16MiB");
        assert_eq!(format_size(1_000_000), "1000000B");
        assert_eq!(format_size(1536 << 10), "1536KiB");
    }
}
