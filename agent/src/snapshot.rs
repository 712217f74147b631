//! Base snapshots: a logical copy of every user collection into snapshot segments, with the
//! collections' options and index definitions, finished by a manifest
//! (`mc_core::catalog::SnapshotManifest`).
//!
//! Consistency follows `mongodump --oplog`: the majority commit point is recorded before the
//! first read (`start`) and after the last (`end`); restoring loads the documents and replays the
//! oplog from `start`, which is valid for any time at or after `end`. Reads use read concern
//! `majority`, so no document that a failover could roll back enters a snapshot.
//!
//! A large collection is read as several ranges of its `_id` index at once ([`ranges`]), each
//! by its own cursor into its own parts; the point-in-time rule is unchanged, since every
//! cursor reads between `start` and `end`. Reading, sealing and storing overlap ([`copy`]), a
//! cursor's replies are sealed by several threads at once, and at most `parallelism` sealers
//! compress at any time, whatever mix of collections and ranges. A sealer holds that permit only
//! while it compresses a reply, so a cursor waiting on the server (large documents) leaves the
//! cores to the other collections instead of reserving them.
//!
//! Users and roles (`admin.system.users`, `admin.system.roles`) are copied only when asked
//! (`snapshots.include_users_and_roles`); a snapshot that copied them lists both namespaces in
//! its manifest, with no parts when the source has none (`docs/format.md` §2.1).
//!
//! The manifest is written only after a listing shows every part it names: retention deletes the
//! data of snapshots without a manifest once their grace has passed, and a snapshot stalled
//! longer than that must fail rather than commit a manifest whose parts are gone.

mod copy;
pub mod ranges;

use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use mc_core::catalog::names::{new_snapshot_id, snapshot_data_prefix};
use mc_core::catalog::{CollectionEntry, Repository, SnapshotManifest};
use mc_core::format::WriterInfo;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};

use crate::capture::oplog::OplogSource;
use crate::capture::CaptureError;

/// Largest part, in raw BSON bytes, whatever `max_segment_bytes` says: each sealer holds one
/// part being sealed, and one more is being stored, with [`SEALERS_PER_PERMIT`] ×
/// `parallelism` sealers at most.
pub const MAX_PART_BYTES: u64 = 16 << 20;

/// Sealer threads (each with a part in progress) per permit to compress. A sealer compresses
/// only while it holds one of the `parallelism` permits; the threads beyond them let the
/// collections' cursors all read at once, so a cursor waiting on the server does not hold a core
/// idle while another collection queues (docs/performance.md, "What bounds each ratio on two
/// cores": `transcripts` ran first nearly alone, `interviews` last). Two per permit bounds the
/// parts in progress, hence memory, to twice what the permits alone would.
const SEALERS_PER_PERMIT: usize = 2;

/// Sealers one cursor feeds before a large collection is also split into ranges of `_id`: a
/// collection scan costs the server half the CPU of an `_id` range's index scan and fetches,
/// and one cursor delivered raw BSON faster than two cores compressed it (docs/performance.md,
/// "Snapshot against mongodump"). So `parallelism` 4 reads a collection with one cursor and
/// four sealers; 8 with two ranges of four; 16 with four.
const SEALERS_PER_CURSOR: usize = 4;

/// Databases never copied: replication state and cluster metadata.
const SKIPPED_DATABASES: &[&str] = &["local", "config"];

/// The collections of `admin` holding users and roles, copied when
/// [`SnapshotSettings::users_and_roles`] is set.
pub const USERS_AND_ROLES: &[&str] = &["system.users", "system.roles"];

