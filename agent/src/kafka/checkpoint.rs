//! The transform: turns observations into the records of one segment. A segment opens with a
//! full checkpoint (a record for every tracked group, `full: true`); after it, a cycle writes a
//! record only for a group whose committed offsets changed, appeared, or disappeared (an empty
//! record). A segment therefore answers "offsets of group G at T" alone (`docs/format.md` §8).
//! It is cut `span` after its first cycle, and at once when a cycle fails, so that a segment
//! always covers an unbroken run of cycles.

use std::collections::BTreeMap;

use mc_core::catalog::kafka::{OffsetRecord, PartitionOffsets, OFFSET_RECORD_VERSION};

use super::source::Observation;

/// The records of one segment, ready to seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetBatch {
    /// Time of the first cycle (the checkpoint), Unix ms.
    pub first_ms: u64,
    /// Time of the last cycle, Unix ms.
    pub last_ms: u64,
    pub records: Vec<OffsetRecord>,
}

/// Builds segments from observations.
#[derive(Debug)]
pub struct Checkpointer {
    span_ms: u64,
    open: Option<OffsetBatch>,
    /// The committed offsets last recorded in the open segment, per group.
    last: BTreeMap<String, Vec<(String, i32, i64)>>,
}

fn committed_of(parts: &[PartitionOffsets]) -> Vec<(String, i32, i64)> {
    parts
        .iter()
        .map(|p| (p.topic.clone(), p.partition, p.committed))
        .collect()
}

impl Checkpointer {
    /// Segments are cut `span_ms` after their first cycle.
    pub fn new(span_ms: u64) -> Self {
        Self {
            span_ms,
            open: None,
            last: BTreeMap::new(),
        }
    }

    /// Adds one cycle. Returns a finished segment when this cycle closes one (the segment is
    /// `span` old); the next cycle then opens a new one with a checkpoint.
    pub fn push(&mut self, obs: Observation) -> Option<OffsetBatch> {
        let record = |group: &str, full: bool, partitions: Vec<PartitionOffsets>| OffsetRecord {
            v: OFFSET_RECORD_VERSION,
            time_ms: obs.time_ms,
            cluster_time: obs.cluster_time,
            group: group.to_owned(),
            full,
            partitions,
        };
        match &mut self.open {
            None => {
                let records = obs
                    .groups
                    .iter()
                    .map(|(g, parts)| record(g, true, parts.clone()))
                    .collect();
                self.last = obs
                    .groups
                    .iter()
                    .map(|(g, parts)| (g.clone(), committed_of(parts)))
                    .collect();
                self.open = Some(OffsetBatch {
                    first_ms: obs.time_ms,
                    last_ms: obs.time_ms,
                    records,
                });
            }
            Some(batch) => {
                for (group, parts) in &obs.groups {
                    let now = committed_of(parts);
                    if self.last.get(group) != Some(&now) {
                        batch.records.push(record(group, false, parts.clone()));
                        self.last.insert(group.clone(), now);
                    }
                }
                let gone: Vec<String> = self
                    .last
                    .keys()
                    .filter(|g| !obs.groups.contains_key(*g))
                    .cloned()
                    .collect();
                for group in gone {
                    batch.records.push(record(&group, false, Vec::new()));
                    self.last.remove(&group);
                }
                batch.last_ms = batch.last_ms.max(obs.time_ms);
            }
        }
        let due = self
            .open
            .as_ref()
            .is_some_and(|b| b.last_ms.saturating_sub(b.first_ms) >= self.span_ms);
        if due {
            self.take()
        } else {
            None
        }
    }

    /// Closes the open segment, if any (on a failed cycle, and at shutdown).
    pub fn take(&mut self) -> Option<OffsetBatch> {
        self.last.clear();
        self.open.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(topic: &str, partition: i32, committed: i64) -> PartitionOffsets {
        PartitionOffsets {
            topic: topic.into(),
            partition,
            committed,
            low: 0,
            high: 100,
        }
    }

    fn obs(time_ms: u64, groups: &[(&str, Vec<PartitionOffsets>)]) -> Observation {
        Observation {
            time_ms,
            cluster_time: None,
            groups: groups
                .iter()
                .map(|(g, p)| (g.to_string(), p.clone()))
                .collect(),
        }
    }

    #[test]
    fn checkpoint_then_changes_only_then_cut() {
        let mut c = Checkpointer::new(1000);
        assert!(c
            .push(obs(0, &[("a", vec![part("t", 0, 1)]), ("b", vec![])]))
            .is_none());
        // Nothing changed: no record; watermark moves alone do not count.
        let mut moved = part("t", 0, 1);
        moved.high = 200;
        assert!(c
            .push(obs(500, &[("a", vec![moved]), ("b", vec![])]))
            .is_none());
        // a changes, b disappears, c appears; the segment is now 1000 ms old: cut.
        let batch = c
            .push(obs(1000, &[("a", vec![part("t", 0, 5)]), ("c", vec![])]))
            .expect("cut after the span");
        assert_eq!((batch.first_ms, batch.last_ms), (0, 1000));
        let summary: Vec<(&str, bool, u64, usize)> = batch
            .records
            .iter()
            .map(|r| (r.group.as_str(), r.full, r.time_ms, r.partitions.len()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("a", true, 0, 1),
                ("b", true, 0, 0),
                ("a", false, 1000, 1),
                ("c", false, 1000, 0),
                ("b", false, 1000, 0),
            ]
        );
        // The next cycle opens a new segment with a full checkpoint.
        c.push(obs(1500, &[("a", vec![part("t", 0, 5)])]));
        let next = c.take().unwrap();
        assert_eq!(next.first_ms, 1500);
        assert!(next.records.iter().all(|r| r.full));
        assert!(c.take().is_none());
    }
}
