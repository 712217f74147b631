//! Continuous oplog capture: source (the oplog tail) → transform (the batcher, which waits for
//! the majority and cuts segments) → sink (sealing and uploading, in order).
//!
//! Resuming is driven by the repository, the source of truth: the capture continues from the
//! end of the newest run of the source's timeline, exactly after the last durable entry, so a
//! restart or crash neither skips nor repeats an entry. If that entry has left the oplog
//! (it rolled over while the agent was down), the gap is recorded by starting a new run.

pub mod batcher;
pub mod oplog;
pub mod spool;
pub mod upload;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_core::catalog::{Catalog, RepoError, Repository, Timeline};
use mc_core::format::{OplogTs, StreamKind};
use mc_core::storage::retry::Backoff;
use mc_core::storage::RetryPolicy;
use tokio::sync::{mpsc, watch};

use self::batcher::{Batch, Batcher, CutRules};
use self::oplog::{Chunk, OplogSource};
use self::upload::{upload_batches, Budget, Queued, UploadSettings};
use crate::metrics::capture::{pack, unpack};
use crate::metrics::Metrics;

/// Why capture stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("MongoDB: {0}")]
    Source(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("snapshot {id}: {detail}")]
    Snapshot { id: String, detail: String },
}

/// What the capture loop needs, resolved from the policy.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub rules: CutRules,
    pub upload: UploadSettings,
    /// How often the majority commit point is polled and cuts are considered.
    pub tick: Duration,
}

/// Where a capture starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPoint {
    /// Continue the timeline: the entry at this timestamp is durable; read from the next one.
    After(OplogTs),
    /// Start a new run with the entry at this timestamp (first capture, or after a gap).
    From(OplogTs),
}

/// Finds where to start: after the newest durable entry of the repository's timeline if the
/// oplog still has it, otherwise a new run from the oldest entry the oplog has (a gap).
pub async fn start_point(
    repo: &Repository,
    source: &OplogSource,
    source_id: &str,
    metrics: &Metrics,
) -> Result<StartPoint, CaptureError> {
    let catalog = Catalog::load(repo, source_id, StreamKind::Oplog).await?;
    let timeline = Timeline::build(&catalog.segments);
    match timeline.newest() {
        Some(end) if source.has_entry(end).await? => {
            tracing::info!(resume_after = %end, runs = timeline.runs.len(), "resuming the timeline");
            Ok(StartPoint::After(end))
        }
        Some(end) => {
            let oldest = source
                .oldest()
                .await?
                .ok_or_else(|| CaptureError::Source("the oplog is empty".into()))?;
            metrics.capture.gaps.inc();
            tracing::error!(
                durable_end = %end,
                oplog_oldest = %oldest,
                "GAP: the oplog no longer holds the last captured entry (it rolled over while capture was stopped); \
                 starting a new run at the oldest entry. Points in time inside the gap cannot be restored; \
                 take a base snapshot so that restorable time resumes"
            );
            Ok(StartPoint::From(oldest))
        }
        None => {
            let majority = source.majority_point().await?;
            tracing::info!(start = %majority, "no timeline yet for this source; starting a new run at the majority commit point");
            Ok(StartPoint::From(majority))
        }
    }
}

/// Waits for the batch's share of the budget, counts it as waiting for the store, and hands it
/// to the sink. `false` when the sink is gone.
async fn hand_over(
    tx: &mpsc::Sender<Queued>,
    budget: &Budget,
    batch: Batch,
    metrics: &Metrics,
) -> bool {
    let queued = budget.admit(batch).await;
    metrics
        .capture
        .upload_queued(queued.first_wall_ms(), queued.bytes());
    tx.send(queued).await.is_ok()
}

