//! The `RestorePlan`: everything a restore will do, decided before it touches the target, so
//! `--dry-run` prints exactly what a real run does.
//!
//! Choosing: the newest complete snapshot whose `end` is surely inside the cut, whose `start`
//! lies in a timeline run that reaches the cut; the oplog segments of that run from the
//! snapshot's `start` through the cut; the snapshot's collections in scope.

use mc_core::catalog::{
    list_sources, CollectionEntry, Coverage, RepoError, Repository, RestorableWindow, SegmentEntry,
    SnapshotManifest,
};
use mc_core::format::OplogTs;
use serde::Serialize;

use crate::namespaces::{NamespaceMap, ROLES_NS, USERS_NS};
use crate::point::{format_ts, Cut, RestorePoint};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("the repository holds no source {source_id:?}; it holds: {known}. Pass one of them with --source (or fix the policy's source.id)")]
    UnknownSource { source_id: String, known: String },
    #[error("source {source_id:?} has no complete snapshot in the repository: nothing is restorable until the agent takes one (mc-agent snapshot --policy FILE)")]
    NoSnapshot { source_id: String },
    #[error("source {source_id:?} has no snapshot named {id:?}; `mc-restore list` shows them")]
    UnknownSnapshot { source_id: String, id: String },
    #[error("--restore-users-and-roles: snapshot {snapshot} did not capture users and roles (the policy's snapshots.include_users_and_roles was false when it was taken); {alternatives}")]
    UsersAndRolesNotCaptured {
        snapshot: String,
        alternatives: String,
    },
    #[error(
        "{point} is not restorable for source {source_id:?}: {why}. Restorable windows: {windows}"
    )]
    OutsideWindows {
        source_id: String,
        point: String,
        why: String,
        windows: String,
    },
}

/// One collection the restore loads, with the name it gets on the target.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedCollection {
    pub target_ns: String,
    #[serde(flatten)]
    pub entry: CollectionEntry,
}

/// What a restore does, in order.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    pub source: String,
    /// `--at` as given.
    pub point: String,
    pub cut: Cut,
    pub snapshot: SnapshotManifest,
    /// Collections loaded from the snapshot, in scope, with their target names.
    pub collections: Vec<PlannedCollection>,
    /// Oplog segments to replay, in chain order, covering (snapshot start, cut].
    pub segments: Vec<SegmentEntry>,
    /// Replay applies entries after this timestamp (the snapshot's start).
    pub replay_after: OplogTs,
    /// Stored bytes to fetch: snapshot parts in scope plus oplog segments.
    pub fetch_bytes: u64,
    /// Oplog entries in the chosen segments (an upper bound on what is replayed).
    pub ops_upper_bound: u64,
}

