//! Base snapshots: a logical copy of every user collection into snapshot segments, with the
//! collections' options and index definitions, finished by a manifest
//! (`mc_core::catalog::SnapshotManifest`).
//!
//! Consistency follows `mongodump --oplog`: the majority commit point is recorded before the
//! first read (`start`) and after the last (`end`); restoring loads the documents and replays the
//! oplog from `start`, which is valid for any time at or after `end`. Reads use read concern
//! `majority`, so no document that a failover could roll back enters a snapshot.
//!
//! Users and roles (`admin.system.users`, `admin.system.roles`) are copied only when asked
//! (`snapshots.include_users_and_roles`); a snapshot that copied them lists both namespaces in
//! its manifest, with no parts when the source has none (`docs/format.md` §2.1).
//!
//! The manifest is written only after a listing shows every part it names: retention deletes the
//! data of snapshots without a manifest once their grace has passed, and a snapshot stalled
//! longer than that must fail rather than commit a manifest whose parts are gone.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use mc_core::catalog::names::{new_snapshot_id, snapshot_data_key, snapshot_data_prefix};
use mc_core::catalog::{CollectionEntry, Repository, SnapshotManifest};
use mc_core::format::{SegmentSpec, StreamKind, WriterInfo};
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::options::ReadConcern;

use crate::capture::oplog::OplogSource;
use crate::capture::CaptureError;

/// Databases never copied: replication state and cluster metadata.
const SKIPPED_DATABASES: &[&str] = &["local", "config"];

/// The collections of `admin` holding users and roles, copied when
/// [`SnapshotSettings::users_and_roles`] is set.
pub const USERS_AND_ROLES: &[&str] = &["system.users", "system.roles"];

/// How a snapshot is taken.
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    pub source: String,
    /// Collections copied at once.
    pub parallelism: usize,
    /// Raw BSON bytes per data segment.
    pub max_segment_bytes: u64,
    pub zstd_level: i32,
    pub writer: WriterInfo,
    /// `schedule`, `on-demand` or `gap`.
    pub reason: String,
    /// Copy only these databases (`None`: every database but `local` and `config`).
    pub databases: Option<Vec<String>>,
    /// Also copy users and roles ([`USERS_AND_ROLES`] of `admin`), whatever `databases` says.
    pub users_and_roles: bool,
}

struct Planned {
    db: String,
    name: String,
    kind: String,
    options: Document,
}

