//! A whole restore, the one path every restore takes (`mc-restore --at`, `mc-restore drill`,
//! the agent's scheduled drills): prepare the target, load the snapshot, replay the oplog,
//! build the indexes, (when asked) merge users and roles, then (when asked) reset the Kafka
//! consumer groups to the same point, or, for a drill, plan that reset without applying it.
//!
//! Each phase is timed under one of the names of [`PhaseName`] and reported to an
//! [`Observer`] as it starts and ends; the phases count what they do into [`Progress`], which a
//! [`crate::progress::Monitor`] shows; the `RestoreSummary` is what `--json` prints and drills
//! record.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mc_core::catalog::Repository;
use mc_core::format::OplogTs;
use mongodb::Client;
use serde::Serialize;

use crate::journal::{Identity, Journal, JournalError, JournalPhase, PendingIndexes};
use crate::kafka::{self, KafkaPoint, KafkaResetOptions, KafkaResetReport};
use crate::load::{load, LoadError, LoadProgress, LoadSettings, LoadStats};
use crate::namespaces::NamespaceMap;
use crate::plan::RestorePlan;
use crate::point::RestorePoint;
use crate::progress::{self, Gauge, Meter, Monitor, Reading};
use crate::replay::{replay, ReplayError, ReplaySettings, ReplayStats, TargetCatalog};
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
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("restoring users and roles: {0}")]
    DrillUsers(String),
    /// The Kafka reset could not even be planned: nothing was changed, in MongoDB or Kafka.
    #[error("planning the Kafka consumer-group reset at {point} (nothing was changed in MongoDB or Kafka): {source}")]
    KafkaPlan {
        point: String,
        #[source]
        source: kafka::KafkaRestoreError,
    },
}

impl RestoreError {
    /// Whether the target was written before the error (a partial restore is there).
    pub fn target_written(&self) -> bool {
        !matches!(
            self,
            RestoreError::Target(TargetError::NotEmpty { .. })
                | RestoreError::Target(TargetError::Unreachable { .. })
                | RestoreError::KafkaPlan { .. }
                | RestoreError::Journal(
                    JournalError::NothingToResume
                        | JournalError::Mismatch { .. }
                        | JournalError::Unfinished { .. }
                        // Looking for an interrupted restore comes before any write.
                        | JournalError::Target {
                            what: "reading" | "listing",
                            ..
                        }
                )
        )
    }
}

/// The phases of a restore and of a drill, in the order they run. Their names are what
/// summaries, drill reports and logs show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseName {
    /// Choosing the snapshot and segments (drills time it; `mc-restore` plans before it starts).
    Plan,
    /// The target's safety check, and dropping what is in the way with `--drop`.
    Prepare,
    /// The snapshot's collections and documents.
    Load,
    /// The oplog from the snapshot's start through the cut.
    Replay,
    /// Every secondary index, on the final data.
    Indexes,
    /// Users and roles merged into the target's.
    Users,
    /// A drill's dry run of the Kafka consumer-group reset.
    KafkaPlan,
    /// The Kafka consumer-group reset.
    Kafka,
    /// A drill's verification against the source.
    Verify,
    /// A drill's removal of what it restored.
    Cleanup,
}

impl PhaseName {
    pub const fn as_str(self) -> &'static str {
        match self {
            PhaseName::Plan => "plan",
            PhaseName::Prepare => "prepare",
            PhaseName::Load => "load",
            PhaseName::Replay => "replay",
            PhaseName::Indexes => "indexes",
            PhaseName::Users => "users",
            PhaseName::KafkaPlan => "kafka-plan",
            PhaseName::Kafka => "kafka",
            PhaseName::Verify => "verify",
            PhaseName::Cleanup => "cleanup",
        }
    }
}

/// One phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub seconds: f64,
}

/// Told of each phase as it starts and ends (a progress display, a drill's clock).
pub trait Observer: Send + Sync {
    fn phase_started(&self, _phase: PhaseName) {}
    fn phase_done(&self, _phase: PhaseName, _seconds: f64) {}
}

/// An observer that only logs.
pub struct Quiet;
impl Observer for Quiet {}

/// The monitor shows the phases it is told of.
impl Observer for Monitor {
    fn phase_started(&self, phase: PhaseName) {
        self.started(phase.as_str());
    }
    fn phase_done(&self, phase: PhaseName, seconds: f64) {
        self.done(phase.as_str(), seconds);
    }
}

/// Counters a display can read while a restore (or a drill, or `verify-data`) runs, with the
/// totals each phase plans.
#[derive(Debug, Default)]
pub struct Progress {
    /// Documents and bytes inserted by the load.
    pub load: Arc<LoadProgress>,
    /// Oplog entries read by replay.
    pub entries: AtomicU64,
    /// Indexes built, of those recorded; the running build as the server reports it.
    pub indexes: Arc<Meter>,
    /// Namespaces compared by verification; the one being compared.
    pub verify: Arc<Meter>,
    planned: Mutex<Planned>,
}

