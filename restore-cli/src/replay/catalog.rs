//! What replay keeps track of about the target's collections while it applies the oplog: the
//! secondary indexes to build once the data is final, which collections are capped, and which
//! are temporary (`$out`, `convertToCapped`).
//!
//! **Why indexes wait.** A restore writes a state the source passed through only at the end:
//! the snapshot is read while the source changes (a fuzzy copy, as `mongodump --oplog`), and
//! replay applies independent documents in parallel, out of their source order. A unique index
//! present during that time can refuse an intermediate state the source never had (a user takes
//! the email another user gave up a moment earlier, and replay applied the taking first). So
//! every secondary index, unique or not, the snapshot's and those the oplog creates, is only
//! *recorded* here while data moves, with every later change to it (`dropIndexes`, `collMod`
//! hiding it, changing its TTL or making it unique, the collection's drop, rename or database
//! drop), and built by [`TargetCatalog::build_indexes`] after the last write. The final state
//! is the source's at the restore point, which satisfied every one of those indexes.
//!
//! **Capped collections** evict their oldest documents when full, so their content depends on
//! the order of inserts across documents: replay sends all writes of a capped collection to one
//! worker, in source order ([`TargetCatalog::is_capped`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{FutureExt, StreamExt};
use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;

use super::entry::Command;

/// The target's collections as replay has made them so far.
#[derive(Debug, Default)]
pub struct TargetCatalog {
    /// Secondary index specs to build at the end, by target namespace, in creation order.
    indexes: BTreeMap<String, Vec<Document>>,
    capped: HashSet<String>,
    /// Collections created with `temp: true` and not yet renamed: the source drops them at its
    /// next restart, so a restore does not keep them.
    temp: HashSet<String>,
    /// Per capped collection the snapshot loaded, the `_id` of the last document it read (in
    /// natural order): replay's [`super::CappedWindow`] starts there.
    pub capped_last: HashMap<String, Bson>,
}

/// An index build that failed at the end.
#[derive(Debug, thiserror::Error)]
#[error("building index {index} of {ns} failed: {}; the documents are restored, the index is not: create it by hand once the cause is fixed", crate::errors::describe(.error))]
pub struct IndexBuildError {
    pub ns: String,
    pub index: String,
    pub error: mongodb::error::Error,
}

impl TargetCatalog {
    /// Records a collection the snapshot loads: its options and its secondary indexes.
    pub fn loaded(&mut self, ns: &str, options: &Document, specs: Vec<Document>) {
        if options.get_bool("capped").unwrap_or(false) {
            self.capped.insert(ns.to_owned());
        }
        let specs = specs
            .into_iter()
            .filter(|s| s.get_str("name").ok() != Some("_id_"))
            .map(clean_spec)
            .collect();
        self.indexes.insert(ns.to_owned(), specs);
    }

    /// Records a temporary collection the snapshot loaded (read in the middle of an `$out`).
    pub fn loaded_temporary(&mut self, ns: &str) {
        self.temp.insert(ns.to_owned());
    }

    /// Whether writes to `ns` must keep their source order across documents.
    pub fn is_capped(&self, ns: &str) -> bool {
        self.capped.contains(ns)
    }

