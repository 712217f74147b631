//! Resetting Kafka consumer groups to the offsets they had committed at a point in time, from
//! the `kafka-offsets` stream the agent captures (`docs/restore.md`, "Kafka consumer groups";
//! the records are specified in `docs/format.md` §8).
//!
//! Three steps, each usable alone:
//!
//! 1. [`offsets_at`]: what the repository says — for every group, its committed offsets in the
//!    **last capture at or before T** ([`OffsetsAt`]). Reads only the repository.
//! 2. [`plan`]: the [`KafkaResetPlan`] against the live cluster — for each selected group and
//!    partition the current committed offset, the target (the recorded offset, moved into the
//!    partition's current low/high watermarks if retention or a truncation put it outside, with
//!    a warning) and the delta; and the group's active members. Changes nothing.
//! 3. [`apply`]: refuses groups with active members (naming them) unless told to wait for them
//!    to leave, commits the targets as the group (explicit offsets, from outside the group),
//!    reads them back, and reports per partition ([`KafkaResetReport`]).
//!
//! [`reset_offsets`] does all three (or the first two with `dry_run`): the call a combined
//! MongoDB + Kafka restore makes with the same restore point.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mc_core::catalog::kafka::{matches_any, KafkaOffsetsRange, OffsetRecord, PartitionOffsets};
use mc_core::catalog::{Catalog, RepoError, Repository};
use mc_core::format::{OplogTs, StreamKind};
use mc_core::kafka::{GroupMember, KafkaClient, KafkaError, KafkaSecurity};
use serde::Serialize;

use crate::point::{format_ms, RestorePoint};

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
    fn admits(&self, time_ms: u64, cluster: Option<OplogTs>) -> bool {
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
    fn may_hold(&self, first_ms: u64) -> bool {
        match *self {
            KafkaPoint::Latest => true,
            KafkaPoint::Time { unix_ms } => i64::try_from(first_ms).is_ok_and(|t| t <= unix_ms),
            KafkaPoint::ClusterTime(ts) => first_ms <= (u64::from(ts.t) + 1) * 1000 + 300_000,
        }
    }
}

