//! Oplog replay: the plan's segments, streamed in chain order, applied to the target from the
//! snapshot's start through the cut.
//!
//! What replay preserves, and how (docs/restore.md, "What replay preserves, and how"):
//! - **Each document's writes in source order.** Document writes go to `workers` partitions by
//!   (namespace, `_id`), as MongoDB secondaries do, so independent documents apply in parallel;
//!   each worker sends its writes in `applyOps` batches of at most `batch` entries and
//!   [`MAX_BATCH_BYTES`]. An entry too large to wrap in `applyOps` is applied as a plain write.
//! - **Constraints between documents.** No secondary index exists on the target while replay
//!   runs: the snapshot's indexes and those the oplog creates are recorded in a
//!   [`TargetCatalog`] and built after the last write, on the final data
//!   ([`catalog`] says why). Capped collections, whose content depends on the order of inserts
//!   across documents, go to one worker in source order.
//! - **Catalog changes in order.** A catalog change is a barrier: every worker drains, then the
//!   command runs alone. Views and time-series collections (recorded by the server as writes to
//!   `system.views` and a `create` of their buckets) become the commands that make them.
//!
//! Entries between the snapshot's start and end may already be reflected in the loaded
//! documents (the snapshot read while they happened). Replaying them is safe because oplog
//! entries are idempotent, with two exceptions handled here:
//! - an update of a document the snapshot did not see (deleted before it was read): inside that
//!   window a failed batch is retried entry by entry and such updates are skipped (counted as
//!   `window_skipped`); after the snapshot's end every failure stops the restore;
//! - an insert into a capped collection that the collection had already evicted when the
//!   snapshot read it: re-inserting it would evict a document that should stay. For a capped
//!   collection the snapshot loaded, replay holds its writes inside the window until it meets
//!   the insert of the last document the snapshot read; the inserts before it are in the
//!   snapshot (or were evicted before it) and are dropped, the rest applied in order
//!   ([`CappedWindow`]).
//!
//! **Resuming** (`--resume`, [`crate::journal`]): which worker a write goes to, and in what
//! order, follows from the plan alone (the entries, the namespaces, the number of workers, which
//! the journal keeps), so each worker's writes are numbered. Every `applyOps` a worker sends
//! also records, in the journal, how many of its writes are applied; MongoDB applies an
//! `applyOps` of CRUD operations atomically, so that count is never ahead of or behind the
//! writes. A resumed replay reads the oplog from the start again, decodes every entry and keeps
//! the catalog as before, but sends no write a worker had applied, and runs no catalog command
//! the journal counts as run (a command runs alone, after every earlier write; its count is
//! written once it has run, and the commands replay runs are no-ops when repeated, see
//! [`ALREADY_DONE`], should the restore stop in between).

mod budget;
pub mod catalog;
pub mod entry;

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::try_join_all;
use mc_core::catalog::Repository;
use mc_core::format::OplogTs;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::Client;
use tokio::sync::{mpsc, oneshot};

use crate::errors::{self, describe};
use crate::journal::{self, Journal};
use crate::namespaces::NamespaceMap;
use crate::plan::RestorePlan;
use crate::point::format_ts;
use budget::{ByteBudget, Reserved};
pub use catalog::TargetCatalog;
use entry::{apply_ops_command, Action, Command, DecodeStats, Decoder};

/// Bytes of entries per `applyOps`: well under the 16 MiB a command may have, since the target
/// also writes each applied entry to its own oplog inside the same command.
pub const MAX_BATCH_BYTES: usize = 8 << 20;

/// An entry this large is applied as a plain write: wrapped in `applyOps` it would pass the
/// 16 MiB command limit (a document near 16 MiB is legal).
pub const PLAIN_WRITE_BYTES: usize = 15 << 20;

/// Bytes of entries read ahead of the decoder ([`budget`]).
const READ_AHEAD_BYTES: usize = 16 << 20;

