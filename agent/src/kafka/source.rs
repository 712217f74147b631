//! The source: one observation of the cluster per capture cycle. Lists the consumer groups,
//! keeps those the policy's patterns match, reads each group's committed offsets and the
//! watermarks of every partition they name. librdkafka blocks, so the work runs on a blocking
//! thread; the MongoDB majority commit point is read at the start of the same cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use mc_core::catalog::kafka::{is_internal_group, matches_any, PartitionOffsets};
use mc_core::format::OplogTs;
use mc_core::kafka::{KafkaClient, KafkaError, KafkaSecurity};

use crate::capture::oplog::OplogSource;

/// What one capture cycle saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Wall-clock time of the cycle, Unix ms.
    pub time_ms: u64,
    /// MongoDB's majority commit point read at the start of the cycle, if available.
    pub cluster_time: Option<OplogTs>,
    /// Each matched group's committed offsets (sorted by topic, partition), by group.
    pub groups: BTreeMap<String, Vec<PartitionOffsets>>,
}

impl Observation {
    /// Each group's lag: the sum over its partitions of high watermark minus committed offset
    /// (partitions without a known watermark left out).
    pub fn lag_by_group(&self) -> BTreeMap<String, i64> {
        self.groups
            .iter()
            .map(|(g, parts)| {
                let lag = parts
                    .iter()
                    .filter(|p| p.high >= 0)
                    .map(|p| (p.high - p.committed).max(0))
                    .sum();
                (g.clone(), lag)
            })
            .collect()
    }
}

/// Reads observations from one cluster; reconnects after a failure.
#[derive(Debug)]
pub struct OffsetSource {
    bootstrap: String,
    security: KafkaSecurity,
    timeout: Duration,
    client: Option<Arc<KafkaClient>>,
}

impl OffsetSource {
    /// A source for the brokers `bootstrap` (`host:port,…`) reached with `security`; each
    /// Kafka request waits at most `timeout`. Connects lazily.
    pub fn new(bootstrap: impl Into<String>, security: KafkaSecurity, timeout: Duration) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            security,
            timeout,
            client: None,
        }
    }

    /// One observation: the groups `patterns` match (internal groups, whose names start with
    /// `_`, only when a pattern itself starts with `_`).
    pub async fn observe(
        &mut self,
        patterns: &[String],
        mongo: Option<&OplogSource>,
    ) -> Result<Observation, KafkaError> {
        let time_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let cluster_time = match mongo {
            Some(source) => {
                match tokio::time::timeout(Duration::from_secs(2), source.majority_point()).await {
                    Ok(Ok(ts)) => Some(ts),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "no MongoDB cluster time for this Kafka cycle");
                        None
                    }
                    Err(_) => None,
                }
            }
            None => None,
        };
        // The client moves into the blocking task and comes back only after a good cycle, so a
        // failed client is dropped (and librdkafka torn down) on the blocking thread.
        let client = self.client.take();
        let bootstrap = self.bootstrap.clone();
        let timeout = self.timeout;
        let security = self.security.clone();
        let patterns = patterns.to_vec();
        let joined = tokio::task::spawn_blocking(move || {
            let client = match client {
                Some(c) => c,
                None => Arc::new(KafkaClient::connect_secured(
                    &bootstrap, &security, timeout,
                )?),
            };
            let groups = read_groups(&client, &patterns)?;
            Ok::<_, KafkaError>((client, groups))
        })
        .await;
        match joined {
            Ok(Ok((client, groups))) => {
                self.client = Some(client);
                Ok(Observation {
                    time_ms,
                    cluster_time,
                    groups,
                })
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(KafkaError::Operation {
                bootstrap: self.bootstrap.clone(),
                operation: "capture cycle".into(),
                detail: format!("the blocking task failed: {e}"),
            }),
        }
    }
}

fn read_groups(
    client: &KafkaClient,
    patterns: &[String],
) -> Result<BTreeMap<String, Vec<PartitionOffsets>>, KafkaError> {
    let wants_internal = patterns.iter().any(|p| p.starts_with('_'));
    let t0 = std::time::Instant::now();
    let names: Vec<String> = client
        .groups()?
        .into_iter()
        .map(|g| g.name)
        .filter(|g| (wants_internal || !is_internal_group(g)) && matches_any(patterns, g))
        .collect();
    let listed = t0.elapsed();
    // One batched request per kind (docs/performance.md, "Kafka capture at scale").
    let committed: BTreeMap<String, Vec<(String, i32, i64)>> = client
        .committed_of_groups(&names)?
        .into_iter()
        .map(|(group, offsets)| {
            let offsets = offsets
                .into_iter()
                .map(|(topic, c)| (topic, c.partition, c.offset))
                .collect();
            (group, offsets)
        })
        .collect();
    let wanted: Vec<(String, i32)> = committed
        .values()
        .flatten()
        .map(|(t, p, _)| (t.clone(), *p))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let fetched = t0.elapsed();
    let marks = client.watermarks_of(&wanted)?;
    tracing::debug!(
        groups = names.len(),
        partitions = wanted.len(),
        list_ms = listed.as_millis() as u64,
        offsets_ms = (fetched - listed).as_millis() as u64,
        watermarks_ms = (t0.elapsed() - fetched).as_millis() as u64,
        "Kafka capture cycle read"
    );
    Ok(committed
        .into_iter()
        .map(|(group, offsets)| {
            let parts = offsets
                .into_iter()
                .map(|(topic, partition, committed)| {
                    let (low, high) = marks
                        .get(&(topic.clone(), partition))
                        .copied()
                        .unwrap_or((-1, -1));
                    PartitionOffsets {
                        topic,
                        partition,
                        committed,
                        low,
                        high,
                    }
                })
                .collect();
            (group, parts)
        })
        .collect())
}
