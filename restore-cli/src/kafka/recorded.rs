//! What the repository says: every group's committed offsets in the **last capture at or
//! before a point** ([`offsets_at`], [`OffsetsAt`]), and the unbroken runs of capture
//! ([`coverage`]). Reads only the repository.

use std::collections::BTreeMap;

use mc_core::catalog::kafka::{KafkaOffsetsRange, OffsetRecord, PartitionOffsets};
use mc_core::catalog::{Catalog, Repository};
use mc_core::format::{OplogTs, StreamKind};
use serde::Serialize;

use super::{KafkaPoint, KafkaRestoreError};
use crate::point::format_ms;

/// One group's offsets as recorded by one capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupOffsets {
    pub group: String,
    /// Wall time of the capture the offsets come from, Unix ms.
    pub captured_ms: u64,
    /// MongoDB cluster time of that capture, when recorded.
    pub cluster_time: Option<OplogTs>,
    pub partitions: Vec<PartitionOffsets>,
}

/// Offsets of each group in the last capture at or before a point.
#[derive(Debug, Clone, Serialize)]
pub struct OffsetsAt {
    pub point: KafkaPoint,
    /// The segment they come from.
    pub segment: String,
    /// The segment's unbroken run of capture cycles, Unix ms.
    pub segment_first_ms: u64,
    pub segment_last_ms: u64,
    /// Groups with at least one committed offset, by name.
    pub groups: BTreeMap<String, GroupOffsets>,
    /// Said when the point lies after the segment's last cycle (capture was not running, or its
    /// newest segment was not yet written): the offsets are those of that last cycle.
    pub warnings: Vec<String>,
}

/// Reads the offsets of every group at `point` from the repository.
pub async fn offsets_at(
    repo: &Repository,
    source_id: &str,
    point: KafkaPoint,
) -> Result<OffsetsAt, KafkaRestoreError> {
    let mut segments = segment_ranges(repo, source_id).await?;
    segments.sort_by_key(|(_, r)| (r.first_ms, r.last_ms));
    let no_offsets = || KafkaRestoreError::NoOffsets {
        source_id: source_id.to_owned(),
        point: point.to_string(),
        first: segments
            .first()
            .map(|(_, r)| format_ms(i64::try_from(r.first_ms).unwrap_or(i64::MAX))),
    };
    for (key, range) in segments.iter().rev() {
        if !point.may_hold(range.first_ms) {
            continue;
        }
        let records = read_records(repo, key).await?;
        // The segment qualifies when its opening checkpoint is at or before the point.
        let opens_in_time = match records.first() {
            Some(r) => point.admits(r.time_ms, r.cluster_time),
            None => point.admits(range.first_ms, None),
        };
        if !opens_in_time {
            continue;
        }
        return Ok(OffsetsAt {
            point,
            segment: key.clone(),
            segment_first_ms: range.first_ms,
            segment_last_ms: range.last_ms,
            groups: groups_at(records, point),
            warnings: past_end_warning(point, range).into_iter().collect(),
        });
    }
    Err(no_offsets())
}

/// Every kafka-offsets segment of `source_id` with its range, as the catalog lists them.
async fn segment_ranges(
    repo: &Repository,
    source_id: &str,
) -> Result<Vec<(String, KafkaOffsetsRange)>, KafkaRestoreError> {
    let catalog = Catalog::load(repo, source_id, StreamKind::KafkaOffsets).await?;
    let mut segments = Vec::new();
    for entry in &catalog.segments {
        let range: KafkaOffsetsRange =
            serde_json::from_value(entry.range.clone()).map_err(|e| {
                KafkaRestoreError::BadRecord(format!(
                    "segment {}: bad kafka-offsets range: {e}",
                    entry.key
                ))
            })?;
        segments.push((entry.key.clone(), range));
    }
    Ok(segments)
}

/// The offset records of segment `key`, in order.
async fn read_records(
    repo: &Repository,
    key: &str,
) -> Result<Vec<OffsetRecord>, KafkaRestoreError> {
    let (_, raw) = repo.read_segment(key).await?;
    let mut records = Vec::with_capacity(raw.len());
    for (i, bytes) in raw.iter().enumerate() {
        let record: OffsetRecord = serde_json::from_slice(bytes)
            .map_err(|e| KafkaRestoreError::BadRecord(format!("segment {key}: record {i}: {e}")))?;
        records.push(record);
    }
    Ok(records)
}

/// Every group's offsets after the records at or before `point`, in order (a record without
/// partitions removes its group).
fn groups_at(records: Vec<OffsetRecord>, point: KafkaPoint) -> BTreeMap<String, GroupOffsets> {
    let mut groups: BTreeMap<String, GroupOffsets> = BTreeMap::new();
    for record in records {
        if !point.admits(record.time_ms, record.cluster_time) {
            break;
        }
        if record.partitions.is_empty() {
            groups.remove(&record.group);
        } else {
            groups.insert(
                record.group.clone(),
                GroupOffsets {
                    group: record.group,
                    captured_ms: record.time_ms,
                    cluster_time: record.cluster_time,
                    partitions: record.partitions,
                },
            );
        }
    }
    groups
}

/// Said when a wall-time point lies after the segment's last cycle: the offsets are those of
/// that cycle.
fn past_end_warning(point: KafkaPoint, range: &KafkaOffsetsRange) -> Option<String> {
    let past_end = match point {
        KafkaPoint::Time { unix_ms } => {
            let end = i64::try_from(range.last_ms).unwrap_or(i64::MAX);
            (unix_ms > end).then(|| unix_ms - end)
        }
        _ => None,
    };
    past_end.map(|by| {
        format!(
            "the last Kafka capture at or before {point} is at {} ({:.1} s earlier; capture stopped or its newest segment was not written yet): offsets are those of that capture",
            format_ms(i64::try_from(range.last_ms).unwrap_or(i64::MAX)),
            by as f64 / 1000.0
        )
    })
}

/// An unbroken stretch of Kafka offset capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KafkaRun {
    pub first_ms: u64,
    pub last_ms: u64,
    pub segments: usize,
}

/// The runs of a source's offset stream, oldest first; between two runs capture missed cycles
/// (agent stopped, broker unreachable): points there get the offsets of the earlier run's end.
pub async fn coverage(
    repo: &Repository,
    source_id: &str,
) -> Result<Vec<KafkaRun>, KafkaRestoreError> {
    let mut ranges: Vec<KafkaOffsetsRange> = segment_ranges(repo, source_id)
        .await?
        .into_iter()
        .map(|(_, range)| range)
        .collect();
    ranges.sort_by_key(|r| (r.first_ms, r.last_ms));
    let mut runs: Vec<(KafkaRun, KafkaOffsetsRange)> = Vec::new();
    for r in ranges {
        match runs.last_mut() {
            Some((run, last)) if last.continued_by(&r) => {
                run.last_ms = run.last_ms.max(r.last_ms);
                run.segments += 1;
                *last = r;
            }
            _ => runs.push((
                KafkaRun {
                    first_ms: r.first_ms,
                    last_ms: r.last_ms,
                    segments: 1,
                },
                r,
            )),
        }
    }
    Ok(runs.into_iter().map(|(run, _)| run).collect())
}
