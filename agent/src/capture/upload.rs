//! The sink: seals batches into oplog segments and stores them, several in flight, made durable
//! strictly in order. The timeline (and the RPO metric) advance only when a segment is stored.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mc_core::catalog::names::oplog_key;
use mc_core::catalog::{RepoError, Repository};
use mc_core::format::{OplogRange, SegmentSpec, StreamKind, WriterInfo};
use tokio::sync::mpsc;

use super::batcher::Batch;
use crate::metrics::Metrics;

/// How segments are written.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    pub source: String,
    pub writer: WriterInfo,
    pub zstd_level: i32,
    /// Batches sealed and uploading at once (memory: this many batches).
    pub concurrency: usize,
    /// Segments larger than this are sealed into a spool file rather than memory.
    pub spool_over: u64,
    pub spool_dir: PathBuf,
}

/// Consumes batches until the channel closes; returns the number of segments stored.
pub async fn upload_batches(
    repo: Repository,
    settings: UploadSettings,
    batches: mpsc::Receiver<Batch>,
    metrics: Arc<Metrics>,
) -> u64 {
    let stream = tokio_stream_of(batches);
    let settings = Arc::new(settings);
    let mut done = stream
        .map(|batch| {
            let repo = repo.clone();
            let settings = settings.clone();
            let metrics = metrics.clone();
            async move { store_with_retry(&repo, &settings, batch, &metrics).await }
        })
        .buffered(settings.concurrency.max(1));
    let mut stored = 0;
    // `buffered` yields in submission order, so durability is reported in timeline order.
    while let Some((batch, size)) = done.next().await {
        let last = batch.entries.last().map(|e| (e.ts, e.wall_ms));
        if let Some((ts, wall)) = last {
            metrics.set_durable(ts, wall);
        }
        metrics.ops_captured.fetch_add(
            batch.entries.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        metrics
            .bytes_sealed
            .fetch_add(batch.bytes(), std::sync::atomic::Ordering::Relaxed);
        metrics
            .bytes_uploaded
            .fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        metrics
            .segments_uploaded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stored += 1;
    }
    stored
}

fn tokio_stream_of<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Seals and stores one batch, retrying until it is durable: the entries exist only in memory
/// (and in the oplog), so giving up would lose them. Returns the batch and the stored size.
async fn store_with_retry(
    repo: &Repository,
    s: &UploadSettings,
    batch: Batch,
    metrics: &Metrics,
) -> (Batch, u64) {
    let mut delay = Duration::from_millis(200);
    loop {
        match store(repo, s, &batch).await {
            Ok(size) => return (batch, size),
            Err(RepoError::Storage(e)) if e.is_already_exists() => {
                // Another writer (a deposed or racing capturer) stored the same range first.
                // Majority-committed history is the same for both, so it is durable.
                tracing::warn!(first = %batch.first(), last = %batch.last(), "segment already stored by another writer; keeping theirs");
                return (batch, 0);
            }
            Err(e) => {
                metrics
                    .upload_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, first = %batch.first(), retry_in = ?delay, "storing oplog segment failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn store(repo: &Repository, s: &UploadSettings, batch: &Batch) -> Result<u64, RepoError> {
    let (first, last) = (batch.first(), batch.last());
    let key = oplog_key(&s.source, first, last);
    let range = OplogRange {
        first,
        last,
        prev: batch.prev,
        count: batch.entries.len() as u64,
    };
    let mut spec = SegmentSpec::new(
        StreamKind::Oplog,
        key,
        &s.source,
        serde_json::to_value(range).map_err(|e| RepoError::Task(e.to_string()))?,
    );
    spec.writer = s.writer.clone();
    spec.level = s.zstd_level;
    let records: Vec<Vec<u8>> = batch.entries.iter().map(|e| e.raw.clone()).collect();
    let entry = if batch.bytes() > s.spool_over {
        repo.put_segment_spooled(spec, records, &s.spool_dir)
            .await?
    } else {
        repo.put_segment(spec, records).await?
    };
    tracing::debug!(key = %entry.key, ops = batch.entries.len(), bytes = entry.size, "segment durable");
    Ok(entry.size)
}
