//! Loading a snapshot into the target: collections created with their options, documents
//! inserted as the raw BSON the snapshot stored (unordered batches, several collections and
//! parts at once), views last.
//!
//! What the source held is what the target gets, whatever the collection's options say now:
//! - documents are inserted with `bypassDocumentValidation`, since a validator added later
//!   (`validationLevel: moderate`) may refuse documents the source kept;
//! - secondary indexes are not built here: they are recorded in the [`TargetCatalog`] and built
//!   after replay, on the final data (`crate::replay::catalog` says why);
//! - a capped collection is loaded in the snapshot's natural order, one batch after another, so
//!   it evicts what the source evicted and keeps its order; the `_id` of its last document is
//!   recorded for replay ([`TargetCatalog::capped_last`]).
//!
//! Memory stays bounded: each part streams from storage through a small channel of batches.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use mc_core::catalog::Repository;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::Client;
use tokio::sync::mpsc;

use crate::errors::describe;
use crate::namespaces::is_buckets;
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
}

/// How the load runs.
#[derive(Debug, Clone, Copy)]
pub struct LoadSettings {
    /// Collections loaded at once.
    pub collections: usize,
    /// Parts of one collection loaded at once.
    pub parts: usize,
    /// Documents per insert batch (the driver splits further at 48 MB).
    pub batch_docs: usize,
}

