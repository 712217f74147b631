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
//!
//! The parts, in the order a run uses them: `point` (connecting, and the cluster time T),
//! `listing` (the namespaces each side holds now), `changes` (catalog changes in the source's
//! oplog after T), `documents` (hashing and comparing documents), `definitions` (indexes, and
//! the definitions of views and time-series collections), `report` (what a run finds) and
//! `error`; this module runs them namespace by namespace. Capped collections, which MongoDB
//! will not read at a past cluster time, are rebuilt from the oplog by [`capped`].

mod capped;
mod changes;
mod definitions;
mod documents;
mod error;
mod listing;
mod point;
mod report;

use std::collections::{BTreeMap, BTreeSet};

use mongodb::bson::Timestamp;
use mongodb::{Client, ClientSession};

use crate::namespaces::NamespaceMap;
use crate::point::RestorePoint;
use crate::progress::{Meter, Step};
use mc_core::format::OplogTs;

pub use changes::CatalogChanges;
pub use error::VerifyDataError;
pub use point::{connect_source, connect_target, resolve_point};
pub use report::{Check, DataReport, DocumentsCheck, FirstDifference, NamespaceResult, Status};

use definitions::{check_indexes, compare_definition};
use documents::compare_documents;
use error::ReadFailure::{Fatal, Unavailable};
use listing::{list_collections, source_of, Listed};

/// Runs the comparison of `target` with `source` at `at` (a cluster time from
/// [`resolve_point`]) for the namespaces of `map`.
pub async fn verify(
    source: &Client,
    target: &Client,
    point: RestorePoint,
    at: Timestamp,
    map: &NamespaceMap,
) -> Result<DataReport, VerifyDataError> {
    verify_counted(source, target, point, at, map, &Meter::default()).await
}

/// [`verify`], counting the namespaces compared into `progress` (of those to compare), the one
/// being compared as its step.
pub async fn verify_counted(
    source: &Client,
    target: &Client,
    point: RestorePoint,
    at: Timestamp,
    map: &NamespaceMap,
    progress: &Meter,
) -> Result<DataReport, VerifyDataError> {
    // The catalog now first, then the oplog from T: every change between T and the listing is
    // then in the oplog read.
    let source_now = list_collections(source, "source").await?;
    let target_now = list_collections(target, "target").await?;
    let mut changes = CatalogChanges::read(source, at).await?;
    let names = namespaces_to_compare(map, &source_now, &target_now, &changes);
    progress.plan(names.len() as u64);

    let session = source
        .start_session()
        .snapshot(true)
        .snapshot_time(at)
        .await
        .map_err(|source| VerifyDataError::Command {
            side: "source",
            what: "starting a snapshot session".into(),
            error: source,
        })?;
    let mut results = Vec::new();
    {
        let mut run = Run {
            source,
            target,
            at,
            changes: &changes,
            session,
        };
        for sns in &names {
            let tns = map.target(sns);
            progress.set_step(Some(Step {
                what: sns.clone(),
                ..Step::default()
            }));
            let result = run
                .check(sns, tns.clone(), source_now.get(sns), target_now.get(&tns))
                .await?;
            results.push(result);
            progress.add(1);
        }
        progress.set_step(None);
    }

    // Changes made while verify-data ran: what they touch is no longer claimed either way.
    let from = changes.read_through.unwrap_or(at);
    let before = changes.clone();
    changes.read_more(source, from).await?;
    discount_changes_while_running(&changes, &before, &mut results);
    Ok(summarize(point, at, results))
}

/// The source namespaces to compare, in order: those in scope at T as far as the live source
/// can tell (listed now, or named by a catalog change since T), then those only the target
/// holds under a name this mapping produces (the other target namespaces are not the restore's).
fn namespaces_to_compare(
    map: &NamespaceMap,
    source_now: &BTreeMap<String, Listed>,
    target_now: &BTreeMap<String, Listed>,
    changes: &CatalogChanges,
) -> Vec<String> {
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
    let mut target_only: BTreeSet<String> = BTreeSet::new();
    for tns in target_now.keys() {
        let sns = source_of(map, tns);
        if map.in_scope(&sns) && map.target(&sns) == *tns && !names.contains(&sns) {
            target_only.insert(sns);
        }
    }
    names.into_iter().chain(target_only).collect()
}

