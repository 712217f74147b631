//! Decoding oplog entries for replay: what each entry means for the target (`Action`), with
//! namespaces mapped, collection UUIDs and session fields removed, and transactions assembled.
//!
//! The forms a MongoDB 6.0 replica set writes, and what replay does with them:
//! - `i`, `u` (`$v:2` diffs and replacements), `d`: document writes, applied in batches.
//! - `n`: no-ops (periodic heartbeats, migrations' markers): skipped.
//! - `c` `applyOps` (a transaction, or the `applyOps` command): its inner entries, at the outer
//!   entry's timestamp. Large transactions arrive as several entries with `o.partialTxn: true`
//!   and become visible only with the last one; prepared transactions (`prepare: true`) wait
//!   for their `commitTransaction` (or vanish with `abortTransaction`).
//! - `c` `create`, `drop`, `renameCollection`, `collMod`, `dropIndexes`, `dropDatabase`,
//!   `createIndexes` and `commitIndexBuild` (as `createIndexes`): the same command run on the
//!   target, alone, in order; `startIndexBuild` and `abortIndexBuild` change nothing.
//!
//! Scope is the `NamespaceMap`'s: the server's own databases are out of it, so user management
//! (`createUser`, `updateUser`, `dropRole`, …, which the oplog records as writes to
//! `admin.system.users` / `admin.system.roles`, some inside `applyOps`) is counted out of scope
//! and never touches the target's users, unless users and roles are restored: those writes
//! then go to the staging collections like any document write (`crate::users`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use mongodb::bson::raw::cstr;
use mongodb::bson::{
    doc, Bson, Document, RawArrayBuf, RawBsonRef, RawDocument, RawDocumentBuf, Timestamp,
};

use crate::namespaces::NamespaceMap;
use mc_core::format::OplogTs;

/// An entry that could not be understood; replay stops rather than guess.
#[derive(Debug, thiserror::Error)]
#[error("oplog entry {ts}: {detail}")]
pub struct EntryError {
    pub ts: String,
    pub detail: String,
}

/// The fields of an entry that decide what happens to it.
pub struct Head {
    pub ts: OplogTs,
    pub wall_ms: Option<i64>,
}

/// Reads `ts` and `wall` of a raw entry.
pub fn head(raw: &RawDocument) -> Result<Head, EntryError> {
    let ts = raw.get_timestamp("ts").map_err(|e| EntryError {
        ts: "?".into(),
        detail: format!("no readable ts: {e}"),
    })?;
    Ok(Head {
        ts: OplogTs::new(ts.time, ts.increment),
        wall_ms: raw.get_datetime("wall").ok().map(|w| w.timestamp_millis()),
    })
}

/// What one entry (or one inner entry of a transaction) asks of the target.
#[derive(Debug)]
pub enum Action {
    /// A document write, as an `applyOps` entry for the target namespace `ns`. `partition`
    /// keeps every write of one document on one worker, in order.
    Write {
        ns: String,
        partition: u64,
        op: RawDocumentBuf,
    },
    /// A catalog change, applied alone after everything before it (a barrier).
    Command(Command),
}

/// A catalog change as the command that makes it on the target. Commands run directly, not
/// through `applyOps`: mongod 6.0 refuses index builds in `applyOps` and silently ignores a
/// `dropIndexes` there (measured), so direct commands are the one path that is checked.
#[derive(Debug)]
pub struct Command {
    /// For messages: `drop shop.orders`.
    pub what: String,
    /// Database the command runs on.
    pub db: String,
    pub command: Document,
}

impl Command {
    /// The target namespaces the command names (`renameCollection`: both; `dropDatabase`: none,
    /// see [`Command::touches`]).
    fn names(&self) -> Vec<String> {
        match self.command.iter().next() {
            Some((k, Bson::String(from))) if k == "renameCollection" => {
                let to = self.command.get_str("to").unwrap_or_default();
                vec![from.clone(), to.to_owned()]
            }
            Some((_, Bson::String(coll))) => vec![format!("{}.{coll}", self.db)],
            _ => Vec::new(),
        }
    }

    fn drops_database(&self) -> bool {
        self.command.contains_key("dropDatabase")
    }

    /// Whether the command changes target namespace `ns`.
    pub fn touches(&self, ns: &str) -> bool {
        let in_db = ns.split_once('.').is_some_and(|(db, _)| db == self.db);
        (self.drops_database() && in_db) || self.names().iter().any(|n| n == ns)
    }