/// Takes a snapshot and stores its manifest. Returns the manifest.
pub async fn take(
    repo: &Repository,
    source: &OplogSource,
    s: &SnapshotSettings,
) -> Result<SnapshotManifest, CaptureError> {
    let client = source.client();
    let started = chrono::Utc::now();
    let id = new_snapshot_id(started);
    let start = source.majority_point().await?;
    tracing::info!(snapshot = %id, %start, reason = %s.reason, "snapshot started");

    let mut planned = Vec::new();
    // Every database, or an Unauthorized error: without `authorizedDatabases: false` a user
    // lacking the listDatabases privilege is shown only the databases it may read, and the
    // snapshot would silently leave the others out.
    for db in client
        .list_database_names()
        .authorized_databases(false)
        .await
        .map_err(src)?
    {
        let wanted = s.databases.as_ref().is_none_or(|only| only.contains(&db));
        if SKIPPED_DATABASES.contains(&db.as_str()) || !wanted {
            continue;
        }
        let mut cursor = client
            .database(&db)
            .run_cursor_command(doc! {"listCollections": 1})
            .await
            .map_err(src)?;
        while let Some(info) = cursor.try_next().await.map_err(src)? {
            let name = info.get_str("name").unwrap_or_default().to_owned();
            // system.* holds views' definitions (recorded as views), time-series buckets, and in
            // `admin` users and roles: none is restored as data.
            if name.is_empty() || name.starts_with("system.") {
                continue;
            }
            let kind = info.get_str("type").unwrap_or("collection").to_owned();
            let options = info.get_document("options").cloned().unwrap_or_default();
            planned.push(Planned {
                db: db.clone(),
                name,
                kind,
                options,
            });
        }
    }
    // Users and roles: copied like any collection; one that does not exist (no user or role
    // was ever created) is still recorded, empty, so the manifest says they were captured.
    let mut absent = Vec::new();
    if s.users_and_roles {
        let admin = client.database("admin");
        for name in USERS_AND_ROLES {
            let info = admin
                .run_cursor_command(doc! {"listCollections": 1, "filter": {"name": *name}})
                .await
                .map_err(src)?
                .try_next()
                .await
                .map_err(src)?;
            match info {
                Some(info) => planned.push(Planned {
                    db: "admin".into(),
                    name: (*name).to_owned(),
                    kind: "collection".into(),
                    options: info.get_document("options").cloned().unwrap_or_default(),
                }),
                None => absent.push(CollectionEntry {
                    ns: format!("admin.{name}"),
                    kind: "collection".into(),
                    options: serde_json::json!({}),
                    indexes: Vec::new(),
                    count: 0,
                    bytes: 0,
                    parts: Vec::new(),
                }),
            }
        }
    }

    let repo = Arc::new(repo.clone());
    let id = Arc::new(id);
    let settings = Arc::new(s.clone());
    let mut collections: Vec<CollectionEntry> = futures::stream::iter(planned)
        .map(|p| {
            let (repo, id, settings, client) =
                (repo.clone(), id.clone(), settings.clone(), client.clone());
            async move {
                let ns = format!("{}.{}", p.db, p.name);
                let (db, name) = (p.db.clone(), p.name.clone());
                match copy_collection(&repo, &client, &id, &settings, p).await {
                    Ok(entry) => Ok(entry),
                    // Dropped while being copied: replaying the oplog from `start` drops it
                    // again, so the snapshot records it and moves on.
                    Err(e) if !collection_exists(&client, &db, &name).await? => {
                        tracing::info!(%ns, error = %e, "collection dropped during the snapshot");
                        Ok(CollectionEntry {
                            ns,
                            kind: "dropped".into(),
                            options: serde_json::json!({}),
                            indexes: Vec::new(),
                            count: 0,
                            bytes: 0,
                            parts: Vec::new(),
                        })
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(s.parallelism.max(1))
        .try_collect()
        .await?;
    collections.extend(absent);
    collections.sort_by(|a, b| a.ns.cmp(&b.ns));
    check_parts(&repo, &s.source, &id, &collections).await?;

    let end = source.majority_point().await?;
    let manifest = SnapshotManifest {
        id: id.to_string(),
        source: s.source.clone(),
        start,
        end,
        started: started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        collections,
        reason: s.reason.clone(),
    };
    manifest.store(&repo).await?;
    tracing::info!(
        snapshot = %manifest.id,
        %end,
        collections = manifest.collections.len(),
        documents = manifest.documents(),
        bytes = manifest.bytes(),
        "snapshot complete"
    );
    Ok(manifest)
}

async fn copy_collection(
    repo: &Repository,
    client: &mongodb::Client,
    id: &str,
    s: &SnapshotSettings,
    p: Planned,
) -> Result<CollectionEntry, CaptureError> {
    let ns = format!("{}.{}", p.db, p.name);
    let db = client.database(&p.db);
    let mut indexes = Vec::new();
    let mut entry_count = 0;
    let mut entry_bytes = 0;
    let mut parts = Vec::new();
    if p.kind == "collection" || p.kind == "timeseries" {
        let mut cursor = db
            .run_cursor_command(doc! {"listIndexes": &p.name})
            .await
            .map_err(src)?;
        while let Some(spec) = cursor.try_next().await.map_err(src)? {
            indexes.push(Bson::Document(spec).into_canonical_extjson());
        }
        // A time-series collection's data lives in its buckets collection; copying the buckets
        // as they are (like mongodump) keeps the measurements exact.
        let data = if p.kind == "timeseries" {
            format!("system.buckets.{}", p.name)
        } else {
            p.name.clone()
        };
        let coll = db.collection::<RawDocumentBuf>(&data);
        let mut docs = coll
            .find(doc! {})
            .read_concern(ReadConcern::majority())
            .batch_size(2000)
            .await
            .map_err(src)?;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut batch_bytes = 0u64;
        // Sealing a part overlaps with reading the next: one part in flight at most, so memory
        // stays at two parts.
        let mut in_flight: Option<tokio::task::JoinHandle<Result<String, CaptureError>>> = None;
        let mut next_part = 0u32;
        loop {
            let next = docs.try_next().await.map_err(src)?;
            let done = next.is_none();
            if let Some(d) = next {
                let raw = d.into_bytes();
                batch_bytes += raw.len() as u64;
                batch.push(raw);
            }
            let cut = batch_bytes >= s.max_segment_bytes
                || (done && (!batch.is_empty() || next_part == 0));
            if cut {
                if let Some(task) = in_flight.take() {
                    parts.push(
                        task.await
                            .map_err(|e| CaptureError::Source(e.to_string()))??,
                    );
                }
                entry_count += batch.len() as u64;
                entry_bytes += batch_bytes;
                let (repo, id, s, ns) = (repo.clone(), id.to_owned(), s.clone(), ns.clone());
                let records = std::mem::take(&mut batch);
                let part = next_part;
                in_flight = Some(tokio::spawn(async move {
                    store_part(&repo, &id, &s, &ns, part, records).await
                }));
                next_part += 1;
                batch_bytes = 0;
            }
            if done {
                break;
            }
        }
        if let Some(task) = in_flight.take() {
            parts.push(
                task.await
                    .map_err(|e| CaptureError::Source(e.to_string()))??,
            );
        }
    }
    tracing::debug!(%ns, documents = entry_count, parts = parts.len(), "collection copied");
    Ok(CollectionEntry {
        ns,
        kind: p.kind,
        options: Bson::Document(p.options).into_canonical_extjson(),
        indexes,
        count: entry_count,
        bytes: entry_bytes,
        parts,
    })
}

/// Fails unless every part the manifest will name is in the repository (one listing).
async fn check_parts(
    repo: &Repository,
    source: &str,
    id: &str,
    collections: &[CollectionEntry],
) -> Result<(), CaptureError> {
    let present: std::collections::HashSet<String> = repo
        .store()
        .list(&snapshot_data_prefix(source, id))
        .await
        .map_err(mc_core::catalog::RepoError::from)?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let missing: Vec<&String> = collections
        .iter()
        .flat_map(|c| &c.parts)
        .filter(|k| !present.contains(*k))
        .collect();
    match missing.first() {
        None => Ok(()),
        Some(first) => Err(CaptureError::Snapshot {
            id: id.to_owned(),
            detail: format!(
                "{} of its parts vanished while it was being taken (first {first}), probably pruned as an incomplete snapshot (retention.incomplete_snapshot_grace shorter than this snapshot's pauses, or `mc-agent prune --incomplete-grace` run meanwhile); no manifest written, the next snapshot starts afresh",
                missing.len()
            ),
        }),
    }
}

async fn collection_exists(
    client: &mongodb::Client,
    db: &str,
    name: &str,
) -> Result<bool, CaptureError> {
    let names = client
        .database(db)
        .list_collection_names()
        .filter(doc! {"name": name})
        .await
        .map_err(src)?;
    Ok(!names.is_empty())
}

async fn store_part(
    repo: &Repository,
    id: &str,
    s: &SnapshotSettings,
    ns: &str,
    part: u32,
    records: Vec<Vec<u8>>,
) -> Result<String, CaptureError> {
    let key = snapshot_data_key(&s.source, id, ns, part);
    let mut spec = SegmentSpec::new(
        StreamKind::SnapshotData,
        &key,
        &s.source,
        serde_json::json!({"snapshot": id, "ns": ns, "part": part}),
    );
    spec.level = s.zstd_level;
    spec.writer = s.writer.clone();
    repo.put_segment(spec, records).await?;
    Ok(key)
}

/// When snapshots are taken by a running agent.
#[derive(Debug, Clone)]
pub struct SnapshotPlan {
    pub settings: SnapshotSettings,
    pub schedule: Option<mc_core::policy::CronSchedule>,
    /// Retention applied after each successful snapshot; `None` keeps everything.
    pub retention: Option<mc_core::catalog::retention::KeepRules>,
}

/// Takes snapshots while `stop` is false: at once if the source has none yet, on the schedule,
/// and at once after a timeline gap (restorable time resumes only from a new snapshot).
/// A manifest's finish time (Unix ms) and duration (ms), from its RFC 3339 times.
fn finished_and_duration(m: &SnapshotManifest) -> Option<(i64, u64)> {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let (started, finished) = (parse(&m.started)?, parse(&m.finished)?);
    let took = (finished - started).num_milliseconds().max(0);
    Some((
        finished.timestamp_millis(),
        u64::try_from(took).unwrap_or(0),
    ))
}

pub async fn run_schedule(
    repo: Repository,
    source: OplogSource,
    plan: SnapshotPlan,
    metrics: Arc<crate::metrics::Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut seen_gaps = 0;
    let mut due_now = match mc_core::catalog::list_snapshots(&repo, &plan.settings.source).await {
        Ok(list) => {
            // The newest snapshot's time and duration survive restarts: they come from the
            // repository, not from this process's memory.
            if let Some((finished, took)) = list.last().and_then(finished_and_duration) {
                metrics.snapshots.newest(finished, took);
            }
            list.is_empty().then_some("first")
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list snapshots; taking one now");
            Some("first")
        }
    };
    loop {
        let reason = match due_now.take() {
            Some(r) => r,
            None => {
                let next = plan
                    .schedule
                    .as_ref()
                    .and_then(|s| s.next_after(chrono::Utc::now()));
                let wait = next
                    .map(|n| (n - chrono::Utc::now()).to_std().unwrap_or_default())
                    .unwrap_or(std::time::Duration::MAX);
                let poll = std::time::Duration::from_secs(1).min(wait);
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(poll) => {
                        let gaps = metrics.capture.gaps.get();
                        if gaps > seen_gaps {
                            seen_gaps = gaps;
                            "gap"
                        } else if poll == wait {
                            "schedule"
                        } else {
                            continue;
                        }
                    }
                }
            }
        };
        // The first snapshot waits until capture is tailing: capture starts at the majority
        // point it finds, and a snapshot whose start came before that could never be restored
        // from (its replay would begin before the timeline's first entry).
        if reason == "first" {
            while !metrics.capture.is_capturing() {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                }
            }
        }
        if *stop.borrow() {
            return;
        }
        let mut settings = plan.settings.clone();
        settings.reason = reason.into();
        let t0 = std::time::Instant::now();
        match take(&repo, &source, &settings).await {
            Ok(_) => {
                metrics.snapshots.taken.inc();
                metrics.snapshots.newest(
                    chrono::Utc::now().timestamp_millis(),
                    u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
                );
                // Retention runs right after a snapshot: the new one may let older ones go.
                if let Some(rules) = plan.retention {
                    match crate::retention::prune(&repo, &plan.settings.source, rules, false).await
                    {
                        Ok((decided, done)) => metrics.retention.record(&decided, done.as_ref()),
                        Err(e) => {
                            tracing::error!(error = %e, "retention failed; nothing a kept restore point needs was deleted; retried after the next snapshot");
                        }
                    }
                }
            }
            Err(e) => {
                metrics.snapshots.errors.inc();
                tracing::error!(error = %e, reason, "snapshot failed; the next attempt follows the schedule");
            }
        }
        seen_gaps = seen_gaps.max(metrics.capture.gaps.get());
    }
}

fn src(e: mongodb::error::Error) -> CaptureError {
    CaptureError::Source(crate::capture::oplog::describe_source_error(&e))
}
