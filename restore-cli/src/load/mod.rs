//! Loading a snapshot into the target: collections created with their options, documents
//! inserted as the raw BSON the snapshot stored, views last.
//!
//! What the source held is what the target gets, whatever the collection's options say now:
//! - documents are inserted with `bypassDocumentValidation`, since a validator added later
//!   (`validationLevel: moderate`) may refuse documents the source kept;
//! - secondary indexes are not built here: they are recorded in the [`TargetCatalog`] and built
//!   after replay, on the final data (`crate::replay::catalog` says why);
//! - a capped collection is loaded in the snapshot's natural order, by one writer, its parts one
//!   after another and each in ordered batches, so it evicts what the source evicted and keeps
//!   its order; the `_id` of its last document is recorded for replay
//!   ([`TargetCatalog::capped_last`]).
//!
//! How the data moves: every collection is created first; then its documents move as *jobs*,
//! one per part (one snapshot object) of a plain, clustered or time-series collection (whose
//! documents are independent, so unordered inserts in any order give the same collection), one
//! per capped collection (all its parts, in order). `workers` jobs run at once, across
//! collections, the largest first. Each job reads its part ahead of its inserts
//! ([`part`]): batches close at `batch_bytes` of BSON (or `batch_docs` documents), so a load
//! holds at most `workers × (read_ahead + 2)` batches in memory whatever the snapshot's size.

mod create;
mod part;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use futures::{FutureExt, StreamExt, TryStreamExt};
use mc_core::catalog::Repository;
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::{Client, Collection};

use self::create::{create, data_name, index_specs, options, split};
use self::part::{load_part, PartLoaded};
use crate::errors::describe;
use crate::journal::{Journal, JournalError, PartMark};
use crate::plan::{PlannedCollection, RestorePlan};
use crate::replay::TargetCatalog;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Repo(#[from] mc_core::catalog::RepoError),
    #[error("{what} on the target failed: {}", describe(.error))]
    Target {
        what: String,
        error: mongodb::error::Error,
    },
    #[error("snapshot {snapshot}: {ns}: {detail}")]
    Snapshot {
        snapshot: String,
        ns: String,
        detail: String,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// How the load runs.
#[derive(Debug, Clone, Copy)]
pub struct LoadSettings {
    /// Parts loaded at once, across collections (`mc-restore --load-workers`); also how many
    /// collections' index builds run at once after replay.
    pub workers: usize,
    /// An insert batch closes once it holds this many bytes of BSON...
    pub batch_bytes: usize,
    /// ...or this many documents (the server takes at most 100,000 per insert).
    pub batch_docs: usize,
    /// Batches read ahead of the inserts, per part being loaded.
    pub read_ahead: usize,
}

impl Default for LoadSettings {
    fn default() -> Self {
        Self {
            workers: 4,
            batch_bytes: 8 << 20,
            batch_docs: 100_000,
            read_ahead: 1,
        }
    }
}

/// What the load did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadStats {
    pub collections: u64,
    pub views: u64,
    pub documents: u64,
    pub bytes: u64,
}

/// What the load leaves for replay and the index builds.
#[derive(Debug, Default)]
pub struct Loaded {
    pub stats: LoadStats,
    /// The loaded collections' options and secondary indexes (built after replay), and the
    /// last document of each capped one.
    pub catalog: TargetCatalog,
    /// Parts an interrupted restore had loaded, not loaded again (`--resume`).
    pub parts_skipped: u64,
}

/// Shared progress counters (documents and bytes inserted so far).
#[derive(Debug, Default)]
pub struct LoadProgress {
    pub documents: AtomicU64,
    pub bytes: AtomicU64,
}

/// A collection created on the target, ready for its documents.
struct Created<'a> {
    planned: &'a PlannedCollection,
    options: Document,
    capped: bool,
    /// Where its documents go (a time-series collection's buckets).
    data: Collection<RawDocumentBuf>,
    /// Resuming: emptied and loaded from its first part, whatever the journal says (a capped
    /// collection an interrupted restore left half-loaded).
    reload: bool,
}