/// How a snapshot is taken.
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    pub source: String,
    /// Sealers compressing at once, over all the cursors reading (a collection is read by one
    /// cursor, or by several ranges of `_id` from 8 up).
    pub parallelism: usize,
    /// Raw BSON bytes per data segment (at most [`MAX_PART_BYTES`]).
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
    let t0 = Instant::now();
    let start = source.majority_point().await?;
    tracing::info!(snapshot = %id, %start, reason = %s.reason, "snapshot started");
    tracing::debug!(ms = t0.elapsed().as_millis(), "start point read");

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

    tracing::debug!(
        ms = t0.elapsed().as_millis(),
        collections = planned.len(),
        "collections listed"
    );
    let copier = Arc::new(Copier {
        repo: repo.clone(),
        client: client.clone(),
        settings: Arc::new(s.clone()),
        snapshot: Arc::from(id.as_str()),
        sealers: Arc::new(tokio::sync::Semaphore::new(
            s.parallelism.max(1) * SEALERS_PER_PERMIT,
        )),
        compressing: Arc::new(tokio::sync::Semaphore::new(s.parallelism.max(1))),
    });
    let mut collections: Vec<CollectionEntry> = futures::stream::iter(planned)
        .map(|p| {
            let copier = copier.clone();
            async move {
                let ns = format!("{}.{}", p.db, p.name);
                let (db, name) = (p.db.clone(), p.name.clone());
                match copier.collection(p).await {
                    Ok(entry) => Ok(entry),
                    // Dropped while being copied: replaying the oplog from `start` drops it
                    // again, so the snapshot records it and moves on.
                    Err(e) if !collection_exists(&copier.client, &db, &name).await? => {
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
    tracing::debug!(ms = t0.elapsed().as_millis(), "collections copied");
    collections.extend(absent);
    collections.sort_by(|a, b| a.ns.cmp(&b.ns));
    check_parts(repo, &s.source, &id, &collections).await?;
    tracing::debug!(ms = t0.elapsed().as_millis(), "parts checked");

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
    manifest.store(repo).await?;
    tracing::debug!(ms = t0.elapsed().as_millis(), "manifest stored");
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

/// What copying collections shares: where parts go, and the permits of the sealers.
struct Copier {
    repo: Repository,
    client: mongodb::Client,
    settings: Arc<SnapshotSettings>,
    snapshot: Arc<str>,
    /// [`SEALERS_PER_PERMIT`] × `parallelism` permits, one per sealer thread of the cursors
    /// reading (a cursor reads a whole collection or a range of one), held while it runs.
    sealers: Arc<tokio::sync::Semaphore>,
    /// `parallelism` permits, one per sealer compressing a reply, held only while it does.
    compressing: Arc<tokio::sync::Semaphore>,
}

impl Copier {
    /// Copies one collection: its index definitions, then its documents, as one cursor or as
    /// ranges of `_id` read at once ([`ranges::plan`]).
    async fn collection(&self, p: Planned) -> Result<CollectionEntry, CaptureError> {
        let t = Instant::now();
        let ns = format!("{}.{}", p.db, p.name);
        let db = self.client.database(&p.db);
        let mut indexes = Vec::new();
        let (mut count, mut bytes, mut parts) = (0, 0, Vec::new());
        if p.kind == "collection" || p.kind == "timeseries" {
            let mut has_id_index = false;
            let mut cursor = db
                .run_cursor_command(doc! {"listIndexes": &p.name})
                .await
                .map_err(src)?;
            while let Some(spec) = cursor.try_next().await.map_err(src)? {
                has_id_index |= spec.get_document("key").ok() == Some(&doc! {"_id": 1});
                indexes.push(Bson::Document(spec).into_canonical_extjson());
            }
            // A time-series collection's data lives in its buckets collection; copying the
            // buckets as they are (like mongodump) keeps the measurements exact.
            let data = if p.kind == "timeseries" {
                format!("system.buckets.{}", p.name)
            } else {
                p.name.clone()
            };
            let coll = db.collection::<RawDocumentBuf>(&data);
            let part_bytes = self.settings.max_segment_bytes.clamp(1, MAX_PART_BYTES);
            // Capped collections keep their natural order (restore inserts them in it);
            // clustered ones have no separate `_id` index to range over.
            let splittable = p.kind == "collection"
                && has_id_index
                && !p.options.get_bool("capped").unwrap_or(false)
                && !p.options.contains_key("clusteredIndex");
            let parallelism = self.settings.parallelism.max(1);
            let max_ranges = if splittable {
                (parallelism / SEALERS_PER_CURSOR).max(1)
            } else {
                1
            };
            let plan = match ranges::plan(&coll, max_ranges, part_bytes).await {
                Ok(plan) => plan,
                Err(e) => {
                    tracing::warn!(%ns, error = %e, "cannot sample the collection; reading it with one cursor in replies of the server's size");
                    ranges::ReadPlan::whole()
                }
            };
            let sink = copy::PartSink {
                repo: self.repo.clone(),
                settings: self.settings.clone(),
                snapshot: self.snapshot.clone(),
                ns: Arc::from(ns.as_str()),
                part_bytes,
                next_part: Arc::new(AtomicU32::new(0)),
                compressing: self.compressing.clone(),
            };
            let ranges = plan.ranges();
            // Sealers per cursor: one per part the range holds, up to its share of
            // `parallelism`; one for a capped collection, whose parts keep its order.
            let capped = p.options.get_bool("capped").unwrap_or(false);
            let sealers = if capped {
                1
            } else {
                let parts_per_range = plan.bytes.unwrap_or(0) / part_bytes / ranges.len() as u64;
                (parts_per_range as usize).clamp(1, (parallelism / ranges.len()).max(1))
            };
            let copies =
                futures::future::try_join_all(ranges.iter().enumerate().map(|(i, range)| {
                    let (coll, sink, sealer_permits) = (&coll, sink.clone(), self.sealers.clone());
                    async move {
                        let _permits = sealer_permits
                            .acquire_many_owned(sealers as u32)
                            .await
                            .map_err(|e| CaptureError::Source(e.to_string()))?;
                        copy::copy_range(coll, range, plan.batch_size, sink, sealers, i == 0).await
                    }
                }))
                .await?;
            let mut took = [Duration::ZERO; 4];
            for c in copies {
                count += c.documents;
                bytes += c.bytes;
                parts.extend(c.parts);
                for (sum, d) in
                    took.iter_mut()
                        .zip([c.server, c.backpressure, c.sealing, c.storing])
                {
                    *sum += d;
                }
            }
            tracing::debug!(
                %ns,
                documents = count,
                parts = parts.len(),
                ranges = ranges.len(),
                sealers,
                batch_size = plan.batch_size,
                ms = t.elapsed().as_millis(),
                // Summed over the ranges: waiting for the server, for the sealer, sealing, storing.
                server_ms = took[0].as_millis(),
                backpressure_ms = took[1].as_millis(),
                sealing_ms = took[2].as_millis(),
                storing_ms = took[3].as_millis(),
                "collection copied"
            );
        }
        Ok(CollectionEntry {
            ns,
            kind: p.kind,
            options: Bson::Document(p.options).into_canonical_extjson(),
            indexes,
            count,
            bytes,
            parts,
        })
    }
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
