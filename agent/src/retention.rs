//! Pruning as the agent runs it: list the source's snapshots and oplog, decide with
//! `mc_core::catalog::retention::plan`, and (unless a dry run) apply the plan.

use mc_core::catalog::retention::{apply, plan, KeepRules, Pruned, RetentionPlan};
use mc_core::catalog::{list_snapshots, Catalog, RepoError, Repository};
use mc_core::format::StreamKind;

/// Plans retention for `source` now; applies it unless `dry_run`.
pub async fn prune(
    repo: &Repository,
    source: &str,
    rules: KeepRules,
    dry_run: bool,
) -> Result<(RetentionPlan, Option<Pruned>), RepoError> {
    let snapshots = list_snapshots(repo, source).await?;
    let oplog = Catalog::load(repo, source, StreamKind::Oplog).await?;
    let decided = plan(&snapshots, &oplog.segments, rules, chrono::Utc::now());
    if dry_run || decided.is_empty() {
        return Ok((decided, None));
    }
    let done = apply(repo, source, &decided).await?;
    tracing::info!(
        snapshots = done.snapshots_deleted,
        objects = done.objects_deleted,
        bytes = done.bytes_freed,
        "retention applied"
    );
    Ok((decided, Some(done)))
}
