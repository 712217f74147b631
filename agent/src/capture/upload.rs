//! The sink: seals batches into oplog segments and stores them, several in flight, made durable
//! strictly in order. The timeline (and the RPO metric) advance only when a segment is stored.
//!
//! Memory: the records of batches not yet sealed are bounded by a byte budget ([`Budget`]):
//! the capture loop takes a batch's share before handing it over and waits (reading nothing
//! more from the oplog) while the budget is spent. A batch's records are freed as soon as it is
//! sealed; what waits for upload is the sealed object, in memory for batches up to
//! `spool_over` (compressed) and in a spool file above it. Retries upload that same object:
//! a batch is sealed once and its records are never copied.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mc_core::catalog::names::oplog_key;
use mc_core::catalog::{RepoError, Repository};
use mc_core::format::{
    seal_to_file, seal_to_vec, OplogRange, OplogTs, SealedSegment, SegmentSpec, SpoolFile,
    StreamKind, WriterInfo,
};
use mc_core::storage::PutSource;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::batcher::Batch;
use crate::metrics::Metrics;

/// How segments are written.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    pub source: String,
    pub writer: WriterInfo,
    pub zstd_level: i32,
    /// Segments sealed and uploading at once, at most (the byte budget may allow fewer).
    pub concurrency: usize,
    /// Segments larger than this are sealed into a spool file rather than memory.
    pub spool_over: u64,
    pub spool_dir: PathBuf,
}

/// Bytes of unsealed records the sink may hold, at least one whole segment (see [`Budget`]).
pub const IN_FLIGHT_BYTES: u64 = 16 << 20;

/// The byte budget of records handed to the sink and not yet sealed: `max(IN_FLIGHT_BYTES,
/// max_segment_bytes)`, so one segment of any size fits and small segments still seal several
/// at a time (up to `concurrency`). A batch larger than the budget takes all of it.
#[derive(Debug, Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    total: u32,
}

