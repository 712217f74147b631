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
//! Incomplete snapshots (data objects but no manifest: the agent crashed or was killed while
//! taking one, or an earlier prune was interrupted between a manifest and its data) are never
//! restorable and no kept restore point needs them. Their data is deleted once its newest
//! object is older than [`KeepRules::incomplete_grace`]: a snapshot still being taken, here or
//! by another agent holding the lease, writes a part every few seconds and is never that old
//! ([`incomplete_snapshots`]; `docs/format.md` §2.1).
//!
//! [`plan`] and [`incomplete_snapshots`] decide, with no I/O, so decisions are pinned by
//! snapshot and unit tests; [`plan_repository`] gathers their inputs; [`apply`] carries a plan
//! out (manifest before data, so a half-deleted snapshot is never taken for a whole one).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use serde::Serialize;

use super::index::{Catalog, SegmentEntry};
use super::names::{snapshot_manifest_key, stream_prefix};
use super::snapshots::{list_snapshots, SnapshotManifest};
use super::{RepoError, Repository};
use crate::format::{OplogTs, StreamKind};
use crate::storage::ObjectMeta;

/// How long an incomplete snapshot's data stays after its newest object was written, unless the
/// policy says otherwise (`retention.incomplete_snapshot_grace`). A snapshot being taken writes
/// a part per `capture.max_segment_bytes` of documents (every few seconds at the measured
/// ~200 MB/s), so its newest part is seconds old; a day is far beyond any pause between two
/// parts and beyond the longest expected snapshot as a whole (hours for terabytes).
pub const DEFAULT_INCOMPLETE_SNAPSHOT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// The keep rules (from the policy's `retention:` section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepRules {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub pitr_window: Option<Duration>,
    /// Incomplete snapshots whose newest object is at least this old are deleted.
    pub incomplete_grace: Duration,
}

impl Default for KeepRules {
    fn default() -> Self {
        Self {
            daily: 0,
            weekly: 0,
            monthly: 0,
            pitr_window: None,
            incomplete_grace: DEFAULT_INCOMPLETE_SNAPSHOT_GRACE,
        }
    }
}

/// The data of a snapshot that has no manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncompleteSnapshot {
    pub id: String,
    /// Its data objects (`…/<id>/data/…`), in key order. Only these are ever deleted.
    pub objects: Vec<String>,
    /// Their stored size.
    pub bytes: u64,
    /// When it was last written to: the newest object's time in the store, or the start time
    /// in its id, whichever is later (`None`: neither is known). RFC 3339 in JSON.
    #[serde(serialize_with = "rfc3339")]
    pub last_written: Option<DateTime<Utc>>,
}

fn rfc3339<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        None => s.serialize_none(),
    }
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
    /// Incomplete snapshots older than the grace: their data is deleted.
    pub incomplete: Vec<IncompleteSnapshot>,
    /// Incomplete snapshots within the grace: kept (one may still be being taken).
    pub incomplete_kept: Vec<IncompleteSnapshot>,
}

