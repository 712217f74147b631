//! Base snapshots in the repository: the manifest that describes one (written last, so a
//! snapshot without a manifest is incomplete and never used), and listing them.
//!
//! A snapshot is restorable for any time at or after its `end`, by loading its documents and
//! replaying the oplog timeline from its `start` (the rule `mongodump --oplog` relies on): reads
//! happened between `start` and `end`, so replaying from `start` brings every collection to a
//! consistent state.

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::names::{snapshot_manifest_key, stream_prefix};
use super::{RepoError, Repository};
use crate::format::{OplogTs, SegmentSpec, StreamKind};

/// One collection (or view) in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionEntry {
    /// `db.collection`.
    pub ns: String,
    /// `collection`, `view` or `timeseries`, as `listCollections` says.
    pub kind: String,
    /// `listCollections` options (validator, capped, collation, view pipeline, …) as canonical
    /// Extended JSON, so types survive.
    pub options: serde_json::Value,
    /// `listIndexes` specs as canonical Extended JSON.
    pub indexes: Vec<serde_json::Value>,
    /// Documents copied.
    pub count: u64,
    /// Bytes of raw BSON copied.
    pub bytes: u64,
    /// Keys of the data segments, in order.
    pub parts: Vec<String>,
}

/// What a snapshot holds; stored as the single JSON record of `manifest.seg`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotManifest {
    pub id: String,
    pub source: String,
    /// Majority commit point before the first read.
    pub start: OplogTs,
    /// Majority commit point after the last read: restorable from here on.
    pub end: OplogTs,
    /// RFC 3339 wall-clock times.
    pub started: String,
    pub finished: String,
    pub collections: Vec<CollectionEntry>,
    /// Why the snapshot was taken: `schedule`, `on-demand`, `gap`.
    pub reason: String,
}

impl SnapshotManifest {
    pub fn documents(&self) -> u64 {
        self.collections.iter().map(|c| c.count).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.collections.iter().map(|c| c.bytes).sum()
    }

    /// Stores the manifest; the snapshot exists from this moment.
    pub async fn store(&self, repo: &Repository) -> Result<String, RepoError> {
        let key = snapshot_manifest_key(&self.source, &self.id);
        let spec = SegmentSpec::new(
            StreamKind::SnapshotManifest,
            &key,
            &self.source,
            serde_json::json!({"snapshot": self.id}),
        );
        let record = serde_json::to_vec(self).map_err(|e| RepoError::Task(e.to_string()))?;
        repo.put_segment(spec, vec![record]).await?;
        Ok(key)
    }
}

/// Every complete snapshot of a source, oldest first.
pub async fn list_snapshots(
    repo: &Repository,
    source: &str,
) -> Result<Vec<SnapshotManifest>, RepoError> {
    let prefix = stream_prefix(source, StreamKind::SnapshotManifest);
    let keys: Vec<String> = repo
        .store()
        .list(&prefix)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with("/manifest.seg"))
        .collect();
    let mut manifests: Vec<SnapshotManifest> = futures::stream::iter(keys)
        .map(|key| async move {
            let (_, records) = repo.read_segment(&key).await?;
            let record = records.first().ok_or_else(|| RepoError::BadObject {
                repo: repo.store().describe(),
                key: key.clone(),
                detail: "snapshot manifest holds no record".into(),
            })?;
            serde_json::from_slice::<SnapshotManifest>(record).map_err(|e| RepoError::BadObject {
                repo: repo.store().describe(),
                key: key.clone(),
                detail: format!("snapshot manifest: {e}"),
            })
        })
        .buffered(8)
        .try_collect()
        .await?;
    manifests.sort_by(|a, b| (a.end, &a.id).cmp(&(b.end, &b.id)));
    Ok(manifests)
}

/// A continuous range of restorable time: from a snapshot's `end` through the end of the
/// timeline run that covers the snapshot's `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestorableWindow {
    pub snapshot: String,
    pub from: OplogTs,
    pub to: OplogTs,
}

/// The restorable windows of a source, oldest snapshot first. Windows of several snapshots
/// overlap; a snapshot whose start no run covers (or whose run ends before it does) gives none.
pub fn restorable_windows(
    snapshots: &[SnapshotManifest],
    timeline: &super::Timeline,
) -> Vec<RestorableWindow> {
    snapshots
        .iter()
        .filter_map(|s| {
            let run = timeline.run_containing(s.start)?;
            (run.end >= s.end).then(|| RestorableWindow {
                snapshot: s.id.clone(),
                from: s.end,
                to: run.end,
            })
        })
        .collect()
}

/// What a source can be restored to, read once: its oplog catalog and timeline, its complete
/// snapshots and the restorable windows they give. Planning, listing, status and drills all
/// start here.
#[derive(Debug, Clone)]
pub struct Coverage {
    pub catalog: super::Catalog,
    pub timeline: super::Timeline,
    /// Complete snapshots, oldest first.
    pub snapshots: Vec<SnapshotManifest>,
    pub windows: Vec<RestorableWindow>,
}

impl Coverage {
    pub async fn load(repo: &Repository, source: &str) -> Result<Self, RepoError> {
        let catalog = super::Catalog::load(repo, source, StreamKind::Oplog).await?;
        let timeline = super::Timeline::build(&catalog.segments);
        let snapshots = list_snapshots(repo, source).await?;
        let windows = restorable_windows(&snapshots, &timeline);
        Ok(Self {
            catalog,
            timeline,
            snapshots,
            windows,
        })
    }

    /// The newest restorable point, if any window exists.
    pub fn newest_restorable(&self) -> Option<OplogTs> {
        self.windows.iter().map(|w| w.to).max()
    }
}
