//! Committing a plan: refusing groups with active members (naming them) unless told to wait
//! for them to leave, committing the targets as the group (explicit offsets, from outside the
//! group), reading them back, and reporting per partition ([`KafkaResetReport`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mc_core::kafka::KafkaClient;
use serde::Serialize;

use super::cluster::{blocking, connect};
use super::{GroupPlan, KafkaResetOptions, KafkaResetPlan, KafkaRestoreError};

/// What a reset did.
#[derive(Debug, Clone, Serialize)]
pub struct KafkaResetReport {
    pub dry_run: bool,
    #[serde(flatten)]
    pub plan: KafkaResetPlan,
    /// Partitions committed (0 on a dry run).
    pub committed: usize,
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
    wait_until_inactive(&client, names, deadline).await?;
    let groups = plan.groups.clone();
    let committed = blocking(move || commit_groups(&client, &groups, &reset)).await?;
    Ok(KafkaResetReport {
        dry_run: false,
        plan,
        committed,
    })
}

/// Returns once none of the groups `names` has members; with no `deadline`, or past it, fails
/// naming the active groups and their members instead.
async fn wait_until_inactive(
    client: &Arc<KafkaClient>,
    names: Vec<String>,
    deadline: Option<tokio::time::Instant>,
) -> Result<(), KafkaRestoreError> {
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
            return Ok(());
        }
        match deadline {
            Some(deadline) if tokio::time::Instant::now() < deadline => {
                tracing::info!(groups = ?active.iter().map(|(g, _)| g).collect::<Vec<_>>(), "waiting for active consumer groups to become inactive");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => return Err(KafkaRestoreError::ActiveGroups(active)),
        }
    }
}

/// Commits every group's targets and reads them back, one group after another, adding each
/// group to `reset` once it is; returns the number of partitions committed (blocking calls).
fn commit_groups(
    client: &KafkaClient,
    groups: &[GroupPlan],
    reset: &Mutex<Vec<String>>,
) -> Result<usize, KafkaRestoreError> {
    let mut n = 0;
    for g in groups {
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
}