/// Bytes of writes queued for each worker beyond the batch it is filling: one more batch, so a
/// worker has its next `applyOps` ready while one runs ([`budget`]).
const QUEUED_BYTES_PER_WORKER: usize = MAX_BATCH_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Repo(#[from] mc_core::catalog::RepoError),
    #[error(transparent)]
    Entry(#[from] entry::EntryError),
    #[error("applying {what} to the target failed: {}", describe(.error))]
    Apply {
        what: String,
        error: mongodb::error::Error,
    },
    #[error("the oplog in the repository ends at {reached} but the plan needs it through {needed}: a segment is missing or was cut short")]
    Short { reached: String, needed: String },
    #[error("{point} is before the end of the chosen snapshot ({end}, in the same second): choose a later time, or an older snapshot with --snapshot (mc-restore list)")]
    BeforeSnapshotEnd { point: String, end: String },
    #[error("{0}")]
    Worker(String),
    #[error(transparent)]
    Index(#[from] catalog::IndexBuildError),
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
}

/// How replay runs.
#[derive(Debug, Clone, Copy)]
pub struct ReplaySettings {
    /// Entries per `applyOps` (at most; [`MAX_BATCH_BYTES`] also bounds a batch).
    pub batch: usize,
    /// Parallel partitions of document writes.
    pub workers: usize,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        Self {
            batch: 1000,
            workers: 2,
        }
    }
}

/// What replay did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplayStats {
    pub entries_read: u64,
    pub applied_writes: u64,
    pub applied_commands: u64,
    /// Updates of documents the snapshot never saw, skipped inside the snapshot's window.
    pub window_skipped: u64,
    /// Inserts into capped collections inside the snapshot's window that the snapshot already
    /// held or had seen evicted.
    pub capped_window_skipped: u64,
    /// Entries too large for `applyOps`, applied as plain writes.
    pub plain_writes: u64,
    /// Temporary collections (an `$out` the restore point cut off) dropped at the end.
    pub temporary_dropped: Vec<String>,
    /// Transactions begun but not committed at the cut (correctly not applied).
    pub open_transactions: usize,
    /// The newest entry inside the cut: the restored state is the source's state just after it.
    pub last_applied: Option<OplogTs>,
    pub decoded: DecodeStats,
    /// Resuming: writes and catalog commands an interrupted restore had applied, not sent again.
    #[serde(skip_serializing_if = "is_zero")]
    pub resumed_writes: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub resumed_commands: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How a worker applies one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mode {
    /// Inside the snapshot's window: updates of documents the snapshot never saw are skipped.
    in_window: bool,
    /// `applyOps`' `alwaysUpsert`: an update of a missing document inserts it (inside the window,
    /// except for capped collections, where it would evict a document).
    upsert: bool,
}

enum Msg {
    /// `seq`: the write's number among this worker's writes, from 1.
    Write {
        op: RawDocumentBuf,
        mode: Mode,
        seq: u64,
        /// Its bytes of the worker's queue, given back once the worker has taken it.
        held: Reserved,
    },
    Flush(oneshot::Sender<Result<WorkerCounts, String>>),
}

#[derive(Default, Clone, Copy)]
struct WorkerCounts {
    applied: u64,
    window_skipped: u64,
    plain: u64,
}

/// A worker's queue, its budget and its task.
struct Worker {
    tx: mpsc::Sender<Msg>,
    queued: ByteBudget,
    handle: tokio::task::JoinHandle<()>,
}

type Workers = Vec<Worker>;

/// The workers, with each one's writes numbered in the order they are sent.
struct Dispatch {
    workers: Workers,
    /// Writes sent to (or, resuming, skipped for) each worker so far.
    sent: Vec<u64>,
    /// Writes each worker had applied before an interrupted restore stopped: not sent again.
    done: Vec<u64>,
    skipped: u64,
}

/// Replays the plan's oplog into `target`. `catalog` holds what the load recorded (indexes,
/// capped collections, the last document of each capped one) and is kept current. `journal`
/// records progress, and says what an interrupted restore had applied (then `settings.workers`
/// must be its number of workers). `on_entry` is called with each entry read (progress).
#[allow(clippy::too_many_arguments)]
pub async fn replay(
    repo: &Repository,
    target: &Client,
    plan: &RestorePlan,
    map: &NamespaceMap,
    settings: ReplaySettings,
    catalog: &mut TargetCatalog,
    journal: &Journal,
    on_entry: impl Fn(u64) + Send + Sync + 'static,
) -> Result<ReplayStats, ReplayError> {
    let done = journal.replay_applied().to_vec();
    if done.len() != settings.workers.max(1) {
        return Err(ReplayError::Worker(format!(
            "the journal counts {} replay workers, this replay has {}",
            done.len(),
            settings.workers.max(1)
        )));
    }
    let on_entry = Arc::new(on_entry);
    // Reader: segments in order, each streamed on a blocking thread into a channel bounded by
    // bytes (READ_AHEAD_BYTES) as well as entries.
    let (raw_tx, mut raw_rx) = mpsc::channel::<(RawDocumentBuf, Reserved)>(4096);
    let read_ahead = ByteBudget::new(READ_AHEAD_BYTES);
    let reader = {
        let repo = repo.clone();
        let keys: Vec<String> = plan.segments.iter().map(|s| s.key.clone()).collect();
        tokio::spawn(async move {
            for key in keys {
                let (tx, read_ahead) = (raw_tx.clone(), read_ahead.clone());
                repo.scan_segment(&key, move |rec| {
                    let held = read_ahead.reserve_blocking(rec.len());
                    let doc = RawDocumentBuf::from_bytes(rec.to_vec())
                        .map_err(|e| format!("record is not BSON: {e}"))?;
                    // A closed channel means replay ended (cut reached or failed): stop reading.
                    tx.blocking_send((doc, held))
                        .map_err(|_| "replay stopped".to_string())
                })
                .await?;
            }
            Ok::<(), mc_core::catalog::RepoError>(())
        })
    };

    let batch = settings.batch.max(1);
    let workers: Workers = (0..settings.workers.max(1))
        .map(|index| {
            let (tx, rx) = mpsc::channel::<Msg>(2 * batch);
            let handle = tokio::spawn(worker(
                target.clone(),
                rx,
                batch,
                (index, journal.ns().to_owned()),
            ));
            Worker {
                tx,
                queued: ByteBudget::new(QUEUED_BYTES_PER_WORKER),
                handle,
            }
        })
        .collect();
    let mut dispatch = Dispatch {
        sent: vec![0; workers.len()],
        workers,
        done,
        skipped: 0,
    };
    let commands_done = journal.commands_applied();
    let mut commands_seen = 0u64;

    let mut stats = ReplayStats::default();
    let mut decoder = Decoder::default();
    let mut actions = Vec::new();
    let mut reached_cut = false;
    let mut last_seen: Option<OplogTs> = None;
    let window_end = plan.snapshot.end;
    let mut capped_window = CappedWindow::new(std::mem::take(&mut catalog.capped_last));
    let result: Result<(), ReplayError> = async {
        // `_read`: the entry's bytes of the read-ahead, given back once it is dispatched.
        while let Some((raw, _read)) = raw_rx.recv().await {
            stats.entries_read += 1;
            on_entry(stats.entries_read);
            let head = entry::head(&raw)?;
            if last_seen.is_some_and(|seen| head.ts <= seen) {
                // A racing copy overlapping the segment before it in the run (two writers
                // stored the same oplog with different boundaries): applied once already.
                continue;
            }
            last_seen = Some(head.ts);
            if head.ts <= plan.replay_after {
                // Already in the snapshot; but transactions' early parts must be remembered.
                if entry::opens_transaction(&raw) {
                    decoder.decode(&raw, map, &mut Vec::new())?;
                }
                continue;
            }
            if !plan.cut.admits(head.ts, head.wall_ms) {
                if head.ts <= window_end {
                    return Err(ReplayError::BeforeSnapshotEnd {
                        point: plan.point.clone(),
                        end: format_ts(window_end),
                    });
                }
                reached_cut = true;
                break;
            }
            let in_window = head.ts <= window_end;
            if !in_window && capped_window.holding() {
                // Past the snapshot's end: what the window held is applied in order.
                dispatch
                    .release(catalog, capped_window.release_all())
                    .await?;
            }
            decoder.decode(&raw, map, &mut actions)?;
            for action in actions.drain(..) {
                match action {
                    Action::Write { ns, partition, op } => {
                        let capped = catalog.is_capped(&ns);
                        let mode = Mode {
                            in_window,
                            upsert: in_window && !capped,
                        };
                        if in_window && capped {
                            match capped_window.offer(&ns, op) {
                                Held::Apply(op) => {
                                    dispatch.send(catalog, &ns, partition, op, mode).await?
                                }
                                Held::Kept => {}
                                Held::Released { ops, skipped } => {
                                    stats.capped_window_skipped += skipped;
                                    for op in ops {
                                        dispatch.send(catalog, &ns, partition, op, mode).await?;
                                    }
                                }
                            }
                        } else {
                            dispatch.send(catalog, &ns, partition, op, mode).await?;
                        }
                    }
                    Action::Command(cmd) => {
                        dispatch
                            .release(catalog, capped_window.before_command(&cmd))
                            .await?;
                        let Some(cmd) = catalog.intercept(cmd) else {
                            stats.applied_commands += 1;
                            continue;
                        };
                        commands_seen += 1;
                        if commands_seen <= commands_done {
                            // Run by the interrupted restore, after every write before it.
                            stats.resumed_commands += 1;
                            continue;
                        }
                        dispatch.drain(&mut stats).await?;
                        apply_command(target, map, cmd).await?;
                        journal.commands_done(commands_seen).await?;
                        stats.applied_commands += 1;
                    }
                }
            }
            stats.last_applied = Some(head.ts);
        }
        dispatch
            .release(catalog, capped_window.release_all())
            .await?;
        dispatch.drain(&mut stats).await?;
        Ok(())
    }
    .await;
    drop(raw_rx);
    stats.resumed_writes = dispatch.skipped;
    for Worker { tx, handle, .. } in dispatch.workers {
        drop(tx);
        let _ = handle.await;
    }
    let read = reader
        .await
        .map_err(|e| ReplayError::Worker(e.to_string()))?;
    result?;
    // The reader fails with "replay stopped" only when we broke off at the cut.
    if !reached_cut {
        read?;
    }
    // Without reaching an entry past the cut, the stream must have reached the cut itself
    // (or the cut lies inside the snapshot's window: nothing after the snapshot to replay).
    let reached = last_seen.max(Some(plan.replay_after));
    if !reached_cut && reached.is_none_or(|l| l < plan.cut.bound) {
        return Err(ReplayError::Short {
            reached: last_seen.map(format_ts).unwrap_or_else(|| "nothing".into()),
            needed: format_ts(plan.cut.bound),
        });
    }
    stats.temporary_dropped = catalog.drop_temporary(target).await?;
    stats.open_transactions = decoder.open_transactions();
    stats.decoded = decoder.stats.clone();
    Ok(stats)
}

impl Dispatch {
    /// Sends one write to its worker: a capped collection's writes all to one worker (source
    /// order across documents), other writes by document. Resuming, a write the worker had
    /// applied is counted and not sent.
    async fn send(
        &mut self,
        catalog: &TargetCatalog,
        ns: &str,
        partition: u64,
        op: RawDocumentBuf,
        mode: Mode,
    ) -> Result<(), ReplayError> {
        let partition = if catalog.is_capped(ns) {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            ns.hash(&mut h);
            h.finish()
        } else {
            partition
        };
        let index = (partition % self.workers.len() as u64) as usize;
        self.sent[index] += 1;
        let seq = self.sent[index];
        if seq <= self.done[index] {
            self.skipped += 1;
            return Ok(());
        }
        let worker = &self.workers[index];
        let held = worker.queued.reserve(op.as_bytes().len()).await;
        worker
            .tx
            .send(Msg::Write {
                op,
                mode,
                seq,
                held,
            })
            .await
            .map_err(|_| ReplayError::Worker("a replay worker ended early".into()))
    }

    /// Sends writes a [`CappedWindow`] held, in their order (they are inside the snapshot's
    /// window, and capped: no upsert).
    async fn release(
        &mut self,
        catalog: &TargetCatalog,
        held: Vec<(String, RawDocumentBuf)>,
    ) -> Result<(), ReplayError> {
        let mode = Mode {
            in_window: true,
            upsert: false,
        };
        for (ns, op) in held {
            self.send(catalog, &ns, 0, op, mode).await?;
        }
        Ok(())
    }

    /// Flushes every worker and waits until all their writes are applied.
    async fn drain(&self, stats: &mut ReplayStats) -> Result<(), ReplayError> {
        drain(&self.workers, stats).await
    }
}

/// Flushes every worker and waits until all their writes are applied.
async fn drain(workers: &Workers, stats: &mut ReplayStats) -> Result<(), ReplayError> {
    let acks = workers.iter().map(|Worker { tx, .. }| async move {
        let (ack_tx, ack_rx) = oneshot::channel();
        tx.send(Msg::Flush(ack_tx))
            .await
            .map_err(|_| ReplayError::Worker("a replay worker ended early".into()))?;
        ack_rx
            .await
            .map_err(|_| ReplayError::Worker("a replay worker ended early".into()))?
            .map_err(ReplayError::Worker)
    });
    for counts in try_join_all(acks).await? {
        stats.applied_writes += counts.applied + counts.plain;
        stats.plain_writes += counts.plain;
        stats.window_skipped += counts.window_skipped;
    }
    Ok(())
}

/// One partition: batches writes (by count and bytes) and applies them, each batch with the
/// journal's count of this worker's writes applied; reports at each flush. After a failure it
/// keeps draining its channel and reports the failure at the next flush.
async fn worker(
    target: Client,
    mut rx: mpsc::Receiver<Msg>,
    batch: usize,
    (index, journal_ns): (usize, String),
) {
    let admin = target.database("admin");
    let mut pending: Vec<RawDocumentBuf> = Vec::with_capacity(batch + 1);
    let mut pending_bytes = 0usize;
    // The number of the last write in `pending`.
    let mut pending_seq = 0u64;
    let mut pending_mode = Mode {
        in_window: false,
        upsert: false,
    };
    let mut counts = WorkerCounts::default();
    let mut failed: Option<String> = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Write {
                op,
                mode,
                seq,
                held,
            } => {
                // In the batch being filled (bounded by MAX_BATCH_BYTES) from here on.
                drop(held);
                if failed.is_some() {
                    continue;
                }
                let size = op.as_bytes().len();
                let full = pending.len() >= batch
                    || pending_bytes + size > MAX_BATCH_BYTES
                    || mode != pending_mode
                    || size > PLAIN_WRITE_BYTES;
                if !pending.is_empty() && full {
                    let progress = (journal_ns.as_str(), index, pending_seq);
                    if let Err(e) =
                        apply_batch(&admin, &mut pending, progress, pending_mode, &mut counts).await
                    {
                        failed = Some(e);
                    }
                    pending.clear();
                    pending_bytes = 0;
                }
                if size > PLAIN_WRITE_BYTES {
                    if failed.is_none() {
                        // Not atomic with its count: a plain write is a replacement or a delete
                        // by `_id`, the same if applied again after an interruption.
                        let applied = apply_plain(&target, &op, mode, &mut counts).await;
                        let marked = match applied {
                            Ok(()) => journal::mark_worker(&target, &journal_ns, index, seq)
                                .await
                                .map_err(|e| e.to_string()),
                            Err(e) => Err(e),
                        };
                        if let Err(e) = marked {
                            failed = Some(e);
                        }
                    }
                    continue;
                }
                pending_mode = mode;
                pending_bytes += size;
                pending_seq = seq;
                pending.push(op);
            }
            Msg::Flush(ack) => {
                if failed.is_none() && !pending.is_empty() {
                    let progress = (journal_ns.as_str(), index, pending_seq);
                    if let Err(e) =
                        apply_batch(&admin, &mut pending, progress, pending_mode, &mut counts).await
                    {
                        failed = Some(e);
                    }
                }
                pending.clear();
                pending_bytes = 0;
                let report = match failed.take() {
                    Some(e) => Err(e),
                    None => Ok(std::mem::take(&mut counts)),
                };
                let _ = ack.send(report);
            }
        }
    }
}