impl RestorePlan {
    /// Plans a restore of `source` to `point`.
    pub async fn build(
        repo: &Repository,
        source: &str,
        point: RestorePoint,
        snapshot_id: Option<&str>,
        namespaces: &NamespaceMap,
    ) -> Result<RestorePlan, PlanError> {
        let Coverage {
            catalog,
            timeline,
            snapshots,
            windows,
        } = Coverage::load(repo, source).await?;
        if snapshots.is_empty() && catalog.segments.is_empty() {
            require_known_source(repo, source).await?;
        }
        if snapshots.is_empty() {
            return Err(PlanError::NoSnapshot {
                source_id: source.to_owned(),
            });
        }
        let newest = windows.iter().map(|w| w.to).max();
        let outside = |why: String| PlanError::OutsideWindows {
            source_id: source.to_owned(),
            point: point.to_string(),
            why,
            windows: describe_windows(&windows),
        };
        let Some(newest) = newest else {
            return Err(outside(
                "no snapshot is covered by captured oplog yet (the agent must capture past a snapshot's end)".into(),
            ));
        };
        if point == RestorePoint::Latest {
            if let Some(captured) = timeline.newest().filter(|c| *c > newest) {
                // `latest` must not quietly mean "before a gap": the writes after it would be lost.
                return Err(outside(format!(
                    "the newest restorable point {} is older than the newest captured oplog {} (a gap, or a run without a snapshot, lies between). Restoring to {} loses the writes after it: pass --at {} to accept that",
                    format_ts(newest), format_ts(captured), format_ts(newest), newest.arg()
                )));
            }
        }
        let cut = Cut::of(point, newest);

        // A snapshot ending in T's own second may or may not be before T (milliseconds decide,
        // and only replay sees them): such a window is used only when no other is, and replay
        // checks it.
        let usable = |w: &RestorableWindow| w.from <= cut.bound && w.to >= cut.needs_through();
        let surely = |w: &RestorableWindow| w.from <= cut.surely_included();
        let window = match snapshot_id {
            Some(id) => {
                if !snapshots.iter().any(|s| s.id == id) {
                    return Err(PlanError::UnknownSnapshot {
                        source_id: source.to_owned(),
                        id: id.to_owned(),
                    });
                }
                windows
                    .iter()
                    .find(|w| w.snapshot == id && usable(w))
                    .ok_or_else(|| outside(format!("snapshot {id} cannot reach it")))?
            }
            // With --restore-users-and-roles, a snapshot that captured them wins over a newer
            // one that did not (two can end in the same second).
            None => windows
                .iter()
                .filter(|w| usable(w))
                .max_by_key(|w| {
                    let has_users = namespaces.users_and_roles()
                        && snapshots
                            .iter()
                            .any(|s| s.id == w.snapshot && captured_users_and_roles(s));
                    (has_users, surely(w), w.from)
                })
                .ok_or_else(|| outside(why_not(&cut, &windows, &timeline)))?,
        };
        let snapshot = snapshots
            .iter()
            .find(|s| s.id == window.snapshot)
            .cloned()
            .ok_or_else(|| outside("its snapshot vanished while planning".into()))?;

        if namespaces.users_and_roles() && !captured_users_and_roles(&snapshot) {
            let usable: Vec<&str> = windows
                .iter()
                .filter(|w| usable(w))
                .filter_map(|w| snapshots.iter().find(|s| s.id == w.snapshot))
                .filter(|s| captured_users_and_roles(s))
                .map(|s| s.id.as_str())
                .collect();
            let alternatives = if usable.is_empty() {
                "no snapshot usable for this point did: restore without --restore-users-and-roles (and recreate users by hand), or set the policy field and take a new snapshot for later points".to_owned()
            } else {
                format!(
                    "snapshots usable for this point that did: {} (choose one with --snapshot ID)",
                    usable.join(", ")
                )
            };
            return Err(PlanError::UsersAndRolesNotCaptured {
                snapshot: snapshot.id.clone(),
                alternatives,
            });
        }

        let run = timeline
            .run_containing(snapshot.start)
            .ok_or_else(|| outside("the snapshot's start is in no run".into()))?;
        let by_key: std::collections::HashMap<&str, &SegmentEntry> = catalog
            .segments
            .iter()
            .map(|s| (s.key.as_str(), s))
            .collect();
        let segments: Vec<SegmentEntry> = run
            .segments
            .iter()
            .filter_map(|k| by_key.get(k.as_str()).copied())
            .filter(|s| {
                s.oplog_range()
                    .is_some_and(|r| r.last > snapshot.start && r.first <= cut.bound)
            })
            .cloned()
            .collect();

        let collections: Vec<PlannedCollection> = snapshot
            .collections
            .iter()
            .filter(|c| c.kind != "dropped" && namespaces.in_scope(&c.ns))
            .map(|c| PlannedCollection {
                target_ns: namespaces.target(&c.ns),
                entry: c.clone(),
            })
            .collect();
        let part_bytes = collection_part_bytes(repo, &snapshot, &collections).await?;
        let fetch_bytes = part_bytes + segments.iter().map(|s| s.size).sum::<u64>();
        let ops_upper_bound = segments
            .iter()
            .filter_map(|s| s.oplog_range())
            .map(|r| r.count)
            .sum();
        Ok(RestorePlan {
            source: source.to_owned(),
            point: point.to_string(),
            cut,
            replay_after: snapshot.start,
            snapshot,
            collections,
            segments,
            fetch_bytes,
            ops_upper_bound,
        })
    }

