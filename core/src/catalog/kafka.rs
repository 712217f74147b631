//! The `kafka-offsets` stream (`docs/format.md` §8): what one offset record holds, the range of
//! an offset segment, and the group patterns both the agent and `mc-restore` match groups with.
//!
//! A segment of this stream covers a continuous run of capture cycles; its first records are a
//! full checkpoint (one record per tracked group, `full: true`), later records only groups whose
//! committed offsets changed. So "the offsets of group G at T" is answered by one segment alone:
//! the newest segment that starts at or before T, and in it the last record of G at or before T.

use serde::{Deserialize, Serialize};

use crate::format::OplogTs;

/// Version of the record layout below, written in every record as `v`.
pub const OFFSET_RECORD_VERSION: u32 = 1;

/// One group's committed offsets at one capture cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetRecord {
    /// [`OFFSET_RECORD_VERSION`].
    pub v: u32,
    /// Wall-clock time of the capture cycle (Unix ms, the agent's clock).
    pub time_ms: u64,
    /// The MongoDB majority commit point observed at the start of the same cycle, when the agent
    /// also captures a MongoDB source and could read it.
    pub cluster_time: Option<OplogTs>,
    /// The consumer group.
    pub group: String,
    /// `true` in the checkpoint that opens a segment; `false` for a change recorded after it.
    pub full: bool,
    /// Every topic-partition with a committed offset, sorted by (topic, partition). Empty when
    /// the group has no committed offsets (any more).
    pub partitions: Vec<PartitionOffsets>,
}

/// The committed offset of one topic-partition and the partition's watermarks at that moment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: i32,
    /// The next offset the group will read.
    pub committed: i64,
    /// The partition's low watermark (oldest offset still stored); -1 when unknown.
    pub low: i64,
    /// The partition's high watermark (offset of the next message produced); -1 when unknown.
    pub high: i64,
}

impl OffsetRecord {
    /// Sum over partitions of `high − committed` (negative terms count as 0).
    pub fn lag(&self) -> i64 {
        self.partitions
            .iter()
            .filter(|p| p.high >= 0)
            .map(|p| (p.high - p.committed).max(0))
            .sum()
    }
}

/// The header range of a `kafka-offsets` segment (`docs/format.md` §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaOffsetsRange {
    /// Time of the segment's first capture cycle (its checkpoint), Unix ms.
    pub first_ms: u64,
    /// Time of its last successful capture cycle, Unix ms: cycles ran without failure from
    /// `first_ms` through `last_ms`, each at most one interval after the previous one.
    pub last_ms: u64,
    /// Records in the segment.
    pub count: u64,
    /// The capture interval the agent ran with, ms (0 when unknown): consecutive segments are
    /// one unbroken run when the next starts within about one interval of this one's end.
    #[serde(default)]
    pub interval_ms: u64,
}

impl KafkaOffsetsRange {
    /// Whether `next` (starting later) continues this segment without a missed cycle: it starts
    /// within two intervals (at least 2 s) of this one's last cycle.
    pub fn continued_by(&self, next: &KafkaOffsetsRange) -> bool {
        let slack = (2 * self.interval_ms.max(next.interval_ms)).max(2000);
        next.first_ms <= self.last_ms.saturating_add(slack)
    }
}

/// Whether `group` matches any of `patterns` (`*`: any run of characters, `?`: one character).
pub fn matches_any(patterns: &[String], group: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, group))
}

/// Glob matching with `*` and `?`, on characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Groups that are the broker's or tools' own, never captured by the default pattern: names
/// starting with `_` (e.g. `__consumer_offsets`-style internal groups, `_confluent-…`).
pub fn is_internal_group(group: &str) -> bool {
    group.starts_with('_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "orders"));
        assert!(glob_match("orders-*", "orders-eu"));
        assert!(!glob_match("orders-*", "order-eu"));
        assert!(glob_match("o?ders", "orders"));
        assert!(glob_match("*-eu-*", "orders-eu-1"));
        assert!(!glob_match("a*b", "acbd"));
        assert!(glob_match("a*b*", "acbd"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
    }

    #[test]
    fn record_round_trips_and_lags() {
        let r = OffsetRecord {
            v: 1,
            time_ms: 1_764_065_700_123,
            cluster_time: Some(OplogTs::new(1_764_065_700, 2)),
            group: "orders".into(),
            full: true,
            partitions: vec![
                PartitionOffsets {
                    topic: "t".into(),
                    partition: 0,
                    committed: 5,
                    low: 0,
                    high: 9,
                },
                PartitionOffsets {
                    topic: "t".into(),
                    partition: 1,
                    committed: 7,
                    low: 0,
                    high: 7,
                },
            ],
        };
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(serde_json::from_slice::<OffsetRecord>(&json).unwrap(), r);
        assert_eq!(r.lag(), 4);
    }
}
