//! `verify-data`: the proof that a restore is right. Compares a restored target with the source
//! *as it was at T*, read with snapshot reads at that cluster time
//! (`readConcern: {level: "snapshot", atClusterTime: T}`), namespace by namespace:
//!
//! - documents: the count and a SHA-256 of every document's raw BSON in `_id` order, and the
//!   first `_id` where source and target differ;
//! - indexes: every definition (name, key, unique and the other options except `v` and `ns`);
//! - views: the definition (`viewOn`, `pipeline`, collation) from `listCollections`;
//! - time-series: the options, and the documents of the buckets collection
//!   (`system.buckets.X`), which is what MongoDB stores;
//! - the collection list: a namespace in scope on one side only is a mismatch.
//!
//! MongoDB 6.0 (measured): a snapshot read at T of a collection dropped or renamed after T
//! silently returns no documents, and one created after T fails with `SnapshotUnavailable`;
//! `listCollections` and `listIndexes` have no snapshot form, so the catalog is read as it is
//! now. So the verifier reads the source's oplog after T, and every namespace a catalog change
//! touched since (create, drop, rename from or to, dropDatabase, a view's definition) is reported
//! [`Status::NotVerifiable`] rather than matched or mismatched; index changes since T make only
//! that namespace's indexes not verifiable. The oplog is read once before the comparison and
//! once after it, so a change made while verify-data runs is caught too. Never a false match,
//! never a false mismatch.
//!
//! T must be within the source's snapshot history (`minSnapshotHistoryWindowInSeconds`, 300 s by
//! default) and its oplog must still hold every entry after T.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document, RawBsonRef, RawDocument, RawDocumentBuf, Timestamp};
use mongodb::error::ErrorKind;
use mongodb::{Client, ClientSession};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::namespaces::{is_buckets, NamespaceMap, SYSTEM_DATABASES};
use crate::point::{Cut, RestorePoint};
use crate::target::{self, TargetError};
use mc_core::format::OplogTs;

/// Server error codes that matter here.
use crate::errors::{NAMESPACE_NOT_FOUND, SNAPSHOT_TOO_OLD, SNAPSHOT_UNAVAILABLE};

/// Why verify-data could not produce a report (exit 1). A mismatch is not an error: it is in
/// the [`DataReport`].
#[derive(Debug, thiserror::Error)]
pub enum VerifyDataError {
    #[error("cannot reach the source MongoDB ({uri}) given by --source-uri: {source}; check the URI, that the server runs, and credentials")]
    SourceUnreachable {
        uri: String,
        #[source]
        source: mongodb::error::Error,
    },
    #[error("cannot reach the target MongoDB ({uri}) given by --target: {source}; check the URI, that the server runs, and credentials")]
    TargetUnreachable {
        uri: String,
        #[source]
        source: mongodb::error::Error,
    },
    #[error(transparent)]
    Connect(TargetError),
    #[error("{what} on the {side} failed: {source}")]
    Command {
        side: &'static str,
        what: String,
        #[source]
        source: mongodb::error::Error,
    },
    #[error("cannot verify at {at}: {why}")]
    Point { at: String, why: String },
    #[error("the source no longer keeps a snapshot of {at} (SnapshotTooOld): it keeps history for minSnapshotHistoryWindowInSeconds (300 s by default). Run verify-data within that window after T, or raise the window on the source (setParameter minSnapshotHistoryWindowInSeconds) before the next restore")]
    SnapshotTooOld { at: String },
    #[error("the source's oplog now starts at {oldest}, after {at}: the catalog changes since T cannot all be read, so nothing could be proven. Verify a more recent point")]
    OplogTooShort { at: String, oldest: String },
    #[error("source oplog entry {ts}: {detail}")]
    BadEntry { ts: String, detail: String },
}

/// The verdict of one check, of one namespace, or of the whole report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Source at T and target are equal.
    Match,
    /// They differ; the details say where.
    Mismatch,
    /// The live source cannot prove what it held at T (a catalog change after T): neither a
    /// match nor a mismatch is claimed.
    NotVerifiable,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct DataReport {
    /// `mismatch` if anything differs, else `match` (even if some namespaces were not
    /// verifiable: see `not_verifiable`).
    pub status: Status,
    /// The point as given (`--at`).
    pub at: String,
    /// The cluster time the source was read at.
    pub cluster_time: OplogTs,
    /// Namespaces compared, in source-name order.
    pub namespaces: Vec<NamespaceResult>,
    /// Namespaces whose every check matched (indexes may be not verifiable; see below).
    pub matched: usize,
    pub mismatched: usize,
    /// Namespaces not verifiable against the live source.
    pub not_verifiable: usize,
    /// Matched namespaces whose indexes alone were not verifiable.
    pub indexes_not_verifiable: usize,
}

impl DataReport {
    /// The namespaces that differ.
    pub fn mismatches(&self) -> impl Iterator<Item = &NamespaceResult> {
        self.namespaces
            .iter()
            .filter(|n| n.status == Status::Mismatch)
    }
}

