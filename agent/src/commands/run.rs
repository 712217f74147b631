//! `mc-agent run --policy FILE`: the daemon. Loads and checks the policy, serves metrics and
//! health at once, opens (or creates) the repository, waiting for its store as long as it takes
//! (not ready meanwhile, saying why), and captures under the lease until SIGTERM or SIGINT; then
//! it stores what is majority-committed within the shutdown timeout (default 25 s, under
//! Kubernetes' 30 s grace period), releases the lease and says what is durable. Exit 0 when
//! everything majority-committed at the signal is durable, 1 when not (the line says how far).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use mc_agent::capture::oplog::OplogSource;
use mc_agent::capture::StopReport;
use mc_agent::lease::LeaseStore;
use mc_agent::metrics::Metrics;
use mc_agent::settings::AgentSettings;
use mc_agent::{http, supervisor};
use mc_core::catalog::Repository;
use mc_core::policy::Policy;
use mc_core::storage::health::Backlog;
use mc_core::storage::StoreOptions;
use tokio::sync::watch;

/// Key prefix of the agent's entries in Redis.
const LEASE_PREFIX: &str = "mc-backup";

pub async fn run(policy_path: &Path, shutdown_timeout: Duration) -> anyhow::Result<()> {
    let policy = Policy::load(policy_path)?;
    if let Err(errors) = policy.check_environment() {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        bail!(
            "the policy's environment is incomplete:\n  {}",
            lines.join("\n  ")
        );
    }
    let source_id = policy.source.id.clone();
    let uri = policy.mongodb_uri()?;
    let url = policy.repository_url()?;
    let metrics = Arc::new(Metrics::default());
    metrics.store.set_describe(url.to_string());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    // Health and metrics first: they answer while the store or MongoDB are awaited.
    let server = tokio::spawn(http::serve(
        policy.http.listen,
        metrics.clone(),
        source_id.clone(),
        shutdown_rx.clone(),
        bound_tx,
    ));
    let addr = match bound_rx.await {
        Ok(addr) => addr,
        Err(_) => {
            let err = server
                .await?
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            bail!(
                "cannot serve metrics on {} (policy field http.listen): {err}",
                policy.http.listen
            );
        }
    };
    tracing::info!(metrics = %format!("http://{addr}/metrics"), "serving health and metrics");
    let weak = Arc::downgrade(&metrics);
    metrics.store.set_backlog_probe(Arc::new(move || {
        weak.upgrade().map_or(
            Backlog {
                waiting_bytes: 0,
                oldest_age: None,
            },
            |m| m.capture.backlog(),
        )
    }));
    metrics.set_waiting_for(Some(format!("the repository at {url}")));
    let keyring = policy.keyring()?;
    let opening = Repository::open_with(
        &url,
        keyring,
        true,
        StoreOptions::daemon(metrics.store.clone()),
    );
    tokio::pin!(opening);
    let announce = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(announce);
    let mut announced = false;
    let repo = loop {
        tokio::select! {
            opened = &mut opening => {
                break opened.with_context(|| format!("opening repository {url}"))?;
            }
            _ = &mut announce, if !announced => {
                announced = true;
                let last = metrics.store.last_error().map(|e| format!("{} {}: {}", e.op, e.kind, e.message));
                tracing::warn!(
                    repository = %url,
                    last_error = last.as_deref().unwrap_or("none yet (no answer)"),
                    "waiting for the repository's store before capturing; retrying until it answers (not ready meanwhile)"
                );
            }
            signal = shutdown_signal() => {
                tracing::info!(signal, "stopping before the repository answered; nothing was captured by this run");
                let _ = shutdown_tx.send(true);
                let _ = server.await;
                return Ok(());
            }
        }
    };
    if announced {
        tracing::info!(repository = %url, "the repository answers; starting");
    }
    metrics.set_waiting_for(None);
    let source = OplogSource::connect(uri.expose()).await?;
    let holder = supervisor::default_holder_id();
    let lease = match (&policy.lease, policy.lease_redis_url()?) {
        (Some(settings), Some(redis_url)) => Some(
            LeaseStore::connect(redis_url.expose(), LEASE_PREFIX, &source_id, settings.ttl)
                .await
                .context("connecting to the lease store (policy field lease.redis_url)")?,
        ),
        _ => None,
    };
    let AgentSettings {
        capture,
        snapshots,
        kafka,
        drills,
    } = AgentSettings::from_policy(&policy, &holder)?;
    let drills_scheduled = drills.is_some();
    tracing::info!(
        policy = %policy.file().display(),
        source = %source_id,
        repository = %url,
        metrics = %format!("http://{addr}/metrics"),
        lease = lease.is_some(),
        kafka = kafka.is_some(),
        drills = drills_scheduled,
        "mc-agent running"
    );

    let stop_source = source.clone();
    let parts = supervisor::AgentParts {
        repo,
        source,
        capture,
        snapshots: Some(snapshots),
        drills,
        kafka,
        lease,
        holder,
        metrics: metrics.clone(),
    };
    let mut agent = tokio::spawn(supervisor::run(parts, shutdown_rx));
    tokio::select! {
        result = &mut agent => {
            let _ = shutdown_tx.send(true);
            result.context("the capture task panicked")??;
            bail!("capture stopped unexpectedly");
        }
        signal = shutdown_signal() => {
            tracing::info!(signal, "stopping: sealing and uploading what is majority-committed");
        }
    }
    // What "everything" means: the majority commit point now, before capture is told to stop.
    let capturing = metrics.lease.is_held();
    if capturing {
        if let Ok(Ok(majority)) =
            tokio::time::timeout(Duration::from_secs(2), stop_source.majority_point()).await
        {
            metrics.capture.set_stop_majority(majority);
        }
    }
    let _ = shutdown_tx.send(true);
    match tokio::time::timeout(shutdown_timeout, &mut agent).await {
        Ok(result) => result.context("the capture task panicked")??,
        Err(_) => {
            agent.abort();
            let report = StopReport::of(&metrics);
            if report.complete() {
                bail!(
                    "{} (within {shutdown_timeout:?}), but a snapshot or Kafka upload was still running and was cut short; it is taken again or resumes at the next start",
                    report.line()
                );
            }
            report.log(metrics.capture.segments_uploaded.get());
            bail!(
                "did not store everything majority-committed within {shutdown_timeout:?} (the store {} since {}): {}",
                match metrics.store.state() {
                    mc_core::storage::health::StoreState::Down => "fails",
                    _ => "answers slowly or not at all",
                },
                metrics.store.snapshot().since.unwrap_or_else(|| "start".into()),
                report.line()
            );
        }
    }
    let _ = server.await;
    let report = StopReport::of(&metrics);
    if capturing && !report.complete() {
        bail!("stopped, but {}", report.line());
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
