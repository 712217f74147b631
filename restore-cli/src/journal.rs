//! The restore journal: what a restore has finished, kept on the target in a collection of
//! `admin` named for the restore's namespace options (`mc_restore_journal.<key>`, [`name`]: two
//! restores of different namespaces into one cluster at once keep separate journals), so `mc-restore --at T … --resume` continues an interrupted restore without
//! redoing a finished part and without applying an oplog entry twice (docs/restore.md,
//! "Resuming an interrupted restore").
//!
//! Its documents, by `_id`:
//! - `restore`: the plan's identity ([`Identity`]: source, snapshot, cut, namespaces and the
//!   name each collection gets), the replay partitions, the phase reached, when it started;
//! - `part:<object key>`: a snapshot part whose documents are all inserted (how many, their
//!   bytes, and for a capped collection the `_id` of its last document);
//! - `replay.w<N>`: how many writes replay worker N has applied, written by the same
//!   `applyOps` as the batch it counts ([`worker_op`]; MongoDB applies an `applyOps` of CRUD
//!   operations atomically, so the count and the writes are never out of step);
//! - `replay.commands`: how many catalog commands replay has run;
//! - `indexes`: once replay ended, the secondary indexes to build and the last entry applied;
//! - `indexes:<ns>`: a collection whose indexes are built.
//!
//! The journal lives in `admin`, a database a restore never loads, replays into, drops or
//! verifies ([`crate::namespaces::SYSTEM_DATABASES`]); a restore that finishes drops it.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use mc_core::format::OplogTs;
use mongodb::bson::{doc, rawdoc, Bson, DateTime, Document, RawDocumentBuf, Timestamp};
use mongodb::{Client, Collection};

use crate::errors::describe;
use crate::namespaces::NamespaceMap;
use crate::plan::RestorePlan;
use crate::point::RestorePoint;

/// Where journals are: collections of `admin`, beside the users and roles staging
/// collections (`namespaces::STAGED_USERS_NS`), named [`JOURNAL_PREFIX`] and a key.
pub const JOURNAL_DB: &str = "admin";
pub const JOURNAL_PREFIX: &str = "mc_restore_journal.";
const JOURNAL_NAMES: &str = "admin.mc_restore_journal.*";

/// The journal collection of restores with these namespace options ([`NamespaceMap::describe`]):
/// `mc_restore_journal.` and 16 hex digits of their SHA-256.
pub fn name(namespaces: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(namespaces.as_bytes());
    format!("{JOURNAL_PREFIX}{}", &hex::encode(digest)[..16])
}

const HEAD: &str = "restore";
const PENDING_INDEXES: &str = "indexes";
const COMMANDS: &str = "replay.commands";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{what} the restore journal ({JOURNAL_NAMES}) on the target failed: {}", describe(.error))]
    Target {
        what: &'static str,
        error: mongodb::error::Error,
    },
    #[error("--resume: the target holds no interrupted restore to continue ({JOURNAL_NAMES} holds none for these namespace options: no restore was started here, or it finished, and a finished restore removes its journal). Run the same command without --resume to restore from the start")]
    NothingToResume,
    #[error("--resume refused: the interrupted restore on the target is another one ({interrupted}); {differences}. Continue it with its own --at, --snapshot and namespace options, or start over without --resume and with --drop (its progress is discarded)")]
    Mismatch {
        interrupted: String,
        differences: String,
    },
    #[error("the target holds an interrupted restore ({interrupted}): continue it with --resume and the same options, or start over with --drop (which discards its progress and drops the namespaces in scope)")]
    Unfinished { interrupted: String },
    #[error("the restore journal ({JOURNAL_NAMES}) on the target is unreadable: {detail}; start over with --drop")]
    Unreadable { detail: String },
}