    /// Whether `ns` is gone (or replaced) after the command.
    pub fn drops(&self, ns: &str) -> bool {
        let in_db = ns.split_once('.').is_some_and(|(db, _)| db == self.db);
        match self.command.iter().next().map(|(k, _)| k.as_str()) {
            Some("dropDatabase") => in_db,
            Some("drop") => self.names().iter().any(|n| n == ns),
            Some("renameCollection") => self.command.get_str("to").ok() == Some(ns),
            _ => false,
        }
    }
}

/// Turns raw oplog entries into actions; holds the transactions still open.
#[derive(Default)]
pub struct Decoder {
    /// Inner entries of transactions not yet committed, by session and transaction number.
    open: HashMap<Vec<u8>, Vec<RawDocumentBuf>>,
    pub stats: DecodeStats,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DecodeStats {
    pub writes: u64,
    pub commands: u64,
    pub transactions: u64,
    pub noops: u64,
    pub out_of_scope: u64,
    /// Target namespaces that replay wrote documents to.
    #[serde(skip)]
    pub written: std::collections::BTreeSet<String>,
    /// Target namespaces whose catalog entry replay changed (create, drop, rename, indexes…).
    #[serde(skip)]
    pub catalog_changed: std::collections::BTreeSet<String>,
    /// Target databases replay dropped whole.
    #[serde(skip)]
    pub dropped_databases: std::collections::BTreeSet<String>,
}

impl DecodeStats {
    /// Whether replay left target namespace `ns` exactly as the snapshot loaded it.
    pub fn untouched(&self, ns: &str) -> bool {
        let db = ns.split('.').next().unwrap_or_default();
        !self.written.contains(ns)
            && !self.catalog_changed.contains(ns)
            && !self.dropped_databases.contains(db)
    }
}

impl Decoder {
    /// Decodes one top-level entry, appending its actions to `out`.
    pub fn decode(
        &mut self,
        raw: &RawDocument,
        map: &NamespaceMap,
        out: &mut Vec<Action>,
    ) -> Result<(), EntryError> {
        let ts = raw
            .get_timestamp("ts")
            .map(fmt_ts)
            .unwrap_or_else(|_| "?".into());
        let err = |detail: String| EntryError {
            ts: ts.clone(),
            detail,
        };
        let op = raw.get_str("op").map_err(|e| err(format!("no op: {e}")))?;
        if op == "n" {
            self.stats.noops += 1;
            return Ok(());
        }
        if op != "c" {
            return self.single(raw, map, out).map_err(err);
        }
        let o = raw
            .get_document("o")
            .map_err(|e| err(format!("command without o: {e}")))?;
        let name = first_key(o).map_err(err)?;
        match name.as_str() {
            "applyOps" => {
                let inner: Vec<RawDocumentBuf> = o
                    .get_array("applyOps")
                    .map_err(|e| err(format!("applyOps without an array: {e}")))?
                    .into_iter()
                    .map(|v| match v {
                        Ok(RawBsonRef::Document(d)) => Ok(d.to_owned()),
                        other => Err(err(format!(
                            "applyOps element is not a document: {other:?}"
                        ))),
                    })
                    .collect::<Result<_, _>>()?;
                let session = session_key(raw);
                if opens_transaction(raw) {
                    let key = session.ok_or_else(|| {
                        err("a partial or prepared transaction without lsid/txnNumber".into())
                    })?;
                    self.open.entry(key).or_default().extend(inner);
                    return Ok(());
                }
                let mut all = match session {
                    Some(key) => self.open.remove(&key).unwrap_or_default(),
                    None => Vec::new(),
                };
                all.extend(inner);
                self.stats.transactions += 1;
                for entry in &all {
                    self.single(entry, map, out).map_err(&err)?;
                }
                Ok(())
            }
            "commitTransaction" => {
                let key = session_key(raw)
                    .ok_or_else(|| err("commitTransaction without lsid/txnNumber".into()))?;
                let all = self.open.remove(&key).ok_or_else(|| {
                    err("commitTransaction of a prepared transaction whose entries were not read (it began before the replayed range)".into())
                })?;
                self.stats.transactions += 1;
                for entry in &all {
                    self.single(entry, map, out).map_err(&err)?;
                }
                Ok(())
            }
            "abortTransaction" => {
                if let Some(key) = session_key(raw) {
                    self.open.remove(&key);
                }
                Ok(())
            }
            _ => self.single(raw, map, out).map_err(err),
        }
    }