/// Applies `ops`, the writes of worker `progress.1` numbered up to `progress.2`, in one
/// `applyOps` with the journal's count of them (atomic: all CRUD). `ops` is given back as it
/// came.
async fn apply_batch(
    admin: &mongodb::Database,
    ops: &mut Vec<RawDocumentBuf>,
    (journal_ns, worker, last_seq): (&str, usize, u64),
    mode: Mode,
    counts: &mut WorkerCounts,
) -> Result<(), String> {
    let n = ops.len();
    ops.push(journal::worker_op(journal_ns, worker, last_seq));
    let result = admin
        .run_raw_command(apply_ops_command(ops, mode.upsert))
        .await;
    ops.pop();
    match result {
        Ok(_) => {
            counts.applied += n as u64;
            Ok(())
        }
        Err(_) if mode.in_window => {
            // One at a time: skip updates of documents the snapshot did not see.
            let first = last_seq + 1 - n as u64;
            for (k, op) in ops.iter().enumerate() {
                let with_count = [
                    op.clone(),
                    journal::worker_op(journal_ns, worker, first + k as u64),
                ];
                match admin
                    .run_raw_command(apply_ops_command(&with_count, mode.upsert))
                    .await
                {
                    Ok(_) => counts.applied += 1,
                    Err(e) if errors::code_of(&e) == Some(errors::UPDATE_OPERATION_FAILED) => {
                        counts.window_skipped += 1
                    }
                    Err(e) => return Err(describe_failure(op, &e, None)),
                }
            }
            Ok(())
        }
        Err(e) => Err(describe_failure(&ops[0], &e, Some(n))),
    }
}