/// What makes two restores the same restore: resuming one with another identity would mix
/// two results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub source: String,
    pub snapshot: String,
    /// The resolved cut: `ts:S:I`, or for a wall-clock point that time (milliseconds count).
    pub cut: String,
    /// The scope and renaming (`--ns`, `--exclude-ns`, `--ns-from/--ns-to`, users and roles).
    pub namespaces: String,
    /// `source ns -> target ns` of every collection the snapshot loads.
    pub collections: Vec<String>,
}

impl Identity {
    pub fn of(plan: &RestorePlan, map: &NamespaceMap) -> Self {
        Self {
            source: plan.source.clone(),
            snapshot: plan.snapshot.id.clone(),
            cut: match plan.cut.wall_ms {
                Some(unix_ms) => RestorePoint::Time { unix_ms }.to_string(),
                None => plan.cut.bound.arg().to_string(),
            },
            namespaces: map.describe(),
            collections: plan
                .collections
                .iter()
                .map(|c| format!("{} -> {}", c.entry.ns, c.target_ns))
                .collect(),
        }
    }

    /// How `now` differs from this (the interrupted restore's) identity, one phrase each.
    pub fn differences(&self, now: &Identity) -> Vec<String> {
        let mut out = Vec::new();
        if self.source != now.source {
            out.push(format!(
                "source {} was interrupted, this is {}",
                self.source, now.source
            ));
        }
        if self.cut != now.cut {
            out.push(format!(
                "it restores to {}, this to {} (pass --at {})",
                self.cut, now.cut, self.cut
            ));
        }
        if self.snapshot != now.snapshot {
            out.push(format!(
                "it loads snapshot {}, this {} (pass --snapshot {})",
                self.snapshot, now.snapshot, self.snapshot
            ));
        }
        if self.namespaces != now.namespaces {
            out.push(format!(
                "its namespaces are {}, these {}",
                self.namespaces, now.namespaces
            ));
        } else if self.collections != now.collections {
            let only = |a: &[String], b: &[String]| -> String {
                let v: Vec<&str> = a
                    .iter()
                    .filter(|c| !b.contains(c))
                    .map(String::as_str)
                    .take(5)
                    .collect();
                if v.is_empty() {
                    "none".into()
                } else {
                    v.join(", ")
                }
            };
            out.push(format!(
                "its collections differ (only it: {}; only this: {})",
                only(&self.collections, &now.collections),
                only(&now.collections, &self.collections)
            ));
        }
        out
    }
}

/// The phases the journal records, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JournalPhase {
    Load,
    Replay,
    Indexes,
    Users,
}

impl JournalPhase {
    pub const fn as_str(self) -> &'static str {
        match self {
            JournalPhase::Load => "load",
            JournalPhase::Replay => "replay",
            JournalPhase::Indexes => "indexes",
            JournalPhase::Users => "users",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Load, Self::Replay, Self::Indexes, Self::Users]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// The head of an interrupted restore's journal.
#[derive(Debug, Clone)]
pub struct Interrupted {
    pub identity: Identity,
    /// `--at` as it was given.
    pub point: String,
    pub phase: JournalPhase,
    pub workers: usize,
    pub started: DateTime,
}

impl Interrupted {
    /// One line for messages: which restore, how far it got.
    pub fn describe(&self) -> String {
        format!(
            "source {} to {} ({}) from snapshot {}, namespaces {}, started {}, stopped in phase {}",
            self.identity.source,
            self.point,
            self.identity.cut,
            self.identity.snapshot,
            self.identity.namespaces,
            self.started
                .try_to_rfc3339_string()
                .unwrap_or_else(|_| self.started.to_string()),
            self.phase.as_str()
        )
    }

    /// The exact point it restores to, when it was asked for `latest` (resuming `latest` means
    /// that restore's `latest`, not the repository's newest point now).
    pub fn latest_as_exact(&self) -> Option<RestorePoint> {
        if !self.point.eq_ignore_ascii_case("latest") {
            return None;
        }
        self.identity.cut.parse().ok()
    }