/// What the comparison of every namespace reads: both sides, the source at T through one
/// snapshot session, and the catalog changes since T.
struct Run<'a> {
    source: &'a Client,
    target: &'a Client,
    at: Timestamp,
    changes: &'a CatalogChanges,
    session: ClientSession,
}

impl Run<'_> {
    /// Compares source namespace `sns` with target namespace `tns`; `src` and `tgt` are how
    /// each side lists them now.
    async fn check(
        &mut self,
        sns: &str,
        tns: String,
        src: Option<&Listed>,
        tgt: Option<&Listed>,
    ) -> Result<NamespaceResult, VerifyDataError> {
        let kind = src.map_or("unknown", |c| c.kind.as_str()).to_owned();
        let mut result = NamespaceResult {
            source_ns: sns.to_owned(),
            target_ns: tns.clone(),
            kind: kind.clone(),
            status: Status::Match,
            documents: None,
            indexes: None,
            definition: None,
            mismatches: Vec::new(),
            not_verifiable: Vec::new(),
        };
        let reasons = self.changes.namespace_reasons(sns, &kind);
        if !reasons.is_empty() {
            result.status = Status::NotVerifiable;
            result.not_verifiable = reasons;
            return Ok(result);
        }
        let Some(src) = src else {
            // Not on the source now and not touched since T: it did not exist at T.
            result.kind = tgt.map_or("unknown", |c| c.kind.as_str()).to_owned();
            result.mismatches.push(format!(
                "{tns} is on the target but {sns} did not exist on the source at T"
            ));
            result.status = Status::Mismatch;
            return Ok(result);
        };
        let Some(tgt) = tgt else {
            result.mismatches.push(format!(
                "{sns} existed on the source at T; {tns} is missing on the target"
            ));
            result.status = Status::Mismatch;
            return Ok(result);
        };
        if src.kind != tgt.kind {
            result.mismatches.push(format!(
                "{sns} is a {} on the source, {tns} a {} on the target",
                src.kind, tgt.kind
            ));
            result.status = Status::Mismatch;
            return Ok(result);
        }
        match src.kind.as_str() {
            "view" | "timeseries" => {
                result.definition = Some(compare_definition(
                    &src.options,
                    &tgt.options,
                    &mut result.mismatches,
                ));
            }
            _ if src.options.get_bool("capped").unwrap_or(false) => {
                self.check_capped(sns, &tns, &mut result).await?;
            }
            _ => self.check_documents(sns, &tns, &mut result).await?,
        }
        result.status = if !result.mismatches.is_empty() {
            Status::Mismatch
        } else if !result.not_verifiable.is_empty() {
            Status::NotVerifiable
        } else {
            Status::Match
        };
        Ok(result)
    }

    /// A capped collection, then its indexes. No snapshot reads of capped collections: rebuilt
    /// from now and the oplog.
    async fn check_capped(
        &self,
        sns: &str,
        tns: &str,
        result: &mut NamespaceResult,
    ) -> Result<(), VerifyDataError> {
        let c = capped::compare(self.source, self.target, sns, tns, self.at)
            .await
            .map_err(|e| VerifyDataError::Command {
                side: e.side,
                what: e.what,
                error: e.source,
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
        check_indexes(self.changes, self.source, self.target, sns, tns, result).await
    }

    /// Any other collection: its documents at T, then its indexes.
    async fn check_documents(
        &mut self,
        sns: &str,
        tns: &str,
        result: &mut NamespaceResult,
    ) -> Result<(), VerifyDataError> {
        match compare_documents(self.source, &mut self.session, self.target, sns, tns).await {
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
        check_indexes(self.changes, self.source, self.target, sns, tns, result).await
    }
}

/// Catalog changes made while verify-data ran (`changes` now, `before` when the comparison
/// began): a namespace they touch is no longer claimed either way, and indexes they touch are
/// not verifiable.
fn discount_changes_while_running(
    changes: &CatalogChanges,
    before: &CatalogChanges,
    results: &mut [NamespaceResult],
) {
    for r in results {
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
}

/// The report of `results`: counts by verdict, `mismatch` if any namespace differs.
fn summarize(point: RestorePoint, at: Timestamp, results: Vec<NamespaceResult>) -> DataReport {
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    let mismatched = count(Status::Mismatch);
    DataReport {
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
    }
}

/// A timestamp in messages (`ts:S:I (RFC 3339)`).
fn show_ts(ts: Timestamp) -> String {
    OplogTs::from(ts).text().to_string()
}
