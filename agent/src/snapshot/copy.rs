//! Copying one range of a collection (or the whole collection) into snapshot parts.
//!
//! Three stages run at once, joined by short channels, so memory stays at a few server replies
//! and two parts per sealer however large the collection:
//!
//! 1. **read**: a raw batch cursor (read concern `majority`) on this task; each server reply is
//!    handed on whole, its documents never copied one by one;
//! 2. **seal**: one or more blocking threads, each taking the next reply and writing its
//!    documents straight into its own part's segment writer (zstd, then AES-256-GCM STREAM
//!    frames), finishing the part once it holds the part size. zstd is most of the snapshot's
//!    CPU, so several sealers per cursor let one cursor use several cores; a sealer compresses
//!    a reply only while it holds one of the snapshot's `parallelism` permits
//!    ([`PartSink::compressing`]);
//! 3. **store**: this task stores each finished part (put-if-absent) while others are sealed.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mc_core::catalog::names::snapshot_data_key;
use mc_core::catalog::Repository;
use mc_core::format::{SealedSegment, SegmentSpec, SegmentWriter, StreamKind};
use mongodb::bson::{doc, Bson, RawDocumentBuf};
use mongodb::options::{Hint, ReadConcern};
use mongodb::raw_batch_cursor::RawBatch;
use tokio::sync::mpsc;

use super::ranges::IdRange;
use super::{src, SnapshotSettings};
use crate::capture::CaptureError;

/// Where the parts of one collection go.
#[derive(Clone)]
pub struct PartSink {
    pub repo: Repository,
    pub settings: Arc<SnapshotSettings>,
    pub snapshot: Arc<str>,
    pub ns: Arc<str>,
    /// Raw BSON bytes per part (the last part of a range holds less).
    pub part_bytes: u64,
    /// The collection's next part number, shared by its ranges.
    pub next_part: Arc<AtomicU32>,
    /// The snapshot's permits to compress (`parallelism`), shared by every sealer.
    pub compressing: Arc<tokio::sync::Semaphore>,
}

/// What one range held.
#[derive(Debug, Default)]
pub struct RangeCopied {
    pub documents: u64,
    pub bytes: u64,
    /// Part keys, in the range's order.
    pub parts: Vec<String>,
    /// Time the reader waited for the server's replies, and for the sealer to take one.
    pub server: Duration,
    pub backpressure: Duration,
    /// Time the sealer was busy, and the time storing parts took.
    pub sealing: Duration,
    pub storing: Duration,
}

/// Replies waiting for a sealer, shared by the range's sealers (one takes each reply).
type Replies = Arc<Mutex<mpsc::Receiver<RawBatch>>>;

