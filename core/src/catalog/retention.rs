//! Retention: which snapshots to keep, and which objects can go without losing a restore point
//! that is kept.
//!
//! Snapshots are kept by restic's rules: `keep_daily = N` keeps the newest snapshot of each of
//! the last N days that have one (likewise weeks and months); `pitr_window` keeps every snapshot
//! that finished inside the window plus the newest one before it (the anchor every point of the
//! window replays from). The newest snapshot is always kept. The oplog is kept from the
//! earliest `start` of any kept snapshot on, so every kept snapshot stays restorable through the
//! end of the timeline: nothing a kept restore point needs is ever deleted.
//!
//! [`plan`] decides, with no I/O, so decisions are pinned by snapshot tests; [`apply`] carries a
//! plan out (manifest before data, so a half-deleted snapshot is never taken for a whole one).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;

use super::index::{Catalog, SegmentEntry};
use super::names::snapshot_manifest_key;
use super::snapshots::SnapshotManifest;
use super::{RepoError, Repository};
use crate::format::{OplogTs, StreamKind};

/// The keep rules (from the policy's `retention:` section).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepRules {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub pitr_window: Option<Duration>,
}

/// A snapshot kept, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub id: String,
    pub reasons: Vec<String>,
}

/// What retention would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionPlan {
    pub keep: Vec<Kept>,
    /// Snapshot ids to delete (manifest first, then their data).
    pub forget: Vec<String>,
    /// Oplog is kept from here on (the earliest start of a kept snapshot).
    pub oplog_kept_from: Option<OplogTs>,
    /// Oplog segments wholly before `oplog_kept_from`.
    pub delete_segments: Vec<String>,
}

impl RetentionPlan {
    pub fn is_empty(&self) -> bool {
        self.forget.is_empty() && self.delete_segments.is_empty()
    }
}

/// The calendar bucket (day, ISO week, month) a snapshot time falls in.
type BucketKey = fn(DateTime<Utc>) -> String;

fn time_of(ts: OplogTs) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(ts.t), 0).unwrap_or_default()
}

/// Decides what to keep. `snapshots` in any order; `oplog` is the source's oplog catalog.
pub fn plan(
    snapshots: &[SnapshotManifest],
    oplog: &[SegmentEntry],
    rules: KeepRules,
    now: DateTime<Utc>,
) -> RetentionPlan {
    let mut newest_first: Vec<&SnapshotManifest> = snapshots.iter().collect();
    newest_first.sort_by(|a, b| (b.end, &b.id).cmp(&(a.end, &a.id)));
    let mut reasons: BTreeMap<&str, Vec<String>> = BTreeMap::new();

    if let Some(newest) = newest_first.first() {
        reasons
            .entry(newest.id.as_str())
            .or_default()
            .push("newest".into());
    }
    let buckets: [(&str, u32, BucketKey); 3] = [
        ("daily", rules.daily, |t| t.format("%Y-%m-%d").to_string()),
        ("weekly", rules.weekly, |t| {
            let w = t.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }),
        ("monthly", rules.monthly, |t| {
            format!("{}-{:02}", t.year(), t.month())
        }),
    ];
    for (name, count, key_of) in buckets {
        let mut seen: Vec<String> = Vec::new();
        for s in &newest_first {
            if seen.len() as u32 >= count {
                break;
            }
            let key = key_of(time_of(s.end));
            if !seen.contains(&key) {
                reasons
                    .entry(s.id.as_str())
                    .or_default()
                    .push(format!("{name} {key}"));
                seen.push(key);
            }
        }
    }
    if let Some(window) = rules.pitr_window {
        let from = now - chrono::Duration::from_std(window).unwrap_or_default();
        let mut anchored = false;
        for s in &newest_first {
            if time_of(s.end) >= from {
                reasons
                    .entry(s.id.as_str())
                    .or_default()
                    .push("within pitr window".into());
            } else if !anchored {
                reasons
                    .entry(s.id.as_str())
                    .or_default()
                    .push("pitr window anchor".into());
                anchored = true;
            }
        }
    }

    let mut out = RetentionPlan::default();
    for s in newest_first.iter().rev() {
        match reasons.get(s.id.as_str()) {
            Some(why) => out.keep.push(Kept {
                id: s.id.clone(),
                reasons: why.clone(),
            }),
            None => out.forget.push(s.id.clone()),
        }
    }
    let kept_starts = newest_first
        .iter()
        .filter(|s| reasons.contains_key(s.id.as_str()))
        .map(|s| s.start);
    out.oplog_kept_from = kept_starts.min();
    if let Some(from) = out.oplog_kept_from {
        for seg in oplog {
            if seg.oplog_range().is_some_and(|r| r.last < from) {
                out.delete_segments.push(seg.key.clone());
            }
        }
    }
    out
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub snapshots_deleted: usize,
    pub objects_deleted: usize,
    pub bytes_freed: u64,
}

/// Carries out a plan for `source`: forgotten snapshots (manifest first, so an interrupted prune
/// leaves no snapshot that looks complete), then oplog segments, then a fresh index of what
/// remains so the catalog does not report the deleted segments as missing.
pub async fn apply(
    repo: &Repository,
    source: &str,
    plan: &RetentionPlan,
) -> Result<Pruned, RepoError> {
    let store = repo.store();
    let mut done = Pruned::default();
    for id in &plan.forget {
        let manifest = snapshot_manifest_key(source, id);
        let dir = manifest.trim_end_matches("manifest.seg").to_owned();
        let size = store.head(&manifest).await?.map_or(0, |m| m.size);
        store.delete(&manifest).await?;
        done.bytes_freed += size;
        done.objects_deleted += 1;
        for obj in store.list(&dir).await? {
            store.delete(&obj.key).await?;
            done.bytes_freed += obj.size;
            done.objects_deleted += 1;
        }
        done.snapshots_deleted += 1;
        tracing::info!(snapshot = %id, "retention: snapshot deleted");
    }
    if !plan.delete_segments.is_empty() {
        let catalog = Catalog::load(repo, source, StreamKind::Oplog).await?;
        let doomed: std::collections::BTreeSet<&str> =
            plan.delete_segments.iter().map(String::as_str).collect();
        let remaining = Catalog {
            segments: catalog
                .segments
                .iter()
                .filter(|s| !doomed.contains(s.key.as_str()))
                .cloned()
                .collect(),
            missing: Vec::new(),
            index: None,
        };
        // The new index first: a crash after it leaves extra objects, never a catalog that
        // points at deleted ones.
        let new_index = remaining
            .write_index(repo, source, StreamKind::Oplog)
            .await?;
        for seg in catalog
            .segments
            .iter()
            .filter(|s| doomed.contains(s.key.as_str()))
        {
            store.delete(&seg.key).await?;
            done.bytes_freed += seg.size;
            done.objects_deleted += 1;
        }
        let prefix = super::names::index_prefix(source, StreamKind::Oplog);
        for old in store.list(&prefix).await? {
            if Some(&old.key) != new_index.as_ref() {
                store.delete(&old.key).await?;
                done.objects_deleted += 1;
            }
        }
    }
    Ok(done)
}
