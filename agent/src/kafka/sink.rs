//! The sink: seals each finished batch into a `kafka-offsets` segment
//! (`sources/<source>/kafka-offsets/<first-ms>_<last-ms>.seg`, same encrypted format as every
//! segment) and stores it with put-if-absent. The store's layers retry (forever in the agent,
//! each attempt under a deadline); at shutdown a segment gets [`SHUTDOWN_WAIT`] at most, then is
//! given up (the next checkpoint after a restart records every group again).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use mc_core::storage::RetryPolicy;

use mc_core::catalog::kafka::KafkaOffsetsRange;
use mc_core::catalog::names::kafka_offsets_key;
use mc_core::catalog::Repository;
use mc_core::format::{SegmentSpec, StreamKind, WriterInfo};
use tokio::sync::mpsc;

use super::checkpoint::OffsetBatch;
use crate::metrics::Metrics;

/// Where and how segments are written.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub source: String,
    pub writer: WriterInfo,
    pub zstd_level: i32,
    /// The capture interval, ms, recorded in each segment's range.
    pub interval_ms: u64,
}

/// How long a segment may wait for the store once capture is stopping.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Stores batches in the order they arrive until the channel closes.
pub async fn store_batches(
    repo: Repository,
    settings: SinkSettings,
    mut rx: mpsc::Receiver<OffsetBatch>,
    metrics: Arc<Metrics>,
) {
    while let Some(batch) = rx.recv().await {
        let mut backoff = RetryPolicy::forever().backoff();
        let mut attempts = 0u32;
        loop {
            // Once the channel is closed (shutdown) the store gets a bounded wait.
            let stored = if rx.is_closed() {
                tokio::time::timeout(SHUTDOWN_WAIT, store(&repo, &settings, &batch))
                    .await
                    .ok()
            } else {
                Some(store(&repo, &settings, &batch).await)
            };
            let stored = match stored {
                // A retry after a write that did land: the object is ours.
                Some(Err(e)) if e.is_already_exists() => Some(Ok(String::new())),
                other => other,
            };
            match stored {
                Some(Ok(key)) => {
                    tracing::debug!(key = %key, records = batch.records.len(), "kafka offsets durable");
                    metrics.kafka.segments_uploaded.inc();
                    metrics
                        .kafka
                        .durable_ms
                        .fetch_max(i64::try_from(batch.last_ms).unwrap_or(i64::MAX), Relaxed);
                    break;
                }
                None => {
                    metrics.kafka.upload_errors.inc();
                    tracing::error!(
                        first_ms = batch.first_ms,
                        last_ms = batch.last_ms,
                        wait = ?SHUTDOWN_WAIT,
                        "giving up on a Kafka offsets segment at shutdown: the store did not answer"
                    );
                    break;
                }
                Some(Err(e)) => {
                    attempts += 1;
                    metrics.kafka.upload_errors.inc();
                    if rx.is_closed() && attempts >= 5 {
                        tracing::error!(
                            error = %e,
                            first_ms = batch.first_ms,
                            last_ms = batch.last_ms,
                            "giving up on a Kafka offsets segment at shutdown"
                        );
                        break;
                    }
                    // Only a store opened with bounded retries gets here: the agent's retries
                    // forever inside the store.
                    let wait = backoff.next_wait();
                    tracing::warn!(error = %e, attempts, retry_in = ?wait, "storing Kafka offsets failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Why a segment could not be stored.
#[derive(Debug, thiserror::Error)]
enum StoreError {
    #[error(transparent)]
    Repo(#[from] mc_core::catalog::RepoError),
    #[error("encoding an offset record: {0}")]
    Encode(#[from] serde_json::Error),
}

impl StoreError {
    fn is_already_exists(&self) -> bool {
        matches!(self, StoreError::Repo(mc_core::catalog::RepoError::Storage(s)) if s.is_already_exists())
    }
}

async fn store(
    repo: &Repository,
    settings: &SinkSettings,
    batch: &OffsetBatch,
) -> Result<String, StoreError> {
    let key = kafka_offsets_key(&settings.source, batch.first_ms, batch.last_ms);
    let range = KafkaOffsetsRange {
        first_ms: batch.first_ms,
        last_ms: batch.last_ms,
        count: batch.records.len() as u64,
        interval_ms: settings.interval_ms,
    };
    let records = batch
        .records
        .iter()
        .map(serde_json::to_vec)
        .collect::<Result<Vec<_>, _>>()?;
    let mut spec = SegmentSpec::new(
        StreamKind::KafkaOffsets,
        key.clone(),
        settings.source.clone(),
        serde_json::to_value(range)?,
    );
    spec.writer = settings.writer.clone();
    spec.level = settings.zstd_level;
    repo.put_segment(spec, records).await?;
    Ok(key)
}