/// One namespace: its checks and verdict.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceResult {
    /// The name on the source.
    pub source_ns: String,
    /// The name on the target (`--ns-from/--ns-to` applied).
    pub target_ns: String,
    /// `collection`, `view`, `timeseries`, or `unknown` (gone from the source).
    pub kind: String,
    pub status: Status,
    /// Documents (collections and buckets collections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<DocumentsCheck>,
    /// Index definitions (collections and buckets collections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexes: Option<Check>,
    /// The definition of a view or the options of a time-series collection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<Check>,
    /// What differs, one line each.
    pub mismatches: Vec<String>,
    /// Why (some of) it could not be verified.
    pub not_verifiable: Vec<String>,
}

/// Document count and hash of both sides.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentsCheck {
    pub status: Status,
    pub source_count: u64,
    pub target_count: u64,
    /// SHA-256 of every document's raw BSON, concatenated in `_id` order (hex).
    pub source_sha256: String,
    pub target_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_difference: Option<FirstDifference>,
}

/// Where the documents first differ in `_id` order.
#[derive(Debug, Clone, Serialize)]
pub struct FirstDifference {
    /// The `_id`, as relaxed extended JSON.
    pub id: String,
    /// `differs`, `missing on the target`, `only on the target`.
    pub what: String,
}

/// A check with its details.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub status: Status,
    pub details: Vec<String>,
}

/// Reasons catalog changes after T give, by source namespace.
#[derive(Debug, Default, Clone)]
pub struct CatalogChanges {
    /// Namespaces created, dropped or renamed (either side), or whose view definition changed.
    pub namespaces: BTreeMap<String, Vec<String>>,
    /// Namespaces whose indexes (or index options) changed.
    pub indexes: BTreeMap<String, Vec<String>>,
    /// Databases dropped (every namespace in them).
    pub databases: BTreeMap<String, String>,
    /// Databases whose `system.views` was dropped (every view in them).
    pub views: BTreeMap<String, String>,
    /// The newest entry read.
    pub read_through: Option<Timestamp>,
}

impl CatalogChanges {
    fn touch(&mut self, ns: &str, why: String) {
        self.namespaces.entry(ns.to_owned()).or_default().push(why);
    }

    fn touch_indexes(&mut self, ns: &str, why: String) {
        self.indexes.entry(ns.to_owned()).or_default().push(why);
    }

    /// Why `ns` (of `kind`, if known) is not verifiable, if it is not. A time-series collection
    /// and its buckets count as one.
    pub fn namespace_reasons(&self, ns: &str, kind: &str) -> Vec<String> {
        let mut out = Vec::new();
        for name in with_buckets_twin(ns) {
            if let Some(r) = self.namespaces.get(&name) {
                out.extend(r.iter().cloned());
            }
        }
        let db = ns.split('.').next().unwrap_or_default();
        if let Some(r) = self.databases.get(db) {
            out.push(r.clone());
        }
        if kind == "view" || kind == "unknown" {
            if let Some(r) = self.views.get(db) {
                out.push(r.clone());
            }
        }
        out.dedup();
        out
    }

    /// Why the indexes of `ns` are not verifiable, if they are not.
    pub fn index_reasons(&self, ns: &str) -> Vec<String> {
        let mut out = Vec::new();
        for name in with_buckets_twin(ns) {
            if let Some(r) = self.indexes.get(&name) {
                out.extend(r.iter().cloned());
            }
        }
        out.dedup();
        out
    }

    /// Reads the source's oplog entries after `after` for catalog changes (every database:
    /// scope is applied by the caller).
    pub async fn read(source: &Client, after: Timestamp) -> Result<Self, VerifyDataError> {
        let mut changes = CatalogChanges::default();
        changes.read_more(source, after).await?;
        Ok(changes)
    }

    /// Adds the entries after `after`.
    pub async fn read_more(
        &mut self,
        source: &Client,
        after: Timestamp,
    ) -> Result<(), VerifyDataError> {
        let what = || format!("reading local.oplog.rs after {}", show_ts(after));
        let mut cursor = source
            .database("local")
            .collection::<RawDocumentBuf>("oplog.rs")
            .find(doc! {
                "ts": {"$gt": after},
                "$or": [{"op": "c"}, {"ns": {"$regex": r"\.system\.views$"}}],
            })
            .sort(doc! {"$natural": 1})
            .await
            .map_err(|source| VerifyDataError::Command {
                side: "source",
                what: what(),
                source,
            })?;
        while let Some(entry) =
            cursor
                .try_next()
                .await
                .map_err(|source| VerifyDataError::Command {
                    side: "source",
                    what: what(),
                    source,
                })?
        {
            let ts = entry
                .get_timestamp("ts")
                .map_err(|e| VerifyDataError::BadEntry {
                    ts: "?".into(),
                    detail: format!("no readable ts: {e}"),
                })?;
            let when = show_ts(ts);
            self.entry(&entry, &when)
                .map_err(|detail| VerifyDataError::BadEntry {
                    ts: when.clone(),
                    detail,
                })?;
            self.read_through = Some(ts);
        }
        Ok(())
    }