/// Why offsets could not be read, planned or reset. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum KafkaRestoreError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("source {source_id} has no Kafka offsets recorded at or before {point}{}; is `kafka:` in the agent's policy?",
        .first.as_ref().map(|f| format!(" (the first capture is at {f})")).unwrap_or_default())]
    NoOffsets {
        source_id: String,
        point: String,
        first: Option<String>,
    },
    #[error("no consumer group recorded at {point} matches {}; groups recorded then: {}",
        .patterns.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", "),
        if .known.is_empty() { "none".to_owned() } else { .known.join(", ") })]
    UnknownGroups {
        patterns: Vec<String>,
        point: String,
        known: Vec<String>,
    },
    #[error("{}; stop their consumers first (or pass --wait-inactive to wait for them to leave)",
        .0.iter().map(|(g, m)| format!("group {g} has {} active member(s): {}", m.len(),
            m.iter().map(|m| format!("{} (client {}, host {})", m.id, m.client_id, m.host)).collect::<Vec<_>>().join(", ")))
            .collect::<Vec<_>>().join("; "))]
    ActiveGroups(Vec<(String, Vec<GroupMember>)>),
    #[error("partition {topic}/{partition} (recorded for group {group}) does not exist on the cluster at {bootstrap}; restoring into another cluster? map topics with --topic-map SOURCE=TARGET")]
    MissingPartition {
        group: String,
        topic: String,
        partition: i32,
        bootstrap: String,
    },
    #[error("{0}")]
    BadRecord(String),
    #[error("after committing, group {group} reads back {topic}/{partition} at {found:?}, not {expected}")]
    NotApplied {
        group: String,
        topic: String,
        partition: i32,
        expected: i64,
        found: Option<i64>,
    },
    #[error("bad --topic-map {0:?}: write SOURCE=TARGET, e.g. orders=dr.orders")]
    BadTopicMap(String),
    #[error("a background task failed: {0}")]
    Task(String),
}

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
    let catalog = Catalog::load(repo, source_id, StreamKind::KafkaOffsets).await?;
    let mut segments: Vec<(String, KafkaOffsetsRange)> = Vec::new();
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
        let (_, raw) = repo.read_segment(key).await?;
        let mut records = Vec::with_capacity(raw.len());
        for (i, bytes) in raw.iter().enumerate() {
            let record: OffsetRecord = serde_json::from_slice(bytes).map_err(|e| {
                KafkaRestoreError::BadRecord(format!("segment {key}: record {i}: {e}"))
            })?;
            records.push(record);
        }
        // The segment qualifies when its opening checkpoint is at or before the point.
        let opens_in_time = match records.first() {
            Some(r) => point.admits(r.time_ms, r.cluster_time),
            None => point.admits(range.first_ms, None),
        };
        if !opens_in_time {
            continue;
        }
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
        let mut warnings = Vec::new();
        let past_end = match point {
            KafkaPoint::Time { unix_ms } => {
                let end = i64::try_from(range.last_ms).unwrap_or(i64::MAX);
                (unix_ms > end).then(|| unix_ms - end)
            }
            _ => None,
        };
        if let Some(by) = past_end {
            warnings.push(format!(
                "the last Kafka capture at or before {point} is at {} ({:.1} s earlier; capture stopped or its newest segment was not written yet): offsets are those of that capture",
                format_ms(i64::try_from(range.last_ms).unwrap_or(i64::MAX)),
                by as f64 / 1000.0
            ));
        }
        return Ok(OffsetsAt {
            point,
            segment: key.clone(),
            segment_first_ms: range.first_ms,
            segment_last_ms: range.last_ms,
            groups,
            warnings,
        });
    }
    Err(no_offsets())
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
    let catalog = Catalog::load(repo, source_id, StreamKind::KafkaOffsets).await?;
    let mut ranges: Vec<KafkaOffsetsRange> = Vec::new();
    for entry in &catalog.segments {
        ranges.push(serde_json::from_value(entry.range.clone()).map_err(|e| {
            KafkaRestoreError::BadRecord(format!(
                "segment {}: bad kafka-offsets range: {e}",
                entry.key
            ))
        })?);
    }
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

/// `--topic-map SOURCE=TARGET`: recorded topic names to the target cluster's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopicMap(pub BTreeMap<String, String>);

impl TopicMap {
    /// Parses `a=b` entries.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, KafkaRestoreError> {
        let mut map = BTreeMap::new();
        for entry in entries {
            let entry = entry.as_ref();
            match entry.split_once('=') {
                Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
                    map.insert(a.trim().to_owned(), b.trim().to_owned());
                }
                _ => return Err(KafkaRestoreError::BadTopicMap(entry.to_owned())),
            }
        }
        Ok(Self(map))
    }

    /// The target topic of a recorded one.
    pub fn target<'a>(&'a self, topic: &'a str) -> &'a str {
        self.0.get(topic).map_or(topic, String::as_str)
    }
}

/// How to reset.
#[derive(Debug, Clone)]
pub struct KafkaResetOptions {
    /// `host:port,host:port` of the cluster to reset.
    pub bootstrap: String,
    /// Group patterns (`*`, `?`); each must match at least one recorded group.
    pub groups: Vec<String>,
    /// Plan only.
    pub dry_run: bool,
    /// Wait up to this long for active groups to become inactive instead of refusing them.
    pub wait_inactive: Option<Duration>,
    pub topic_map: TopicMap,
    /// Longest wait for one Kafka request (an unreachable cluster fails after it).
    pub timeout: Duration,
    /// TLS and SASL (the policy's `kafka.security`); plaintext by default.
    pub security: KafkaSecurity,
}

impl KafkaResetOptions {
    /// Options with a 10 s request timeout, no waiting, no topic mapping.
    pub fn new(bootstrap: impl Into<String>, groups: Vec<String>, dry_run: bool) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            groups,
            dry_run,
            wait_inactive: None,
            topic_map: TopicMap::default(),
            timeout: Duration::from_secs(10),
            security: KafkaSecurity::default(),
        }
    }

    /// The plan-only reset a drill makes: the policy's cluster, groups and `kafka.security`;
    /// `None` when the policy has no `kafka:` section.
    pub fn drill_plan_of(
        policy: &mc_core::policy::Policy,
    ) -> Result<Option<Self>, mc_core::policy::PolicyError> {
        let (Some(kafka), Some(servers)) = (&policy.kafka, policy.kafka_bootstrap_servers()?)
        else {
            return Ok(None);
        };
        let mut options = Self::new(servers.join(","), kafka.groups.clone(), true);
        options.security = policy.kafka_security()?;
        Ok(Some(options))
    }
}

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