/// What the plan says the load and replay have to do.
#[derive(Debug, Default, Clone, Copy)]
struct Planned {
    documents: u64,
    bytes: u64,
    /// Entries of the chosen oplog segments: replay reads at most these.
    entries: u64,
}

impl Progress {
    /// Takes the load's and replay's totals from `plan`.
    pub fn plan(&self, plan: &RestorePlan) {
        let collections = || plan.collections.iter().map(|c| &c.entry);
        *self
            .planned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Planned {
            documents: collections().map(|c| c.count).sum(),
            bytes: collections().map(|c| c.bytes).sum(),
            entries: plan.ops_upper_bound,
        };
    }
}

impl Gauge for Progress {
    fn reading(&self, phase: &str) -> Option<Reading> {
        let planned = *self
            .planned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match phase {
            p if p == PhaseName::Load.as_str() => Some(Reading {
                done: self.load.documents.load(Relaxed),
                total: Some(planned.documents),
                unit: "docs",
                bytes: Some(self.load.bytes.load(Relaxed)),
                bytes_total: Some(planned.bytes),
                ..Reading::default()
            }),
            p if p == PhaseName::Replay.as_str() => Some(Reading {
                done: self.entries.load(Relaxed),
                total: Some(planned.entries),
                at_most: true,
                unit: "entries",
                ..Reading::default()
            }),
            p if p == PhaseName::Indexes.as_str() => Some(self.indexes.reading("indexes")),
            p if p == PhaseName::Verify.as_str() => Some(self.verify.reading("namespaces")),
            _ => None,
        }
    }
}

/// The Kafka step of a restore.
#[derive(Debug, Clone)]
pub struct KafkaStep {
    pub options: KafkaResetOptions,
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
    /// Secondary indexes built after replay.
    pub indexes: u64,
    /// The newest oplog entry applied: the restored state is the source's just after it.
    #[serde(skip)]
    pub restored_to: OplogTs,
    /// Users and roles merged into the target's (`--restore-users-and-roles` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_and_roles: Option<UsersAndRolesStats>,
    /// What an interrupted restore had done and this one did not do again (`--resume` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<Resumed>,
    /// The Kafka reset (or, for a drill, its dry run): `None` without Kafka.
    #[serde(skip)]
    pub kafka: Option<Result<KafkaResetReport, KafkaFailure>>,
    pub phases: Vec<Phase>,
    pub seconds: f64,
}

/// What a resumed restore took over from the interrupted one (`crate::journal`).
#[derive(Debug, Clone, Serialize)]
pub struct Resumed {
    /// The phase the interrupted restore had reached.
    pub phase: &'static str,
    /// Snapshot parts it had loaded completely.
    pub parts_skipped: u64,
    /// Oplog writes and catalog commands it had applied.
    pub writes_skipped: u64,
    pub commands_skipped: u64,
    /// Collections whose indexes it had built.
    pub index_builds_skipped: u64,
}

/// How users and roles are merged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UsersMerge {
    /// Into the target's, leaving what it has (`mc-restore --restore-users-and-roles`).
    #[default]
    Merge,
    /// As [`UsersMerge::Merge`], recording what was added so a drill's cleanup removes exactly
    /// that; users and roles an earlier drill left are removed first.
    Recorded,
}

/// Options of a restore run beyond the plan.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub drop: bool,
    /// Continue the interrupted restore whose journal is on the target (`--resume`): the plan
    /// must be the same; finished parts, applied writes and built indexes are not done again.
    pub resume: bool,
    pub load: LoadSettings,
    pub replay: ReplaySettings,
    pub users: UsersMerge,
    /// Reset Kafka consumer groups to the same point afterwards (with `dry_run` in its options:
    /// only plan the reset, as drills do).
    pub kafka: Option<KafkaStep>,
}

/// Why the Kafka part of a restore failed after MongoDB was restored, and exactly how far it
/// got.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KafkaFailure {
    /// The error, one line.
    pub error: String,
    /// Groups committed and read back before the error.
    pub reset: Vec<String>,
    /// Groups left as they were (the plan's groups, or the patterns when planning failed).
    pub not_reset: Vec<String>,
    /// The `mc-restore kafka-offsets` command that resets the groups not reset (filled in by
    /// the command line, which knows how it was called).
    pub retry: String,
}