/// Parts of one collection loaded one after another by one writer: one part of a plain
/// collection, or every part of a capped one.
struct Job {
    /// Index into the created collections.
    collection: usize,
    /// Indexes into its parts, in the order to load them.
    parts: Vec<usize>,
    /// Bytes it is expected to move (the collection's bytes shared evenly by its parts).
    bytes: u64,
}

/// Loads the plan's collections into `target`, skipping what `journal` says an interrupted
/// restore finished and recording each part it loads there.
pub async fn load(
    repo: &Repository,
    target: &Client,
    plan: &RestorePlan,
    settings: LoadSettings,
    progress: Arc<LoadProgress>,
    journal: &Journal,
) -> Result<Loaded, LoadError> {
    let (views, data): (Vec<_>, Vec<_>) = plan
        .collections
        .iter()
        .partition(|c| c.entry.kind == "view");
    let snapshot = plan.snapshot.id.as_str();
    let workers = settings.workers.max(1);

    // Items by index, not by reference: a stream of references would make this future's
    // `Send` unprovable where a caller spawns it (the agent's drills).
    let data = &data;
    let created: Vec<Created> = futures::stream::iter(0..data.len())
        .map(|i| {
            let c = data[i];
            async move {
                let options = options(snapshot, c)?;
                let capped = options.get_bool("capped").unwrap_or(false);
                // Resume (crate::journal): what the interrupted restore created is kept.
                let reload = resume_create(target, snapshot, c, capped, journal).await?;
                let (db, _) = split(&c.target_ns);
                Ok::<_, LoadError>(Created {
                    capped,
                    options,
                    data: target.database(db).collection(&data_name(c)),
                    planned: c,
                    reload,
                })
            }
            .boxed()
        })
        .buffered(workers)
        .try_collect()
        .await?;

    let jobs = jobs(&created);
    let progress = &*progress;
    let settings = &settings;
    let done: Vec<(usize, Vec<PartLoaded>)> = futures::stream::iter(jobs)
        .map(|job| {
            let c = &created[job.collection];
            async move {
                let mut parts = Vec::with_capacity(job.parts.len());
                for p in job.parts {
                    let key = &c.planned.entry.parts[p];
                    let ns = &c.planned.target_ns;
                    // Resume (crate::journal): a part loaded before is not loaded again; one
                    // not marked may be partly in, so its `_id`s already there are accepted.
                    if let Some(mark) = journal.part(key).filter(|_| !c.reload) {
                        progress.documents.fetch_add(mark.documents, Relaxed);
                        progress.bytes.fetch_add(mark.bytes, Relaxed);
                        parts.push(PartLoaded {
                            documents: mark.documents,
                            bytes: mark.bytes,
                            last_id: mark.last_id.clone(),
                            skipped: true,
                        });
                        continue;
                    }
                    let may_exist = journal.resumed().is_some() && !c.reload;
                    let part = load_part(
                        repo, key, &c.data, ns, c.capped, may_exist, settings, progress,
                    )
                    .await?;
                    let mark = PartMark {
                        documents: part.documents,
                        bytes: part.bytes,
                        last_id: part.last_id.clone(),
                    };
                    journal.part_loaded(key, ns, &mark).await?;
                    parts.push(part);
                }
                Ok::<_, LoadError>((job.collection, parts))
            }
            .boxed()
        })
        .buffer_unordered(workers)
        .try_collect()
        .await?;

    let mut totals: Vec<PartLoaded> = created.iter().map(|_| PartLoaded::default()).collect();
    let mut skipped = 0;
    for (collection, parts) in done {
        let total = &mut totals[collection];
        for part in parts {
            if part.skipped {
                skipped += 1;
            }
            total.documents += part.documents;
            total.bytes += part.bytes;
            if part.last_id.is_some() {
                total.last_id = part.last_id;
            }
        }
    }
    let mut out = Loaded {
        parts_skipped: skipped,
        ..Loaded::default()
    };
    for (c, total) in created.into_iter().zip(totals) {
        let entry = &c.planned.entry;
        if total.documents != entry.count {
            return Err(LoadError::Snapshot {
                snapshot: snapshot.to_owned(),
                ns: entry.ns.clone(),
                detail: format!(
                    "the manifest records {} documents but its parts hold {}",
                    entry.count, total.documents
                ),
            });
        }
        let ns = &c.planned.target_ns;
        out.stats.collections += 1;
        out.stats.documents += total.documents;
        out.stats.bytes += total.bytes;
        out.catalog
            .loaded(ns, &c.options, index_specs(snapshot, c.planned)?);
        if c.options.get_bool("temp").unwrap_or(false) {
            out.catalog.loaded_temporary(ns);
        }
        if let Some(id) = total.last_id {
            out.catalog.capped_last.insert(ns.clone(), id);
        }
    }
    for v in views {
        if !journal.load_finished() {
            create_kept(target, snapshot, v, journal).await?;
        }
        out.stats.views += 1;
    }
    Ok(out)
}