    /// Takes in a catalog change replay is about to make on the target. Index changes are
    /// recorded and leave nothing to run; everything else is returned to run (changed where the
    /// target needs it: a temporary collection is created as a plain one).
    pub fn intercept(&mut self, mut cmd: Command) -> Option<Command> {
        let db = cmd.db.clone();
        let ns_of = |coll: &str| format!("{db}.{coll}");
        let (name, arg) = match cmd.command.iter().next() {
            Some((k, v)) => (k.clone(), v.clone()),
            None => return Some(cmd),
        };
        let coll = arg.as_str().map(str::to_owned).unwrap_or_default();
        match name.as_str() {
            "createIndexes" => {
                let ns = ns_of(&coll);
                for spec in cmd.command.get_array("indexes").into_iter().flatten() {
                    if let Bson::Document(spec) = spec {
                        let spec = clean_spec(spec.clone());
                        let name = Bson::String(spec.get_str("name").unwrap_or_default().into());
                        for twin in twins(&ns) {
                            if let Some(specs) = self.indexes.get_mut(&twin) {
                                specs.retain(|s| !matches_index(s, &name));
                            }
                        }
                        self.indexes.entry(ns.clone()).or_default().push(spec);
                    }
                }
                None
            }
            "dropIndexes" | "deleteIndexes" => {
                let ns = ns_of(&coll);
                let which = cmd.command.get("index").cloned().unwrap_or(Bson::Null);
                for twin in twins(&ns) {
                    if let Some(specs) = self.indexes.get_mut(&twin) {
                        specs.retain(|s| !matches_index(s, &which));
                    }
                }
                None
            }
            "collMod" => {
                let ns = ns_of(&coll);
                if let Some(Bson::Document(change)) = cmd.command.remove("index") {
                    for twin in twins(&ns) {
                        if let Some(spec) = self
                            .indexes
                            .get_mut(&twin)
                            .and_then(|specs| specs.iter_mut().find(|s| index_named_by(s, &change)))
                        {
                            modify_index(spec, &change);
                        }
                    }
                }
                // `collMod` of capped sizes keeps the collection capped; nothing else changes
                // what replay tracks. Only the collection name left: nothing to run.
                (cmd.command.len() > 1).then_some(cmd)
            }
            "create" => {
                let ns = ns_of(&coll);
                self.indexes.insert(ns.clone(), Vec::new());
                if cmd.command.get_bool("capped").unwrap_or(false) {
                    self.capped.insert(ns.clone());
                } else {
                    self.capped.remove(&ns);
                }
                // mongod refuses `temp` from a client; the rename that follows makes it a plain
                // collection anyway, and one still temporary at the end is dropped.
                if cmd.command.remove("temp").is_some() {
                    self.temp.insert(ns);
                }
                Some(cmd)
            }
            "drop" => {
                let ns = ns_of(&coll);
                self.forget(&ns);
                Some(cmd)
            }
            "renameCollection" => {
                let from = coll;
                let to = cmd.command.get_str("to").unwrap_or_default().to_owned();
                self.forget(&to);
                let specs = self.indexes.remove(&from).unwrap_or_default();
                self.indexes.insert(to.clone(), specs);
                if self.capped.remove(&from) {
                    self.capped.insert(to.clone());
                }
                self.temp.remove(&from);
                Some(cmd)
            }
            "dropDatabase" => {
                let prefix = format!("{db}.");
                self.indexes.retain(|ns, _| !ns.starts_with(&prefix));
                self.capped.retain(|ns| !ns.starts_with(&prefix));
                self.temp.retain(|ns| !ns.starts_with(&prefix));
                Some(cmd)
            }
            _ => Some(cmd),
        }
    }

    fn forget(&mut self, ns: &str) {
        for twin in twins(ns) {
            self.indexes.remove(&twin);
        }
        self.capped.remove(ns);
        self.temp.remove(ns);
    }

    /// Collections still temporary after the last entry (an `$out` cut off by the restore
    /// point): dropped, as the source would at its next restart. Returns their names.
    pub async fn drop_temporary(
        &mut self,
        target: &Client,
    ) -> Result<Vec<String>, super::ReplayError> {
        let mut dropped: Vec<String> = self.temp.drain().collect();
        dropped.sort();
        for ns in &dropped {
            let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
            match target.database(db).run_command(doc! {"drop": coll}).await {
                Ok(_) => {}
                Err(e)
                    if crate::errors::code_of(&e) == Some(crate::errors::NAMESPACE_NOT_FOUND) => {}
                Err(source) => {
                    return Err(super::ReplayError::Apply {
                        what: format!("drop {ns} (a temporary collection at the restore point)"),
                        error: source,
                    })
                }
            }
            self.indexes.remove(ns);
            self.capped.remove(ns);
        }
        Ok(dropped)
    }

    /// Every recorded index, as (namespace, specs), in namespace order.
    pub fn pending_indexes(&self) -> impl Iterator<Item = (&String, &Vec<Document>)> {
        self.indexes.iter().filter(|(_, specs)| !specs.is_empty())
    }

