//! `mc-agent prune --policy FILE [--dry-run] [--incomplete-grace DURATION]`: apply the policy's
//! retention now, or show what it would delete and why each kept snapshot stays. Incomplete
//! snapshots (data without a manifest, left by a crash) are deleted once their grace has passed
//! and listed as kept before.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use mc_agent::retention::prune;
use mc_core::catalog::retention::IncompleteSnapshot;
use mc_core::catalog::Repository;
use mc_core::policy::Policy;

pub async fn run(
    policy_path: &Path,
    dry_run: bool,
    incomplete_grace: Option<Duration>,
) -> anyhow::Result<()> {
    let policy = Policy::load(policy_path)?;
    let url = policy.repository_url()?;
    let repo = Repository::open(&url, policy.keyring()?, false)
        .await
        .with_context(|| format!("opening repository {url}"))?;
    let mut rules = policy.keep_rules();
    if let Some(grace) = incomplete_grace {
        rules.incomplete_grace = grace;
    }
    let (plan, done) = prune(&repo, &policy.source.id, rules, dry_run).await?;
    let grace = mc_core::policy::format_duration(rules.incomplete_grace);
    for k in &plan.keep {
        println!("keep    {}  ({})", k.id, k.reasons.join(", "));
    }
    for s in &plan.incomplete_kept {
        println!(
            "keep    incomplete snapshot {}  ({}; within the {grace} grace, may still be being taken)",
            s.id,
            describe(s)
        );
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    for id in &plan.forget {
        println!("{verb} snapshot {id}");
    }
    for s in &plan.incomplete {
        println!(
            "{verb} incomplete snapshot {}  ({}; older than the {grace} grace)",
            s.id,
            describe(s)
        );
        for key in &s.objects {
            println!("{verb} {key}");
        }
    }
    for key in &plan.delete_segments {
        println!("{verb} {key}");
    }
    let incomplete_objects: usize = plan.incomplete.iter().map(|s| s.objects.len()).sum();
    match done {
        Some(d) => println!(
            "deleted {} objects, {} bytes freed ({} snapshots, {} incomplete snapshots)",
            d.objects_deleted, d.bytes_freed, d.snapshots_deleted, d.incomplete_deleted
        ),
        None if plan.is_empty() => println!("nothing to delete"),
        None => println!(
            "dry run: nothing deleted ({} snapshots, {} incomplete snapshots with {incomplete_objects} objects, {} oplog segments would go)",
            plan.forget.len(),
            plan.incomplete.len(),
            plan.delete_segments.len()
        ),
    }
    Ok(())
}

/// `2 objects, 1234 bytes, no manifest, last written 2026-11-25T10:15:00Z`.
fn describe(s: &IncompleteSnapshot) -> String {
    format!(
        "{} objects, {} bytes, no manifest, last written {}",
        s.objects.len(),
        s.bytes,
        s.last_written
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "at an unknown time".into())
    )
}
