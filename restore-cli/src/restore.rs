//! A whole restore, phase by phase: prepare the target, load the snapshot, replay the oplog,
//! and (when asked) merge users and roles.
//! Each phase is timed; the `RestoreSummary` is what `--json` prints and drills record.

use std::sync::Arc;
use std::time::Instant;

use mc_core::catalog::Repository;
use mongodb::Client;
use serde::Serialize;

use crate::load::{load, LoadError, LoadProgress, LoadSettings, LoadStats};
use crate::namespaces::NamespaceMap;
use crate::plan::RestorePlan;
use crate::replay::{replay, ReplayError, ReplaySettings, ReplayStats};
use crate::target::{prepare, TargetError};
use crate::users::{UsersAndRolesStats, UsersError};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("loading the snapshot: {0}")]
    Load(#[from] LoadError),
    #[error("replaying the oplog: {0}")]
    Replay(#[from] ReplayError),
    #[error(transparent)]
    Users(#[from] UsersError),
}

/// One phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub seconds: f64,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    pub source: String,
    pub point: String,
    pub snapshot: String,
    pub dropped: Vec<String>,
    pub load: LoadStats,
    pub replay: ReplayStats,
    /// Users and roles merged into the target's (`--restore-users-and-roles` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_and_roles: Option<UsersAndRolesStats>,
    pub phases: Vec<Phase>,
    pub seconds: f64,
}

/// Options of a restore run beyond the plan.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub drop: bool,
    pub load: LoadSettings,
    pub replay: ReplaySettings,
}

/// Restores `plan` into `target`. Progress is reported through `load_progress` and
/// `on_entry` (entries read by replay).
pub async fn run(
    repo: &Repository,
    target: &Client,
    plan: &RestorePlan,
    map: &NamespaceMap,
    options: &RestoreOptions,
    load_progress: Arc<LoadProgress>,
    on_entry: impl Fn(u64) + Send + Sync + 'static,
) -> Result<RestoreSummary, RestoreError> {
    let started = Instant::now();
    let mut phases = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |name: &'static str, phases: &mut Vec<Phase>| {
        phases.push(Phase {
            name,
            seconds: clock.elapsed().as_secs_f64(),
        });
        tracing::info!(
            phase = name,
            seconds = clock.elapsed().as_secs_f64(),
            "phase done"
        );
        clock = Instant::now();
    };

    let dropped = prepare(target, map, options.drop).await?;
    if map.users_and_roles() {
        crate::users::clear_staging(target).await?;
    }
    lap("prepare", &mut phases);
    let load_stats = load(repo, target, plan, options.load, load_progress).await?;
    lap("load", &mut phases);
    let replay_stats = replay(repo, target, plan, map, options.replay, on_entry).await?;
    lap("replay", &mut phases);
    let users_and_roles = if map.users_and_roles() {
        let merged = crate::users::merge(target).await?;
        lap("users", &mut phases);
        Some(merged)
    } else {
        None
    };
    Ok(RestoreSummary {
        source: plan.source.clone(),
        point: plan.point.clone(),
        snapshot: plan.snapshot.id.clone(),
        dropped,
        load: load_stats,
        replay: replay_stats,
        users_and_roles,
        phases,
        seconds: started.elapsed().as_secs_f64(),
    })
}
