//! The supervisor: runs capture while this agent may, and stops it when it may not. Without a
//! lease it captures until shutdown. With one, it stands by until it acquires the lease,
//! captures while renewals succeed, aborts capture the moment the lease is lost (a deposed
//! capturer writes nothing more), and on shutdown flushes, then releases the lease so a standby
//! takes over at once.
//!
//! The holder's deadline is a timer of its own: the lease is certainly ours until the moment
//! the last successful renewal (or the acquisition) was sent plus the TTL, and capture stops a
//! third of the TTL before that whether or not a renewal call is still waiting for Redis. A
//! renewal that hangs can therefore never keep this agent storing past the point where another
//! agent could take the lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_core::catalog::Repository;
use tokio::sync::watch;

use crate::capture::oplog::OplogSource;
use crate::capture::{self, CaptureError, CaptureSettings};
use crate::drills::{self, DrillPlan};
use crate::kafka::{self, KafkaCaptureSettings};
use crate::lease::{Lease, LeaseError, LeaseStore};
use crate::metrics::Metrics;
use crate::snapshot::{self, SnapshotPlan};

/// Everything one agent runs with.
#[derive(Debug, Clone)]
pub struct AgentParts {
    pub repo: Repository,
    pub source: OplogSource,
    pub capture: CaptureSettings,
    /// Scheduled snapshots; `None` captures only.
    pub snapshots: Option<SnapshotPlan>,
    /// Scheduled recovery drills (the policy's `drills:`); `None`: drills run only by hand.
    pub drills: Option<DrillPlan>,
    /// Kafka consumer-group offset capture (the policy's `kafka:`); `None`: not captured.
    pub kafka: Option<KafkaCaptureSettings>,
    /// The capture lease; `None` for a single agent.
    pub lease: Option<LeaseStore>,
    /// This agent's name in the lease and in segment headers.
    pub holder: String,
    pub metrics: Arc<Metrics>,
}

/// Runs until `shutdown` turns true.
pub async fn run(
    parts: AgentParts,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), CaptureError> {
    let AgentParts {
        repo,
        source,
        capture: settings,
        snapshots,
        drills,
        kafka,
        lease,
        holder,
        metrics,
    } = parts;
    // Kafka's metrics and status are shown from the start, also while standing by.
    if kafka.is_some() {
        metrics.kafka.enable();
    }
    let Some(store) = lease else {
        metrics.lease.held.set(1);
        let snapshots = spawn_snapshots(&repo, &source, snapshots, &metrics, shutdown.clone());
        let _drills = AbortOnDrop(spawn_drills(&repo, drills, &metrics, shutdown.clone()));
        let kafka = spawn_kafka(&repo, &source, kafka, &metrics, shutdown.clone());
        let result = capture::run(repo, source, settings, metrics, shutdown).await;
        if let Some(task) = snapshots {
            let _ = task.await;
        }
        if let Some(task) = kafka {
            let _ = task.await;
        }
        result?;
        return Ok(());
    };
    let period = store.ttl() / 3;
    while !*shutdown.borrow() {
        let sent = Instant::now();
        let acquired = match store.try_acquire(&holder).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the lease store; standing by");
                None
            }
        };
        let Some(lease) = acquired else {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        tracing::info!(holder = %holder, fence = lease.fence, "acquired the capture lease; capturing");
        metrics.lease.acquired(lease.fence);
        let parts = Held {
            repo: &repo,
            source: &source,
            settings: &settings,
            snapshots: &snapshots,
            drills: &drills,
            kafka: &kafka,
            metrics: &metrics,
        };
        let result = hold(parts, &store, &lease, sent, &mut shutdown).await;
        metrics.lease.held.set(0);
        // Retention is the holder's: a deposed agent's count would go stale.
        metrics.retention.forget_incomplete();
        result?;
    }
    Ok(())
}

/// What [`hold`] borrows from the running agent.
struct Held<'a> {
    repo: &'a Repository,
    source: &'a OplogSource,
    settings: &'a CaptureSettings,
    snapshots: &'a Option<SnapshotPlan>,
    drills: &'a Option<DrillPlan>,
    kafka: &'a Option<KafkaCaptureSettings>,
    metrics: &'a Arc<Metrics>,
}

/// The moment until which a lease confirmed by a call sent at `sent` is certainly ours, less a
/// margin (a third of the TTL) for clock drift between us and Redis and for stopping capture.
fn valid_until(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl - ttl / 3
}

/// Renews the lease at `at`; returns when the renewal was sent and its answer.
async fn renew_at(
    store: &LeaseStore,
    lease: &Lease,
    at: Instant,
) -> (Instant, Result<bool, LeaseError>) {
    tokio::time::sleep_until(at.into()).await;
    let sent = Instant::now();
    (sent, store.renew(lease).await)
}

