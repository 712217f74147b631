//! The reset decided against the live cluster before anything is committed
//! ([`KafkaResetPlan`]): for each selected group and partition the current committed offset,
//! the target (the recorded offset, moved into the partition's current low/high watermarks if
//! retention or a truncation put it outside, with a warning) and the delta; and the group's
//! active members. Changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use mc_core::catalog::kafka::matches_any;
use mc_core::catalog::Repository;
use mc_core::format::OplogTs;
use mc_core::kafka::{GroupMember, KafkaClient};
use serde::Serialize;

use super::cluster::{blocking, connect};
use super::{
    offsets_at, GroupOffsets, KafkaPoint, KafkaResetOptions, KafkaRestoreError, OffsetsAt, TopicMap,
};
use crate::point::format_ms;

/// One partition's reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionPlan {
    /// Topic on the target cluster (after `--topic-map`).
    pub topic: String,
    /// Topic as recorded, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_topic: Option<String>,
    pub partition: i32,
    /// The group's committed offset now; `None` when it has none.
    pub current: Option<i64>,
    /// The offset recorded at the point.
    pub recorded: i64,
    /// What will be committed: `recorded`, clamped into [low, high].
    pub target: i64,
    /// `target − current`: negative rewinds (messages are read again), positive skips.
    pub delta: Option<i64>,
    pub low: i64,
    pub high: i64,
    /// Why `target` differs from `recorded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clamped: Option<String>,
}

/// One group's reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupPlan {
    pub group: String,
    /// When the offsets were captured (wall time, RFC 3339) and the cluster time then.
    pub captured_at: String,
    pub cluster_time: Option<OplogTs>,
    pub state: Option<String>,
    /// Members now in the group; a reset is refused while there are any.
    pub active_members: Vec<GroupMember>,
    pub partitions: Vec<PartitionPlan>,
}

/// The whole reset, decided before anything is committed.
#[derive(Debug, Clone, Serialize)]
pub struct KafkaResetPlan {
    pub point: KafkaPoint,
    pub bootstrap: String,
    pub segment: String,
    pub groups: Vec<GroupPlan>,
    pub warnings: Vec<String>,
}

/// Reads the offsets at `point` and plans the reset of the groups `options.groups` selects
/// against the cluster `options.bootstrap`. Changes nothing.
pub async fn plan(
    repo: &Repository,
    source_id: &str,
    point: KafkaPoint,
    options: &KafkaResetOptions,
) -> Result<KafkaResetPlan, KafkaRestoreError> {
    let at = offsets_at(repo, source_id, point).await?;
    let selected = select_groups(&at, &options.groups, point)?;
    let client = connect(options).await?;
    let topic_map = options.topic_map.clone();
    let bootstrap = options.bootstrap.clone();
    let groups = blocking(move || plan_groups(&client, selected, &topic_map, &bootstrap)).await?;
    let mut warnings = at.warnings;
    warnings.extend(clamp_warnings(&groups));
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(KafkaResetPlan {
        point,
        bootstrap: options.bootstrap.clone(),
        segment: at.segment,
        groups,
        warnings,
    })
}

/// The recorded groups `patterns` select; every pattern must match at least one.
fn select_groups(
    at: &OffsetsAt,
    patterns: &[String],
    point: KafkaPoint,
) -> Result<Vec<GroupOffsets>, KafkaRestoreError> {
    let selected: Vec<GroupOffsets> = at
        .groups
        .values()
        .filter(|g| matches_any(patterns, &g.group))
        .cloned()
        .collect();
    let unmatched: Vec<String> = patterns
        .iter()
        .filter(|p| !at.groups.keys().any(|g| matches_any(&[(*p).clone()], g)))
        .cloned()
        .collect();
    if selected.is_empty() || !unmatched.is_empty() {
        return Err(KafkaRestoreError::UnknownGroups {
            patterns: if unmatched.is_empty() {
                patterns.to_vec()
            } else {
                unmatched
            },
            point: point.to_string(),
            known: at.groups.keys().cloned().collect(),
        });
    }
    Ok(selected)
}