/// What a reset did.
#[derive(Debug, Clone, Serialize)]
pub struct KafkaResetReport {
    pub dry_run: bool,
    #[serde(flatten)]
    pub plan: KafkaResetPlan,
    /// Partitions committed (0 on a dry run).
    pub committed: usize,
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
    let selected: Vec<GroupOffsets> = at
        .groups
        .values()
        .filter(|g| matches_any(&options.groups, &g.group))
        .cloned()
        .collect();
    let unmatched: Vec<String> = options
        .groups
        .iter()
        .filter(|p| !at.groups.keys().any(|g| matches_any(&[(*p).clone()], g)))
        .cloned()
        .collect();
    if selected.is_empty() || !unmatched.is_empty() {
        return Err(KafkaRestoreError::UnknownGroups {
            patterns: if unmatched.is_empty() {
                options.groups.clone()
            } else {
                unmatched
            },
            point: point.to_string(),
            known: at.groups.keys().cloned().collect(),
        });
    }
    let client = connect(options).await?;
    let topic_map = options.topic_map.clone();
    let bootstrap = options.bootstrap.clone();
    let groups = blocking(move || {
        let topics: BTreeMap<String, BTreeSet<i32>> = client
            .topics()?
            .into_iter()
            .map(|(t, ids)| (t, ids.into_iter().collect()))
            .collect();
        let mut marks: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
        let mut plans = Vec::new();
        for g in selected {
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
                        bootstrap: bootstrap.clone(),
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
            plans.push(GroupPlan {
                group: g.group.clone(),
                captured_at: format_ms(i64::try_from(g.captured_ms).unwrap_or(i64::MAX)),
                cluster_time: g.cluster_time,
                state: description.as_ref().map(|d| d.state.clone()),
                active_members: description.map(|d| d.members).unwrap_or_default(),
                partitions,
            });
        }
        Ok(plans)
    })
    .await?;
    let mut warnings = at.warnings;
    for g in &groups {
        for p in &g.partitions {
            if let Some(why) = &p.clamped {
                warnings.push(format!(
                    "group {}: {}/{}: {why}",
                    g.group, p.topic, p.partition
                ));
            }
        }
    }
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

/// Commits a plan: refuses (or waits out) active groups, commits every group's targets, reads
/// them back.
pub async fn apply(
    plan: KafkaResetPlan,
    options: &KafkaResetOptions,
) -> Result<KafkaResetReport, KafkaRestoreError> {
    apply_recording(plan, options, Arc::default()).await
}

/// [`apply`], appending to `reset` the name of each group once its offsets are committed and
/// read back: after an error, `reset` says exactly which groups were reset (groups are
/// committed one after another, and none before every group is known to be inactive).
pub async fn apply_recording(
    plan: KafkaResetPlan,
    options: &KafkaResetOptions,
    reset: Arc<Mutex<Vec<String>>>,
) -> Result<KafkaResetReport, KafkaRestoreError> {
    let client = connect(options).await?;
    let names: Vec<String> = plan.groups.iter().map(|g| g.group.clone()).collect();
    let deadline = options
        .wait_inactive
        .map(|d| tokio::time::Instant::now() + d);
    loop {
        let c = client.clone();
        let names = names.clone();
        let active = blocking(move || {
            let mut active = Vec::new();
            for name in names {
                if let Some(d) = c.group(&name)? {
                    if !d.members.is_empty() {
                        active.push((name, d.members));
                    }
                }
            }
            Ok(active)
        })
        .await?;
        if active.is_empty() {
            break;
        }
        match deadline {
            Some(deadline) if tokio::time::Instant::now() < deadline => {
                tracing::info!(groups = ?active.iter().map(|(g, _)| g).collect::<Vec<_>>(), "waiting for active consumer groups to become inactive");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => return Err(KafkaRestoreError::ActiveGroups(active)),
        }
    }
    let groups = plan.groups.clone();
    let committed = blocking(move || {
        let mut n = 0;
        for g in &groups {
            let offsets: Vec<(String, i32, i64)> = g
                .partitions
                .iter()
                .map(|p| (p.topic.clone(), p.partition, p.target))
                .collect();
            client.commit(&g.group, &offsets)?;
            let wanted: Vec<(String, i32)> = offsets.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
            let back: BTreeMap<(String, i32), i64> = client
                .committed(&g.group, &wanted)?
                .into_iter()
                .map(|(t, c)| ((t, c.partition), c.offset))
                .collect();
            for (topic, partition, expected) in offsets {
                let found = back.get(&(topic.clone(), partition)).copied();
                if found != Some(expected) {
                    return Err(KafkaRestoreError::NotApplied {
                        group: g.group.clone(),
                        topic,
                        partition,
                        expected,
                        found,
                    });
                }
                n += 1;
            }
            reset
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(g.group.clone());
            tracing::info!(group = %g.group, partitions = g.partitions.len(), "consumer group offsets reset");
        }
        Ok(n)
    })
    .await?;
    Ok(KafkaResetReport {
        dry_run: false,
        plan,
        committed,
    })
}

/// Plans the reset of the groups `options.groups` selects to their offsets at `point` and,
/// unless `options.dry_run`, applies it. The entry point of `mc-restore kafka-offsets` and of
/// a combined restore (pass the MongoDB restore's point: `KafkaPoint::from(RestorePoint)`).
pub async fn reset_offsets(
    repo: &Repository,
    source_id: &str,
    point: KafkaPoint,
    options: &KafkaResetOptions,
) -> Result<KafkaResetReport, KafkaRestoreError> {
    let plan = plan(repo, source_id, point, options).await?;
    if options.dry_run {
        return Ok(KafkaResetReport {
            dry_run: true,
            plan,
            committed: 0,
        });
    }
    apply(plan, options).await
}

async fn connect(options: &KafkaResetOptions) -> Result<Arc<KafkaClient>, KafkaRestoreError> {
    let bootstrap = options.bootstrap.clone();
    let timeout = options.timeout;
    let security = options.security.clone();
    blocking(move || {
        Ok(Arc::new(KafkaClient::connect_secured(
            &bootstrap, &security, timeout,
        )?))
    })
    .await
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, KafkaRestoreError> + Send + 'static,
) -> Result<R, KafkaRestoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KafkaRestoreError::Task(e.to_string()))?
}