/// The Kafka point of a restore: the same as MongoDB's; `latest` is pinned to the newest oplog
/// entry the restore applies, so the offsets are never newer than the restored database and a
/// retry (`kafka-offsets --at ts:…`) selects the same capture.
pub fn kafka_point(plan: &RestorePlan, point: RestorePoint) -> RestorePoint {
    match point {
        RestorePoint::Latest => RestorePoint::Exact(plan.cut.bound),
        other => other,
    }
}

/// Times phases and tells the observer.
struct Clock<'a> {
    observer: &'a dyn Observer,
    started: Instant,
    lap: Instant,
    phases: Vec<Phase>,
}

impl Clock<'_> {
    fn start(&mut self, name: PhaseName) {
        self.lap = Instant::now();
        self.observer.phase_started(name);
    }

    fn done(&mut self, name: PhaseName) {
        let seconds = self.lap.elapsed().as_secs_f64();
        tracing::debug!(phase = name.as_str(), seconds, "phase done");
        self.phases.push(Phase {
            name: name.as_str(),
            seconds,
        });
        self.observer.phase_done(name, seconds);
    }
}

/// Restores `plan` into `target`, then resets or plans Kafka as `options.kafka` asks.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    repo: &Repository,
    target: &Client,
    plan: &RestorePlan,
    point: RestorePoint,
    map: &NamespaceMap,
    options: &RestoreOptions,
    progress: Arc<Progress>,
    observer: &dyn Observer,
) -> Result<RestoreSummary, RestoreError> {
    progress.plan(plan);
    let now = Instant::now();
    let mut clock = Clock {
        observer,
        started: now,
        lap: now,
        phases: Vec::new(),
    };
    let kafka_at = kafka_point(plan, point);
    // Planned before MongoDB is touched (read-only in Kafka too): no offsets at T, a pattern
    // matching no recorded group, an unreachable cluster or a missing partition fail here.
    if let Some(step) = options.kafka.as_ref().filter(|s| !s.options.dry_run) {
        kafka::plan(
            repo,
            &plan.source,
            KafkaPoint::from(kafka_at),
            &step.options,
        )
        .await
        .map_err(|source| RestoreError::KafkaPlan {
            point: kafka_at.to_string(),
            source,
        })?;
    }

    clock.start(PhaseName::Prepare);
    let identity = Identity::of(plan, map);
    // The journal (crate::journal): resuming, the interrupted restore's, which must be this
    // one, and the target is left as it is; otherwise a new one, after the safety check (an
    // interrupted restore's journal refuses a restore from the start without --drop).
    let (journal, dropped) = if options.resume {
        let journal = Journal::resume(target, &identity).await?;
        if let Some(was) = journal.resumed() {
            tracing::info!(interrupted = %was.describe(), "resuming the interrupted restore");
        }
        (journal, Vec::new())
    } else {
        Journal::check_fresh(target, &identity, options.drop).await?;
        let dropped = prepare(target, map, options.drop).await?;
        if map.users_and_roles() {
            match options.users {
                UsersMerge::Merge => crate::users::clear_staging(target).await?,
                UsersMerge::Recorded => {
                    let removed = crate::users::remove_added(target)
                        .await
                        .map_err(RestoreError::DrillUsers)?;
                    if !removed.is_empty() {
                        tracing::info!(removed = %removed.join(", "), "users and roles an earlier drill left on the target removed");
                    }
                }
            }
        }
        let journal =
            Journal::start(target, &identity, &plan.point, options.replay.workers).await?;
        (journal, dropped)
    };
    clock.done(PhaseName::Prepare);

    clock.start(PhaseName::Load);
    let loaded = load(
        repo,
        target,
        plan,
        options.load,
        progress.load.clone(),
        &journal,
    )
    .await?;
    if !journal.load_finished() {
        journal.reached(JournalPhase::Replay).await?;
    }
    clock.done(PhaseName::Load);

    let mut catalog = loaded.catalog;
    let replay_stats = match journal.pending_indexes() {
        // Resuming after replay ended: the indexes it left are in the journal.
        Some(pending) if journal.phase() >= JournalPhase::Indexes => {
            catalog = TargetCatalog::default();
            for (ns, specs) in &pending.indexes {
                catalog.loaded(ns, &mongodb::bson::Document::new(), specs.clone());
            }
            ReplayStats {
                last_applied: pending.last_applied,
                ..ReplayStats::default()
            }
        }
        _ => {
            clock.start(PhaseName::Replay);
            let entries = progress.clone();
            let stats = replay(
                repo,
                target,
                plan,
                map,
                ReplaySettings {
                    workers: journal.workers(),
                    ..options.replay
                },
                &mut catalog,
                &journal,
                move |n| entries.entries.store(n, Relaxed),
            )
            .await?;
            journal
                .replay_finished(&PendingIndexes {
                    indexes: catalog
                        .pending_indexes()
                        .map(|(ns, specs)| (ns.clone(), specs.clone()))
                        .collect(),
                    last_applied: stats.last_applied,
                })
                .await?;
            clock.done(PhaseName::Replay);
            stats
        }
    };
    let index_builds_skipped = catalog
        .pending_indexes()
        .filter(|(ns, _)| journal.indexes_built(ns))
        .count() as u64;

    let pending: Vec<(String, u64)> = catalog
        .pending_indexes()
        .map(|(ns, specs)| (ns.clone(), specs.len() as u64))
        .collect();
    progress.indexes.plan(pending.iter().map(|(_, n)| n).sum());
    // The server's own account of each build (its stage, how far its scan is), polled on
    // another connection; a time-series collection's indexes are built on its buckets.
    let builds = progress::indexes::watch(
        target.clone(),
        pending
            .iter()
            .flat_map(|(ns, _)| progress::indexes::build_namespaces(ns))
            .collect(),
        progress.indexes.clone(),
    );
    clock.start(PhaseName::Indexes);
    // Counted as each collection's build ends, so the count moves during the phase.
    let meter = progress.indexes.clone();
    let indexes = catalog
        .build_indexes(target, options.load.workers, &journal, &|n| meter.add(n))
        .await
        .map_err(ReplayError::from)?;
    drop(builds);
    progress.indexes.set_step(None);
    clock.done(PhaseName::Indexes);

    let users_and_roles = if map.users_and_roles() {
        journal.reached(JournalPhase::Users).await?;
        clock.start(PhaseName::Users);
        let merged = match options.users {
            UsersMerge::Merge => crate::users::merge(target).await?,
            UsersMerge::Recorded => crate::users::merge_recording(target)
                .await
                .map_err(RestoreError::DrillUsers)?,
        };
        clock.done(PhaseName::Users);
        Some(merged)
    } else {
        None
    };
    // MongoDB is restored: the journal goes (a Kafka reset that fails after this is retried
    // with `mc-restore kafka-offsets`, not resumed).
    journal.finish().await?;
    let resumed = journal.resumed().map(|was| Resumed {
        phase: was.phase.as_str(),
        parts_skipped: loaded.parts_skipped,
        writes_skipped: replay_stats.resumed_writes,
        commands_skipped: replay_stats.resumed_commands,
        index_builds_skipped,
    });

    let kafka = match &options.kafka {
        Some(step) if step.options.dry_run => {
            clock.start(PhaseName::KafkaPlan);
            let planned = kafka::plan(
                repo,
                &plan.source,
                KafkaPoint::from(kafka_at),
                &step.options,
            )
            .await
            .map(|plan| KafkaResetReport {
                dry_run: true,
                plan,
                committed: 0,
            })
            .map_err(|e| KafkaFailure {
                error: e.to_string(),
                reset: Vec::new(),
                not_reset: step.options.groups.clone(),
                retry: String::new(),
            });
            clock.done(PhaseName::KafkaPlan);
            Some(planned)
        }
        Some(step) => {
            clock.start(PhaseName::Kafka);
            let reset = reset_kafka(repo, &plan.source, kafka_at, &step.options).await;
            clock.done(PhaseName::Kafka);
            Some(reset)
        }
        None => None,
    };

    Ok(RestoreSummary {
        source: plan.source.clone(),
        point: plan.point.clone(),
        snapshot: plan.snapshot.id.clone(),
        dropped,
        load: loaded.stats,
        restored_to: replay_stats.last_applied.unwrap_or(plan.replay_after),
        replay: replay_stats,
        indexes,
        users_and_roles,
        resumed,
        kafka,
        phases: clock.phases,
        seconds: clock.started.elapsed().as_secs_f64(),
    })
}

/// Re-plans against the cluster as it is now (the MongoDB restore may have taken hours) and
/// commits, recording which groups were reset.
async fn reset_kafka(
    repo: &Repository,
    source: &str,
    point: RestorePoint,
    options: &KafkaResetOptions,
) -> Result<KafkaResetReport, KafkaFailure> {
    let plan = kafka::plan(repo, source, KafkaPoint::from(point), options)
        .await
        .map_err(|e| KafkaFailure {
            error: e.to_string(),
            reset: Vec::new(),
            not_reset: options.groups.clone(),
            retry: String::new(),
        })?;
    let groups: Vec<String> = plan.groups.iter().map(|g| g.group.clone()).collect();
    let reset = Arc::new(Mutex::new(Vec::new()));
    kafka::apply_recording(plan, options, reset.clone())
        .await
        .map_err(|e| {
            let reset = reset
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            KafkaFailure {
                error: e.to_string(),
                not_reset: groups.into_iter().filter(|g| !reset.contains(g)).collect(),
                reset,
                retry: String::new(),
            }
        })
}