/// Applies one entry too large for `applyOps` through the plain write commands, with the same
/// result: an insert or a replacement becomes a replacement by `_id` (an upsert, as `applyOps`
/// applies inserts), a delete a delete by `_id`. Validation is bypassed as `applyOps` does.
async fn apply_plain(
    target: &Client,
    op: &RawDocumentBuf,
    mode: Mode,
    counts: &mut WorkerCounts,
) -> Result<(), String> {
    let fail = |detail: String| format!("{}: {detail}", describe_op(op));
    let kind = op.get_str("op").map_err(|e| fail(e.to_string()))?;
    let ns = op.get_str("ns").map_err(|e| fail(e.to_string()))?;
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    let coll = target.database(db).collection::<RawDocumentBuf>(coll);
    let o = op.get_document("o").map_err(|e| fail(e.to_string()))?;
    let id_of = |d: &mongodb::bson::RawDocument| -> Result<Document, String> {
        let id = d
            .get("_id")
            .ok()
            .flatten()
            .ok_or_else(|| fail("no _id".into()))?;
        let id: Bson = id
            .try_into()
            .map_err(|e: mongodb::bson::error::Error| fail(e.to_string()))?;
        Ok(doc! {"_id": id})
    };
    let result = match kind {
        "i" => coll
            .replace_one(id_of(o)?, o.to_owned())
            .upsert(true)
            .bypass_document_validation(true)
            .await
            .map(|_| ()),
        "u" if !o.get("$v").is_ok_and(|v| v.is_some()) => {
            let o2 = op.get_document("o2").map_err(|e| fail(e.to_string()))?;
            coll.replace_one(id_of(o2)?, o.to_owned())
                .upsert(mode.upsert)
                .bypass_document_validation(true)
                .await
                .map(|_| ())
        }
        "d" => coll.delete_one(id_of(o)?).await.map(|_| ()),
        _ => return Err(fail("an update in the diff form larger than 15 MiB: applyOps cannot carry it and no plain write has the same meaning".into())),
    };
    result.map_err(|e| describe_failure(op, &e, None))?;
    counts.plain += 1;
    Ok(())
}