    /// Remembers which target namespaces a catalog command changes.
    fn note_catalog_change(&mut self, cmd: &Command) {
        let changed = &mut self.stats.catalog_changed;
        if cmd.command.contains_key("dropDatabase") {
            self.stats.dropped_databases.insert(cmd.db.clone());
        } else if cmd.command.contains_key("renameCollection") {
            for key in ["renameCollection", "to"] {
                if let Ok(full) = cmd.command.get_str(key) {
                    changed.insert(full.to_owned());
                }
            }
        } else if let Some((_, mongodb::bson::Bson::String(coll))) = cmd.command.iter().next() {
            changed.insert(format!("{}.{coll}", cmd.db));
        }
    }

    /// Transactions begun (partial or prepared entries read) and not finished by the cut: they
    /// are not applied, which is right: they were not committed at the restore point.
    pub fn open_transactions(&self) -> usize {
        self.open.len()
    }

    /// One CRUD or command entry (top level or inside `applyOps`).
    fn single(
        &mut self,
        raw: &RawDocument,
        map: &NamespaceMap,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        let op = raw.get_str("op").map_err(|e| format!("no op: {e}"))?;
        let ns = raw.get_str("ns").map_err(|e| format!("no ns: {e}"))?;
        match op {
            "n" => {
                self.stats.noops += 1;
                Ok(())
            }
            "i" | "u" | "d" => {
                if let Some(db) = ns.strip_suffix(".system.views") {
                    return self.view_write(op, db, raw, map, out);
                }
                if !map.in_scope(ns) {
                    self.stats.out_of_scope += 1;
                    return Ok(());
                }
                let o = raw
                    .get_document("o")
                    .map_err(|e| format!("{op} without o: {e}"))?;
                let o2 = raw.get_document("o2").ok();
                let id = match op {
                    "u" => o2.and_then(|d| d.get("_id").ok().flatten()),
                    _ => o.get("_id").ok().flatten(),
                };
                let target = map.target(ns);
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                target.hash(&mut hasher);
                match id {
                    Some(id) => hash_id(id, &mut hasher),
                    None => return Err(format!("{op} on {ns} without _id")),
                }
                let mut entry = RawDocumentBuf::new();
                entry.append(cstr!("op"), op);
                entry.append(cstr!("ns"), target.as_str());
                entry.append(cstr!("o"), o);
                if let Some(o2) = o2 {
                    entry.append(cstr!("o2"), o2);
                }
                self.stats.writes += 1;
                if !self.stats.written.contains(&target) {
                    self.stats.written.insert(target.clone());
                }
                out.push(Action::Write {
                    ns: target,
                    partition: hasher.finish(),
                    op: entry,
                });
                Ok(())
            }
            "c" => {
                let o = raw
                    .get_document("o")
                    .map_err(|e| format!("command without o: {e}"))?;
                if let Some(cmd) = self.command(ns, o, map)? {
                    self.push_command(cmd, out);
                } else {
                    self.stats.out_of_scope += 1;
                }
                Ok(())
            }
            other => Err(format!("unknown op type {other:?}")),
        }
    }

    fn push_command(&mut self, cmd: Command, out: &mut Vec<Action>) {
        self.stats.commands += 1;
        self.note_catalog_change(&cmd);
        out.push(Action::Command(cmd));
    }

