//! Users and roles (`--restore-users-and-roles`): the last phase of a restore that asked for
//! them.
//!
//! MongoDB cannot create a user from stored credentials (`createUser` takes a clear-text
//! password), so users and roles are restored the way `mongorestore` does it: load and replay
//! put the snapshot's `admin.system.users` / `admin.system.roles` documents, brought to the
//! restore point by the oplog, into two staging collections of `admin`
//! ([`STAGED_USERS_NS`], [`STAGED_ROLES_NS`]), and the server's `_mergeAuthzCollections`
//! command (what `mongorestore` runs; checked on mongod 6.0) adds them to the target's users and
//! roles with their hashed credentials. It runs with `drop: false`: users and roles the target
//! already has under the same names are left as they are (the target's administrator, say), and
//! reported; nothing else of the target's is removed. The staging collections are dropped
//! afterwards.

use std::collections::BTreeSet;

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;
use serde::Serialize;

use crate::namespaces::{STAGED_ROLES_NS, STAGED_USERS_NS};

#[derive(Debug, thiserror::Error)]
#[error("restoring users and roles: {what} on the target failed: {}", crate::errors::describe(.error))]
pub struct UsersError {
    pub what: String,
    pub error: mongodb::error::Error,
}

/// What the merge did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsersAndRolesStats {
    /// Users and roles of the source at the restore point (`db.name`).
    pub users: Vec<String>,
    pub roles: Vec<String>,
    /// Those the target already had under the same name: left unchanged.
    pub kept_existing_users: Vec<String>,
    pub kept_existing_roles: Vec<String>,
}

/// Drops the staging collections if an earlier, interrupted restore left them.
pub async fn clear_staging(target: &Client) -> Result<(), UsersError> {
    for ns in [STAGED_USERS_NS, STAGED_ROLES_NS] {
        let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
        match target.database(db).run_command(doc! {"drop": coll}).await {
            Ok(_) => {}
            // NamespaceNotFound: nothing to clear.
            Err(e) if crate::errors::code_of(&e) == Some(crate::errors::NAMESPACE_NOT_FOUND) => {}
            Err(source) => {
                return Err(UsersError {
                    what: format!("dropping {ns}"),
                    error: source,
                })
            }
        }
    }
    Ok(())
}

/// What [`merge`] will do, read before it runs: the staged users and roles, and those of them
/// the target already has (which the merge leaves as they are).
pub async fn pending(target: &Client) -> Result<UsersAndRolesStats, UsersError> {
    let (users, kept_existing_users) =
        staged_and_existing(target, STAGED_USERS_NS, "system.users").await?;
    let (roles, kept_existing_roles) =
        staged_and_existing(target, STAGED_ROLES_NS, "system.roles").await?;
    Ok(UsersAndRolesStats {
        users,
        roles,
        kept_existing_users,
        kept_existing_roles,
    })
}

/// Merges the staging collections into the target's users and roles, then drops them.
pub async fn merge(target: &Client) -> Result<UsersAndRolesStats, UsersError> {
    let stats = pending(target).await?;
    merge_pending(target, stats).await
}

/// [`merge`] for a caller that has already read [`pending`] (`stats`): the merge itself, the
/// staging dropped, and a warning per user or role the target already had.
pub async fn merge_pending(
    target: &Client,
    stats: UsersAndRolesStats,
) -> Result<UsersAndRolesStats, UsersError> {
    let admin = target.database("admin");
    admin
        .run_command(doc! {
            "_mergeAuthzCollections": 1,
            "tempUsersCollection": STAGED_USERS_NS,
            "tempRolesCollection": STAGED_ROLES_NS,
            "db": "",
            "drop": false,
        })
        .await
        .map_err(|source| UsersError {
            what: "_mergeAuthzCollections".into(),
            error: source,
        })?;
    clear_staging(target).await?;
    for name in stats
        .kept_existing_users
        .iter()
        .chain(&stats.kept_existing_roles)
    {
        tracing::warn!(%name, "the target already had this user or role: left unchanged");
    }
    Ok(stats)
}

