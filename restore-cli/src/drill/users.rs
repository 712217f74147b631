//! Users and roles in a drill (`drills.restore_users_and_roles`, `mc-restore drill
//! --restore-users-and-roles`): restored onto the scratch target as a restore restores them
//! (`crate::users`: staging collections, replay, `_mergeAuthzCollections`), verified, and
//! removed again by the cleanup.
//!
//! Scratch safety: the merge runs with `drop: false`, so the scratch's own users and roles, the
//! one the drill connects as among them, are never removed or changed; a scratch user with the
//! name of a source user stays as it is, and that user is reported as not compared. The users
//! and roles a drill adds are recorded in [`MARKER`] *before* the merge, and only those are
//! removed: by this drill's cleanup, or, when it kept them (`keep`) or was interrupted, by the
//! next drill before it restores, so a stale copy never stands in for a restored one.
//!
//! Verification compares every user and role document (names, roles, privileges, hashed
//! credentials, everything the merge copies) with the source's `admin.system.users` /
//! `admin.system.roles` read at the restored cluster time; without the source, the restored
//! ones must be on the scratch and, when replay left them alone, as many as the snapshot
//! recorded. Credentials are compared, never shown.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use mongodb::bson::{doc, Document, Timestamp};
use mongodb::Client;

use super::report::NamespaceCheck;
use crate::namespaces::{ROLES_NS, STAGED_ROLES_NS, STAGED_USERS_NS, USERS_NS};
use crate::plan::RestorePlan;
use crate::replay::entry::DecodeStats;
use crate::users::UsersAndRolesStats;

use crate::errors::{code_of as code, SNAPSHOT_TOO_OLD, SNAPSHOT_UNAVAILABLE, UNAUTHORIZED};
pub use crate::users::MARKER;

/// Every document of a `find`, one error for opening and reading.
pub(crate) async fn collect(
    find: Result<mongodb::Cursor<Document>, mongodb::error::Error>,
) -> Result<Vec<Document>, mongodb::error::Error> {
    find?.try_collect().await
}

/// One of the two collections.
struct Kind {
    ns: &'static str,
    coll: &'static str,
    staged: &'static str,
    what: &'static str,
    /// What "every field" covers, for the report.
    fields: &'static str,
}

const KINDS: [Kind; 2] = [
    Kind {
        ns: USERS_NS,
        coll: "system.users",
        staged: STAGED_USERS_NS,
        what: "users",
        fields: "every field: roles, hashed credentials, …",
    },
    Kind {
        ns: ROLES_NS,
        coll: "system.roles",
        staged: STAGED_ROLES_NS,
        what: "roles",
        fields: "every field: privileges, inherited roles, …",
    },
];

fn restored_and_kept<'a>(stats: &'a UsersAndRolesStats, k: &Kind) -> (&'a [String], &'a [String]) {
    if k.ns == USERS_NS {
        (&stats.users, &stats.kept_existing_users)
    } else {
        (&stats.roles, &stats.kept_existing_roles)
    }
}

/// Documents of `admin.<coll>` on the scratch whose `_id` is one of `ids`, by `_id`.
async fn scratch_docs(
    scratch: &Client,
    coll: &str,
    ids: &BTreeSet<String>,
) -> Result<BTreeMap<String, Document>, String> {
    let ids: Vec<&String> = ids.iter().collect();
    let docs = collect(
        scratch
            .database("admin")
            .collection::<Document>(coll)
            .find(doc! {"_id": {"$in": ids}})
            .await,
    )
    .await
    .map_err(|e| format!("verification: reading admin.{coll} on the scratch target: {e}"))?;
    Ok(by_id(docs))
}

fn by_id(docs: Vec<Document>) -> BTreeMap<String, Document> {
    docs.into_iter()
        .filter_map(|d| Some((d.get_str("_id").ok()?.to_owned(), d)))
        .collect()
}

/// Top-level fields whose values differ (names only: `credentials` holds password hashes).
fn differing_fields(a: &Document, b: &Document) -> Vec<String> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(k.as_str()) != b.get(k.as_str()))
        .cloned()
        .collect()
}