/// Captures while the lease holds (acquired by a call sent at `acquired`). Returns on shutdown
/// (after flushing and releasing) or when the lease is lost or could expire (after aborting
/// capture).
async fn hold(
    parts: Held<'_>,
    store: &LeaseStore,
    lease: &Lease,
    acquired: Instant,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), CaptureError> {
    let Held {
        repo,
        source,
        settings,
        snapshots,
        drills,
        kafka,
        metrics,
    } = parts;
    let snapshots = snapshots.clone();
    let mut settings = settings.clone();
    settings.upload.writer.fence = lease.fence;
    let (stop_tx, stop_rx) = watch::channel(false);
    let snapshots = snapshots.map(|mut plan| {
        plan.settings.writer.fence = lease.fence;
        plan
    });
    // Snapshots run only while the lease holds; a deposed holder's snapshot task is aborted.
    let _snapshots = AbortOnDrop(spawn_snapshots(
        repo,
        source,
        snapshots,
        metrics,
        stop_rx.clone(),
    ));
    // Drills too, so only one agent of a source drills at a time.
    let _drills = AbortOnDrop(spawn_drills(repo, drills.clone(), metrics, stop_rx.clone()));
    // Kafka offsets too are written only while the lease holds; on shutdown the open segment is
    // sealed before the lease is released, on loss the task is aborted.
    let kafka = kafka.clone().map(|mut k| {
        k.writer.fence = lease.fence;
        k
    });
    let mut kafka = AbortOnDrop(spawn_kafka(repo, source, kafka, metrics, stop_rx.clone()));
    let mut task = tokio::spawn(capture::run(
        repo.clone(),
        source.clone(),
        settings,
        metrics.clone(),
        stop_rx,
    ));
    let ttl = store.ttl();
    let period = ttl / 3;
    let mut deadline = valid_until(acquired, ttl);
    // One renewal always pending: the next, or the one waiting for Redis.
    let renewal = renew_at(store, lease, acquired + period);
    tokio::pin!(renewal);
    let stop_capture = |task: &tokio::task::JoinHandle<_>| {
        task.abort();
        // An aborted capture never reaches its own reset of the flag.
        metrics.capture.capturing.set(0);
    };
    loop {
        tokio::select! {
            done = &mut task => {
                // Capture ended by itself (an error it could not recover from).
                let _ = store.release(lease).await;
                return done.map_err(|e| CaptureError::Source(format!("capture task failed: {e}")))?.map(|_| ());
            }
            _ = shutdown.changed() => {
                let _ = stop_tx.send(true);
                let result = (&mut task).await;
                if let Some(k) = kafka.0.take() {
                    let _ = k.await;
                }
                match store.release(lease).await {
                    Ok(_) => tracing::info!(fence = lease.fence, "released the capture lease"),
                    Err(e) => tracing::warn!(error = %e, "could not release the lease; it expires by itself"),
                }
                return result.map_err(|e| CaptureError::Source(format!("capture task failed: {e}")))?.map(|_| ());
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                tracing::error!(
                    fence = lease.fence,
                    since_renewed = ?(ttl - period),
                    "cannot renew the capture lease before it expires; stopping capture"
                );
                stop_capture(&task);
                let _ = task.await;
                return Ok(());
            }
            (sent, renewed) = &mut renewal => {
                match renewed {
                    Ok(true) => deadline = deadline.max(valid_until(sent, ttl)),
                    Ok(false) => {
                        tracing::error!(fence = lease.fence, "LOST the capture lease (another agent holds it); stopping capture now");
                        stop_capture(&task);
                        let _ = task.await;
                        return Ok(());
                    }
                    Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
                }
                renewal.set(renew_at(store, lease, sent + period));
            }
        }
    }
}

fn spawn_snapshots(
    repo: &Repository,
    source: &OplogSource,
    plan: Option<SnapshotPlan>,
    metrics: &Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    plan.map(|plan| {
        tokio::spawn(snapshot::run_schedule(
            repo.clone(),
            source.clone(),
            plan,
            metrics.clone(),
            stop,
        ))
    })
}

fn spawn_drills(
    repo: &Repository,
    plan: Option<DrillPlan>,
    metrics: &Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    plan.map(|plan| {
        tokio::spawn(drills::run_schedule(
            repo.clone(),
            plan,
            metrics.clone(),
            stop,
        ))
    })
}

fn spawn_kafka(
    repo: &Repository,
    source: &OplogSource,
    settings: Option<KafkaCaptureSettings>,
    metrics: &Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    settings.map(|settings| {
        tokio::spawn(kafka::run(
            repo.clone(),
            settings,
            Some(source.clone()),
            metrics.clone(),
            stop,
        ))
    })
}

/// Aborts a task when dropped, so no path out of `hold` leaves a snapshot running unleased.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// A holder id for this process: pod/host name and pid.
pub fn default_holder_id() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "mc-agent".into());
    format!("{host}/{}", std::process::id())
}