    /// The plan in words, for `--dry-run` and the log.
    pub fn describe(&self, load_docs_per_s: f64, replay_ops_per_s: f64) -> String {
        let docs: u64 = self.collections.iter().map(|c| c.entry.count).sum();
        let raw: u64 = self.collections.iter().map(|c| c.entry.bytes).sum();
        let mut out = format!(
            "restore of source {} to {}\n  snapshot {} (start {}, end {})\n  load: {} collections, {} documents, {} bytes of BSON\n  replay: {} oplog segments, at most {} entries, after {} through {}\n  fetch: {} stored bytes\n",
            self.source,
            self.point,
            self.snapshot.id,
            format_ts(self.snapshot.start),
            format_ts(self.snapshot.end),
            self.collections.len(),
            docs,
            raw,
            self.segments.len(),
            self.ops_upper_bound,
            format_ts(self.replay_after),
            format_ts(self.cut.bound),
            self.fetch_bytes,
        );
        for c in &self.collections {
            let arrow = if c.target_ns == c.entry.ns {
                String::new()
            } else {
                format!(" -> {}", c.target_ns)
            };
            out += &format!(
                "    {} ({}){arrow}: {} documents\n",
                c.entry.ns, c.entry.kind, c.entry.count
            );
        }
        if self
            .collections
            .iter()
            .any(|c| c.entry.ns == USERS_NS || c.entry.ns == ROLES_NS)
        {
            out += "  users and roles: loaded and replayed into the staging collections above, then merged into the target's (same-named users and roles on the target are kept)\n";
        }
        let secs = docs as f64 / load_docs_per_s + self.ops_upper_bound as f64 / replay_ops_per_s;
        out += &format!(
            "  estimate: {:.0} s (at {:.0} docs/s load and {:.0} ops/s replay, measured in docs/performance.md)\n",
            secs, load_docs_per_s, replay_ops_per_s
        );
        out
    }
}

/// Whether a snapshot copied users and roles: its manifest then lists both `admin.system.users`
/// and `admin.system.roles` (empty when the source had none).
pub fn captured_users_and_roles(snapshot: &SnapshotManifest) -> bool {
    [USERS_NS, ROLES_NS]
        .iter()
        .all(|ns| snapshot.collections.iter().any(|c| c.ns == *ns))
}

/// Stored bytes of the planned collections' parts, from one listing of the snapshot's data
/// (not a request per part: a large snapshot has thousands).
async fn collection_part_bytes(
    repo: &Repository,
    snapshot: &SnapshotManifest,
    collections: &[PlannedCollection],
) -> Result<u64, RepoError> {
    let prefix = mc_core::catalog::names::snapshot_data_prefix(&snapshot.source, &snapshot.id);
    let sizes: std::collections::HashMap<String, u64> = repo
        .store()
        .list(&prefix)
        .await?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    Ok(collections
        .iter()
        .flat_map(|c| &c.entry.parts)
        .filter_map(|part| sizes.get(part))
        .sum())
}

fn why_not(
    cut: &Cut,
    windows: &[RestorableWindow],
    timeline: &mc_core::catalog::Timeline,
) -> String {
    if let Some(gap) = timeline
        .gaps
        .iter()
        .find(|g| g.after < cut.bound && cut.surely_included() < g.before)
    {
        return format!(
            "it falls in a gap of the oplog timeline: entries after {} and before {} are not in the repository",
            format_ts(gap.after),
            format_ts(gap.before)
        );
    }
    if windows.is_empty() {
        return "no restorable window exists".into();
    }
    if windows.iter().all(|w| w.from > cut.bound) {
        "it is before the end of the oldest usable snapshot".into()
    } else if windows.iter().all(|w| w.to < cut.needs_through()) {
        "the repository does not hold the oplog through it yet (capture has not passed it, or it is in the future)".into()
    } else {
        "it falls in a gap of the oplog timeline between windows".into()
    }
}

fn describe_windows(windows: &[RestorableWindow]) -> String {
    if windows.is_empty() {
        return "none".into();
    }
    let mut merged: Vec<(OplogTs, OplogTs)> = Vec::new();
    let mut sorted: Vec<_> = windows.iter().map(|w| (w.from, w.to)).collect();
    sorted.sort();
    for (from, to) in sorted {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    merged
        .iter()
        .map(|(f, t)| format!("{} .. {}", format_ts(*f), format_ts(*t)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Fails, naming the sources the repository does hold, when it holds nothing of `source` (a
/// typo in `--source` must not read as "nothing restorable yet").
pub async fn require_known_source(repo: &Repository, source: &str) -> Result<(), PlanError> {
    let known = list_sources(repo).await?;
    if known.iter().any(|s| s == source) {
        return Ok(());
    }
    Err(PlanError::UnknownSource {
        source_id: source.to_owned(),
        known: if known.is_empty() {
            "none (the repository is empty: is the agent writing to it?)".into()
        } else {
            known.join(", ")
        },
    })
}