impl Default for LoadSettings {
    fn default() -> Self {
        Self {
            collections: 4,
            parts: 2,
            batch_docs: 1000,
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
}

/// What one collection's load returns.
struct CollectionLoaded {
    ns: String,
    options: Document,
    indexes: Vec<Document>,
    documents: u64,
    bytes: u64,
    last_id: Option<Bson>,
}

/// Shared progress counters (documents and bytes inserted so far).
#[derive(Debug, Default)]
pub struct LoadProgress {
    pub documents: AtomicU64,
    pub bytes: AtomicU64,
}

/// Loads the plan's collections into `target`.
pub async fn load(
    repo: &Repository,
    target: &Client,
    plan: &RestorePlan,
    settings: LoadSettings,
    progress: Arc<LoadProgress>,
) -> Result<Loaded, LoadError> {
    let (views, data): (Vec<_>, Vec<_>) = plan
        .collections
        .iter()
        .cloned()
        .partition(|c| c.entry.kind == "view");
    let snapshot = plan.snapshot.id.clone();
    let loaded: Vec<CollectionLoaded> = futures::stream::iter(data)
        .map(|c| {
            let (repo, target, progress, snapshot) = (
                repo.clone(),
                target.clone(),
                progress.clone(),
                snapshot.clone(),
            );
            async move { load_collection(&repo, &target, &snapshot, c, settings, progress).await }
        })
        .buffer_unordered(settings.collections.max(1))
        .try_collect()
        .await?;
    let mut out = Loaded::default();
    out.stats.collections = loaded.len() as u64;
    for c in loaded {
        out.stats.documents += c.documents;
        out.stats.bytes += c.bytes;
        out.catalog.loaded(&c.ns, &c.options, c.indexes);
        if c.options.get_bool("temp").unwrap_or(false) {
            out.catalog.loaded_temporary(&c.ns);
        }
        if let Some(id) = c.last_id {
            out.catalog.capped_last.insert(c.ns, id);
        }
    }
    for v in views {
        create(target, &snapshot, &v).await?;
        out.stats.views += 1;
    }
    Ok(out)
}

/// Creates one collection (or view) with its options.
async fn create(target: &Client, snapshot: &str, c: &PlannedCollection) -> Result<(), LoadError> {
    let (db, name) = split(&c.target_ns);
    let options = ext_json_doc(&c.entry.options).map_err(|detail| LoadError::Snapshot {
        snapshot: snapshot.to_owned(),
        ns: c.entry.ns.clone(),
        detail: format!("collection options: {detail}"),
    })?;
    let mut cmd = doc! {"create": name};
    for (k, v) in options {
        // A snapshot read in the middle of an `$out` holds its temporary collection; mongod
        // takes `temp` from no client. Replay drops it if the restore point still has it.
        if k != "temp" {
            cmd.insert(k, v);
        }
    }
    target
        .database(db)
        .run_command(cmd)
        .await
        .map(|_| ())
        .map_err(|source| LoadError::Target {
            what: format!("creating {} {}", c.entry.kind, c.target_ns),
            error: source,
        })
}

async fn load_collection(
    repo: &Repository,
    target: &Client,
    snapshot: &str,
    c: PlannedCollection,
    settings: LoadSettings,
    progress: Arc<LoadProgress>,
) -> Result<CollectionLoaded, LoadError> {
    create(target, snapshot, &c).await?;
    let options = ext_json_doc(&c.entry.options).unwrap_or_default();
    // A capped collection keeps the snapshot's order: one part and one batch at a time.
    let capped = options.get_bool("capped").unwrap_or(false);
    let parts_at_once = if capped { 1 } else { settings.parts.max(1) };
    let (db, name) = split(&c.target_ns);
    // A time-series collection's documents are its buckets.
    let data_name = if c.entry.kind == "timeseries" && !is_buckets(&c.target_ns) {
        format!("system.buckets.{name}")
    } else {
        name.to_owned()
    };
    let coll = target.database(db).collection::<RawDocumentBuf>(&data_name);
    let ns = c.target_ns.clone();
    let parts: Vec<(u64, u64, Option<Bson>)> = futures::stream::iter(c.entry.parts.clone())
        .map(|part| {
            let (repo, coll, progress, ns) =
                (repo.clone(), coll.clone(), progress.clone(), ns.clone());
            async move {
                let batch_docs = settings.batch_docs.max(1);
                let (tx, mut rx) = mpsc::channel::<RawDocumentBuf>(2 * batch_docs);
                let reader = repo.scan_segment(&part, move |rec| {
                    let doc = RawDocumentBuf::from_bytes(rec.to_vec())
                        .map_err(|e| format!("record is not BSON: {e}"))?;
                    tx.blocking_send(doc)
                        .map_err(|_| "load stopped".to_string())
                });
                // Owns the receiver: if inserting fails, the reader sees a closed channel and stops.
                let insert = async move {
                    let (mut docs, mut bytes) = (0u64, 0u64);
                    let mut last_id = None;
                    loop {
                        let mut batch = Vec::with_capacity(batch_docs);
                        while batch.len() < batch_docs {
                            let room = batch_docs - batch.len();
                            if rx.recv_many(&mut batch, room).await == 0 {
                                break;
                            }
                        }
                        if batch.is_empty() {
                            break;
                        }
                        let n = batch.len() as u64;
                        let b: u64 = batch.iter().map(|d| d.as_bytes().len() as u64).sum();
                        if capped {
                            last_id = batch
                                .last()
                                .and_then(|d| d.get("_id").ok().flatten())
                                .and_then(|id| Bson::try_from(id).ok());
                        }
                        coll.insert_many(batch)
                            .ordered(capped)
                            .bypass_document_validation(true)
                            .await
                            .map_err(|source| LoadError::Target {
                                what: format!("inserting into {ns}"),
                                error: source,
                            })?;
                        docs += n;
                        bytes += b;
                        progress.documents.fetch_add(n, Relaxed);
                        progress.bytes.fetch_add(b, Relaxed);
                    }
                    Ok::<_, LoadError>((docs, bytes, last_id))
                };
                let (read, inserted) = tokio::join!(reader, insert);
                let counts = inserted?;
                read?;
                Ok::<_, LoadError>(counts)
            }
        })
        .buffered(parts_at_once)
        .try_collect()
        .await?;
    let (docs, bytes) = parts
        .iter()
        .fold((0, 0), |(d, b), (pd, pb, _)| (d + pd, b + pb));
    let last_id = parts.into_iter().rev().find_map(|(_, _, id)| id);
    if docs != c.entry.count {
        return Err(LoadError::Snapshot {
            snapshot: snapshot.to_owned(),
            ns: c.entry.ns.clone(),
            detail: format!(
                "the manifest records {} documents but its parts hold {docs}",
                c.entry.count
            ),
        });
    }
    Ok(CollectionLoaded {
        indexes: index_specs(snapshot, &c)?,
        ns: c.target_ns,
        options,
        documents: docs,
        bytes,
        last_id,
    })
}

/// The snapshot's secondary index definitions of one collection (built after replay).
fn index_specs(snapshot: &str, c: &PlannedCollection) -> Result<Vec<Document>, LoadError> {
    if c.entry.kind == "view" {
        return Ok(Vec::new());
    }
    let mut specs = Vec::new();
    for spec in &c.entry.indexes {
        let spec = ext_json_doc(spec).map_err(|detail| LoadError::Snapshot {
            snapshot: snapshot.to_owned(),
            ns: c.entry.ns.clone(),
            detail: format!("index definition: {detail}"),
        })?;
        if spec.get_str("name").ok() == Some("_id_") {
            continue;
        }
        specs.push(spec);
    }
    Ok(specs)
}

fn split(ns: &str) -> (&str, &str) {
    ns.split_once('.').unwrap_or((ns, ""))
}

/// Canonical Extended JSON (as the snapshot stores options and index specs) to a document.
fn ext_json_doc(value: &serde_json::Value) -> Result<Document, String> {
    match Bson::try_from(value.clone()).map_err(|e| e.to_string())? {
        Bson::Document(d) => Ok(d),
        other => Err(format!("expected a document, found {other}")),
    }
}
