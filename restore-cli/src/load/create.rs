//! Making a snapshot's collections and views on the target, with the options they had, and
//! reading the definitions the snapshot recorded as Extended JSON (options, index specs).

use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;

use super::LoadError;
use crate::namespaces::is_buckets;
use crate::plan::PlannedCollection;

/// Creates one collection (or view) with its options.
pub(super) async fn create(
    target: &Client,
    snapshot: &str,
    c: &PlannedCollection,
) -> Result<(), LoadError> {
    let (db, name) = split(&c.target_ns);
    let mut cmd = doc! {"create": name};
    for (k, v) in options(snapshot, c)? {
        // A snapshot read in the middle of an `$out` holds its temporary collection; mongod
        // takes `temp` from no client. Replay drops it if the restore point still has it.
        if k != "temp" {
            cmd.insert(k, v);
        }
    }
    target
        .database(db)
        .run_command(cmd)
        .await
        .map(|_| ())
        .map_err(|source| LoadError::Target {
            what: format!("creating {} {}", c.entry.kind, c.target_ns),
            error: source,
        })
}

/// The collection's options as the snapshot recorded them.
pub(super) fn options(snapshot: &str, c: &PlannedCollection) -> Result<Document, LoadError> {
    ext_json_doc(&c.entry.options).map_err(|detail| LoadError::Snapshot {
        snapshot: snapshot.to_owned(),
        ns: c.entry.ns.clone(),
        detail: format!("collection options: {detail}"),
    })
}

/// The collection that holds the documents: a time-series collection's are its buckets.
pub(super) fn data_name(c: &PlannedCollection) -> String {
    let (_, name) = split(&c.target_ns);
    if c.entry.kind == "timeseries" && !is_buckets(&c.target_ns) {
        format!("system.buckets.{name}")
    } else {
        name.to_owned()
    }
}

/// The snapshot's secondary index definitions of one collection (built after replay).
pub(super) fn index_specs(
    snapshot: &str,
    c: &PlannedCollection,
) -> Result<Vec<Document>, LoadError> {
    if c.entry.kind == "view" {
        return Ok(Vec::new());
    }
    let mut specs = Vec::new();
    for spec in &c.entry.indexes {
        let spec = ext_json_doc(spec).map_err(|detail| LoadError::Snapshot {
            snapshot: snapshot.to_owned(),
            ns: c.entry.ns.clone(),
            detail: format!("index definition: {detail}"),
        })?;
        if spec.get_str("name").ok() == Some("_id_") {
            continue;
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// `db.coll` → (`db`, `coll`).
pub(super) fn split(ns: &str) -> (&str, &str) {
    ns.split_once('.').unwrap_or((ns, ""))
}

/// Canonical Extended JSON (as the snapshot stores options and index specs) to a document.
fn ext_json_doc(value: &serde_json::Value) -> Result<Document, String> {
    match Bson::try_from(value.clone()).map_err(|e| e.to_string())? {
        Bson::Document(d) => Ok(d),
        other => Err(format!("expected a document, found {other}")),
    }
}