    /// A write to `db.system.views`: the server records creating, modifying (`collMod`) and
    /// dropping a view this way; replay makes the same change with the command that does it.
    /// A time-series collection's view is made by the `create` of its buckets, so it is skipped.
    fn view_write(
        &mut self,
        op: &str,
        db: &str,
        raw: &RawDocument,
        map: &NamespaceMap,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        let o = raw
            .get_document("o")
            .map_err(|e| format!("{op} on {db}.system.views without o: {e}"))?;
        let id_doc = if op == "u" {
            raw.get_document("o2")
                .map_err(|e| format!("update of {db}.system.views without o2: {e}"))?
        } else {
            o
        };
        let view = id_doc
            .get_str("_id")
            .map_err(|e| format!("{db}.system.views entry without a view name: {e}"))?;
        if !map.in_scope(view) {
            self.stats.out_of_scope += 1;
            return Ok(());
        }
        let target = map.target(view);
        let (tdb, tname) = split(&target);
        let command = match op {
            "d" => doc! {"drop": tname},
            _ => {
                let o = Document::try_from(o).map_err(|e| format!("view {view}: {e}"))?;
                if o.contains_key("$v") {
                    return Err(format!(
                        "an update of view {view} in the diff form is not known to mc-restore's replay; nothing was guessed"
                    ));
                }
                let view_on = o
                    .get_str("viewOn")
                    .map_err(|e| format!("view {view} without viewOn: {e}"))?;
                if view_on.starts_with("system.buckets.") {
                    self.stats.noops += 1;
                    return Ok(());
                }
                let on_target = map.target(&format!("{db}.{view_on}"));
                let mut command = if op == "i" {
                    doc! {"create": tname, "viewOn": split(&on_target).1}
                } else {
                    doc! {"collMod": tname, "viewOn": split(&on_target).1}
                };
                command.insert(
                    "pipeline",
                    o.get("pipeline")
                        .cloned()
                        .unwrap_or(Bson::Array(Vec::new())),
                );
                if let (Some(collation), "i") = (o.get("collation"), op) {
                    command.insert("collation", collation.clone());
                }
                command
            }
        };
        let verb = match op {
            "i" => "create view",
            "u" => "collMod view",
            _ => "drop view",
        };
        self.push_command(
            Command {
                what: format!("{verb} {target}"),
                db: tdb.to_owned(),
                command,
            },
            out,
        );
        Ok(())
    }