    /// Builds every recorded index on the final data: one `createIndexes` per collection, so
    /// the server builds a collection's indexes in one scan of it, and `parallel` collections'
    /// builds at once (each build scans and sorts on one server thread; mongod runs three at
    /// once, `maxNumActiveUserIndexBuilds`, and queues the rest). Every build runs to its end
    /// even when another fails; the first failure is returned and the others are logged.
    /// Returns the number of indexes built.
    /// `journal`: a collection whose indexes an interrupted restore built is skipped, and each
    /// collection built is recorded (a lost record only means `createIndexes` is sent again on
    /// `--resume`, where indexes that exist with the same definition make it a no-op).
    /// `built(n)` is called as each collection's `n` indexes are done (progress display).
    pub async fn build_indexes(
        &self,
        target: &Client,
        parallel: usize,
        journal: &crate::journal::Journal,
        built: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, IndexBuildError> {
        // By index, not by reference: a stream of references would make the caller's future's
        // `Send` unprovable where it is spawned (the agent's drills).
        let pending: Vec<(&String, &Vec<Document>)> = self.pending_indexes().collect();
        let pending = &pending;
        let results: Vec<Result<u64, IndexBuildError>> =
            futures::stream::iter(0..pending.len())
                .map(|i| async move {
                    let (ns, specs) = pending[i];
                    // Resume (crate::journal): built before the interruption.
                    if journal.indexes_built(ns) {
                        built(specs.len() as u64);
                        return Ok(specs.len() as u64);
                    }
                    let n = build_collection_indexes(target, ns, specs).await?;
                    if let Err(e) = journal.indexes_done(ns).await {
                        tracing::warn!(%ns, error = %e, "the built indexes could not be recorded in the restore journal");
                    }
                    built(n);
                    Ok(n)
                }.boxed())
                .buffer_unordered(parallel.max(1))
                .collect()
                .await;
        let mut built = 0;
        let mut failed = None;
        for result in results {
            match result {
                Ok(n) => built += n,
                Err(e) if failed.is_none() => failed = Some(e),
                Err(e) => tracing::error!(error = %e, "index build failed"),
            }
        }
        failed.map_or(Ok(built), Err)
    }
}

/// One collection's indexes in one `createIndexes`.
async fn build_collection_indexes(
    target: &Client,
    ns: &str,
    specs: &[Document],
) -> Result<u64, IndexBuildError> {
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    target
        .database(db)
        .run_command(doc! {"createIndexes": coll, "indexes": specs.to_vec()})
        .await
        .map_err(|source| IndexBuildError {
            ns: ns.to_owned(),
            index: specs
                .iter()
                .filter_map(|s| s.get_str("name").ok())
                .collect::<Vec<_>>()
                .join(", "),
            error: source,
        })?;
    Ok(specs.len() as u64)
}

/// `ns` and, for a time-series collection, the other name of its indexes: the snapshot records
/// them on the collection (`db.x`, as `listIndexes` shows them), the oplog on its buckets
/// (`db.system.buckets.x`, in the buckets' own terms). A change to one by name reaches both.
fn twins(ns: &str) -> Vec<String> {
    let other = match ns.split_once('.') {
        Some((db, coll)) => match coll.strip_prefix("system.buckets.") {
            Some(view) => format!("{db}.{view}"),
            None => format!("{db}.system.buckets.{coll}"),
        },
        None => return vec![ns.to_owned()],
    };
    vec![ns.to_owned(), other]
}

/// An index spec as `createIndexes` takes it: without the namespace older servers recorded.
fn clean_spec(mut spec: Document) -> Document {
    spec.remove("ns");
    spec
}

/// Whether `dropIndexes`' `index` argument (a name, a key pattern, a list of names, or `"*"`)
/// names `spec`.
fn matches_index(spec: &Document, which: &Bson) -> bool {
    let name = spec.get_str("name").unwrap_or_default();
    match which {
        Bson::String(s) => s == "*" || s == name,
        Bson::Document(key) => spec.get_document("key").ok() == Some(key),
        Bson::Array(names) => names.iter().any(|n| n.as_str() == Some(name)),
        _ => false,
    }
}

/// Whether `collMod`'s `index` document (by `name` or `keyPattern`) names `spec`.
fn index_named_by(spec: &Document, change: &Document) -> bool {
    match (change.get_str("name"), change.get_document("keyPattern")) {
        (Ok(name), _) => spec.get_str("name").ok() == Some(name),
        (_, Ok(key)) => spec.get_document("key").ok() == Some(key),
        _ => false,
    }
}

/// Applies `collMod`'s index options to a recorded spec, as the server would to the index.
fn modify_index(spec: &mut Document, change: &Document) {
    for (k, v) in change {
        match (k.as_str(), v) {
            ("name" | "keyPattern", _) => {}
            // The server lists these options only while they are true.
            ("hidden" | "prepareUnique", Bson::Boolean(false)) => {
                spec.remove(k);
            }
            ("unique", Bson::Boolean(true)) => {
                spec.remove("prepareUnique");
                spec.insert("unique", true);
            }
            _ => {
                spec.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(db: &str, command: Document) -> Command {
        Command {
            what: "test".into(),
            db: db.into(),
            command,
        }
    }

    fn names(c: &TargetCatalog, ns: &str) -> Vec<String> {
        c.indexes
            .get(ns)
            .map(|s| {
                s.iter()
                    .map(|s| s.get_str("name").unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn index_changes_are_recorded_not_run() {
        let mut c = TargetCatalog::default();
        c.loaded(
            "d.users",
            &doc! {},
            vec![
                doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"},
                doc! {"v": 2, "key": {"email": 1}, "name": "email_1", "unique": true, "ns": "d.users"},
            ],
        );
        assert_eq!(names(&c, "d.users"), ["email_1"]);
        let created = c.intercept(cmd(
            "d",
            doc! {"createIndexes": "users", "indexes": [{"v": 2, "key": {"age": 1}, "name": "age_1"}]},
        ));
        assert!(created.is_none());
        assert_eq!(names(&c, "d.users"), ["email_1", "age_1"]);
        assert!(c
            .intercept(cmd(
                "d",
                doc! {"dropIndexes": "users", "index": {"email": 1}}
            ))
            .is_none());
        assert_eq!(names(&c, "d.users"), ["age_1"]);
        let hidden = c.intercept(cmd(
            "d",
            doc! {"collMod": "users", "index": {"name": "age_1", "hidden": true}},
        ));
        assert!(hidden.is_none(), "an index-only collMod runs nothing");
        assert_eq!(c.indexes["d.users"][0].get_bool("hidden").ok(), Some(true));
        let both = c
            .intercept(cmd(
                "d",
                doc! {"collMod": "users", "index": {"name": "age_1", "hidden": false}, "validationLevel": "moderate"},
            ))
            .expect("the validator part still runs");
        assert_eq!(
            both.command,
            doc! {"collMod": "users", "validationLevel": "moderate"}
        );
        assert!(!c.indexes["d.users"][0].contains_key("hidden"));
        assert!(c
            .intercept(cmd("d", doc! {"dropIndexes": "users", "index": "*"}))
            .is_none());
        assert!(names(&c, "d.users").is_empty());
    }

    #[test]
    fn collections_carry_their_indexes_and_capping_through_renames_and_drops() {
        let mut c = TargetCatalog::default();
        let create = c
            .intercept(cmd(
                "d",
                doc! {"create": "tmp.agg_out.1", "temp": true, "capped": true, "size": 4096},
            ))
            .unwrap();
        assert!(!create.command.contains_key("temp"), "temp is never sent");
        c.intercept(cmd(
            "d",
            doc! {"createIndexes": "tmp.agg_out.1", "indexes": [{"v": 2, "key": {"a": 1}, "name": "a_1", "unique": true}]},
        ));
        assert!(c.is_capped("d.tmp.agg_out.1"));
        c.intercept(cmd(
            "admin",
            doc! {"renameCollection": "d.tmp.agg_out.1", "to": "d.out", "dropTarget": true},
        ));
        assert!(c.is_capped("d.out") && !c.is_capped("d.tmp.agg_out.1"));
        assert_eq!(names(&c, "d.out"), ["a_1"]);
        assert!(c.temp.is_empty(), "a renamed temporary collection is kept");
        c.intercept(cmd("d", doc! {"drop": "out"}));
        assert!(!c.is_capped("d.out") && names(&c, "d.out").is_empty());
        c.intercept(cmd("d", doc! {"create": "x"}));
        c.intercept(cmd(
            "d",
            doc! {"createIndexes": "x", "indexes": [{"v": 2, "key": {"a": 1}, "name": "a_1"}]},
        ));
        c.intercept(cmd("d", doc! {"dropDatabase": 1}));
        assert_eq!(c.pending_indexes().count(), 0);
    }

    #[test]
    fn a_time_series_index_is_one_index_under_two_names() {
        let mut c = TargetCatalog::default();
        c.loaded(
            "d.ts",
            &doc! {},
            vec![doc! {"v": 2, "key": {"m.a": 1, "t": 1}, "name": "ma_t"}],
        );
        c.intercept(cmd(
            "d",
            doc! {"dropIndexes": "system.buckets.ts", "index": "ma_t"},
        ));
        assert!(names(&c, "d.ts").is_empty(), "dropped through its buckets");
        c.intercept(cmd(
            "d",
            doc! {"createIndexes": "system.buckets.ts", "indexes": [{"v": 2, "key": {"meta.a": 1}, "name": "m"}]},
        ));
        assert_eq!(names(&c, "d.system.buckets.ts"), ["m"]);
        c.intercept(cmd("d", doc! {"drop": "ts"}));
        assert_eq!(
            c.pending_indexes().count(),
            0,
            "the collection's drop takes both"
        );
    }

    #[test]
    fn collmod_makes_an_index_unique_as_the_server_does() {
        let mut c = TargetCatalog::default();
        c.loaded(
            "d.u",
            &doc! {},
            vec![doc! {"v": 2, "key": {"e": 1}, "name": "e_1", "prepareUnique": true}],
        );
        c.intercept(cmd(
            "d",
            doc! {"collMod": "u", "index": {"keyPattern": {"e": 1}, "unique": true}},
        ));
        assert_eq!(
            c.indexes["d.u"][0],
            doc! {"v": 2, "key": {"e": 1}, "name": "e_1", "unique": true}
        );
    }
}