/// The plan of every selected group against the cluster (blocking Kafka calls).
fn plan_groups(
    client: &KafkaClient,
    selected: Vec<GroupOffsets>,
    topic_map: &TopicMap,
    bootstrap: &str,
) -> Result<Vec<GroupPlan>, KafkaRestoreError> {
    let topics: BTreeMap<String, BTreeSet<i32>> = client
        .topics()?
        .into_iter()
        .map(|(t, ids)| (t, ids.into_iter().collect()))
        .collect();
    let mut marks: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
    let mut plans = Vec::new();
    for g in selected {
        plans.push(plan_group(
            client, g, &topics, &mut marks, topic_map, bootstrap,
        )?);
    }
    Ok(plans)
}

/// One group's plan: its recorded partitions on the target's topics (each must exist there),
/// their committed offsets now, watermarks (read once per partition, kept in `marks`) and
/// targets; and the group's state and members.
fn plan_group(
    client: &KafkaClient,
    g: GroupOffsets,
    topics: &BTreeMap<String, BTreeSet<i32>>,
    marks: &mut BTreeMap<(String, i32), (i64, i64)>,
    topic_map: &TopicMap,
    bootstrap: &str,
) -> Result<GroupPlan, KafkaRestoreError> {
    let mut wanted = Vec::new();
    for p in &g.partitions {
        let topic = topic_map.target(&p.topic).to_owned();
        if !topics
            .get(&topic)
            .is_some_and(|ids| ids.contains(&p.partition))
        {
            return Err(KafkaRestoreError::MissingPartition {
                group: g.group.clone(),
                topic,
                partition: p.partition,
                bootstrap: bootstrap.to_owned(),
            });
        }
        wanted.push((topic, p.partition));
    }
    let current: BTreeMap<(String, i32), i64> = client
        .committed(&g.group, &wanted)?
        .into_iter()
        .map(|(t, c)| ((t, c.partition), c.offset))
        .collect();
    let description = client.group(&g.group)?;
    let mut partitions = Vec::new();
    for (p, (topic, partition)) in g.partitions.iter().zip(wanted) {
        let key = (topic.clone(), partition);
        let (low, high) = match marks.get(&key) {
            Some(m) => *m,
            None => {
                let m = client.watermarks(&topic, partition)?;
                marks.insert(key.clone(), m);
                m
            }
        };
        let (target, clamped) = clamp(p.committed, low, high);
        let current = current.get(&key).copied();
        partitions.push(PartitionPlan {
            recorded_topic: (topic != p.topic).then(|| p.topic.clone()),
            topic,
            partition,
            current,
            recorded: p.committed,
            target,
            delta: current.map(|c| target - c),
            low,
            high,
            clamped,
        });
    }
    Ok(GroupPlan {
        group: g.group.clone(),
        captured_at: format_ms(i64::try_from(g.captured_ms).unwrap_or(i64::MAX)),
        cluster_time: g.cluster_time,
        state: description.as_ref().map(|d| d.state.clone()),
        active_members: description.map(|d| d.members).unwrap_or_default(),
        partitions,
    })
}

/// A warning for every partition whose target was moved into its watermarks.
fn clamp_warnings(groups: &[GroupPlan]) -> Vec<String> {
    let mut warnings = Vec::new();
    for g in groups {
        for p in &g.partitions {
            if let Some(why) = &p.clamped {
                warnings.push(format!(
                    "group {}: {}/{}: {why}",
                    g.group, p.topic, p.partition
                ));
            }
        }
    }
    warnings
}

/// The recorded offset moved into [low, high] when it lies outside (unknown marks: as is).
fn clamp(recorded: i64, low: i64, high: i64) -> (i64, Option<String>) {
    if low >= 0 && recorded < low {
        (
            low,
            Some(format!(
                "recorded offset {recorded} is below the low watermark {low} (retention deleted those messages); committing {low}"
            )),
        )
    } else if high >= 0 && recorded > high {
        (
            high,
            Some(format!(
                "recorded offset {recorded} is above the high watermark {high} (the partition holds fewer messages now); committing {high}"
            )),
        )
    } else {
        (recorded, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_into_watermarks() {
        assert_eq!(clamp(5, 0, 10), (5, None));
        assert_eq!(clamp(2, 4, 10).0, 4);
        assert_eq!(clamp(12, 0, 10).0, 10);
        assert_eq!(clamp(12, -1, -1), (12, None));
    }
}
