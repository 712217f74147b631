//! `mc-agent prune --policy FILE [--dry-run]`: apply the policy's retention now, or show what it
//! would delete and why each kept snapshot stays.

use std::path::Path;

use anyhow::Context;
use mc_agent::retention::prune;
use mc_core::catalog::Repository;
use mc_core::policy::Policy;

pub async fn run(policy_path: &Path, dry_run: bool) -> anyhow::Result<()> {
    let policy = Policy::load(policy_path)?;
    let url = policy.repository_url()?;
    let repo = Repository::open(&url, policy.keyring()?, false)
        .await
        .with_context(|| format!("opening repository {url}"))?;
    let (plan, done) = prune(
        &repo,
        &policy.source.id,
        crate::keep_rules(&policy),
        dry_run,
    )
    .await?;
    for k in &plan.keep {
        println!("keep    {}  ({})", k.id, k.reasons.join(", "));
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    for id in &plan.forget {
        println!("{verb} snapshot {id}");
    }
    for key in &plan.delete_segments {
        println!("{verb} {key}");
    }
    match done {
        Some(d) => println!(
            "deleted {} objects, {} bytes freed",
            d.objects_deleted, d.bytes_freed
        ),
        None if plan.is_empty() => println!("nothing to delete"),
        None => println!("dry run: nothing deleted"),
    }
    Ok(())
}