/// Copies `range` of `coll` into parts, its replies sealed by `sealers` threads at once, each
/// into parts of its own (one sealer keeps the documents in the cursor's order: capped
/// collections). With `at_least_one_part`, an empty range still stores one (empty) part: a
/// collection's first range does, so every copied collection has a part.
pub async fn copy_range(
    coll: &mongodb::Collection<RawDocumentBuf>,
    range: &IdRange,
    batch_size: Option<u32>,
    sink: PartSink,
    sealers: usize,
    at_least_one_part: bool,
) -> Result<RangeCopied, CaptureError> {
    let mut find = coll.find(doc! {}).read_concern(ReadConcern::majority());
    if let Some(n) = batch_size {
        find = find.batch_size(n);
    }
    let mut finds = Vec::with_capacity(2);
    if let IdRange::Between(bounds) = range {
        let (min, max) = (&bounds.min, &bounds.max);
        find = find.hint(Hint::Keys(doc! {"_id": 1}));
        if let Some(min) = min {
            find = find.min(doc! {"_id": min.clone()});
        }
        if let Some(max) = max {
            find = find.max(doc! {"_id": max.clone()});
        }
        if min.is_some() && max.is_none() {
            // Without `max` the scan ends at the index key MaxKey, exclusive: a document whose
            // `_id` is MaxKey is read apart (equality matches exactly that one).
            finds.push(
                coll.find(doc! {"_id": Bson::MaxKey})
                    .read_concern(ReadConcern::majority()),
            );
        }
    }
    finds.insert(0, find);
    let sealers = sealers.max(1);
    let (replies, replies_rx) = mpsc::channel::<RawBatch>(sealers);
    let replies_rx: Replies = Arc::new(Mutex::new(replies_rx));
    let (parts_tx, mut parts) = mpsc::channel::<(Vec<u8>, SealedSegment)>(1);
    // Set once the cursor is exhausted: sealers that find the channel closed without it stop
    // with an error instead of storing what they hold as if the range were complete.
    let complete = Arc::new(AtomicBool::new(false));
    let sealing: Vec<_> = (0..sealers)
        .map(|_| {
            let (rx, tx, sink, complete) = (
                replies_rx.clone(),
                parts_tx.clone(),
                sink.clone(),
                complete.clone(),
            );
            tokio::task::spawn_blocking(move || seal(&rx, &tx, &sink, &complete))
        })
        .collect();
    drop((replies_rx, parts_tx));
    // Each stage owns its ends of the channels: one that stops closes them, and the others
    // stop in turn instead of waiting forever.
    let read = {
        let complete = complete.clone();
        async move {
            let (mut server, mut backpressure) = (Duration::ZERO, Duration::ZERO);
            let t = Instant::now();
            for find in finds {
                let mut cursor = find.batch().await.map_err(src)?;
                while let Some(batch) = cursor.try_next().await.map_err(src)? {
                    server += t.elapsed().saturating_sub(server + backpressure);
                    // An error sending means every sealer stopped; their errors say why.
                    if replies.send(batch).await.is_err() {
                        return Ok((server, backpressure));
                    }
                    backpressure += t.elapsed().saturating_sub(server + backpressure);
                }
            }
            server += t.elapsed().saturating_sub(server + backpressure);
            complete.store(true, Ordering::Release);
            Ok::<_, CaptureError>((server, backpressure))
        }
    };
    let repo = sink.repo.clone();
    let store = async move {
        let (mut keys, mut took) = (Vec::new(), Duration::ZERO);
        while let Some((bytes, sealed)) = parts.recv().await {
            let t = Instant::now();
            let key = sealed.header.name.clone();
            repo.put_sealed(bytes.into(), sealed).await?;
            took += t.elapsed();
            keys.push(key);
        }
        Ok::<_, CaptureError>((keys, took))
    };
    let (read, stored) = tokio::join!(read, store);
    let mut sealed = Vec::with_capacity(sealing.len());
    for task in sealing {
        sealed.push(
            task.await
                .map_err(|e| CaptureError::Source(format!("{}: sealing task: {e}", sink.ns))),
        );
    }
    // The first failure explains the others.
    let (server, backpressure) = read?;
    let (mut parts, mut storing) = stored?;
    let (mut documents, mut bytes, mut busy) = (0, 0, Duration::ZERO);
    for s in sealed {
        let (d, b, t) = s??;
        documents += d;
        bytes += b;
        busy += t;
    }
    if parts.is_empty() && at_least_one_part {
        let t = Instant::now();
        let (out, sealed) = new_part(&sink)?
            .finish()
            .map_err(mc_core::catalog::RepoError::from)?;
        parts.push(sealed.header.name.clone());
        sink.repo.put_sealed(out.into(), sealed).await?;
        storing += t.elapsed();
    }
    Ok(RangeCopied {
        documents,
        bytes,
        parts,
        server,
        backpressure,
        sealing: busy,
        storing,
    })
}