/// Compares the restored users and roles with the source's at cluster time `at`.
pub async fn verify_against_source(
    source: &Client,
    scratch: &Client,
    at: Timestamp,
    stats: &UsersAndRolesStats,
) -> Result<Vec<NamespaceCheck>, String> {
    let mut checks = Vec::new();
    for k in &KINDS {
        let check = |status: &str, details: Vec<String>| NamespaceCheck {
            ns: k.ns.to_owned(),
            method: "source-at-T".into(),
            status: status.into(),
            details,
        };
        let at_t = match read_at(source, k.coll, at).await {
            Ok(docs) => by_id(docs),
            Err(why) if why.1 => {
                checks.push(check("not_verifiable", vec![why.0]));
                continue;
            }
            Err(why) => return Err(why.0),
        };
        let (restored, kept) = restored_and_kept(stats, k);
        let ids: BTreeSet<String> = at_t
            .keys()
            .cloned()
            .chain(restored.iter().cloned())
            .collect();
        let on_scratch = scratch_docs(scratch, k.coll, &ids).await?;
        let mut problems = Vec::new();
        let mut compared = 0;
        for (id, want) in &at_t {
            if kept.contains(id) {
                continue;
            }
            match on_scratch.get(id) {
                None => problems.push(format!("{id} is missing on the scratch target")),
                Some(got) => {
                    let fields = differing_fields(want, got);
                    if fields.is_empty() {
                        compared += 1;
                    } else {
                        problems.push(format!("{id} differs in {}", fields.join(", ")));
                    }
                }
            }
        }
        for id in restored.iter().filter(|id| !at_t.contains_key(*id)) {
            problems.push(format!(
                "{id} was restored but did not exist on the source at T"
            ));
        }
        let mut details = vec![format!(
            "{compared} of {} {} equal to the source at T ({})",
            at_t.len(),
            k.what,
            k.fields
        )];
        if !kept.is_empty() {
            details.push(format!(
                "not compared: the scratch target already had {} and kept its own: {}",
                kept.len(),
                kept.join(", ")
            ));
        }
        let status = if problems.is_empty() {
            "match"
        } else {
            "mismatch"
        };
        details.extend(problems);
        checks.push(check(status, details));
    }
    Ok(checks)
}

/// `admin.<coll>` of the source as at `at`. The error says whether the collection is merely not
/// verifiable (`true`: the source keeps no snapshot of it at `at`, or may not read it).
async fn read_at(
    source: &Client,
    coll: &str,
    at: Timestamp,
) -> Result<Vec<Document>, (String, bool)> {
    let failed = |e: mongodb::error::Error| {
        match code(&e) {
        Some(SNAPSHOT_TOO_OLD) => (
            format!("the source no longer keeps a snapshot of admin.{coll} at T (SnapshotTooOld)"),
            true,
        ),
        Some(SNAPSHOT_UNAVAILABLE) => (
            format!("the source has no snapshot of admin.{coll} at T (SnapshotUnavailable: created or replaced after T)"),
            true,
        ),
        Some(UNAUTHORIZED) => (
            format!("the source's user may not read admin.{coll}: {e}"),
            true,
        ),
        _ => (
            format!("verification: reading admin.{coll} on the source at T: {e}"),
            false,
        ),
    }
    };
    let mut session = source
        .start_session()
        .snapshot(true)
        .snapshot_time(at)
        .await
        .map_err(failed)?;
    let mut cursor = source
        .database("admin")
        .collection::<Document>(coll)
        .find(doc! {})
        .session(&mut session)
        .await
        .map_err(failed)?;
    cursor
        .stream(&mut session)
        .try_collect()
        .await
        .map_err(failed)
}

/// Without the source: every restored user and role is on the scratch and, where replay left
/// them as the snapshot loaded them, they are as many as the snapshot recorded.
pub async fn verify_restored(
    scratch: &Client,
    stats: &UsersAndRolesStats,
    plan: &RestorePlan,
    replayed: &DecodeStats,
) -> Result<Vec<NamespaceCheck>, String> {
    let mut checks = Vec::new();
    for k in &KINDS {
        let (restored, kept) = restored_and_kept(stats, k);
        let added: BTreeSet<String> = restored
            .iter()
            .filter(|id| !kept.contains(id))
            .cloned()
            .collect();
        let on_scratch = scratch_docs(scratch, k.coll, &added).await?;
        let mut details = vec![format!(
            "{} of {} restored {} on the scratch target",
            on_scratch.len(),
            added.len(),
            k.what
        )];
        let mut ok = on_scratch.len() == added.len();
        if !kept.is_empty() {
            details.push(format!(
                "not compared: the scratch target already had {} and kept its own: {}",
                kept.len(),
                kept.join(", ")
            ));
        }
        let recorded = plan
            .collections
            .iter()
            .find(|c| c.entry.ns == k.ns)
            .map_or(0, |c| c.entry.count);
        if replayed.untouched(k.staged) {
            details.push(format!(
                "snapshot recorded {recorded}, {} restored",
                restored.len()
            ));
            ok &= recorded == restored.len() as u64;
        } else {
            details.push(format!(
                "changed by the replayed oplog (snapshot recorded {recorded}, {} restored); without the source only their presence is checked",
                restored.len()
            ));
        }
        checks.push(NamespaceCheck {
            ns: k.ns.to_owned(),
            method: "snapshot-record".into(),
            status: if ok { "match" } else { "mismatch" }.into(),
            details,
        });
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_named_by_field_never_by_value() {
        let a = doc! {"_id": "shop.u", "roles": ["read"], "credentials": {"k": "secret-a"}};
        let b = doc! {"_id": "shop.u", "roles": ["read"], "credentials": {"k": "secret-b"}, "customData": {}};
        assert_eq!(differing_fields(&a, &b), ["credentials", "customData"]);
        assert!(differing_fields(&a, &a.clone()).is_empty());
    }
}