/// Runs capture until `shutdown` turns true, then reads the oplog up to the majority commit
/// point of that moment, seals and stores it, and returns; the caller bounds how long that may
/// take (the shutdown grace). The last line says what is durable: everything majority-committed
/// at the stop, or exactly how far it got. Source errors (e.g. a failover) lead to reconnecting
/// from the last entry handed to the sink; nothing uncommitted is ever stored.
pub async fn run(
    repo: Repository,
    source: OplogSource,
    settings: CaptureSettings,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<u64, CaptureError> {
    let source_id = settings.upload.source.clone();
    let start = start_point(&repo, &source, &source_id, &metrics).await?;
    let (prev, mut resume) = match start {
        StartPoint::After(ts) => (Some(ts), start),
        StartPoint::From(_) => (None, start),
    };
    if let StartPoint::After(ts) = start {
        metrics.capture.resume_floor_ts.store(pack(ts), Relaxed);
    }
    let mut batcher = Batcher::new(settings.rules, prev);

    // Memory: the batcher holds at most one segment's committed entries (it is cut as soon as
    // it reaches the size), the sink at most `budget` bytes of unsealed records, the read-ahead
    // one reply waiting and one being read (`oplog::BATCH_SIZE` entries each). While the
    // budget is spent, sending waits, the read-ahead fills up, and nothing more is read.
    let budget = Budget::new(settings.rules.max_bytes);
    let (tx, rx) = mpsc::channel(settings.upload.concurrency.max(1));
    let sink = tokio::spawn(upload_batches(
        repo.clone(),
        settings.upload.clone(),
        rx,
        metrics.clone(),
    ));

    let mut tick = tokio::time::interval(settings.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = RetryPolicy::forever().backoff();
    // The member the pending entries came from: only its commit point may release them.
    let mut last_node: Option<OplogSource> = None;
    // Once shutdown began: the majority point to read up to before stopping.
    let mut drain_to: Option<OplogTs> = None;
    // The newest entry read (or the resume point): draining ends when it reaches `drain_to`.
    let mut last_read: Option<OplogTs> = prev;
    'connect: while !*shutdown.borrow() || drain_to.is_some() {
        let from = match resume {
            StartPoint::After(ts) | StartPoint::From(ts) => ts,
        };
        // One member for both the entries and the commit point (see `oplog`'s module comment).
        let node = match source.primary_node().await {
            Ok(n) => {
                last_node = Some(n.clone());
                n
            }
            Err(e) if drain_to.is_some() => {
                tracing::warn!(error = %e, "stopping: cannot reach MongoDB; storing what was read");
                break 'connect;
            }
            Err(e) => {
                reconnect_wait(&metrics, &e, &mut backoff, &mut shutdown).await;
                continue 'connect;
            }
        };
        let mut ahead = match node.tail_from(from).await {
            Ok(c) => c.read_ahead(),
            Err(e) if drain_to.is_some() => {
                tracing::warn!(error = %e, "stopping: cannot reach MongoDB; storing what was read");
                break 'connect;
            }
            Err(e) => {
                reconnect_wait(&metrics, &e, &mut backoff, &mut shutdown).await;
                continue 'connect;
            }
        };
        // The first entry must be the resume point itself, proving nothing was skipped.
        let mut expect_first = match resume {
            StartPoint::After(ts) => Some(ts),
            StartPoint::From(_) => None,
        };
        metrics.capture.capturing.set(1);
        'read: loop {
            if let Some(target) = drain_to {
                if last_read.is_some_and(|r| r >= target) {
                    break 'connect;
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.changed(), if drain_to.is_none() => {
                    // Read on up to the majority point of this moment, so what is committed
                    // now is stored; without it (MongoDB unreachable) stop at once.
                    match node.node_state().await {
                        Ok(state) => {
                            metrics.capture.set_stop_majority(state.majority);
                            metrics.capture.set_majority(state.majority);
                            batcher.set_majority(state.majority);
                            drain_to = Some(state.majority);
                            tracing::info!(majority = %state.majority, "stopping: reading the oplog up to the majority commit point, then storing it");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "stopping: cannot read the majority commit point; storing what was read");
                            break 'connect;
                        }
                    }
                }
                _ = tick.tick() => {
                    match node.node_state().await {
                        Ok(state) if !state.primary => {
                            // Deposed: what it has beyond its commit point may be rolled back.
                            // Cut only what it has committed, then follow the new primary.
                            batcher.set_majority(state.majority);
                            while let Some(batch) = batcher.next_batch(Instant::now(), true) {
                                resume = StartPoint::After(batch.last());
                                if !hand_over(&tx, &budget, batch, &metrics).await { break 'connect; }
                            }
                            tracing::warn!("the member capture reads from is no longer primary; following the new primary");
                            break 'read;
                        }
                        Ok(state) => {
                            batcher.set_majority(state.majority);
                            batcher.set_source_end(state.last_write);
                            metrics.capture.set_majority(state.majority);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot read the majority commit point"),
                    }
                    while let Some(batch) = batcher.next_batch(Instant::now(), false) {
                        resume = StartPoint::After(batch.last());
                        if !hand_over(&tx, &budget, batch, &metrics).await { break 'connect; }
                    }
                }
                chunk = ahead.next() => {
                    let entries = match chunk {
                        Chunk::Entries(entries) => entries,
                        Chunk::Closed => {
                            tracing::warn!("oplog cursor closed; reopening");
                            break 'read;
                        }
                        Chunk::Failed(e) => {
                            metrics.capture.capturing.set(0);
                            if drain_to.is_some() {
                                tracing::warn!(error = %e, "stopping: reading the oplog failed; storing what was read");
                                break 'connect;
                            }
                            reconnect_wait(&metrics, &e, &mut backoff, &mut shutdown).await;
                            break 'read;
                        }
                    };
                    backoff.reset();
                    let now = Instant::now();
                    for entry in entries {
                        if let Some(want) = expect_first.take() {
                            if entry.ts == want {
                                continue;
                            }
                            // The resume entry vanished between the check and the tail.
                            metrics.capture.gaps.inc();
                            tracing::error!(expected = %want, found = %entry.ts, "GAP: resume entry missing from the oplog; starting a new run");
                            batcher.break_chain();
                        }
                        last_read = Some(entry.ts);
                        batcher.push(entry, now);
                        // Cut at once when a segment is full or a backlog's end was read, not at
                        // the next tick: the batcher never holds much more than a segment.
                        if batcher.behind() || batcher.pending_bytes() >= settings.rules.max_bytes {
                            while let Some(batch) = batcher.next_batch(now, false) {
                                resume = StartPoint::After(batch.last());
                                if !hand_over(&tx, &budget, batch, &metrics).await { break 'connect; }
                            }
                        }
                    }
                }
            }
        }
        // Entries not yet handed to the sink may be uncommitted and rolled back by a failover:
        // drop them and read again from the last entry handed out.
        batcher.discard_pending();
        resume = match batcher.prev() {
            Some(ts) => StartPoint::After(ts),
            None => resume,
        };
    }
    metrics.capture.capturing.set(0);

    // Shutdown: seal what the member's majority has, then let the sink finish.
    if drain_to.is_none() {
        if let Some(node) = &last_node {
            if let Ok(state) = node.node_state().await {
                metrics.capture.set_stop_majority(state.majority);
                batcher.set_majority(state.majority);
            }
        }
    }
    while let Some(batch) = batcher.next_batch(Instant::now(), true) {
        if !hand_over(&tx, &budget, batch, &metrics).await {
            break;
        }
    }
    drop(tx);
    let stored = sink
        .await
        .map_err(|e| CaptureError::Source(format!("upload task failed: {e}")))?;
    let report = StopReport::of(&metrics);
    report.log(stored);
    Ok(stored)
}

/// What is durable when capture stops, against what was majority-committed when the stop
/// began: the shutdown line, and the exit status of `mc-agent run`.
#[derive(Debug, Clone, PartialEq)]
pub struct StopReport {
    /// The newest durable entry (this run's, else the one it resumed after), if any.
    pub durable: Option<OplogTs>,
    /// Its wall time, Unix ms, when this run stored it.
    pub durable_wall_ms: Option<i64>,
    /// The majority commit point when the stop began (else the newest seen), if known.
    pub majority: Option<OplogTs>,
}

impl StopReport {
    /// From the metrics capture keeps.
    pub fn of(metrics: &Metrics) -> Self {
        let stored = metrics.capture.durable_ts.load(Relaxed);
        let floor = metrics.capture.resume_floor_ts.load(Relaxed);
        let durable = stored.max(floor);
        let wall = metrics.capture.durable_wall_ms.load(Relaxed);
        let majority = match metrics.capture.stop_majority_ts.load(Relaxed) {
            0 => metrics.capture.majority_ts.load(Relaxed),
            m => m,
        };
        Self {
            durable: (durable > 0).then(|| unpack(durable)),
            durable_wall_ms: (stored > 0 && wall > 0).then_some(wall),
            majority: (majority > 0).then(|| unpack(majority)),
        }
    }

    /// True when everything majority-committed at the stop is durable.
    pub fn complete(&self) -> bool {
        match (self.durable, self.majority) {
            (_, None) => true,
            (Some(d), Some(m)) => d >= m,
            (None, Some(_)) => false,
        }
    }

    /// Seconds of oplog between the durable point and the majority point.
    pub fn behind_seconds(&self) -> u32 {
        match (self.durable, self.majority) {
            (Some(d), Some(m)) => m.t.saturating_sub(d.t),
            _ => 0,
        }
    }

    /// The shutdown line.
    pub fn line(&self) -> String {
        if self.complete() {
            return "capture stopped; everything majority-committed is durable".into();
        }
        let wall = self.durable_wall_ms.map_or_else(
            || "wall time not stored by this run".to_owned(),
            mc_core::time::format_ms,
        );
        let through = match self.durable {
            Some(d) => format!("durable through {} ({wall})", d.arg()),
            None => "nothing durable yet for this source".to_owned(),
        };
        let behind = match self.durable {
            Some(_) => format!("{} s of", self.behind_seconds()),
            None => "all".to_owned(),
        };
        format!(
            "capture stopped: {through}; {behind} majority-committed oplog not stored, still in the oplog, captured at next start"
        )
    }

    /// Logs [`StopReport::line`]: INFO when complete, WARN when not.
    pub fn log(&self, segments: u64) {
        let durable = self.durable.map(|d| d.to_string());
        let majority = self.majority.map(|m| m.to_string());
        if self.complete() {
            tracing::info!(segments, durable, majority, "{}", self.line());
        } else {
            tracing::warn!(
                segments,
                durable,
                majority,
                behind_s = self.behind_seconds(),
                "{}",
                self.line()
            );
        }
    }
}

async fn reconnect_wait(
    metrics: &Metrics,
    error: &CaptureError,
    backoff: &mut Backoff,
    shutdown: &mut watch::Receiver<bool>,
) {
    metrics.capture.source_errors.inc();
    let wait = backoff.next_wait();
    tracing::warn!(%error, retry_in = ?wait, "reading the oplog failed; reconnecting");
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = shutdown.changed() => {}
    }
}
