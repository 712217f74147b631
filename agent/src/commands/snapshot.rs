//! `mc-agent snapshot --policy FILE`: take a base snapshot now, outside the schedule (e.g. before
//! a risky migration, or to make restorable time resume after a gap without waiting).
//!
//! At `debug` level (`RUST_LOG=mc_agent=debug`) it logs the milliseconds since start at each
//! step (policy read, repository open, snapshot's own steps), the profile behind
//! docs/performance.md's "Snapshot against mongodump".

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use mc_agent::capture::oplog::OplogSource;
use mc_agent::snapshot::{take, SnapshotSettings};
use mc_core::catalog::Repository;
use mc_core::policy::Policy;

pub async fn run(policy_path: &Path) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let policy = Policy::load(policy_path)?;
    let url = policy.repository_url()?;
    let keyring = policy.keyring()?;
    tracing::debug!(ms = t0.elapsed().as_millis(), "policy and keyring read");
    let repo = Repository::open(&url, keyring, true)
        .await
        .with_context(|| format!("opening repository {url}"))?;
    tracing::debug!(ms = t0.elapsed().as_millis(), "repository opened");
    let source = OplogSource::connect(policy.mongodb_uri()?.expose()).await?;
    let settings = SnapshotSettings::from_policy(
        &policy,
        &mc_agent::supervisor::default_holder_id(),
        "on-demand",
    );
    let t1 = Instant::now();
    let manifest = take(&repo, &source, &settings)
        .await
        .context("taking the snapshot")?;
    tracing::debug!(ms = t0.elapsed().as_millis(), "snapshot taken");
    println!(
        "snapshot {} of {}: {} collections, {} documents, {} bytes in {:.1} s; restorable from {} once the oplog is captured past it",
        manifest.id,
        manifest.source,
        manifest.collections.len(),
        manifest.documents(),
        manifest.bytes(),
        t1.elapsed().as_secs_f64(),
        manifest.end
    );
    Ok(())
}
