//! Numbers as a person reads them: `1.2 M docs`, `45.3 MB/s`, `12.4 k docs/s`, `3m 20s`,
//! `1h 05m`. Never a raw float.

/// A count scaled to k, M, G with one decimal: 950 → `950`, 68_721.9 → `68.7 k`,
/// 2_000_000 → `2.0 M`.
pub fn count(n: f64) -> String {
    scaled(n, &["", " k", " M", " G", " T"])
}

/// Bytes in decimal units: 999 → `999 B`, 45_300_000 → `45.3 MB`.
pub fn bytes(n: f64) -> String {
    scaled(n, &[" B", " kB", " MB", " GB", " TB"])
}

fn scaled(n: f64, units: &[&str]) -> String {
    if !n.is_finite() || n < 0.0 {
        return format!("?{}", units[0]);
    }
    let mut value = n;
    let mut unit = 0;
    // Scale first, then check the rounded figure: 999_960 is `1.0 M`, not `1000.0 k`.
    while unit + 1 < units.len() && shown(value, unit) >= 1000.0 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0}{}", units[0])
    } else {
        format!("{value:.1}{}", units[unit])
    }
}

/// `v` as printed: whole units at the bottom, one decimal above.
fn shown(v: f64, unit: usize) -> f64 {
    if unit == 0 {
        v.round()
    } else {
        (v * 10.0).round() / 10.0
    }
}

/// A duration: `0s`, `45s`, `3m 20s`, `1h 05m`, `2d 03h`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// An ETA: the duration, or `?` while it cannot be estimated.
pub fn eta(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "?".into(), duration)
}

/// A rate of `unit` per second: `12.4 k docs/s`, `45.3 MB/s` for bytes.
pub fn rate(per_second: f64, unit: &str) -> String {
    if unit == "bytes" {
        format!("{}/s", bytes(per_second))
    } else {
        format!("{} {unit}/s", count(per_second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_scale_with_one_decimal() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(950.4), "950");
        assert_eq!(count(999.4), "999");
        assert_eq!(count(999.6), "1.0 k");
        assert_eq!(count(68_721.914_1), "68.7 k");
        assert_eq!(count(1_234_567.0), "1.2 M");
        assert_eq!(count(999_960.0), "1.0 M");
        assert_eq!(count(2.5e9), "2.5 G");
        assert_eq!(count(f64::NAN), "?");
        assert_eq!(count(-1.0), "?");
    }

    #[test]
    fn bytes_in_decimal_units() {
        assert_eq!(bytes(999.0), "999 B");
        assert_eq!(bytes(45_300_000.0), "45.3 MB");
        assert_eq!(bytes(1.6e10), "16.0 GB");
        assert_eq!(bytes(3.2e15), "3200.0 TB");
    }

    #[test]
    fn rates_carry_their_unit() {
        assert_eq!(rate(68_721.914_1, "docs"), "68.7 k docs/s");
        assert_eq!(rate(45_300_000.0, "bytes"), "45.3 MB/s");
        assert_eq!(rate(0.0, "entries"), "0 entries/s");
    }

    #[test]
    fn durations_in_two_units_at_most() {
        assert_eq!(duration(0.2), "0s");
        assert_eq!(duration(45.0), "45s");
        assert_eq!(duration(59.6), "1m 00s");
        assert_eq!(duration(200.0), "3m 20s");
        assert_eq!(duration(3900.0), "1h 05m");
        assert_eq!(duration(90_000.0), "1d 01h");
        assert_eq!(duration(f64::INFINITY), "?");
        assert_eq!(eta(None), "?");
        assert_eq!(eta(Some(200.0)), "3m 20s");
    }
}