/// `insert on shop.orders (_id 42) at ts:…`: which entry, for messages.
fn describe_op(op: &RawDocumentBuf) -> String {
    let ns = op.get_str("ns").unwrap_or("?");
    let kind = match op.get_str("op").unwrap_or("?") {
        "i" => "insert",
        "u" => "update",
        "d" => "delete",
        other => other,
    };
    let id = op
        .get_document("o2")
        .ok()
        .filter(|_| kind == "update")
        .or_else(|| op.get_document("o").ok())
        .and_then(|d| d.get("_id").ok().flatten())
        .and_then(|id| Bson::try_from(id).ok())
        .map(|id| {
            let s = id.into_relaxed_extjson().to_string();
            if s.len() > 80 {
                format!("{}…", &s[..s.floor_char_boundary(80)])
            } else {
                s
            }
        })
        .unwrap_or_else(|| "?".into());
    format!("{kind} on {ns} (_id {id})")
}

fn describe_failure(
    op: &RawDocumentBuf,
    e: &mongodb::error::Error,
    batch: Option<usize>,
) -> String {
    let what = match batch {
        Some(n) if n > 1 => format!("a batch of {n} writes starting with {}", describe_op(op)),
        _ => describe_op(op),
    };
    format!(
        "applying {what} to the target failed: {}; the target holds a partial restore: fix the cause, then continue it with --resume (or start over with --drop)",
        describe(e)
    )
}

