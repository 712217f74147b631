//! Oplog replay: the plan's segments, streamed in chain order, applied to the target from the
//! snapshot's start through the cut.
//!
//! Document writes go to `workers` partitions by (namespace, `_id`), as MongoDB secondaries do,
//! so independent documents apply in parallel while each document's writes keep their order;
//! each worker sends batches of up to `batch` entries in one `applyOps`. A catalog change is a
//! barrier: every worker drains, then the command runs alone.
//!
//! Entries between the snapshot's start and end may already be reflected in the loaded
//! documents (the snapshot read while they happened). Replaying them is safe because oplog
//! entries are idempotent, with one exception: an update of a document the snapshot did not see
//! (deleted before it was read). Inside that window a failed batch is retried entry by entry
//! and such updates are skipped (counted as `window_skipped`); after the snapshot's end every
//! failure stops the restore.

pub mod entry;

use std::sync::Arc;

use futures::future::try_join_all;
use mc_core::catalog::Repository;
use mc_core::format::OplogTs;
use mongodb::bson::{doc, RawDocumentBuf};
use mongodb::Client;
use tokio::sync::{mpsc, oneshot};

use crate::namespaces::NamespaceMap;
use crate::plan::RestorePlan;
use crate::point::format_ts;
use entry::{apply_ops_command, Action, Command, DecodeStats, Decoder};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Repo(#[from] mc_core::catalog::RepoError),
    #[error(transparent)]
    Entry(#[from] entry::EntryError),
    #[error("applying {what} to the target failed: {source}")]
    Apply {
        what: String,
        #[source]
        source: mongodb::error::Error,
    },
    #[error("the oplog in the repository ends at {reached} but the plan needs it through {needed}: a segment is missing or was cut short")]
    Short { reached: String, needed: String },
    #[error("{point} is before the end of the chosen snapshot ({end}, in the same second): choose a later time, or an older snapshot with --snapshot (mc-restore list)")]
    BeforeSnapshotEnd { point: String, end: String },
    #[error("replay worker stopped: {0}")]
    Worker(String),
}

/// How replay runs.
#[derive(Debug, Clone, Copy)]
pub struct ReplaySettings {
    /// Entries per `applyOps`.
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
    /// Transactions begun but not committed at the cut (correctly not applied).
    pub open_transactions: usize,
    /// The newest entry inside the cut: the restored state is the source's state just after it.
    pub last_applied: Option<OplogTs>,
    pub decoded: DecodeStats,
}

enum Msg {
    Write { op: RawDocumentBuf, in_window: bool },
    Flush(oneshot::Sender<Result<WorkerCounts, String>>),
}

#[derive(Default, Clone, Copy)]
struct WorkerCounts {
    applied: u64,
    window_skipped: u64,
}

/// Replays the plan's oplog into `target`. `on_entry` is called with each entry read (progress).
pub async fn replay(
    repo: &Repository,
    target: &Client,
    plan: &RestorePlan,
    map: &NamespaceMap,
    settings: ReplaySettings,
    on_entry: impl Fn(u64) + Send + Sync + 'static,
) -> Result<ReplayStats, ReplayError> {
    let on_entry = Arc::new(on_entry);
    // Reader: segments in order, each streamed on a blocking thread into a bounded channel.
    let (raw_tx, mut raw_rx) = mpsc::channel::<RawDocumentBuf>(4096);
    let reader = {
        let repo = repo.clone();
        let keys: Vec<String> = plan.segments.iter().map(|s| s.key.clone()).collect();
        tokio::spawn(async move {
            for key in keys {
                let tx = raw_tx.clone();
                repo.scan_segment(&key, move |rec| {
                    let doc = RawDocumentBuf::from_bytes(rec.to_vec())
                        .map_err(|e| format!("record is not BSON: {e}"))?;
                    // A closed channel means replay ended (cut reached or failed): stop reading.
                    tx.blocking_send(doc)
                        .map_err(|_| "replay stopped".to_string())
                })
                .await?;
            }
            Ok::<(), mc_core::catalog::RepoError>(())
        })
    };

    let workers: Vec<(mpsc::Sender<Msg>, tokio::task::JoinHandle<()>)> =
        (0..settings.workers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel::<Msg>(2 * settings.batch.max(1));
                let handle = tokio::spawn(worker(target.clone(), rx, settings.batch.max(1)));
                (tx, handle)
            })
            .collect();

    let mut stats = ReplayStats::default();
    let mut decoder = Decoder::default();
    let mut actions = Vec::new();
    let mut reached_cut = false;
    let mut last_seen: Option<OplogTs> = None;
    let window_end = plan.snapshot.end;
    let result: Result<(), ReplayError> = async {
        while let Some(raw) = raw_rx.recv().await {
            stats.entries_read += 1;
            on_entry(stats.entries_read);
            let head = entry::head(&raw)?;
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
            decoder.decode(&raw, map, &mut actions)?;
            let in_window = head.ts <= window_end;
            for action in actions.drain(..) {
                match action {
                    Action::Write { partition, op } => {
                        let w = &workers[(partition % workers.len() as u64) as usize].0;
                        w.send(Msg::Write { op, in_window })
                            .await
                            .map_err(|_| ReplayError::Worker("a worker ended early".into()))?;
                    }
                    Action::Command(cmd) => {
                        drain(&workers, &mut stats).await?;
                        apply_command(target, map, cmd).await?;
                        stats.applied_commands += 1;
                    }
                }
            }
            stats.last_applied = Some(head.ts);
        }
        drain(&workers, &mut stats).await?;
        Ok(())
    }
    .await;
    drop(raw_rx);
    for (tx, handle) in workers {
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
    // Without reaching an entry past the cut, the stream must have reached the cut itself.
    if !reached_cut && last_seen.is_none_or(|l| l < plan.cut.bound) {
        return Err(ReplayError::Short {
            reached: last_seen.map(format_ts).unwrap_or_else(|| "nothing".into()),
            needed: format_ts(plan.cut.bound),
        });
    }
    stats.open_transactions = decoder.open_transactions();
    stats.decoded = decoder.stats.clone();
    Ok(stats)
}

/// Flushes every worker and waits until all their writes are applied.
async fn drain(
    workers: &[(mpsc::Sender<Msg>, tokio::task::JoinHandle<()>)],
    stats: &mut ReplayStats,
) -> Result<(), ReplayError> {
    let acks = workers.iter().map(|(tx, _)| async move {
        let (ack_tx, ack_rx) = oneshot::channel();
        tx.send(Msg::Flush(ack_tx))
            .await
            .map_err(|_| ReplayError::Worker("a worker ended early".into()))?;
        ack_rx
            .await
            .map_err(|_| ReplayError::Worker("a worker ended early".into()))?
            .map_err(ReplayError::Worker)
    });
    for counts in try_join_all(acks).await? {
        stats.applied_writes += counts.applied;
        stats.window_skipped += counts.window_skipped;
    }
    Ok(())
}

/// One partition: batches writes and applies them; reports at each flush. After a failure it
/// keeps draining its channel and reports the failure at the next flush.
async fn worker(target: Client, mut rx: mpsc::Receiver<Msg>, batch: usize) {
    let admin = target.database("admin");
    let mut pending: Vec<RawDocumentBuf> = Vec::with_capacity(batch);
    let mut pending_window = false;
    let mut counts = WorkerCounts::default();
    let mut failed: Option<String> = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Write { op, in_window } => {
                if failed.is_some() {
                    continue;
                }
                if !pending.is_empty() && (pending.len() >= batch || in_window != pending_window) {
                    if let Err(e) = apply_batch(&admin, &pending, pending_window, &mut counts).await
                    {
                        failed = Some(e);
                    }
                    pending.clear();
                }
                pending_window = in_window;
                pending.push(op);
            }
            Msg::Flush(ack) => {
                if failed.is_none() && !pending.is_empty() {
                    if let Err(e) = apply_batch(&admin, &pending, pending_window, &mut counts).await
                    {
                        failed = Some(e);
                    }
                }
                pending.clear();
                let report = match failed.take() {
                    Some(e) => Err(e),
                    None => Ok(std::mem::take(&mut counts)),
                };
                let _ = ack.send(report);
            }
        }
    }
}