    fn from_doc(d: &Document) -> Result<Self, String> {
        let s = |k: &str| {
            d.get_str(k)
                .map(str::to_owned)
                .map_err(|e| format!("{k}: {e}"))
        };
        let phase = s("phase")?;
        Ok(Self {
            identity: Identity {
                source: s("source")?,
                snapshot: s("snapshot")?,
                cut: s("cut")?,
                namespaces: s("namespaces")?,
                collections: d
                    .get_array("collections")
                    .map_err(|e| format!("collections: {e}"))?
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect(),
            },
            point: s("point")?,
            phase: JournalPhase::parse(&phase).ok_or_else(|| format!("unknown phase {phase}"))?,
            workers: usize::try_from(d.get_i64("workers").map_err(|e| format!("workers: {e}"))?)
                .unwrap_or(1)
                .max(1),
            started: *d
                .get_datetime("started")
                .map_err(|e| format!("started: {e}"))?,
        })
    }
}

/// A snapshot part whose documents are all on the target.
#[derive(Debug, Clone, Default)]
pub struct PartMark {
    pub documents: u64,
    pub bytes: u64,
    /// For a capped collection: the `_id` of the part's last document.
    pub last_id: Option<Bson>,
}

/// What replay left for the index builds.
#[derive(Debug, Clone, Default)]
pub struct PendingIndexes {
    /// (target namespace, index specs), as `TargetCatalog::pending_indexes` listed them.
    pub indexes: Vec<(String, Vec<Document>)>,
    pub last_applied: Option<OplogTs>,
}

/// A restore's journal: what an interrupted run had finished (empty for a restore from the
/// start), and the writes that record progress.
#[derive(Debug)]
pub struct Journal {
    coll: Collection<Document>,
    /// `admin.<its collection>`, as `applyOps` names it.
    ns: String,
    resumed: Option<Interrupted>,
    phase: JournalPhase,
    workers: usize,
    parts: HashMap<String, PartMark>,
    replay_applied: Vec<u64>,
    commands: u64,
    indexes_built: HashSet<String>,
    pending: Option<PendingIndexes>,
}

fn collection(target: &Client, namespaces: &str) -> Collection<Document> {
    target
        .database(JOURNAL_DB)
        .collection::<Document>(&name(namespaces))
}

fn failed(what: &'static str) -> impl FnOnce(mongodb::error::Error) -> JournalError {
    move |error| JournalError::Target { what, error }
}

fn part_id(key: &str) -> String {
    format!("part:{key}")
}

fn worker_id(worker: usize) -> String {
    format!("replay.w{worker}")
}

fn u64_of(d: &Document, k: &str) -> u64 {
    d.get_i64(k)
        .ok()
        .or_else(|| d.get_i32(k).ok().map(i64::from))
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The interrupted restore with these namespace options whose journal is on the target, if any.
pub async fn interrupted(
    target: &Client,
    namespaces: &str,
) -> Result<Option<Interrupted>, JournalError> {
    head(&collection(target, namespaces)).await
}

async fn head(coll: &Collection<Document>) -> Result<Option<Interrupted>, JournalError> {
    let head = coll
        .find_one(doc! {"_id": HEAD})
        .await
        .map_err(failed("reading"))?;
    head.map(|d| Interrupted::from_doc(&d))
        .transpose()
        .map_err(|detail| JournalError::Unreadable { detail })
}

/// Every interrupted restore whose journal is on the target, whatever its namespaces.
pub async fn all_interrupted(target: &Client) -> Result<Vec<Interrupted>, JournalError> {
    let admin = target.database(JOURNAL_DB);
    let names = admin
        .list_collection_names()
        .filter(doc! {"name": {"$regex": format!("^{}", JOURNAL_PREFIX.replace('.', "\\."))}})
        .await
        .map_err(failed("listing"))?;
    let mut out = Vec::new();
    for name in names {
        if let Some(found) = head(&admin.collection::<Document>(&name)).await? {
            out.push(found);
        }
    }
    Ok(out)
}

/// Drops the journal of restores with these namespace options (`--drop` starting over).
pub async fn discard(target: &Client, namespaces: &str) -> Result<(), JournalError> {
    drop_collection(&collection(target, namespaces)).await
}

async fn drop_collection(coll: &Collection<Document>) -> Result<(), JournalError> {
    match coll.drop().await {
        Ok(()) => Ok(()),
        Err(e) if crate::errors::code_of(&e) == Some(crate::errors::NAMESPACE_NOT_FOUND) => Ok(()),
        Err(e) => Err(failed("dropping")(e)),
    }
}

/// The `applyOps` operation recording in journal `ns` ([`Journal::ns`]) that replay worker
/// `worker` has applied `applied` writes: an insert, which `applyOps` applies as an upsert.
pub fn worker_op(ns: &str, worker: usize, applied: u64) -> RawDocumentBuf {
    rawdoc! {
        "op": "i",
        "ns": ns,
        "o": {"_id": worker_id(worker), "applied": i64_of(applied)},
    }
}

/// Records that replay worker `worker` has applied `applied` writes, on its own (after a write
/// too large for `applyOps`, which is idempotent: a replacement or a delete by `_id`).
pub async fn mark_worker(
    target: &Client,
    ns: &str,
    worker: usize,
    applied: u64,
) -> Result<(), JournalError> {
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    target
        .database(db)
        .collection::<Document>(coll)
        .replace_one(
            doc! {"_id": worker_id(worker)},
            doc! {"_id": worker_id(worker), "applied": i64_of(applied)},
        )
        .upsert(true)
        .await
        .map(|_| ())
        .map_err(failed("writing replay progress to"))
}

impl Journal {
    /// Before a restore from the start: an interrupted restore's journal on the target makes it
    /// refuse, or with `drop` is discarded (with a warning) so the restore starts over.
    pub async fn check_fresh(
        target: &Client,
        identity: &Identity,
        drop: bool,
    ) -> Result<(), JournalError> {
        if let Some(found) = interrupted(target, &identity.namespaces).await? {
            if !drop {
                return Err(JournalError::Unfinished {
                    interrupted: found.describe(),
                });
            }
            tracing::warn!(interrupted = %found.describe(), "--drop: discarding the journal of an interrupted restore on the target and starting over");
            discard(target, &identity.namespaces).await?;
        }
        Ok(())
    }

    /// Starts the journal of a restore from the start (after the target's safety check).
    pub async fn start(
        target: &Client,
        identity: &Identity,
        point: &str,
        workers: usize,
    ) -> Result<Journal, JournalError> {
        // Marks without a head (a journal dropped half-way) must not count.
        discard(target, &identity.namespaces).await?;
        let coll = collection(target, &identity.namespaces);
        coll.insert_one(doc! {
            "_id": HEAD,
            "source": &identity.source,
            "snapshot": &identity.snapshot,
            "point": point,
            "cut": &identity.cut,
            "namespaces": &identity.namespaces,
            "collections": &identity.collections,
            "workers": i64_of(workers as u64),
            "phase": JournalPhase::Load.as_str(),
            "started": DateTime::now(),
        })
        .await
        .map_err(failed("starting"))?;
        Ok(Journal {
            coll,
            ns: format!("{JOURNAL_DB}.{}", name(&identity.namespaces)),
            resumed: None,
            phase: JournalPhase::Load,
            workers: workers.max(1),
            parts: HashMap::new(),
            replay_applied: vec![0; workers.max(1)],
            commands: 0,
            indexes_built: HashSet::new(),
            pending: None,
        })
    }

    /// The journal of the interrupted restore on the target, which must be the one `identity`
    /// describes.
    pub async fn resume(target: &Client, identity: &Identity) -> Result<Journal, JournalError> {
        let Some(found) = interrupted(target, &identity.namespaces).await? else {
            // Interrupted restores of other namespaces: this is not one of them.
            let others = all_interrupted(target).await?;
            if let Some(other) = others.first() {
                return Err(JournalError::Mismatch {
                    interrupted: others
                        .iter()
                        .map(Interrupted::describe)
                        .collect::<Vec<_>>()
                        .join("; "),
                    differences: other.identity.differences(identity).join("; "),
                });
            }
            return Err(JournalError::NothingToResume);
        };
        let differences = found.identity.differences(identity);
        if !differences.is_empty() {
            return Err(JournalError::Mismatch {
                interrupted: found.describe(),
                differences: differences.join("; "),
            });
        }
        let coll = collection(target, &identity.namespaces);
        let mut journal = Journal {
            coll: coll.clone(),
            ns: format!("{JOURNAL_DB}.{}", name(&identity.namespaces)),
            phase: found.phase,
            workers: found.workers,
            parts: HashMap::new(),
            replay_applied: vec![0; found.workers],
            commands: 0,
            indexes_built: HashSet::new(),
            pending: None,
            resumed: Some(found),
        };
        let mut cursor = coll.find(doc! {}).await.map_err(failed("reading"))?;
        while let Some(d) = cursor.try_next().await.map_err(failed("reading"))? {
            let id = d.get_str("_id").unwrap_or_default().to_owned();
            if let Some(key) = id.strip_prefix("part:") {
                journal.parts.insert(
                    key.to_owned(),
                    PartMark {
                        documents: u64_of(&d, "documents"),
                        bytes: u64_of(&d, "bytes"),
                        last_id: d.get("last_id").cloned(),
                    },
                );
            } else if let Some(n) = id.strip_prefix("replay.w") {
                let n: usize = n.parse().map_err(|_| JournalError::Unreadable {
                    detail: format!("a replay mark {id}"),
                })?;
                let slot =
                    journal
                        .replay_applied
                        .get_mut(n)
                        .ok_or_else(|| JournalError::Unreadable {
                            detail: format!(
                                "{id} names a worker beyond the {} recorded",
                                journal.workers
                            ),
                        })?;
                *slot = u64_of(&d, "applied");
            } else if id == COMMANDS {
                journal.commands = u64_of(&d, "applied");
            } else if id == PENDING_INDEXES {
                journal.pending = Some(PendingIndexes {
                    indexes: d
                        .get_array("indexes")
                        .map_err(|e| JournalError::Unreadable {
                            detail: format!("indexes: {e}"),
                        })?
                        .iter()
                        .filter_map(Bson::as_document)
                        .map(|e| {
                            (
                                e.get_str("ns").unwrap_or_default().to_owned(),
                                e.get_array("specs")
                                    .map(|s| {
                                        s.iter().filter_map(Bson::as_document).cloned().collect()
                                    })
                                    .unwrap_or_default(),
                            )
                        })
                        .collect(),
                    last_applied: d.get_timestamp("last_applied").ok().map(OplogTs::from),
                });
            } else if let Some(ns) = id.strip_prefix("indexes:") {
                journal.indexes_built.insert(ns.to_owned());
            }
        }
        if journal.phase >= JournalPhase::Indexes && journal.pending.is_none() {
            return Err(JournalError::Unreadable {
                detail: "it reached the index builds but holds no list of indexes".into(),
            });
        }
        Ok(journal)
    }

    /// `admin.<collection>`: where the journal is, as `applyOps` names it.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// Drops the journal: the restore is finished.
    pub async fn finish(&self) -> Result<(), JournalError> {
        drop_collection(&self.coll).await
    }

    /// The interrupted restore this one continues (`None`: a restore from the start).
    pub fn resumed(&self) -> Option<&Interrupted> {
        self.resumed.as_ref()
    }

    /// The phase the journal had reached when it was opened.
    pub fn phase(&self) -> JournalPhase {
        self.phase
    }

    /// Replay partitions: those of the interrupted restore when resuming (its marks count writes
    /// per partition, so the partitioning must be the same).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Whether the load had finished (every collection and view created, every part loaded):
    /// the load must not touch the target again (replay may have dropped or renamed what it
    /// created).
    pub fn load_finished(&self) -> bool {
        self.phase > JournalPhase::Load
    }

    /// The part's mark, if the interrupted restore loaded it completely.
    pub fn part(&self, key: &str) -> Option<&PartMark> {
        self.parts.get(key)
    }

    /// Records a part loaded completely.
    pub async fn part_loaded(
        &self,
        key: &str,
        ns: &str,
        mark: &PartMark,
    ) -> Result<(), JournalError> {
        let mut d = doc! {
            "_id": part_id(key),
            "ns": ns,
            "documents": i64_of(mark.documents),
            "bytes": i64_of(mark.bytes),
        };
        if let Some(id) = &mark.last_id {
            d.insert("last_id", id.clone());
        }
        self.coll
            .replace_one(doc! {"_id": part_id(key)}, d)
            .upsert(true)
            .await
            .map(|_| ())
            .map_err(failed("recording a loaded part in"))
    }

    /// Forgets the marks of `keys` (a capped collection reloaded from its first part).
    pub async fn forget_parts(&self, keys: &[String]) -> Result<(), JournalError> {
        let ids: Vec<String> = keys.iter().map(|k| part_id(k)).collect();
        self.coll
            .delete_many(doc! {"_id": {"$in": ids}})
            .await
            .map(|_| ())
            .map_err(failed("clearing part marks in"))
    }

    /// Records the phase reached.
    pub async fn reached(&self, phase: JournalPhase) -> Result<(), JournalError> {
        self.coll
            .update_one(doc! {"_id": HEAD}, doc! {"$set": {"phase": phase.as_str()}})
            .await
            .map(|_| ())
            .map_err(failed("recording the phase in"))
    }

    /// Writes the interrupted restore had applied, per replay worker (zeros from the start).
    pub fn replay_applied(&self) -> &[u64] {
        &self.replay_applied
    }

    /// Catalog commands the interrupted restore had run.
    pub fn commands_applied(&self) -> u64 {
        self.commands
    }

    /// Records that replay has run `applied` catalog commands.
    pub async fn commands_done(&self, applied: u64) -> Result<(), JournalError> {
        self.coll
            .replace_one(
                doc! {"_id": COMMANDS},
                doc! {"_id": COMMANDS, "applied": i64_of(applied)},
            )
            .upsert(true)
            .await
            .map(|_| ())
            .map_err(failed("recording replay's commands in"))
    }

    /// Records the end of replay: the indexes left to build, then the phase.
    pub async fn replay_finished(&self, pending: &PendingIndexes) -> Result<(), JournalError> {
        let indexes: Vec<Document> = pending
            .indexes
            .iter()
            .map(|(ns, specs)| doc! {"ns": ns, "specs": specs.clone()})
            .collect();
        let mut d = doc! {"_id": PENDING_INDEXES, "indexes": indexes};
        if let Some(ts) = pending.last_applied {
            d.insert(
                "last_applied",
                Timestamp {
                    time: ts.t,
                    increment: ts.i,
                },
            );
        }
        self.coll
            .replace_one(doc! {"_id": PENDING_INDEXES}, d)
            .upsert(true)
            .await
            .map_err(failed("recording the indexes to build in"))?;
        self.reached(JournalPhase::Indexes).await
    }

    /// What replay left for the index builds, when the interrupted restore had finished replay.
    pub fn pending_indexes(&self) -> Option<&PendingIndexes> {
        self.pending.as_ref()
    }

    /// Whether the interrupted restore had built the indexes of `ns`.
    pub fn indexes_built(&self, ns: &str) -> bool {
        self.indexes_built.contains(ns)
    }

    /// Records that the indexes of `ns` are built.
    pub async fn indexes_done(&self, ns: &str) -> Result<(), JournalError> {
        let id = format!("indexes:{ns}");
        self.coll
            .replace_one(doc! {"_id": &id}, doc! {"_id": &id})
            .upsert(true)
            .await
            .map(|_| ())
            .map_err(failed("recording built indexes in"))
    }
}
