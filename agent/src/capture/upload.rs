//! The sink: seals batches into oplog segments and stores them, several in flight, made durable
//! strictly in order. The timeline (and the RPO metric) advance only when a segment is stored.
//!
//! Memory: the records of batches not yet sealed are bounded by a byte budget ([`Budget`]):
//! the capture loop takes a batch's share before handing it over and waits (reading nothing
//! more from the oplog) while the budget is spent. A batch's records are freed as soon as it is
//! sealed; what waits for upload is the sealed object, in memory for batches up to
//! `spool_over` (compressed) and in a spool file above it. Retries upload that same object:
//! a batch is sealed once and its records are never copied.
//!
//! Sealing and storing go through [`Repository::seal`] and [`Repository::store_sealed`]; the
//! store's layers retry (the agent opens it to retry forever, each attempt under a deadline), so
//! this sink only waits. Bytes handed over and not yet stored are `mc_upload_waiting_bytes`.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use mc_core::catalog::names::oplog_key;
use mc_core::catalog::{Records, RepoError, Repository, Spool};
use mc_core::format::{OplogRange, OplogTs, SegmentSpec, StreamKind, WriterInfo};
use mc_core::storage::RetryPolicy;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::batcher::Batch;
use super::spool::SpoolFull;
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

impl Queued {
    /// Wall time (Unix ms) of the batch's first entry.
    pub fn first_wall_ms(&self) -> i64 {
        self.batch.entries.first().map_or(0, |e| e.wall_ms())
    }

    /// Bytes of the batch's records.
    pub fn bytes(&self) -> u64 {
        self.batch.bytes()
    }
}

/// A batch's records, sealed straight from the oplog replies they are slices of.
impl Records for Batch {
    fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.iter().map(|e| e.raw.as_ref())
    }
    fn bytes(&self) -> u64 {
        Batch::bytes(self)
    }
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
        metrics.capture.upload_stored();
        if summary.count > 0 {
            metrics.capture.set_durable(summary.last, summary.last_wall);
        }
        metrics.capture.ops_captured.inc_by(summary.count);
        metrics.capture.bytes_sealed.inc_by(summary.bytes);
        metrics.capture.bytes_uploaded.inc_by(size);
        metrics.capture.segments_uploaded.inc();
        stored += 1;
    }
    stored
}

fn tokio_stream_of<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Seals one batch (once), frees its records and its share of the budget, then stores the
/// sealed object until it is durable: the entries exist only here (and in the oplog), so giving
/// up would lose them. The store's layers retry each put (forever in the agent); should a put
/// still fail (a store opened with bounded retries), it is tried again after the same backoff.
/// Returns the batch's summary and the stored size.
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
    let mut backoff = RetryPolicy::forever().backoff();
    let mut batch = batch;
    let sealed = loop {
        let spec = match spec_of(s, &batch) {
            Ok(spec) => spec,
            Err(e) => panic!("an oplog range always encodes: {e}"),
        };
        let spool = Spool {
            dir: s.spool_dir.clone(),
            over: s.spool_over,
        };
        match repo.seal(spec, batch, Some(spool)).await {
            Ok(done) => break done,
            Err((back, e)) => {
                batch = back;
                metrics.capture.upload_errors.inc();
                let wait = backoff.next_wait();
                match SpoolFull::of(&s.spool_dir, &e) {
                    // Nothing is lost: the records stay here, the rest in the oplog.
                    Some(full) => tracing::error!(
                        error = %full,
                        first = %summary.first,
                        retry_in = ?wait,
                        "cannot seal an oplog segment into the spool; keeping it in memory and retrying (capture waits, the oplog holds the rest)"
                    ),
                    None => {
                        tracing::error!(error = %e, first = %summary.first, retry_in = ?wait, "sealing oplog segment failed; retrying")
                    }
                }
                tokio::time::sleep(wait).await;
            }
        }
    };
    drop(permit);
    backoff.reset();
    loop {
        match repo.store_sealed(&sealed).await {
            Ok(entry) => {
                tracing::debug!(key = %entry.key, ops = summary.count, bytes = entry.size, "segment durable");
                return (summary, sealed.info().size);
            }
            Err(RepoError::Storage(e)) if e.is_already_exists() => {
                // Another writer (a deposed or racing capturer), or an earlier attempt of ours
                // whose answer was lost, stored the same range first. Majority-committed history
                // is the same for both, so it is durable.
                tracing::warn!(first = %summary.first, last = %summary.last, "segment already stored; keeping the stored one");
                return (summary, 0);
            }
            Err(e) => {
                metrics.capture.upload_errors.inc();
                let wait = backoff.next_wait();
                tracing::error!(error = %e, first = %summary.first, retry_in = ?wait, "storing oplog segment failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The segment a batch becomes: its key, range and writer.
fn spec_of(s: &UploadSettings, batch: &Batch) -> Result<SegmentSpec, serde_json::Error> {
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
        serde_json::to_value(range)?,
    );
    spec.writer = s.writer.clone();
    spec.level = s.zstd_level;
    Ok(spec)
}