/// Creates a collection or view, except when resuming (`crate::journal`): after the load, what
/// the load made is never touched again (replay may have dropped or renamed it); during it, one
/// the interrupted restore created is kept.
async fn create_kept(
    target: &Client,
    snapshot: &str,
    c: &PlannedCollection,
    journal: &Journal,
) -> Result<(), LoadError> {
    if journal.load_finished() {
        return Ok(());
    }
    match create(target, snapshot, c).await {
        Err(LoadError::Target { error, .. })
            if journal.resumed().is_some()
                && crate::errors::code_of(&error) == Some(crate::errors::NAMESPACE_EXISTS) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Creates a collection as [`create_kept`] does; returns whether it must be loaded from its
/// first part whatever the journal says: a capped collection the interrupted restore left with
/// a part not loaded completely is emptied (dropped and created again, its marks forgotten),
/// since its order and evictions depend on every insert before.
async fn resume_create(
    target: &Client,
    snapshot: &str,
    c: &PlannedCollection,
    capped: bool,
    journal: &Journal,
) -> Result<bool, LoadError> {
    let parts = &c.entry.parts;
    let reload = capped
        && journal.resumed().is_some()
        && !journal.load_finished()
        && parts.iter().any(|k| journal.part(k).is_none());
    if reload {
        journal.forget_parts(parts).await?;
        let (db, name) = split(&c.target_ns);
        match target.database(db).run_command(doc! {"drop": name}).await {
            Ok(_) => {}
            Err(e) if crate::errors::code_of(&e) == Some(crate::errors::NAMESPACE_NOT_FOUND) => {}
            Err(error) => {
                return Err(LoadError::Target {
                    what: format!(
                        "emptying capped collection {} to load it again",
                        c.target_ns
                    ),
                    error,
                })
            }
        }
        tracing::info!(ns = %c.target_ns, "resuming: the capped collection was loaded in part; loading it again from its first part");
    }
    create_kept(target, snapshot, c, journal).await?;
    Ok(reload)
}

/// The load's jobs, largest first (so the last ones to finish are small).
fn jobs(created: &[Created]) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (collection, c) in created.iter().enumerate() {
        let entry = &c.planned.entry;
        let parts = entry.parts.len() as u64;
        if c.capped {
            jobs.push(Job {
                collection,
                parts: (0..entry.parts.len()).collect(),
                bytes: entry.bytes,
            });
        } else {
            jobs.extend((0..entry.parts.len()).map(|p| Job {
                collection,
                parts: vec![p],
                bytes: entry.bytes / parts.max(1),
            }));
        }
    }
    // Stable: a collection's parts keep their order among equals.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.bytes));
    jobs
}
