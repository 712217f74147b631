//! One part (one snapshot object) into its collection: a blocking thread fetches, authenticates,
//! decrypts and decompresses the part into batches of raw BSON sized by bytes, and hands them
//! through a small channel to the inserts, so the next batch is ready while the server inserts
//! this one and memory holds at most `read_ahead + 2` batches per part being loaded.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};

use mc_core::catalog::Repository;
use mongodb::bson::{Bson, RawDocumentBuf};
use mongodb::Collection;
use tokio::sync::mpsc;

use super::{LoadError, LoadProgress, LoadSettings};

/// What one part's load did.
#[derive(Debug, Default)]
pub(super) struct PartLoaded {
    pub documents: u64,
    pub bytes: u64,
    /// The `_id` of the part's last document, kept for capped collections (ordered loads).
    pub last_id: Option<Bson>,
    /// Loaded by an interrupted restore, not now (`--resume`, `crate::journal`).
    pub skipped: bool,
}

/// Documents on their way to one insert.
#[derive(Debug, Default)]
struct Batch {
    docs: Vec<RawDocumentBuf>,
    bytes: u64,
}

impl Batch {
    fn full(&self, settings: &LoadSettings) -> bool {
        self.bytes >= settings.batch_bytes as u64 || self.docs.len() >= settings.batch_docs
    }
}

/// Loads the part stored under `key` into `coll` (`ns` on the target). `ordered`: one insert
/// after another, each in the part's order, stopping at the first refusal (capped collections).
/// `may_exist`: an interrupted restore may have inserted some of the part's documents (resume,
/// `crate::journal`), so a duplicate `_id` is the same document and not an error.
#[allow(clippy::too_many_arguments)]
pub(super) async fn load_part(
    repo: &Repository,
    key: &str,
    coll: &Collection<RawDocumentBuf>,
    ns: &str,
    ordered: bool,
    may_exist: bool,
    settings: &LoadSettings,
    progress: &LoadProgress,
) -> Result<PartLoaded, LoadError> {
    let (tx, rx) = mpsc::channel::<Batch>(settings.read_ahead.max(1));
    // The inserts own the receiver: if one fails, the reader sees a closed channel and stops.
    let (read, inserted) = tokio::join!(
        read_part(repo, key, settings, tx),
        insert_batches(coll, ns, rx, ordered, may_exist, progress)
    );
    let loaded = inserted?;
    read?;
    Ok(loaded)
}

/// Streams the part's records into batches on `tx`.
async fn read_part(
    repo: &Repository,
    key: &str,
    settings: &LoadSettings,
    tx: mpsc::Sender<Batch>,
) -> Result<(), LoadError> {
    // The batch being filled, shared with the reading thread so the last, partial one can be
    // sent once the part is read to its end (and proven complete).
    let pending = Arc::new(Mutex::new(Batch::default()));
    let (fill, sender, limits) = (pending.clone(), tx.clone(), *settings);
    repo.scan_segment(key, move |rec| {
        let doc = RawDocumentBuf::from_bytes(rec.to_vec())
            .map_err(|e| format!("record is not BSON: {e}"))?;
        let mut batch = fill.lock().unwrap_or_else(PoisonError::into_inner);
        batch.bytes += rec.len() as u64;
        batch.docs.push(doc);
        if batch.full(&limits) {
            let full = std::mem::take(&mut *batch);
            drop(batch);
            sender
                .blocking_send(full)
                .map_err(|_| "load stopped".to_string())?;
        }
        Ok(())
    })
    .await?;
    let rest = std::mem::take(&mut *pending.lock().unwrap_or_else(PoisonError::into_inner));
    if !rest.docs.is_empty() {
        // A closed channel means the inserts stopped on an error: theirs is the one to report.
        let _ = tx.send(rest).await;
    }
    Ok(())
}

/// Inserts the batches arriving on `rx`, with validation bypassed.
async fn insert_batches(
    coll: &Collection<RawDocumentBuf>,
    ns: &str,
    mut rx: mpsc::Receiver<Batch>,
    ordered: bool,
    may_exist: bool,
    progress: &LoadProgress,
) -> Result<PartLoaded, LoadError> {
    let mut out = PartLoaded::default();
    while let Some(batch) = rx.recv().await {
        let n = batch.docs.len() as u64;
        if ordered {
            out.last_id = batch
                .docs
                .last()
                .and_then(|d| d.get("_id").ok().flatten())
                .and_then(|id| Bson::try_from(id).ok());
        }
        match coll
            .insert_many(batch.docs)
            .ordered(ordered)
            .bypass_document_validation(true)
            .await
        {
            Ok(_) => {}
            // Resume: no secondary index exists during the load, so a duplicate key is an `_id`
            // the interrupted restore inserted from this same part.
            Err(e) if may_exist && only_duplicates(&e) => {}
            Err(source) => {
                return Err(LoadError::Target {
                    what: format!("inserting into {ns}"),
                    error: source,
                })
            }
        }
        out.documents += n;
        out.bytes += batch.bytes;
        progress.documents.fetch_add(n, Relaxed);
        progress.bytes.fetch_add(batch.bytes, Relaxed);
    }
    Ok(out)
}

/// Whether an unordered insert failed only on duplicate keys (and nothing else: no write
/// concern error).
fn only_duplicates(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::InsertMany(m) => {
            m.write_concern_error.is_none()
                && m.write_errors.as_ref().is_some_and(|w| {
                    !w.is_empty() && w.iter().all(|w| w.code == crate::errors::DUPLICATE_KEY)
                })
        }
        _ => false,
    }
}