    fn command(
        &self,
        ns: &str,
        o: &RawDocument,
        map: &NamespaceMap,
    ) -> Result<Option<Command>, String> {
        let db = ns.split('.').next().unwrap_or_default();
        let name = first_key(o)?;
        let o = Document::try_from(o).map_err(|e| format!("{name}: {e}"))?;
        let coll_arg = || -> Result<String, String> {
            o.get_str(&name)
                .map(str::to_owned)
                .map_err(|e| format!("{name} without a collection name: {e}"))
        };
        match name.as_str() {
            "startIndexBuild" | "abortIndexBuild" => Ok(None),
            "create" | "drop" | "collMod" | "dropIndexes" | "deleteIndexes" | "createIndexes" => {
                let coll = coll_arg()?;
                let src = format!("{db}.{coll}");
                if !map.in_scope(&src) {
                    return Ok(None);
                }
                let target = map.target(&src);
                let (tdb, tcoll) = split(&target);
                let timeseries_view = tcoll
                    .strip_prefix("system.buckets.")
                    .filter(|_| name == "create" && o.contains_key("timeseries"));
                let command = if let Some(view) = timeseries_view {
                    // The buckets of a time-series collection: creating the collection itself
                    // makes both the buckets and its view, as on the source.
                    let mut command = doc! {"create": view};
                    for key in ["timeseries", "expireAfterSeconds"] {
                        if let Some(v) = o.get(key) {
                            command.insert(key, v.clone());
                        }
                    }
                    command
                } else if name == "createIndexes" {
                    // The single-phase form: the entry is the index spec.
                    let mut spec = o.clone();
                    spec.remove("createIndexes");
                    doc! {"createIndexes": tcoll, "indexes": [spec]}
                } else {
                    let mut command = Document::new();
                    for (k, v) in &o {
                        // create's idIndex names the source namespace; the target builds its own.
                        if *k == name {
                            command.insert(k, tcoll);
                        } else if !(name == "create" && k == "idIndex") {
                            command.insert(k, v.clone());
                        }
                    }
                    command
                };
                Ok(Some(Command {
                    what: format!("{name} {target}"),
                    db: tdb.to_owned(),
                    command,
                }))
            }
            "commitIndexBuild" => {
                let coll = coll_arg()?;
                let src = format!("{db}.{coll}");
                if !map.in_scope(&src) {
                    return Ok(None);
                }
                let specs = o
                    .get_array("indexes")
                    .map_err(|e| format!("commitIndexBuild without indexes: {e}"))?
                    .clone();
                let target = map.target(&src);
                let (tdb, tcoll) = split(&target);
                Ok(Some(Command {
                    what: format!("createIndexes {target}"),
                    db: tdb.to_owned(),
                    command: doc! {"createIndexes": tcoll, "indexes": specs},
                }))
            }
            "renameCollection" => {
                let from = coll_arg()?;
                let to = o
                    .get_str("to")
                    .map_err(|e| format!("renameCollection without to: {e}"))?
                    .to_owned();
                // dropTarget is a boolean, or the UUID of the collection it replaced.
                let drop_target = o.get_bool("dropTarget").unwrap_or(false)
                    || matches!(o.get("dropTarget"), Some(Bson::Binary(_)));
                match (map.in_scope(&from), map.in_scope(&to)) {
                    (false, false) => Ok(None),
                    (true, true) => {
                        let (f, t) = (map.target(&from), map.target(&to));
                        Ok(Some(Command {
                            what: format!("renameCollection {f} to {t}"),
                            db: "admin".into(),
                            command: doc! {"renameCollection": &f, "to": &t, "dropTarget": drop_target},
                        }))
                    }
                    (true, false) => {
                        // It leaves the scope: for the restored namespaces it is a drop.
                        let target = map.target(&from);
                        let (tdb, tcoll) = split(&target);
                        Ok(Some(Command {
                            what: format!("drop {target} (renamed out of scope to {to})"),
                            db: tdb.to_owned(),
                            command: doc! {"drop": tcoll},
                        }))
                    }
                    (false, true) => Err(format!(
                        "renameCollection brings {from} (not restored) into {to} (restored): widen --ns to include {from}"
                    )),
                }
            }
            "dropDatabase" => {
                if !map.db_in_scope(db) {
                    return Ok(None);
                }
                Ok(Some(Command {
                    what: format!("dropDatabase {}", map.target_db(db)),
                    db: map.target_db(db),
                    command: doc! {"dropDatabase": 1},
                }))
            }
            other => Err(format!(
                "command {other:?} on {ns} is not known to mc-restore's replay; nothing was guessed"
            )),
        }
    }
}

fn split(ns: &str) -> (&str, &str) {
    ns.split_once('.').unwrap_or((ns, ""))
}

/// Hashes an `_id` cheaply for the common types. The partition only needs every entry of one
/// document to hash alike, and the oplog always carries a document's `_id` as stored (same
/// type and bytes), so hashing the stored form is enough.
fn hash_id(id: RawBsonRef<'_>, h: &mut impl Hasher) {
    match id {
        RawBsonRef::ObjectId(oid) => oid.bytes().hash(h),
        RawBsonRef::Int32(i) => i64::from(i).hash(h),
        RawBsonRef::Int64(i) => i.hash(h),
        RawBsonRef::String(s) => s.hash(h),
        RawBsonRef::Document(d) => d.as_bytes().hash(h),
        RawBsonRef::Binary(b) => b.bytes.hash(h),
        other => format!("{other:?}").hash(h),
    }
}

fn first_key(o: &RawDocument) -> Result<String, String> {
    match o.into_iter().next() {
        Some(Ok((k, _))) => Ok(k.as_str().to_owned()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("empty command".into()),
    }
}

/// Whether the entry is an early part of a transaction that becomes visible only later: a
/// `partialTxn` part of a large transaction or a prepared transaction's `prepare`.
pub fn opens_transaction(raw: &RawDocument) -> bool {
    raw.get_document("o").is_ok_and(|o| {
        o.get_bool("partialTxn").unwrap_or(false) || o.get_bool("prepare").unwrap_or(false)
    })
}

/// `lsid` and `txnNumber` as one key: the bytes of both.
fn session_key(raw: &RawDocument) -> Option<Vec<u8>> {
    let lsid = raw.get_document("lsid").ok()?;
    let txn = raw.get_i64("txnNumber").ok()?;
    let mut key = lsid.as_bytes().to_vec();
    key.extend_from_slice(&txn.to_le_bytes());
    Some(key)
}

fn fmt_ts(ts: Timestamp) -> String {
    OplogTs::from(ts).arg().to_string()
}

/// An `applyOps` command document for `ops`, validation bypassed.
pub fn apply_ops_command(ops: &[RawDocumentBuf], always_upsert: bool) -> RawDocumentBuf {
    let mut array = RawArrayBuf::new();
    for op in ops {
        array.push(op.as_ref());
    }
    let mut cmd = RawDocumentBuf::new();
    cmd.append(cstr!("applyOps"), array);
    cmd.append(cstr!("alwaysUpsert"), always_upsert);
    // The source already decided what its validator let through (an application may bypass
    // it, or its action may have been `warn` then): replay never asks again.
    cmd.append(cstr!("bypassDocumentValidation"), true);
    cmd
}

#[cfg(test)]
#[path = "entry_tests.rs"]
mod tests;
