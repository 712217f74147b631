//! The sink: seals each finished batch into a `kafka-offsets` segment
//! (`sources/<source>/kafka-offsets/<first-ms>_<last-ms>.seg`, same encrypted format as every
//! segment) and stores it with put-if-absent, retrying with backoff until it is durable.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

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

/// Stores batches in the order they arrive until the channel closes.
pub async fn store_batches(
    repo: Repository,
    settings: SinkSettings,
    mut rx: mpsc::Receiver<OffsetBatch>,
    metrics: Arc<Metrics>,
) {
    while let Some(batch) = rx.recv().await {
        let mut backoff = Duration::from_millis(200);
        let mut attempts = 0u32;
        loop {
            let stored = match store(&repo, &settings, &batch).await {
                // A retry after a write that did land: the object is ours.
                Err(e) if e.is_already_exists() => Ok(String::new()),
                other => other,
            };
            match stored {
                Ok(key) => {
                    tracing::debug!(key = %key, records = batch.records.len(), "kafka offsets durable");
                    metrics.kafka.segments_uploaded.fetch_add(1, Relaxed);
                    metrics
                        .kafka
                        .durable_ms
                        .fetch_max(i64::try_from(batch.last_ms).unwrap_or(i64::MAX), Relaxed);
                    break;
                }
                Err(e) => {
                    attempts += 1;
                    metrics.kafka.upload_errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, attempts, "storing Kafka offsets failed; retrying");
                    // Once the channel is closed (shutdown) a few attempts are enough.
                    if rx.is_closed() && attempts >= 5 {
                        tracing::error!(
                            first_ms = batch.first_ms,
                            last_ms = batch.last_ms,
                            "giving up on a Kafka offsets segment at shutdown"
                        );
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
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
