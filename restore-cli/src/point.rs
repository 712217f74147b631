//! The point in time a restore brings the data to, as the operator writes it (`--at`), and the
//! exact rule that decides which oplog entries it includes (`docs/restore.md`, "Boundary").
//!
//! Oplog timestamps have whole seconds plus an increment; entries also carry `wall`, the
//! primary's clock in milliseconds. A restore always applies a *prefix* of the oplog, so the
//! result is a state the source really had:
//! - `ts:S:I` includes every entry with timestamp ≤ (S, I): exact.
//! - An RFC 3339 time T includes every entry of earlier seconds, and the entries of T's own
//!   second up to the first whose `wall` is later than T (milliseconds count).
//! - `latest` includes everything the repository holds.

use chrono::{DateTime, FixedOffset};
use mc_core::format::OplogTs;

/// What `--at` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePoint {
    /// The newest point the repository holds.
    Latest,
    /// An exact oplog timestamp: every entry at or before it.
    Exact(OplogTs),
    /// A wall-clock time, milliseconds since the epoch.
    Time { unix_ms: i64 },
}

/// A `--at` value that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("cannot read --at {given:?}: {why}; write an RFC 3339 time (2026-11-25T10:15:00Z, local offsets like +01:00 accepted), `latest`, or an oplog timestamp ts:SECONDS:INCREMENT (ts:1764065700:3)")]
pub struct BadPoint {
    given: String,
    why: String,
}

impl std::str::FromStr for RestorePoint {
    type Err = BadPoint;

    fn from_str(s: &str) -> Result<Self, BadPoint> {
        let bad = |why: &str| BadPoint {
            given: s.to_owned(),
            why: why.to_owned(),
        };
        let t = s.trim();
        if t.eq_ignore_ascii_case("latest") {
            return Ok(RestorePoint::Latest);
        }
        if let Some(rest) = t.strip_prefix("ts:") {
            let (secs, inc) = rest
                .split_once(':')
                .ok_or_else(|| bad("an oplog timestamp has two numbers, seconds and increment"))?;
            let secs: u32 = secs
                .parse()
                .map_err(|_| bad("the seconds are not a number of seconds since 1970"))?;
            let inc: u32 = inc
                .parse()
                .map_err(|_| bad("the increment is not a whole number"))?;
            return Ok(RestorePoint::Exact(OplogTs::new(secs, inc)));
        }
        let time: DateTime<FixedOffset> = DateTime::parse_from_rfc3339(t).map_err(|e| {
            bad(&format!(
                "not an RFC 3339 time ({e}); a time needs a date, a time and an offset"
            ))
        })?;
        let unix_ms = time.timestamp_millis();
        if unix_ms < 0 || unix_ms / 1000 > i64::from(u32::MAX) {
            return Err(bad("the time is outside what oplog timestamps can hold"));
        }
        Ok(RestorePoint::Time { unix_ms })
    }
}

impl std::fmt::Display for RestorePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestorePoint::Latest => write!(f, "latest"),
            RestorePoint::Exact(ts) => write!(f, "{}", ts.arg()),
            RestorePoint::Time { unix_ms } => write!(f, "{}", format_ms(*unix_ms)),
        }
    }
}

/// The resolved rule: which entries a restore applies. Built by the planner once `latest` is
/// known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Cut {
    /// No entry after this timestamp is applied.
    pub bound: OplogTs,
    /// For a wall-clock point: in the second `bound.t`, entries are applied only while their
    /// `wall` is at or before this (milliseconds since the epoch).
    pub wall_ms: Option<i64>,
}

impl Cut {
    /// The cut of a point; `newest` is the newest entry the repository holds (for `latest`).
    pub fn of(point: RestorePoint, newest: OplogTs) -> Cut {
        match point {
            RestorePoint::Latest => Cut {
                bound: newest,
                wall_ms: None,
            },
            RestorePoint::Exact(ts) => Cut {
                bound: ts,
                wall_ms: None,
            },
            RestorePoint::Time { unix_ms } => Cut {
                // Range-checked when parsed.
                bound: OplogTs::new(u32::try_from(unix_ms / 1000).unwrap_or(u32::MAX), u32::MAX),
                wall_ms: Some(unix_ms),
            },
        }
    }