/// The plan as a table: group, topic, partition, current committed, target, delta.
pub fn format_table(plan: &KafkaResetPlan) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "GROUP".into(),
        "TOPIC".into(),
        "PARTITION".into(),
        "CURRENT".into(),
        "TARGET".into(),
        "DELTA".into(),
    ]];
    for g in &plan.groups {
        for p in &g.partitions {
            rows.push([
                g.group.clone(),
                p.topic.clone(),
                p.partition.to_string(),
                p.current.map_or("-".into(), |c| c.to_string()),
                format!("{}{}", p.target, if p.clamped.is_some() { "*" } else { "" }),
                p.delta.map_or("-".into(), |d| format!("{d:+}")),
            ]);
        }
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i >= 2 {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
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

    #[test]
    fn clamps_into_watermarks() {
        assert_eq!(clamp(5, 0, 10), (5, None));
        assert_eq!(clamp(2, 4, 10).0, 4);
        assert_eq!(clamp(12, 0, 10).0, 10);
        assert_eq!(clamp(12, -1, -1), (12, None));
    }

    #[test]
    fn topic_maps() {
        let m = TopicMap::parse(&["a=b", " c = d "]).unwrap();
        assert_eq!(
            (m.target("a"), m.target("c"), m.target("x")),
            ("b", "d", "x")
        );
        assert!(TopicMap::parse(&["a"]).is_err());
        assert!(TopicMap::parse(&["=b"]).is_err());
    }
}