    /// One entry (or one inner entry of an `applyOps`).
    fn entry(&mut self, raw: &RawDocument, when: &str) -> Result<(), String> {
        let op = raw.get_str("op").map_err(|e| format!("no op: {e}"))?;
        let ns = raw.get_str("ns").map_err(|e| format!("no ns: {e}"))?;
        let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
        if op != "c" {
            // A write to db.system.views: a view's definition created, changed or dropped.
            if coll != "system.views" {
                return Ok(());
            }
            let key = if op == "u" { "o2" } else { "o" };
            let view = raw
                .get_document(key)
                .ok()
                .and_then(|d| d.get_str("_id").ok());
            match view {
                Some(view) => self.touch(view, format!("view definition changed after T ({when})")),
                None => {
                    self.views.insert(
                        db.to_owned(),
                        format!("views of {db} changed after T ({when})"),
                    );
                }
            }
            return Ok(());
        }
        let o = raw
            .get_document("o")
            .map_err(|e| format!("command without o: {e}"))?;
        let name = match o.into_iter().next() {
            Some(Ok((k, _))) => k.as_str().to_owned(),
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("empty command".into()),
        };
        let arg = |o: &RawDocument| o.get_str(&name).ok().map(|c| format!("{db}.{c}"));
        match name.as_str() {
            "applyOps" => {
                let inner = o
                    .get_array("applyOps")
                    .map_err(|e| format!("applyOps without an array: {e}"))?;
                for item in inner {
                    match item {
                        Ok(RawBsonRef::Document(d)) => self.entry(d, when)?,
                        other => {
                            return Err(format!("applyOps element is not a document: {other:?}"))
                        }
                    }
                }
            }
            "commitTransaction" | "abortTransaction" => {}
            "create" | "drop" => {
                let target = arg(o).ok_or_else(|| format!("{name} without a collection name"))?;
                let coll = target.split_once('.').map(|x| x.1).unwrap_or_default();
                if coll == "system.views" {
                    if name == "drop" {
                        self.views.insert(
                            db.to_owned(),
                            format!("views of {db} dropped after T ({when})"),
                        );
                    }
                } else {
                    let past = if name == "create" {
                        "created"
                    } else {
                        "dropped"
                    };
                    self.touch(&target, format!("{past} after T ({when})"));
                }
            }
            "renameCollection" => {
                let from = o
                    .get_str("renameCollection")
                    .map_err(|e| format!("renameCollection without a source: {e}"))?
                    .to_owned();
                let to = o
                    .get_str("to")
                    .map_err(|e| format!("renameCollection without to: {e}"))?
                    .to_owned();
                self.touch(&from, format!("renamed to {to} after T ({when})"));
                self.touch(&to, format!("renamed from {from} after T ({when})"));
            }
            "dropDatabase" => {
                self.databases.insert(
                    db.to_owned(),
                    format!("database {db} dropped after T ({when})"),
                );
            }
            "createIndexes" | "commitIndexBuild" | "startIndexBuild" | "abortIndexBuild"
            | "dropIndexes" | "deleteIndexes" | "collMod" => {
                let target = arg(o).ok_or_else(|| format!("{name} without a collection name"))?;
                self.touch_indexes(&target, format!("{name} after T ({when})"));
            }
            other => {
                // Unknown to this verifier: whatever it names is not claimed either way.
                match arg(o) {
                    Some(target) => self.touch(&target, format!("{other} after T ({when})")),
                    None => {
                        self.databases
                            .insert(db.to_owned(), format!("{other} on {db} after T ({when})"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `[ns, its buckets or time-series twin]`.
fn with_buckets_twin(ns: &str) -> Vec<String> {
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    let twin = match coll.strip_prefix("system.buckets.") {
        Some(view) => format!("{db}.{view}"),
        None => format!("{db}.system.buckets.{coll}"),
    };
    vec![ns.to_owned(), twin]
}

/// Connects to the source (`--source-uri`), saying which side failed.
pub async fn connect_source(uri: &str) -> Result<Client, VerifyDataError> {
    target::connect(uri).await.map_err(|e| match e {
        TargetError::Unreachable { source, .. } | TargetError::Command { source, .. } => {
            VerifyDataError::SourceUnreachable {
                uri: target::redact(uri),
                source,
            }
        }
        other @ TargetError::NotEmpty { .. } => VerifyDataError::Connect(other),
    })
}

/// Connects to the target (`--target`), saying which side failed.
pub async fn connect_target(uri: &str) -> Result<Client, VerifyDataError> {
    target::connect(uri).await.map_err(|e| match e {
        TargetError::Unreachable { source, .. } | TargetError::Command { source, .. } => {
            VerifyDataError::TargetUnreachable {
                uri: target::redact(uri),
                source,
            }
        }
        other @ TargetError::NotEmpty { .. } => VerifyDataError::Connect(other),
    })
}

/// The cluster time at which the source is read for `point`:
/// - `ts:S:I`: that timestamp;
/// - an RFC 3339 time: the last oplog entry the restore's cut admits (the replay applies a
///   prefix of the oplog, so this is exactly the state a restore to that time produces);
/// - `latest`: the source's majority commit point now (meaningful only right after a restore
///   with nothing written to the source since).
pub async fn resolve_point(
    source: &Client,
    point: RestorePoint,
) -> Result<Timestamp, VerifyDataError> {
    let at = point.to_string();
    let committed = majority_point(source, &at).await?;
    let oplog = source
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs");
    let cmd = |what: &str| {
        let what = what.to_owned();
        move |source| VerifyDataError::Command {
            side: "source",
            what,
            source,
        }
    };
    let ts = match point {
        RestorePoint::Latest => committed,
        RestorePoint::Exact(ts) => {
            let ts = Timestamp {
                time: ts.t,
                increment: ts.i,
            };
            if ts > committed {
                return Err(VerifyDataError::Point {
                    at,
                    why: format!(
                        "it is after the source's majority commit point {}: that state is not committed yet",
                        show_ts(committed)
                    ),
                });
            }
            ts
        }
        RestorePoint::Time { .. } => {
            let cut = Cut::of(point, OplogTs::new(0, 0));
            let second = cut.bound.t;
            if committed.time <= second {
                return Err(VerifyDataError::Point {
                    at,
                    why: format!(
                        "the source's majority commit point {} has not passed T's second yet; wait a second and retry",
                        show_ts(committed)
                    ),
                });
            }
            let mut last = None;
            let mut cursor = oplog
                .find(doc! {"ts": {
                    "$gte": Timestamp { time: second, increment: 0 },
                    "$lt": Timestamp { time: second.saturating_add(1), increment: 0 },
                }})
                .projection(doc! {"ts": 1, "wall": 1})
                .sort(doc! {"$natural": 1})
                .await
                .map_err(cmd("reading the source's oplog around T"))?;
            while let Some(e) = cursor
                .try_next()
                .await
                .map_err(cmd("reading the source's oplog around T"))?
            {
                let head =
                    crate::replay::entry::head(&e).map_err(|err| VerifyDataError::BadEntry {
                        ts: err.ts,
                        detail: err.detail,
                    })?;
                if !cut.admits(head.ts, head.wall_ms) {
                    break;
                }
                last = Some(Timestamp {
                    time: head.ts.t,
                    increment: head.ts.i,
                });
            }
            match last {
                Some(ts) => ts,
                None => {
                    let before = oplog
                        .find_one(doc! {"ts": {"$lt": Timestamp { time: second, increment: 0 }}})
                        .projection(doc! {"ts": 1})
                        .sort(doc! {"$natural": -1})
                        .await
                        .map_err(cmd("reading the source's oplog before T"))?;
                    before
                        .and_then(|e| e.get_timestamp("ts").ok())
                        .ok_or_else(|| VerifyDataError::Point {
                            at: at.clone(),
                            why: "the source's oplog holds no entry at or before T".into(),
                        })?
                }
            }
        }
    };
    let oldest = oplog
        .find_one(doc! {})
        .projection(doc! {"ts": 1})
        .sort(doc! {"$natural": 1})
        .await
        .map_err(cmd("reading the source's oldest oplog entry"))?
        .and_then(|e| e.get_timestamp("ts").ok());
    match oldest {
        Some(oldest) if oldest <= ts => Ok(ts),
        Some(oldest) => Err(VerifyDataError::OplogTooShort {
            at: show_ts(ts),
            oldest: show_ts(oldest),
        }),
        None => Err(VerifyDataError::Point {
            at,
            why: "the source has no oplog (local.oplog.rs is empty or missing): verify-data needs a replica set member".into(),
        }),
    }
}

/// The source's majority commit point (`hello.lastWrite.majorityOpTime.ts`).
async fn majority_point(source: &Client, at: &str) -> Result<Timestamp, VerifyDataError> {
    let hello = source
        .database("admin")
        .run_command(doc! {"hello": 1})
        .await
        .map_err(|source| VerifyDataError::Command {
            side: "source",
            what: "hello".into(),
            source,
        })?;
    hello
        .get_document("lastWrite")
        .and_then(|w| w.get_document("majorityOpTime"))
        .and_then(|o| o.get_timestamp("ts"))
        .map_err(|_| VerifyDataError::Point {
            at: at.to_owned(),
            why: "the source reports no majority commit point: verify-data needs a replica set member as the source".into(),
        })
}

/// Runs the comparison of `target` with `source` at `at` (a cluster time from
/// [`resolve_point`]) for the namespaces of `map`.
pub async fn verify(
    source: &Client,
    target: &Client,
    point: RestorePoint,
    at: Timestamp,
    map: &NamespaceMap,
) -> Result<DataReport, VerifyDataError> {
    // The catalog now first, then the oplog from T: every change between T and the listing is
    // then in the oplog read.
    let source_now = list_collections(source, "source").await?;
    let target_now = list_collections(target, "target").await?;
    let mut changes = CatalogChanges::read(source, at).await?;

    // Source namespaces at T, as far as the live source can tell.
    let mut names: BTreeSet<String> = source_now
        .keys()
        .filter(|ns| map.in_scope(ns))
        .cloned()
        .collect();
    names.extend(
        changes
            .namespaces
            .keys()
            .filter(|ns| map.in_scope(ns))
            .cloned(),
    );
    // Target namespaces this mapping produces; the others are not the restore's.
    let mut target_only: BTreeSet<String> = BTreeSet::new();
    for tns in target_now.keys() {
        let sns = source_of(map, tns);
        if map.in_scope(&sns) && map.target(&sns) == *tns && !names.contains(&sns) {
            target_only.insert(sns);
        }
    }

    let mut session = source
        .start_session()
        .snapshot(true)
        .snapshot_time(at)
        .await
        .map_err(|source| VerifyDataError::Command {
            side: "source",
            what: "starting a snapshot session".into(),
            source,
        })?;

    let mut results = Vec::new();
    for sns in names.iter().chain(&target_only) {
        let tns = map.target(sns);
        let src = source_now.get(sns);
        let tgt = target_now.get(&tns);
        let kind = src.map_or("unknown", |c| c.kind.as_str()).to_owned();
        let mut result = NamespaceResult {
            source_ns: sns.clone(),
            target_ns: tns.clone(),
            kind: kind.clone(),
            status: Status::Match,
            documents: None,
            indexes: None,
            definition: None,
            mismatches: Vec::new(),
            not_verifiable: Vec::new(),
        };
        let reasons = changes.namespace_reasons(sns, &kind);
        if !reasons.is_empty() {
            result.status = Status::NotVerifiable;
            result.not_verifiable = reasons;
            results.push(result);
            continue;
        }
        let Some(src) = src else {
            // Not on the source now and not touched since T: it did not exist at T.
            result.kind = tgt.map_or("unknown", |c| c.kind.as_str()).to_owned();
            result.mismatches.push(format!(
                "{tns} is on the target but {sns} did not exist on the source at T"
            ));
            result.status = Status::Mismatch;
            results.push(result);
            continue;
        };
        let Some(tgt) = tgt else {
            result.mismatches.push(format!(
                "{sns} existed on the source at T; {tns} is missing on the target"
            ));
            result.status = Status::Mismatch;
            results.push(result);
            continue;
        };
        if src.kind != tgt.kind {
            result.mismatches.push(format!(
                "{sns} is a {} on the source, {tns} a {} on the target",
                src.kind, tgt.kind
            ));
            result.status = Status::Mismatch;
            results.push(result);
            continue;
        }
        match src.kind.as_str() {
            "view" | "timeseries" => {
                let (a, b) = (sorted(&src.options), sorted(&tgt.options));
                let check = if same(&a, &b) {
                    Check {
                        status: Status::Match,
                        details: Vec::new(),
                    }
                } else {
                    let d = format!(
                        "definition differs: source {} target {}",
                        json(&a),
                        json(&b)
                    );
                    result.mismatches.push(d.clone());
                    Check {
                        status: Status::Mismatch,
                        details: vec![d],
                    }
                };
                result.definition = Some(check);
            }
            _ if src.options.get_bool("capped").unwrap_or(false) => {
                // No snapshot reads of capped collections: rebuilt from now and the oplog.
                let c = crate::verify_capped::compare(source, target, sns, &tns, at)
                    .await
                    .map_err(|e| VerifyDataError::Command {
                        side: e.side,
                        what: e.what,
                        source: e.source,
                    })?;
                if let Some((id, what)) = &c.first_difference {
                    result.mismatches.push(format!(
                        "documents differ (source {} docs at T, target {}): first at _id {id}: {what}",
                        c.source_count, c.target_count
                    ));
                }
                if c.content_unknown > 0 {
                    result.not_verifiable.push(format!(
                        "capped: {} of {} documents were deleted or updated on the source since T, so only their _id and position were compared, not their content",
                        c.content_unknown, c.source_count
                    ));
                }
                result.documents = Some(DocumentsCheck {
                    status: if c.first_difference.is_some() {
                        Status::Mismatch
                    } else {
                        Status::Match
                    },
                    source_count: c.source_count,
                    target_count: c.target_count,
                    source_sha256: c.source_sha256.unwrap_or_else(|| "unknown".into()),
                    target_sha256: c.target_sha256,
                    first_difference: c
                        .first_difference
                        .map(|(id, what)| FirstDifference { id, what }),
                });
                check_indexes(&changes, source, target, sns, &tns, &mut result).await?;
            }
            _ => {
                match compare_documents(source, &mut session, target, sns, &tns).await {
                    Ok(docs) => {
                        if let Some(first) = &docs.first_difference {
                            result.mismatches.push(format!(
                                "documents differ (source {} docs, target {}): first at _id {}: {}",
                                docs.source_count, docs.target_count, first.id, first.what
                            ));
                        } else if docs.status == Status::Mismatch {
                            result.mismatches.push("documents differ".into());
                        }
                        result.documents = Some(docs);
                    }
                    Err(Unavailable(why)) => {
                        result.not_verifiable.push(why);
                    }
                    Err(Fatal(e)) => return Err(e),
                }
                check_indexes(&changes, source, target, sns, &tns, &mut result).await?;
            }
        }
        result.status = if !result.mismatches.is_empty() {
            Status::Mismatch
        } else if !result.not_verifiable.is_empty() {
            Status::NotVerifiable
        } else {
            Status::Match
        };
        results.push(result);
    }

    // Changes made while verify-data ran: what they touch is no longer claimed either way.
    let from = changes.read_through.unwrap_or(at);
    let before = changes.clone();
    changes.read_more(source, from).await?;
    for r in &mut results {
        if r.status == Status::NotVerifiable {
            continue;
        }
        let reasons: Vec<String> = changes
            .namespace_reasons(&r.source_ns, &r.kind)
            .into_iter()
            .filter(|x| !before.namespace_reasons(&r.source_ns, &r.kind).contains(x))
            .collect();
        if !reasons.is_empty() {
            r.status = Status::NotVerifiable;
            r.mismatches.clear();
            r.not_verifiable = reasons
                .into_iter()
                .map(|x| format!("{x}, while verify-data ran"))
                .collect();
            continue;
        }
        let index_reasons = changes.index_reasons(&r.source_ns);
        if index_reasons.len() > before.index_reasons(&r.source_ns).len() {
            if let Some(ix) = &mut r.indexes {
                if ix.status == Status::Mismatch {
                    r.mismatches.retain(|m| !ix.details.contains(m));
                }
                ix.status = Status::NotVerifiable;
                ix.details = index_reasons;
            }
            if r.mismatches.is_empty() && r.status == Status::Mismatch {
                r.status = Status::Match;
            }
        }
    }

    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    let mismatched = count(Status::Mismatch);
    Ok(DataReport {
        status: if mismatched > 0 {
            Status::Mismatch
        } else {
            Status::Match
        },
        at: point.to_string(),
        cluster_time: OplogTs::from(at),
        matched: count(Status::Match),
        mismatched,
        not_verifiable: count(Status::NotVerifiable),
        indexes_not_verifiable: results
            .iter()
            .filter(|r| {
                r.status == Status::Match
                    && r.indexes
                        .as_ref()
                        .is_some_and(|i| i.status == Status::NotVerifiable)
            })
            .count(),
        namespaces: results,
    })
}

/// One collection as `listCollections` shows it now.
#[derive(Debug, Clone)]
struct Listed {
    kind: String,
    options: Document,
}

/// Every collection of every database but the server's own (system collections left out,
/// buckets collections kept), by namespace.
async fn list_collections(
    client: &Client,
    side: &'static str,
) -> Result<BTreeMap<String, Listed>, VerifyDataError> {
    let err = |what: String| move |source| VerifyDataError::Command { side, what, source };
    let mut out = BTreeMap::new();
    for db in client
        .list_database_names()
        .await
        .map_err(err("listDatabases".into()))?
    {
        if SYSTEM_DATABASES.contains(&db.as_str()) {
            continue;
        }
        let mut cursor = client
            .database(&db)
            .run_cursor_command(doc! {"listCollections": 1})
            .await
            .map_err(err(format!("listCollections on {db}")))?;
        while let Some(info) = cursor
            .try_next()
            .await
            .map_err(err(format!("listCollections on {db}")))?
        {
            let name = info.get_str("name").unwrap_or_default();
            if name.is_empty()
                || name.starts_with("system.") && !name.starts_with("system.buckets.")
            {
                continue;
            }
            out.insert(
                format!("{db}.{name}"),
                Listed {
                    kind: info.get_str("type").unwrap_or("collection").to_owned(),
                    options: info.get_document("options").cloned().unwrap_or_default(),
                },
            );
        }
    }
    Ok(out)
}

/// The source name of target namespace `tns` (the inverse of [`NamespaceMap::target`],
/// buckets included).
fn source_of(map: &NamespaceMap, tns: &str) -> String {
    if is_buckets(tns) {
        let (db, coll) = tns.split_once('.').unwrap_or((tns, ""));
        let view = format!("{db}.{}", coll.trim_start_matches("system.buckets."));
        let s = map.source(&view);
        let (sdb, scoll) = s.split_once('.').unwrap_or((&s, ""));
        format!("{sdb}.system.buckets.{scoll}")
    } else {
        map.source(tns)
    }
}

enum ReadFailure {
    /// The source cannot serve this collection at T: not verifiable.
    Unavailable(String),
    Fatal(VerifyDataError),
}
use ReadFailure::{Fatal, Unavailable};

/// Index definitions of one namespace, unless index changes since T make them not verifiable.
async fn check_indexes(
    changes: &CatalogChanges,
    source: &Client,
    target: &Client,
    sns: &str,
    tns: &str,
    result: &mut NamespaceResult,
) -> Result<(), VerifyDataError> {
    let index_reasons = changes.index_reasons(sns);
    result.indexes = Some(if !index_reasons.is_empty() {
        Check {
            status: Status::NotVerifiable,
            details: index_reasons,
        }
    } else {
        let details = compare_indexes(source, target, sns, tns).await?;
        result.mismatches.extend(details.iter().cloned());
        Check {
            status: if details.is_empty() {
                Status::Match
            } else {
                Status::Mismatch
            },
            details,
        }
    });
    Ok(())
}

fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// Reads both sides in `_id` order in step: counts, hashes and the first difference.
async fn compare_documents(
    source: &Client,
    session: &mut ClientSession,
    target: &Client,
    sns: &str,
    tns: &str,
) -> Result<DocumentsCheck, ReadFailure> {
    let at = session
        .snapshot_time()
        .map(show_ts)
        .unwrap_or_else(|| "T".into());
    let src_err = |source: mongodb::error::Error| {
        match command_code(&source) {
        Some(SNAPSHOT_TOO_OLD) => Fatal(VerifyDataError::SnapshotTooOld { at: at.clone() }),
        Some(SNAPSHOT_UNAVAILABLE) => Unavailable(format!(
            "the source has no snapshot of {sns} at T (SnapshotUnavailable: created or replaced after T)"
        )),
        _ => Fatal(VerifyDataError::Command {
            side: "source",
            what: format!("reading {sns} at {at}"),
            source,
        }),
    }
    };
    let tgt_err = |source| {
        Fatal(VerifyDataError::Command {
            side: "target",
            what: format!("reading {tns}"),
            source,
        })
    };
    let (sdb, scoll) = sns.split_once('.').unwrap_or((sns, ""));
    let (tdb, tcoll) = tns.split_once('.').unwrap_or((tns, ""));
    let mut src = source
        .database(sdb)
        .collection::<RawDocumentBuf>(scoll)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .session(&mut *session)
        .await
        .map_err(src_err)?;
    let mut tgt = target
        .database(tdb)
        .collection::<RawDocumentBuf>(tcoll)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .map_err(tgt_err)?;
    let (mut sh, mut th) = (Sha256::new(), Sha256::new());
    let (mut sn, mut tn) = (0u64, 0u64);
    let (mut s_done, mut t_done) = (false, false);
    let mut first: Option<FirstDifference> = None;
    loop {
        let (s, t) = tokio::join!(
            async {
                if s_done {
                    Ok(false)
                } else {
                    src.advance(&mut *session).await
                }
            },
            async {
                if t_done {
                    Ok(false)
                } else {
                    tgt.advance().await
                }
            }
        );
        let s = s.map_err(src_err)?;
        let t = t.map_err(tgt_err)?;
        s_done = !s;
        t_done = !t;
        if !s && !t {
            break;
        }
        if s {
            sh.update(src.current().as_bytes());
            sn += 1;
        }
        if t {
            th.update(tgt.current().as_bytes());
            tn += 1;
        }
        if first.is_none() {
            first = match (s, t) {
                (true, true) if src.current().as_bytes() != tgt.current().as_bytes() => {
                    Some(first_difference(target, tdb, src.current(), tgt.current()).await)
                }
                (true, false) => Some(FirstDifference {
                    id: id_text(src.current()),
                    what: "missing on the target".into(),
                }),
                (false, true) => Some(FirstDifference {
                    id: id_text(tgt.current()),
                    what: "only on the target (not on the source at T)".into(),
                }),
                _ => None,
            };
        }
    }
    let (source_sha256, target_sha256) = (hex::encode(sh.finalize()), hex::encode(th.finalize()));
    let same = sn == tn && source_sha256 == target_sha256 && first.is_none();
    Ok(DocumentsCheck {
        status: if same {
            Status::Match
        } else {
            Status::Mismatch
        },
        source_count: sn,
        target_count: tn,
        source_sha256,
        target_sha256,
        first_difference: first,
    })
}

/// The first difference between two documents at the same position in `_id` order.
async fn first_difference(
    target: &Client,
    db: &str,
    s: &RawDocument,
    t: &RawDocument,
) -> FirstDifference {
    let (sid, tid) = (id_of(s), id_of(t));
    if sid == tid {
        return FirstDifference {
            id: show_bson(&sid),
            what: "differs".into(),
        };
    }
    // The smaller _id is the one the other side lacks; the server orders BSON values.
    let cmp = target
        .database(db)
        .aggregate(vec![
            doc! {"$documents": [{}]},
            doc! {"$project": {"_id": 0, "c": {"$cmp": [{"$literal": sid.clone()}, {"$literal": tid.clone()}]}}},
        ])
        .await;
    let order = match cmp {
        Ok(mut cursor) => cursor
            .try_next()
            .await
            .ok()
            .flatten()
            .and_then(|d| d.get("c").and_then(Bson::as_i32)),
        Err(_) => None,
    };
    match order {
        Some(c) if c < 0 => FirstDifference {
            id: show_bson(&sid),
            what: "missing on the target".into(),
        },
        Some(_) => FirstDifference {
            id: show_bson(&tid),
            what: "only on the target (not on the source at T)".into(),
        },
        None => FirstDifference {
            id: show_bson(&sid),
            what: format!(
                "missing on the target or out of order (the target has _id {} in its place)",
                show_bson(&tid)
            ),
        },
    }
}

fn id_of(d: &RawDocument) -> Bson {
    d.get("_id")
        .ok()
        .flatten()
        .and_then(|v| Bson::try_from(mongodb::bson::RawBson::from(v)).ok())
        .unwrap_or(Bson::Null)
}

fn id_text(d: &RawDocument) -> String {
    show_bson(&id_of(d))
}

fn show_bson(b: &Bson) -> String {
    b.clone().into_relaxed_extjson().to_string()
}

/// A document for messages, fields in their order.
fn json(d: &Document) -> String {
    d.to_string()
}

/// Equal field by field, in order and with types (`Document`'s `==` ignores field order, which
/// matters for an index key).
fn same(a: &Document, b: &Document) -> bool {
    match (a.to_vec(), b.to_vec()) {
        (Ok(x), Ok(y)) => x == y,
        _ => format!("{a:?}") == format!("{b:?}"),
    }
}

/// `d` with its top-level fields in name order (option order is not meaningful).
fn sorted(d: &Document) -> Document {
    let mut fields: Vec<(&String, &Bson)> = d.iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    fields
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Index definitions by name: everything but `v` and `ns`, options in name order.
async fn indexes(
    client: &Client,
    side: &'static str,
    ns: &str,
) -> Result<BTreeMap<String, Document>, VerifyDataError> {
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    let err = |source| VerifyDataError::Command {
        side,
        what: format!("listIndexes on {ns}"),
        source,
    };
    let mut out = BTreeMap::new();
    let mut cursor = match client
        .database(db)
        .run_cursor_command(doc! {"listIndexes": coll})
        .await
    {
        Ok(c) => c,
        Err(e) if command_code(&e) == Some(NAMESPACE_NOT_FOUND) => return Ok(out),
        Err(e) => return Err(err(e)),
    };
    while let Some(mut spec) = cursor.try_next().await.map_err(err)? {
        spec.remove("v");
        spec.remove("ns");
        let name = spec.get_str("name").unwrap_or_default().to_owned();
        out.insert(name, sorted(&spec));
    }
    Ok(out)
}

/// Differences between the index definitions, one line each (empty: equal).
async fn compare_indexes(
    source: &Client,
    target: &Client,
    sns: &str,
    tns: &str,
) -> Result<Vec<String>, VerifyDataError> {
    let (a, b) = (
        indexes(source, "source", sns).await?,
        indexes(target, "target", tns).await?,
    );
    let mut out = Vec::new();
    for (name, spec) in &a {
        match b.get(name) {
            None => out.push(format!("index {name} missing on the target")),
            Some(t) if !same(t, spec) => out.push(format!(
                "index {name} differs: source {} target {}",
                json(spec),
                json(t)
            )),
            Some(_) => {}
        }
    }
    for name in b.keys().filter(|n| !a.contains_key(*n)) {
        out.push(format!("index {name} only on the target"));
    }
    Ok(out)
}

fn show_ts(ts: Timestamp) -> String {
    OplogTs::from(ts).text().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::rawdoc;

    fn changes(entries: &[RawDocumentBuf]) -> CatalogChanges {
        let mut c = CatalogChanges::default();
        for e in entries {
            c.entry(e, "ts:1:1").unwrap();
        }
        c
    }

    #[test]
    fn catalog_changes_name_what_they_touch() {
        let c = changes(&[
            rawdoc! {"op": "c", "ns": "shop.$cmd", "o": {"create": "late"}},
            rawdoc! {"op": "c", "ns": "shop.$cmd", "o": {"drop": "gone"}},
            rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"renameCollection": "shop.a", "to": "shop.b"}},
            rawdoc! {"op": "c", "ns": "shop.$cmd", "o": {"commitIndexBuild": "users", "indexes": []}},
            rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [
                {"op": "c", "ns": "shop.$cmd", "o": {"create": "intxn"}},
                {"op": "i", "ns": "shop.intxn", "o": {"_id": 1}},
            ]}},
            rawdoc! {"op": "u", "ns": "shop.system.views", "o": {"$set": {}}, "o2": {"_id": "shop.v"}},
            rawdoc! {"op": "c", "ns": "shop.$cmd", "o": {"drop": "system.buckets.metrics"}},
            rawdoc! {"op": "c", "ns": "crm.$cmd", "o": {"dropDatabase": 1}},
        ]);
        for ns in [
            "shop.late",
            "shop.gone",
            "shop.a",
            "shop.b",
            "shop.intxn",
            "shop.metrics",
            "shop.system.buckets.metrics",
            "crm.anything",
        ] {
            assert!(!c.namespace_reasons(ns, "collection").is_empty(), "{ns}");
        }
        assert!(!c.namespace_reasons("shop.v", "view").is_empty());
        assert!(c.namespace_reasons("shop.users", "collection").is_empty());
        assert!(!c.index_reasons("shop.users").is_empty());
        assert!(c.index_reasons("shop.orders").is_empty());
    }

    #[test]
    fn buckets_map_back_to_their_source() {
        let map = NamespaceMap::new(
            vec![],
            vec![],
            Some("shop.metrics".into()),
            Some("lab.m2".into()),
        )
        .unwrap();
        assert_eq!(
            source_of(&map, "lab.system.buckets.m2"),
            "shop.system.buckets.metrics"
        );
        assert_eq!(source_of(&map, "lab.m2"), "shop.metrics");
        let db = NamespaceMap::new(vec![], vec![], Some("shop".into()), Some("s2".into())).unwrap();
        assert_eq!(
            source_of(&db, "s2.system.buckets.x"),
            "shop.system.buckets.x"
        );
    }

    #[test]
    fn option_order_does_not_matter_but_key_order_and_types_do() {
        assert!(same(
            &sorted(&doc! {"b": 1, "a": {"y": 1, "x": 2}}),
            &sorted(&doc! {"a": {"y": 1, "x": 2}, "b": 1})
        ));
        assert!(!same(
            &sorted(&doc! {"key": {"a": 1, "b": 1}}),
            &sorted(&doc! {"key": {"b": 1, "a": 1}})
        ));
        assert!(!same(&doc! {"key": {"a": 1}}, &doc! {"key": {"a": 1.0}}));
    }
}
