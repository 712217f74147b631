//! Catalog changes after T: the source's oplog after T read for everything that changed a
//! namespace's existence, name, view definition or indexes ([`CatalogChanges`]). What they touch
//! cannot be proven from the live source, so it is reported not verifiable.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{doc, RawBsonRef, RawDocument, RawDocumentBuf, Timestamp};
use mongodb::Client;

use super::{show_ts, VerifyDataError};

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
                error: source,
            })?;
        while let Some(entry) =
            cursor
                .try_next()
                .await
                .map_err(|source| VerifyDataError::Command {
                    side: "source",
                    what: what(),
                    error: source,
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
}