async fn apply_batch(
    admin: &mongodb::Database,
    ops: &[RawDocumentBuf],
    in_window: bool,
    counts: &mut WorkerCounts,
) -> Result<(), String> {
    match admin
        .run_raw_command(apply_ops_command(ops, in_window))
        .await
    {
        Ok(_) => {
            counts.applied += ops.len() as u64;
            Ok(())
        }
        Err(e) if in_window => {
            // One at a time: skip updates of documents the snapshot did not see.
            for op in ops {
                match admin
                    .run_raw_command(apply_ops_command(std::slice::from_ref(op), true))
                    .await
                {
                    Ok(_) => counts.applied += 1,
                    Err(e) if is_missing_document(&e) => counts.window_skipped += 1,
                    Err(e) => return Err(describe_failure(op, &e)),
                }
            }
            let _ = e;
            Ok(())
        }
        Err(e) => Err(describe_failure(&ops[0], &e).replace(
            "applying",
            &format!("applying a batch of {} writes starting with", ops.len()),
        )),
    }
}

fn is_missing_document(e: &mongodb::error::Error) -> bool {
    // UpdateOperationFailed: "Update of non-mod failed" when the document is absent.
    matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 218)
}

fn describe_failure(op: &RawDocumentBuf, e: &mongodb::error::Error) -> String {
    let ns = op.get_str("ns").unwrap_or("?");
    let kind = op.get_str("op").unwrap_or("?");
    format!("applying {kind} on {ns}: {e}")
}

/// Server errors that mean a catalog change is already in place (replay is idempotent: the
/// snapshot may reflect it, or an interrupted restore is being re-run): NamespaceNotFound,
/// IndexNotFound, NamespaceExists.
const ALREADY_DONE: &[i32] = &[26, 27, 48];

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
        Err(e) if matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if ALREADY_DONE.contains(&c.code)) =>
        {
            tracing::debug!(what = %cmd.what, error = %e, "catalog change already in place");
            Ok(())
        }
        Err(source) => Err(ReplayError::Apply {
            what: cmd.what,
            source,
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
            source,
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
                    source,
                })?;
        }
    }
    Ok(())
}
