//! Pruning as the agent runs it: plan with `mc_core::catalog::retention::plan_repository` (the
//! keep rules, the oplog they leave needed, incomplete snapshots past their grace) and, unless a
//! dry run, apply the plan.

use mc_core::catalog::retention::{apply, plan_repository, KeepRules, Pruned, RetentionPlan};
use mc_core::catalog::{RepoError, Repository};

/// Plans retention for `source` now; applies it unless `dry_run`.
pub async fn prune(
    repo: &Repository,
    source: &str,
    rules: KeepRules,
    dry_run: bool,
) -> Result<(RetentionPlan, Option<Pruned>), RepoError> {
    let decided = plan_repository(repo, source, rules, chrono::Utc::now()).await?;
    if !decided.incomplete_kept.is_empty() {
        tracing::info!(
            snapshots = decided.incomplete_kept.len(),
            grace = %mc_core::policy::format_duration(rules.incomplete_grace),
            "retention: incomplete snapshots within their grace kept (possibly still being taken)"
        );
    }
    if dry_run || decided.is_empty() {
        return Ok((decided, None));
    }
    let done = apply(repo, source, &decided).await?;
    tracing::info!(
        snapshots = done.snapshots_deleted,
        incomplete_snapshots = done.incomplete_deleted,
        objects = done.objects_deleted,
        bytes = done.bytes_freed,
        "retention applied"
    );
    Ok((decided, Some(done)))
}
