//! `mc-agent snapshot --policy FILE`: take a base snapshot now, outside the schedule (e.g. before
//! a risky migration, or to make restorable time resume after a gap without waiting).

use std::path::Path;

use anyhow::Context;
use mc_agent::capture::oplog::OplogSource;
use mc_agent::snapshot::{take, SnapshotSettings};
use mc_core::catalog::Repository;
use mc_core::policy::Policy;

pub async fn run(policy_path: &Path) -> anyhow::Result<()> {
    let policy = Policy::load(policy_path)?;
    let url = policy.repository_url()?;
    let repo = Repository::open(&url, policy.keyring()?, true)
        .await
        .with_context(|| format!("opening repository {url}"))?;
    let source = OplogSource::connect(policy.mongodb_uri()?.expose()).await?;
    let settings = SnapshotSettings::from_policy(
        &policy,
        &mc_agent::supervisor::default_holder_id(),
        "on-demand",
    );
    let t0 = std::time::Instant::now();
    let manifest = take(&repo, &source, &settings)
        .await
        .context("taking the snapshot")?;
    println!(
        "snapshot {} of {}: {} collections, {} documents, {} bytes in {:.1} s; restorable from {} once the oplog is captured past it",
        manifest.id,
        manifest.source,
        manifest.collections.len(),
        manifest.documents(),
        manifest.bytes(),
        t0.elapsed().as_secs_f64(),
        manifest.end
    );
    Ok(())
}