/// One sealer: the documents of every reply it takes into parts of `sink.part_bytes`. Returns
/// the documents, their bytes, and the time spent sealing.
fn seal(
    replies: &Replies,
    parts: &mpsc::Sender<(Vec<u8>, SealedSegment)>,
    sink: &PartSink,
    complete: &AtomicBool,
) -> Result<(u64, u64, Duration), CaptureError> {
    let (mut documents, mut bytes, mut busy) = (0u64, 0u64, Duration::ZERO);
    let mut writer: Option<SegmentWriter<Vec<u8>>> = None;
    let bad =
        |e: String| CaptureError::Source(format!("{}: a reply that is not BSON: {e}", sink.ns));
    let finish = |w: SegmentWriter<Vec<u8>>| -> Result<(Vec<u8>, SealedSegment), CaptureError> {
        Ok(w.finish().map_err(mc_core::catalog::RepoError::from)?)
    };
    let compress_permit = || {
        futures::executor::block_on(sink.compressing.acquire())
            .map_err(|_| CaptureError::Source(format!("{}: the snapshot stopped", sink.ns)))
    };
    // Sent after the permit is given back: waiting for the store holds no core.
    let send = |finished: Vec<(Vec<u8>, SealedSegment)>| -> Result<(), CaptureError> {
        for part in finished {
            parts
                .blocking_send(part)
                // The storing stage stopped: its error says why.
                .map_err(|_| CaptureError::Source(format!("{}: storing stopped", sink.ns)))?;
        }
        Ok(())
    };
    loop {
        // One sealer waits for the next reply at a time; the others wait for the lock.
        let next = replies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .blocking_recv();
        let Some(batch) = next else { break };
        // Waiting for a permit is backpressure on this cursor, not sealing time.
        let compressing = compress_permit()?;
        let t = Instant::now();
        let mut finished = Vec::new();
        for value in batch.doc_slices().map_err(|e| bad(e.to_string()))? {
            let value = value.map_err(|e| bad(e.to_string()))?;
            let doc = value.as_document().ok_or_else(|| {
                CaptureError::Source(format!("{}: a reply value that is not a document", sink.ns))
            })?;
            let w = match writer.as_mut() {
                Some(w) => w,
                None => writer.insert(new_part(sink)?),
            };
            w.write_record(doc.as_bytes())
                .map_err(mc_core::catalog::RepoError::from)?;
            documents += 1;
            bytes += doc.as_bytes().len() as u64;
            if w.plain_bytes() >= sink.part_bytes {
                finished.push(finish(writer.take().expect("a part is being written"))?);
            }
        }
        busy += t.elapsed();
        drop(compressing);
        send(finished)?;
    }
    if !complete.load(Ordering::Acquire) {
        return Err(CaptureError::Source(format!(
            "{}: reading stopped",
            sink.ns
        )));
    }
    if let Some(w) = writer {
        let compressing = compress_permit()?;
        let t = Instant::now();
        let last = finish(w)?;
        busy += t.elapsed();
        drop(compressing);
        send(vec![last])?;
    }
    Ok((documents, bytes, busy))
}

/// A writer for the collection's next part.
fn new_part(sink: &PartSink) -> Result<SegmentWriter<Vec<u8>>, CaptureError> {
    let part = sink.next_part.fetch_add(1, Ordering::Relaxed);
    let s = &sink.settings;
    let key = snapshot_data_key(&s.source, &sink.snapshot, &sink.ns, part);
    let mut spec = SegmentSpec::new(
        StreamKind::SnapshotData,
        &key,
        &s.source,
        serde_json::json!({"snapshot": &*sink.snapshot, "ns": &*sink.ns, "part": part}),
    );
    spec.level = s.zstd_level;
    spec.writer = s.writer.clone();
    // A part compresses to a fraction of its records; a quarter avoids most regrowth.
    let out = Vec::with_capacity((sink.part_bytes / 4).min(64 << 20) as usize);
    Ok(SegmentWriter::new(out, spec, sink.repo.keyring())
        .map_err(mc_core::catalog::RepoError::from)?)
}