/// What [`CappedWindow::offer`] did with a write.
enum Held {
    /// Not held: apply it now.
    Apply(RawDocumentBuf),
    /// Held until the window's end or the snapshot's last document.
    Kept,
    /// The snapshot's last document was met: apply these (held writes other than inserts, in
    /// order); `skipped` inserts were already in the snapshot or evicted before it.
    Released {
        ops: Vec<RawDocumentBuf>,
        skipped: u64,
    },
}

/// Writes to capped collections the snapshot loaded, held inside the snapshot's window (the
/// module comment says why).
struct CappedWindow {
    /// Per target namespace: the `_id` of the last document the snapshot read, and the writes
    /// held so far.
    held: HashMap<String, (Bson, Vec<RawDocumentBuf>)>,
}

impl CappedWindow {
    fn new(last: HashMap<String, Bson>) -> Self {
        Self {
            held: last
                .into_iter()
                .map(|(ns, id)| (ns, (id, Vec::new())))
                .collect(),
        }
    }

    fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn offer(&mut self, ns: &str, op: RawDocumentBuf) -> Held {
        let Some((last, ops)) = self.held.get_mut(ns) else {
            return Held::Apply(op);
        };
        let is_last = op.get_str("op").ok() == Some("i")
            && op
                .get_document("o")
                .ok()
                .and_then(|o| o.get("_id").ok().flatten())
                .and_then(|id| Bson::try_from(id).ok())
                .as_ref()
                == Some(last);
        if !is_last {
            ops.push(op);
            return Held::Kept;
        }
        let (_, ops) = self.held.remove(ns).unwrap_or_default();
        let (inserts, rest): (Vec<_>, Vec<_>) = ops
            .into_iter()
            .partition(|o| o.get_str("op").ok() == Some("i"));
        Held::Released {
            ops: rest,
            skipped: inserts.len() as u64 + 1,
        }
    }