    /// Whether the entry at `ts` with wall time `wall_ms` is inside the cut. The replay stops at
    /// the first entry that is not, so what is applied is always a prefix of the oplog.
    pub fn admits(&self, ts: OplogTs, wall_ms: Option<i64>) -> bool {
        if ts > self.bound {
            return false;
        }
        match (self.wall_ms, wall_ms) {
            (Some(limit), Some(wall)) if ts.t == self.bound.t => wall <= limit,
            _ => true,
        }
    }

    /// The newest timestamp that is surely before every entry the cut could exclude: entries at
    /// or before it are certainly applied. A snapshot must end at or before it to be usable.
    pub fn surely_included(&self) -> OplogTs {
        match self.wall_ms {
            Some(_) if self.bound.t > 0 => OplogTs::new(self.bound.t - 1, u32::MAX),
            Some(_) => OplogTs::new(0, 0),
            None => self.bound,
        }
    }

    /// The oldest timestamp the repository must hold (captured through) for the cut to be
    /// proven: every entry the cut could include is then in the repository.
    pub fn needs_through(&self) -> OplogTs {
        match self.wall_ms {
            // Everything of T's second must be captured: an entry of the next second proves it.
            Some(_) => OplogTs::new(self.bound.t.saturating_add(1), 0),
            None => self.bound,
        }
    }
}

/// RFC 3339 with milliseconds, UTC (mc-core's one formatter).
pub use mc_core::time::format_ms;

/// An oplog timestamp as `ts:S:I (RFC 3339)`, how every message shows one: mc-core's
/// [`OplogTs::text`], as a `String`.
pub fn format_ts(ts: OplogTs) -> String {
    ts.text().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            "latest".parse::<RestorePoint>().unwrap(),
            RestorePoint::Latest
        );
        assert_eq!(
            "ts:1764065700:3".parse::<RestorePoint>().unwrap(),
            RestorePoint::Exact(OplogTs::new(1764065700, 3))
        );
        let utc: RestorePoint = "2025-11-25T10:15:00.250Z".parse().unwrap();
        let local: RestorePoint = "2025-11-25T11:15:00.250+01:00".parse().unwrap();
        assert_eq!(utc, local);
        assert_eq!(
            utc,
            RestorePoint::Time {
                unix_ms: 1_764_065_700_250
            }
        );
    }

    #[test]
    fn bad_points_say_what_to_write() {
        for bad in [
            "yesterday",
            "ts:12",
            "ts:a:1",
            "2026-11-25 10:15",
            "1969-01-01T00:00:00Z",
            "",
        ] {
            let e = bad.parse::<RestorePoint>().unwrap_err().to_string();
            assert!(e.contains("RFC 3339") && e.contains("ts:"), "{bad}: {e}");
        }
    }

    #[test]
    fn exact_cut_includes_its_timestamp_and_nothing_after() {
        let cut = Cut::of(
            RestorePoint::Exact(OplogTs::new(100, 3)),
            OplogTs::new(200, 0),
        );
        assert!(cut.admits(OplogTs::new(100, 3), None));
        assert!(!cut.admits(OplogTs::new(100, 4), None));
        assert!(cut.admits(OplogTs::new(99, 9), None));
    }

    #[test]
    fn wall_time_cut_counts_milliseconds_in_its_second() {
        let cut = Cut::of(
            RestorePoint::Time { unix_ms: 100_500 },
            OplogTs::new(200, 0),
        );
        assert!(cut.admits(OplogTs::new(99, 7), Some(99_999)));
        assert!(cut.admits(OplogTs::new(100, 1), Some(100_500)));
        assert!(!cut.admits(OplogTs::new(100, 2), Some(100_501)));
        assert!(!cut.admits(OplogTs::new(101, 1), Some(100_400)));
        assert_eq!(cut.surely_included(), OplogTs::new(99, u32::MAX));
        assert_eq!(cut.needs_through(), OplogTs::new(101, 0));
    }
}