impl Budget {
    pub fn new(max_segment_bytes: u64) -> Self {
        let total = IN_FLIGHT_BYTES
            .max(max_segment_bytes)
            .min(u64::from(u32::MAX)) as u32;
        Self {
            sem: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until the batch's bytes fit in the budget, then returns it with its share.
    pub async fn admit(&self, batch: Batch) -> Queued {
        let want = batch.bytes().clamp(1, u64::from(self.total)) as u32;
        let permit = self
            .sem
            .clone()
            .acquire_many_owned(want)
            .await
            .expect("the budget's semaphore is never closed");
        Queued { batch, permit }
    }

    /// Bytes of the budget not taken (for tests).
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }
}

/// A batch handed to the sink, holding its share of the [`Budget`] until it is sealed.
#[derive(Debug)]
pub struct Queued {
    batch: Batch,
    permit: OwnedSemaphorePermit,
}

/// What is left of a batch once sealed: enough to report it durable.
struct Summary {
    first: OplogTs,
    last: OplogTs,
    last_wall: i64,
    count: u64,
    bytes: u64,
}

/// A sealed segment waiting to be stored: its bytes, or its spool file (removed on drop).
struct Sealed {
    source: PutSource,
    _spool: Option<SpoolFile>,
}

/// Consumes batches until the channel closes; returns the number of segments stored.
pub async fn upload_batches(
    repo: Repository,
    settings: UploadSettings,
    batches: mpsc::Receiver<Queued>,
    metrics: Arc<Metrics>,
) -> u64 {
    let stream = tokio_stream_of(batches);
    let settings = Arc::new(settings);
    let mut done = stream
        .map(|queued| {
            let repo = repo.clone();
            let settings = settings.clone();
            let metrics = metrics.clone();
            async move { seal_and_store(&repo, &settings, queued, &metrics).await }
        })
        .buffered(settings.concurrency.max(1));
    let mut stored = 0;
    // `buffered` yields in submission order, so durability is reported in timeline order.
    while let Some((summary, size)) = done.next().await {
        if summary.count > 0 {
            metrics.set_durable(summary.last, summary.last_wall);
        }
        metrics
            .ops_captured
            .fetch_add(summary.count, std::sync::atomic::Ordering::Relaxed);
        metrics
            .bytes_sealed
            .fetch_add(summary.bytes, std::sync::atomic::Ordering::Relaxed);
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

/// Seals one batch (once), frees its records and its share of the budget, then stores the
/// sealed object, retrying until it is durable: the entries exist only here (and in the oplog),
/// so giving up would lose them. Returns the batch's summary and the stored size.
async fn seal_and_store(
    repo: &Repository,
    s: &Arc<UploadSettings>,
    queued: Queued,
    metrics: &Metrics,
) -> (Summary, u64) {
    let Queued { batch, permit } = queued;
    let summary = Summary {
        first: batch.first(),
        last: batch.last(),
        last_wall: batch.entries.last().map_or(0, |e| e.wall_ms()),
        count: batch.entries.len() as u64,
        bytes: batch.bytes(),
    };
    let mut delay = Duration::from_millis(200);
    let mut batch = batch;
    let (sealed, info) = loop {
        match seal(repo, s, batch).await {
            Ok(done) => break done,
            Err(failed) => {
                let (back, e) = *failed;
                batch = back;
                metrics
                    .upload_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, first = %summary.first, retry_in = ?delay, "sealing oplog segment failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    };
    drop(permit);
    let key = info.header.name.clone();
    let mut delay = Duration::from_millis(200);
    loop {
        match repo
            .store()
            .put_if_absent(&key, sealed.source.clone())
            .await
        {
            Ok(()) => {
                tracing::debug!(%key, ops = summary.count, bytes = info.size, "segment durable");
                return (summary, info.size);
            }
            Err(e) if e.is_already_exists() => {
                // Another writer (a deposed or racing capturer), or an earlier attempt of ours
                // whose answer was lost, stored the same range first. Majority-committed history
                // is the same for both, so it is durable.
                tracing::warn!(first = %summary.first, last = %summary.last, "segment already stored; keeping the stored one");
                return (summary, 0);
            }
            Err(e) => {
                metrics
                    .upload_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, first = %summary.first, retry_in = ?delay, "storing oplog segment failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Seals a batch on a blocking thread: into memory up to `spool_over` bytes, else into a spool
/// file. The records are dropped once sealed; on failure the batch comes back for a retry.
async fn seal(
    repo: &Repository,
    s: &Arc<UploadSettings>,
    batch: Batch,
) -> Result<(Sealed, SealedSegment), Box<(Batch, RepoError)>> {
    let (first, last) = (batch.first(), batch.last());
    let key = oplog_key(&s.source, first, last);
    let range = OplogRange {
        first,
        last,
        prev: batch.prev,
        count: batch.entries.len() as u64,
    };
    let range = match serde_json::to_value(range) {
        Ok(r) => r,
        Err(e) => return Err(Box::new((batch, RepoError::Task(e.to_string())))),
    };
    let mut spec = SegmentSpec::new(StreamKind::Oplog, key, &s.source, range);
    spec.writer = s.writer.clone();
    spec.level = s.zstd_level;
    let keyring = repo.keyring().clone();
    let settings = s.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let records = batch.entries.iter().map(|e| e.raw.as_ref());
        let result = if batch.bytes() > settings.spool_over {
            seal_to_file(spec, &keyring, records, &settings.spool_dir).map(|(file, info)| {
                let source = PutSource::File(file.path().to_owned());
                let sealed = Sealed {
                    source,
                    _spool: Some(file),
                };
                (sealed, info)
            })
        } else {
            seal_to_vec(spec, &keyring, records).map(|(bytes, info)| {
                let sealed = Sealed {
                    source: PutSource::Bytes(bytes.into()),
                    _spool: None,
                };
                (sealed, info)
            })
        };
        match result {
            Ok(done) => Ok(done),
            Err(e) => Err(Box::new((batch, RepoError::Format(e)))),
        }
    })
    .await;
    match joined {
        Ok(result) => result,
        // A panic while sealing is a bug, not a condition a retry would clear.
        Err(e) => panic!("sealing task failed: {e}"),
    }
}
