//! Which capture a restore point selects ([`KafkaPoint`]): the newest, the last at or before a
//! wall time, or the last at or before a MongoDB cluster time.

use serde::Serialize;

use crate::point::{format_ms, RestorePoint};
use mc_core::format::OplogTs;

/// Which capture a point selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaPoint {
    /// The newest capture in the repository.
    Latest,
    /// The last capture whose wall time is at or before this (Unix ms).
    Time { unix_ms: i64 },
    /// The last capture whose MongoDB cluster time (majority commit point read in the same
    /// cycle) is at or before this timestamp; captures without a cluster time count by wall
    /// time against the end of the timestamp's second.
    ClusterTime(OplogTs),
}

impl From<RestorePoint> for KafkaPoint {
    fn from(point: RestorePoint) -> Self {
        match point {
            RestorePoint::Latest => KafkaPoint::Latest,
            RestorePoint::Time { unix_ms } => KafkaPoint::Time { unix_ms },
            RestorePoint::Exact(ts) => KafkaPoint::ClusterTime(ts),
        }
    }
}

impl std::fmt::Display for KafkaPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KafkaPoint::Latest => write!(f, "latest"),
            KafkaPoint::Time { unix_ms } => write!(f, "{}", format_ms(*unix_ms)),
            KafkaPoint::ClusterTime(ts) => write!(f, "{}", ts.arg()),
        }
    }
}

impl KafkaPoint {
    /// Whether a capture made at `time_ms` with cluster time `cluster` is at or before the point.
    pub(super) fn admits(&self, time_ms: u64, cluster: Option<OplogTs>) -> bool {
        match *self {
            KafkaPoint::Latest => true,
            KafkaPoint::Time { unix_ms } => i64::try_from(time_ms).is_ok_and(|t| t <= unix_ms),
            KafkaPoint::ClusterTime(ts) => match cluster {
                Some(c) => c <= ts,
                None => time_ms <= u64::from(ts.t) * 1000 + 999,
            },
        }
    }

    /// Whether a segment whose first cycle is at `first_ms` may hold captures at or before the
    /// point (cluster time lags wall time, so allow a margin).
    pub(super) fn may_hold(&self, first_ms: u64) -> bool {
        match *self {
            KafkaPoint::Latest => true,
            KafkaPoint::Time { unix_ms } => i64::try_from(first_ms).is_ok_and(|t| t <= unix_ms),
            KafkaPoint::ClusterTime(ts) => first_ms <= (u64::from(ts.t) + 1) * 1000 + 300_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_admit_captures_at_or_before() {
        let t = KafkaPoint::Time { unix_ms: 10_500 };
        assert!(t.admits(10_500, None) && !t.admits(10_501, None));
        let c = KafkaPoint::ClusterTime(OplogTs::new(10, 3));
        assert!(c.admits(99_999, Some(OplogTs::new(10, 3))));
        assert!(!c.admits(0, Some(OplogTs::new(10, 4))));
        assert!(c.admits(10_999, None) && !c.admits(11_000, None));
        assert!(KafkaPoint::Latest.admits(u64::MAX, None));
    }
}