impl RetentionPlan {
    pub fn is_empty(&self) -> bool {
        self.forget.is_empty() && self.delete_segments.is_empty() && self.incomplete.is_empty()
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

/// The start time a snapshot id carries (`<YYYYMMDDTHHMMSSZ>-<hex>`), if it has that form.
fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.get(..16)?;
    NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Splits a listing of `sources/<source>/snapshots/` into incomplete snapshots to delete and
/// incomplete snapshots to keep, with no I/O.
///
/// A snapshot is incomplete when the listing holds objects under its `data/` but no
/// `manifest.seg`, and its id is not in `complete` (manifests found by a separate read, which
/// must come *after* the listing: a snapshot finishing in between is then known complete). Its
/// data is deleted when it was last written at least `grace` before `now`; when the time is
/// unknown, only a zero grace deletes it. Objects of a snapshot directory other than `data/…`
/// are never selected.
pub fn incomplete_snapshots(
    source: &str,
    listing: &[ObjectMeta],
    complete: &[&str],
    grace: Duration,
    now: DateTime<Utc>,
) -> (Vec<IncompleteSnapshot>, Vec<IncompleteSnapshot>) {
    let prefix = stream_prefix(source, StreamKind::SnapshotManifest);
    struct Seen {
        manifest: bool,
        objects: Vec<String>,
        bytes: u64,
        newest: Option<DateTime<Utc>>,
    }
    let mut by_id: BTreeMap<&str, Seen> = BTreeMap::new();
    for obj in listing {
        let Some(rest) = obj.key.strip_prefix(&prefix) else {
            continue;
        };
        let Some((id, inside)) = rest.split_once('/') else {
            continue;
        };
        let seen = by_id.entry(id).or_insert(Seen {
            manifest: false,
            objects: Vec::new(),
            bytes: 0,
            newest: None,
        });
        if inside == "manifest.seg" {
            seen.manifest = true;
        } else if inside.starts_with("data/") {
            seen.objects.push(obj.key.clone());
            seen.bytes += obj.size;
            let written = obj.last_modified.map(DateTime::<Utc>::from);
            seen.newest = seen.newest.max(written);
        }
    }
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let (mut delete, mut keep) = (Vec::new(), Vec::new());
    for (id, seen) in by_id {
        if seen.manifest || seen.objects.is_empty() || complete.contains(&id) {
            continue;
        }
        let last_written = seen.newest.max(id_time(id));
        let old_enough = match last_written {
            Some(t) => now.signed_duration_since(t) >= grace,
            None => grace.is_zero(),
        };
        let mut objects = seen.objects;
        objects.sort();
        let incomplete = IncompleteSnapshot {
            id: id.to_owned(),
            objects,
            bytes: seen.bytes,
            last_written,
        };
        if old_enough {
            delete.push(incomplete);
        } else {
            keep.push(incomplete);
        }
    }
    (delete, keep)
}

/// Plans retention for `source` from the repository as it is now: one listing of its snapshots
/// (for incomplete ones), then the manifests, then the oplog catalog.
pub async fn plan_repository(
    repo: &Repository,
    source: &str,
    rules: KeepRules,
    now: DateTime<Utc>,
) -> Result<RetentionPlan, RepoError> {
    // The listing first: a snapshot whose manifest lands after it is still found complete by
    // `list_snapshots` below, so its data is never taken for an incomplete snapshot's.
    let listing = repo
        .store()
        .list(&stream_prefix(source, StreamKind::SnapshotManifest))
        .await?;
    let snapshots = list_snapshots(repo, source).await?;
    let oplog = Catalog::load(repo, source, StreamKind::Oplog).await?;
    let mut decided = plan(&snapshots, &oplog.segments, rules, now);
    let complete: Vec<&str> = snapshots.iter().map(|s| s.id.as_str()).collect();
    let (delete, keep) =
        incomplete_snapshots(source, &listing, &complete, rules.incomplete_grace, now);
    decided.incomplete = delete;
    decided.incomplete_kept = keep;
    Ok(decided)
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub snapshots_deleted: usize,
    /// Incomplete snapshots whose data was deleted.
    pub incomplete_deleted: usize,
    pub objects_deleted: usize,
    pub bytes_freed: u64,
}

/// Carries out a plan for `source`: forgotten snapshots (manifest first, so an interrupted prune
/// leaves no snapshot that looks complete), the data of incomplete snapshots, then oplog
/// segments, then a fresh index of what remains so the catalog does not report the deleted
/// segments as missing.
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
    for incomplete in &plan.incomplete {
        // Checked again just before deleting: a manifest that appeared since the plan means the
        // snapshot completed after all (only possible with a grace shorter than a snapshot).
        let manifest = snapshot_manifest_key(source, &incomplete.id);
        if store.head(&manifest).await?.is_some() {
            tracing::warn!(snapshot = %incomplete.id, "retention: incomplete snapshot got its manifest meanwhile; kept");
            continue;
        }
        // Only the objects listed when planning: a part written since is not touched.
        for key in &incomplete.objects {
            store.delete(key).await?;
            done.objects_deleted += 1;
        }
        done.bytes_freed += incomplete.bytes;
        done.incomplete_deleted += 1;
        tracing::info!(
            snapshot = %incomplete.id,
            objects = incomplete.objects.len(),
            bytes = incomplete.bytes,
            "retention: incomplete snapshot's data deleted"
        );
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use chrono::{DateTime, TimeZone, Utc};

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    /// An object of source `rs0`'s snapshot `id` (`data/<ns>/<part>` or `manifest`) written
    /// `ago` before [`now`] (`None`: the store gives no time).
    fn obj(id: &str, inside: &str, ago: Option<Duration>) -> ObjectMeta {
        ObjectMeta {
            key: format!("sources/rs0/snapshots/{id}/{inside}"),
            size: 100,
            last_modified: ago.map(|a| SystemTime::from(now()) - a),
        }
    }

    fn ids(list: &[IncompleteSnapshot]) -> Vec<&str> {
        list.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn only_snapshots_without_a_manifest_older_than_the_grace_are_selected() {
        let listing = vec![
            // Complete: data and manifest.
            obj(
                "20261120T020000Z-aaaaaa",
                "data/app.users/000000.seg",
                Some(100 * HOUR),
            ),
            obj("20261120T020000Z-aaaaaa", "manifest.seg", Some(100 * HOUR)),
            // Crashed two days ago: two parts, no manifest.
            obj(
                "20261123T020000Z-bbbbbb",
                "data/app.a/000000.seg",
                Some(49 * HOUR),
            ),
            obj(
                "20261123T020000Z-bbbbbb",
                "data/app.b/000000.seg",
                Some(48 * HOUR),
            ),
            // Being taken right now: its newest part is seconds old.
            obj(
                "20261125T115000Z-cccccc",
                "data/app.a/000000.seg",
                Some(HOUR / 60),
            ),
            // Found complete by the manifest read that followed the listing.
            obj(
                "20261122T020000Z-dddddd",
                "data/app.a/000000.seg",
                Some(72 * HOUR),
            ),
            // Another source's objects are not this source's business.
            ObjectMeta {
                key: "sources/rs1/snapshots/20261101T000000Z-eeeeee/data/x.y/000000.seg".into(),
                size: 1,
                last_modified: None,
            },
        ];
        let complete = ["20261122T020000Z-dddddd"];
        let (delete, keep) = incomplete_snapshots("rs0", &listing, &complete, 24 * HOUR, now());
        assert_eq!(ids(&delete), vec!["20261123T020000Z-bbbbbb"]);
        assert_eq!(
            delete[0].objects,
            vec![
                "sources/rs0/snapshots/20261123T020000Z-bbbbbb/data/app.a/000000.seg",
                "sources/rs0/snapshots/20261123T020000Z-bbbbbb/data/app.b/000000.seg",
            ]
        );
        assert_eq!(delete[0].bytes, 200);
        assert_eq!(
            delete[0].last_written,
            Some(now() - chrono::Duration::hours(48)),
            "the newest part counts"
        );
        assert_eq!(ids(&keep), vec!["20261125T115000Z-cccccc"]);

        // A zero grace takes the running one too (what `prune --incomplete-grace 0s` is for,
        // when no snapshot runs); complete snapshots never.
        let (delete, keep) =
            incomplete_snapshots("rs0", &listing, &complete, Duration::ZERO, now());
        assert_eq!(
            ids(&delete),
            vec!["20261123T020000Z-bbbbbb", "20261125T115000Z-cccccc"]
        );
        assert!(keep.is_empty());
    }

    #[test]
    fn a_long_snapshot_that_still_writes_is_kept_whatever_its_start() {
        // Started three days ago (its id says so), wrote a part a minute ago.
        let listing = vec![
            obj(
                "20261122T120000Z-aaaaaa",
                "data/app.big/000000.seg",
                Some(72 * HOUR),
            ),
            obj(
                "20261122T120000Z-aaaaaa",
                "data/app.big/004711.seg",
                Some(HOUR / 60),
            ),
        ];
        let (delete, keep) = incomplete_snapshots("rs0", &listing, &[], 24 * HOUR, now());
        assert!(delete.is_empty());
        assert_eq!(ids(&keep), vec!["20261122T120000Z-aaaaaa"]);
    }

    #[test]
    fn without_store_times_the_id_dates_it_and_an_unknown_age_is_kept() {
        let listing = vec![
            // No time from the store: the id's start (2 days ago) dates it.
            obj("20261123T120000Z-aaaaaa", "data/a.b/000000.seg", None),
            // Neither: an id not in the usual form, no store time.
            obj("handmade", "data/a.b/000000.seg", None),
            // A store clock ahead of ours: written "in the future", so not old, whatever the id.
            ObjectMeta {
                key: "sources/rs0/snapshots/20261101T000000Z-cccccc/data/a.b/000000.seg".into(),
                size: 1,
                last_modified: Some(SystemTime::from(now()) + HOUR),
            },
        ];
        let (delete, keep) = incomplete_snapshots("rs0", &listing, &[], 24 * HOUR, now());
        assert_eq!(ids(&delete), vec!["20261123T120000Z-aaaaaa"]);
        assert_eq!(
            ids(&keep),
            vec!["20261101T000000Z-cccccc", "handmade"],
            "{keep:?}"
        );
        // A zero grace takes the undatable one too; what the store dates after now waits until
        // now has caught up with it.
        let (delete, keep) = incomplete_snapshots("rs0", &listing, &[], Duration::ZERO, now());
        assert_eq!(ids(&delete), vec!["20261123T120000Z-aaaaaa", "handmade"]);
        assert_eq!(ids(&keep), vec!["20261101T000000Z-cccccc"]);
    }

    #[test]
    fn only_data_objects_are_ever_selected() {
        let listing = vec![
            obj(
                "20261101T000000Z-aaaaaa",
                "data/a.b/000000.seg",
                Some(800 * HOUR),
            ),
            obj("20261101T000000Z-aaaaaa", "notes.txt", Some(800 * HOUR)),
            // A directory with no data at all is not a snapshot to clean.
            obj("20261101T000000Z-bbbbbb", "notes.txt", Some(800 * HOUR)),
        ];
        let (delete, keep) = incomplete_snapshots("rs0", &listing, &[], HOUR, now());
        assert_eq!(ids(&delete), vec!["20261101T000000Z-aaaaaa"]);
        assert_eq!(delete[0].objects.len(), 1);
        assert!(keep.is_empty());
    }

    #[test]
    fn snapshot_ids_carry_their_start() {
        assert_eq!(
            id_time("20261125T101500Z-4f9a0c"),
            Utc.with_ymd_and_hms(2026, 11, 25, 10, 15, 0).single()
        );
        assert_eq!(id_time("day08-000000"), None);
        assert_eq!(id_time(""), None);
    }

    #[test]
    fn the_default_rules_keep_incomplete_snapshots_a_day() {
        assert_eq!(KeepRules::default().incomplete_grace, 24 * HOUR);
        let plan = RetentionPlan {
            incomplete: vec![IncompleteSnapshot {
                id: "x".into(),
                objects: vec!["k".into()],
                bytes: 1,
                last_written: None,
            }],
            ..RetentionPlan::default()
        };
        assert!(!plan.is_empty(), "deleting incomplete data is work to do");
    }
}
