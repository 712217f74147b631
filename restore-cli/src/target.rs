//! The restore target's safety check: a restore never writes over data silently. Namespaces in
//! scope that already exist on the target make it refuse, unless `--drop`, which removes them
//! all first, so the target ends equal to the source at the restore point, including the absence
//! of collections that did not exist then.

use mongodb::bson::{doc, Document};
use mongodb::Client;

use crate::namespaces::{NamespaceMap, SYSTEM_DATABASES};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot reach the target MongoDB ({uri}): {}; check the URI, that the server runs, and credentials", crate::errors::describe(.error))]
    Unreachable {
        uri: String,
        error: mongodb::error::Error,
    },
    #[error("the target already holds {count} namespace(s) this restore would write: {names}. Restore into an empty target, narrow the scope with --ns, restore under other names with --ns-from/--ns-to, or pass --drop to remove them first")]
    NotEmpty { count: usize, names: String },
    #[error("{what} on the target failed: {}", crate::errors::describe(.error))]
    Command {
        what: String,
        error: mongodb::error::Error,
    },
}

/// An existing target namespace in scope.
#[derive(Debug, Clone)]
pub struct Existing {
    pub ns: String,
    pub kind: String,
    pub documents: u64,
}

/// Connects to the target and proves it answers.
pub async fn connect(uri: &str) -> Result<Client, TargetError> {
    let unreachable = |source| TargetError::Unreachable {
        uri: redact(uri),
        error: source,
    };
    let mut options = mongodb::options::ClientOptions::parse(uri)
        .await
        .map_err(unreachable)?;
    if options.server_selection_timeout.is_none() {
        options.server_selection_timeout = Some(std::time::Duration::from_secs(10));
    }
    options.app_name = Some("mc-restore".into());
    let client = Client::with_options(options).map_err(unreachable)?;
    client
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .map_err(unreachable)?;
    Ok(client)
}

/// Namespaces in scope that exist on the target.
pub async fn existing_in_scope(
    client: &Client,
    map: &NamespaceMap,
) -> Result<Vec<Existing>, TargetError> {
    let cmd_err = |what: String| {
        move |source| TargetError::Command {
            what,
            error: source,
        }
    };
    let mut found = Vec::new();
    for db in client
        .list_database_names()
        .await
        .map_err(cmd_err("listDatabases".into()))?
    {
        if SYSTEM_DATABASES.contains(&db.as_str()) {
            continue;
        }
        let database = client.database(&db);
        let mut cursor = database
            .run_cursor_command(doc! {"listCollections": 1, "nameOnly": false})
            .await
            .map_err(cmd_err(format!("listCollections on {db}")))?;
        use futures::TryStreamExt;
        while let Some(info) = cursor
            .try_next()
            .await
            .map_err(cmd_err(format!("listCollections on {db}")))?
        {
            let name = info.get_str("name").unwrap_or_default().to_owned();
            if name.is_empty() || name.starts_with("system.") {
                continue;
            }
            let ns = format!("{db}.{name}");
            if !map.writes(&ns) {
                continue;
            }
            let kind = info.get_str("type").unwrap_or("collection").to_owned();
            let documents = if kind == "view" {
                0
            } else {
                database
                    .collection::<Document>(&name)
                    .estimated_document_count()
                    .await
                    .unwrap_or(0)
            };
            found.push(Existing {
                ns,
                kind,
                documents,
            });
        }
    }
    Ok(found)
}

/// Refuses (without `drop`) or drops what is in the way. Returns the namespaces dropped.
pub async fn prepare(
    client: &Client,
    map: &NamespaceMap,
    drop: bool,
) -> Result<Vec<String>, TargetError> {
    let existing = existing_in_scope(client, map).await?;
    if existing.is_empty() {
        return Ok(Vec::new());
    }
    if !drop {
        let mut names: Vec<String> = existing
            .iter()
            .map(|e| format!("{} ({} {} docs)", e.ns, e.kind, e.documents))
            .collect();
        let count = names.len();
        if names.len() > 10 {
            names.truncate(10);
            names.push("…".into());
        }
        return Err(TargetError::NotEmpty {
            count,
            names: names.join(", "),
        });
    }
    let mut dropped = Vec::new();
    // Views first: a view on a dropped collection is harmless, but order keeps logs readable.
    let mut ordered = existing;
    ordered.sort_by_key(|e| e.kind != "view");
    for e in ordered {
        let (db, name) = e.ns.split_once('.').unwrap_or((&e.ns, ""));
        client
            .database(db)
            .run_command(doc! {"drop": name})
            .await
            .map_err(|source| TargetError::Command {
                what: format!("dropping {}", e.ns),
                error: source,
            })?;
        tracing::info!(ns = %e.ns, documents = e.documents, "dropped from the target (--drop)");
        dropped.push(e.ns);
    }
    Ok(dropped)
}

/// How many replay partitions suit the target: its CPU cores (`hostInfo`), 2 to 8. Measured on
/// 2 cores, 2 partitions beat both 1 and 4+ (docs/performance.md); a user without the
/// `hostInfo` privilege gets 2.
pub async fn replay_workers(client: &Client) -> usize {
    cores(client).await
}

/// How many snapshot parts to load at once, and collections' index builds to run at once: the
/// target's CPU cores (`hostInfo`), 2 to 8 (docs/performance.md, "Restore against
/// mongorestore"); 2 for a user without the `hostInfo` privilege.
pub async fn load_workers(client: &Client) -> usize {
    cores(client).await
}

/// The target's CPU cores (`hostInfo`), 2 to 8; 2 when it does not say.
async fn cores(client: &Client) -> usize {
    let cores = client
        .database("admin")
        .run_command(doc! {"hostInfo": 1})
        .await
        .ok()
        .and_then(|h| {
            h.get_document("system")
                .ok()
                .and_then(|s| s.get_i32("numCores").ok())
        });
    cores.map_or(2, |n| usize::try_from(n).unwrap_or(2).clamp(2, 8))
}

/// A MongoDB URI with any password replaced by `***`.
pub fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &uri[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &uri[..scheme + 3], &uri[at..]),
                None => uri.to_owned(),
            }
        }
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_print() {
        assert_eq!(
            super::redact("mongodb://admin:s3cr3t@db:27017/?replicaSet=rs0"),
            "mongodb://admin:***@db:27017/?replicaSet=rs0"
        );
        assert_eq!(super::redact("mongodb://db:1/"), "mongodb://db:1/");
    }
}
