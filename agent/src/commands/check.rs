//! `mc-agent check --policy FILE`: checks a policy without touching any server — parses and
//! validates the file, then resolves its secret references, loads its keyring and parses its
//! repository URL. Prints a one-line summary, or every problem with file:line, and fails.

use std::path::Path;

use anyhow::bail;
use mc_core::policy::{format_duration, format_size, Policy, RepoUrlSource};

pub fn run(policy_path: &Path) -> anyhow::Result<()> {
    let policy = Policy::load(policy_path)?;
    if let Err(errors) = policy.check_environment() {
        for error in &errors {
            eprintln!("mc-agent: error: {error}");
        }
        bail!(
            "policy {} is well-formed, but {} of the things it refers to {} missing or wrong (listed above)",
            policy_path.display(),
            errors.len(),
            if errors.len() == 1 { "is" } else { "are" }
        );
    }
    println!(
        "policy {} is valid: {}",
        policy_path.display(),
        summary(&policy)?
    );
    Ok(())
}

/// `source rs0, repository …, rpo 15m, …`: what the agent would do, without secret values.
fn summary(policy: &Policy) -> anyhow::Result<String> {
    // RepoUrl's Display never includes credentials.
    let url = policy.repository_url()?;
    let repository = match &policy.repository.url {
        RepoUrlSource::Inline(_) => url.to_string(),
        RepoUrlSource::Reference(reference) => format!("{url} (from {reference})"),
    };
    let snapshots = &policy.snapshots.schedule;
    let next_snapshot = snapshots
        .next_after(chrono::Utc::now())
        .map(|t| format!(", next {}", t.format("%Y-%m-%dT%H:%M:%SZ")))
        .unwrap_or_default();
    let retention = &policy.retention;
    let pitr = retention
        .pitr_window
        .map(|w| format!(", point-in-time window {}", format_duration(w)))
        .unwrap_or_default();
    let lease = match &policy.lease {
        Some(lease) => format!(
            "Redis lease from {} (ttl {})",
            lease.redis_url,
            format_duration(lease.ttl)
        ),
        None => "no lease (single agent)".into(),
    };
    let kafka = match &policy.kafka {
        Some(kafka) => format!(
            "kafka groups {} every {}",
            kafka.groups.join(","),
            format_duration(kafka.interval)
        ),
        None => "kafka off".into(),
    };
    let drills = match &policy.drills {
        Some(drills) => format!("drills \"{}\"", drills.schedule),
        None => "drills off".into(),
    };
    Ok(format!(
        "name {}, source {}, repository {repository}, rpo {}, rto {}, seal every {} or {} (zstd {}), \
         snapshots \"{snapshots}\" UTC{next_snapshot}, keep {} daily/{} weekly/{} monthly{pitr}, \
         {lease}, {kafka}, {drills}, metrics on {}",
        policy.name,
        policy.source.id,
        format_duration(policy.objectives.rpo),
        format_duration(policy.objectives.rto),
        format_duration(policy.capture.seal_interval),
        format_size(policy.capture.max_segment_bytes),
        policy.capture.zstd_level,
        retention.keep_daily,
        retention.keep_weekly,
        retention.keep_monthly,
        policy.http.listen,
    ))
}