/// The `_id`s (`db.name`) in staging collection `staged`, and those of them that `admin.<real>`
/// already holds.
async fn staged_and_existing(
    target: &Client,
    staged: &str,
    real: &str,
) -> Result<(Vec<String>, Vec<String>), UsersError> {
    let admin = target.database("admin");
    let coll = staged.split_once('.').map_or(staged, |(_, c)| c);
    let err = |what: String| {
        move |source| UsersError {
            what,
            error: source,
        }
    };
    let ids: Vec<Bson> = admin
        .collection::<Document>(coll)
        .find(doc! {})
        .projection(doc! {"_id": 1})
        .sort(doc! {"_id": 1})
        .await
        .map_err(err(format!("reading {staged}")))?
        .try_collect::<Vec<Document>>()
        .await
        .map_err(err(format!("reading {staged}")))?
        .into_iter()
        .filter_map(|d| d.get("_id").cloned())
        .collect();
    let existing: Vec<String> = admin
        .collection::<Document>(real)
        .find(doc! {"_id": {"$in": ids.clone()}})
        .projection(doc! {"_id": 1})
        .sort(doc! {"_id": 1})
        .await
        .map_err(err(format!("reading admin.{real}")))?
        .try_collect::<Vec<Document>>()
        .await
        .map_err(err(format!("reading admin.{real}")))?
        .iter()
        .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
        .collect();
    let names = ids
        .iter()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    Ok((names, existing))
}

/// A drill's record (collection of `admin` on its scratch target) of the users and roles it
/// added: only those are removed by its cleanup or by the next drill.
pub const MARKER: &str = "mc_drill_authz";

/// The users (`db.name`) the drill's own connection is authenticated as: never removed.
async fn connected_as(scratch: &Client) -> Result<BTreeSet<String>, String> {
    let status = scratch
        .database("admin")
        .run_command(doc! {"connectionStatus": 1})
        .await
        .map_err(|e| format!("connectionStatus on the scratch target: {e}"))?;
    Ok(status
        .get_document("authInfo")
        .and_then(|a| a.get_array("authenticatedUsers"))
        .map(|users| {
            users
                .iter()
                .filter_map(Bson::as_document)
                .filter_map(|u| {
                    Some(format!(
                        "{}.{}",
                        u.get_str("db").ok()?,
                        u.get_str("user").ok()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Removes the users and roles earlier drills added (recorded in [`MARKER`]) and the staging
/// collections an interrupted restore left. Returns what was removed.
pub async fn remove_added(scratch: &Client) -> Result<Vec<String>, String> {
    let admin = scratch.database("admin");
    let recorded: Vec<Document> = async {
        admin
            .collection::<Document>(MARKER)
            .find(doc! {})
            .sort(doc! {"kind": -1, "_id": 1}) // users before the roles they may hold
            .await?
            .try_collect()
            .await
    }
    .await
    .map_err(|e| format!("reading admin.{MARKER} on the scratch target: {e}"))?;
    let me = connected_as(scratch).await?;
    let mut removed = Vec::new();
    for entry in &recorded {
        let (Ok(id), Ok(kind)) = (entry.get_str("_id"), entry.get_str("kind")) else {
            continue;
        };
        let Some((db, name)) = id.split_once('.') else {
            continue;
        };
        if kind == "user" && me.contains(id) {
            tracing::warn!(user = %id, "the drill connects as a user an earlier drill restored: left on the scratch target");
            continue;
        }
        let (command, missing) = match kind {
            "user" => (doc! {"dropUser": name}, crate::errors::USER_NOT_FOUND),
            _ => (doc! {"dropRole": name}, crate::errors::ROLE_NOT_FOUND),
        };
        match scratch.database(db).run_command(command).await {
            Ok(_) => removed.push(id.to_owned()),
            Err(e) if crate::errors::code_of(&e) == Some(missing) => {}
            Err(e) => return Err(format!("removing {kind} {id} from the scratch target: {e}")),
        }
    }
    admin
        .collection::<Document>(MARKER)
        .drop()
        .await
        .map_err(|e| format!("dropping admin.{MARKER} on the scratch target: {e}"))?;
    clear_staging(scratch).await.map_err(|e| e.to_string())?;
    Ok(removed)
}

/// [`merge`] for a drill: records first, in [`MARKER`], which users and roles it adds, so
/// [`remove_added`] can take exactly those away again.
pub async fn merge_recording(scratch: &Client) -> Result<UsersAndRolesStats, String> {
    let pending = pending(scratch).await.map_err(|e| e.to_string())?;
    let added = |all: &[String], kept: &[String], kind: &str| -> Vec<Document> {
        all.iter()
            .filter(|id| !kept.contains(id))
            .map(|id| doc! {"_id": id, "kind": kind})
            .collect()
    };
    let mut marks = added(&pending.users, &pending.kept_existing_users, "user");
    marks.extend(added(&pending.roles, &pending.kept_existing_roles, "role"));
    if !marks.is_empty() {
        scratch
            .database("admin")
            .collection::<Document>(MARKER)
            .insert_many(marks)
            .await
            .map_err(|e| format!("recording the drill's users in admin.{MARKER}: {e}"))?;
    }
    merge_pending(scratch, pending)
        .await
        .map_err(|e| e.to_string())
}