    /// Everything held, in order: the snapshot's last document was inserted before the window,
    /// so every write in it came after the snapshot read the collection.
    fn release_all(&mut self) -> Vec<(String, RawDocumentBuf)> {
        let mut out = Vec::new();
        for (ns, (_, ops)) in self.held.drain() {
            out.extend(ops.into_iter().map(|op| (ns.clone(), op)));
        }
        out
    }

    /// Before a catalog change: a held collection that is dropped loses its held writes; one
    /// that is renamed or modified gets them applied first (order kept).
    fn before_command(&mut self, cmd: &Command) -> Vec<(String, RawDocumentBuf)> {
        let names: Vec<String> = self
            .held
            .keys()
            .filter(|ns| cmd.touches(ns))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for ns in names {
            if let Some((_, ops)) = self.held.remove(&ns) {
                if !cmd.drops(&ns) {
                    out.extend(ops.into_iter().map(|op| (ns.clone(), op)));
                }
            }
        }
        out
    }
}

/// Server errors that mean a catalog change is already in place (replay is idempotent: the
/// snapshot may reflect it, or an interrupted restore is being re-run): NamespaceNotFound,
/// IndexNotFound, NamespaceExists.
const ALREADY_DONE: &[i32] = &[
    errors::NAMESPACE_NOT_FOUND,
    errors::INDEX_NOT_FOUND,
    errors::NAMESPACE_EXISTS,
];

async fn apply_command(
    target: &Client,
    map: &NamespaceMap,
    cmd: Command,
) -> Result<(), ReplayError> {
    if cmd.command.contains_key("dropDatabase") {
        return drop_database(target, map, &cmd.db).await;
    }
    match target.database(&cmd.db).run_command(cmd.command).await {
        Ok(_) => Ok(()),
        Err(e) if errors::code_of(&e).is_some_and(|c| ALREADY_DONE.contains(&c)) => {
            tracing::debug!(what = %cmd.what, error = %e, "catalog change already in place");
            Ok(())
        }
        Err(source) => Err(ReplayError::Apply {
            what: cmd.what,
            error: source,
        }),
    }
}

/// `dropDatabase` drops only what is in scope: a partial restore must not remove collections
/// of the target it was not asked to restore.
async fn drop_database(target: &Client, map: &NamespaceMap, db: &str) -> Result<(), ReplayError> {
    let database = target.database(db);
    let names = database
        .list_collection_names()
        .await
        .map_err(|source| ReplayError::Apply {
            what: format!("listing {db} for dropDatabase"),
            error: source,
        })?;
    for name in names {
        let ns = format!("{db}.{name}");
        // A time-series collection's buckets go with it.
        if name.starts_with("system.") {
            continue;
        }
        if map.writes(&ns) {
            database
                .run_command(doc! {"drop": &name})
                .await
                .map_err(|source| ReplayError::Apply {
                    what: format!("drop {ns} (dropDatabase {db})"),
                    error: source,
                })?;
        }
    }
    Ok(())
}
