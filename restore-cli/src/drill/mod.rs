//! Recovery drills: a real restore into a scratch MongoDB, timed phase by phase, verified against
//! the source at the restored cluster time, judged against the policy's RTO and RPO, and
//! recorded as a `DrillReport` (JSON, Markdown, HTML) in the repository under `drills/`.
//!
//! With users and roles asked for (`drills.restore_users_and_roles`, `--restore-users-and-roles`)
//! the drill also restores and verifies them ([`users`]).
//!
//! A drill never fails silently: every problem becomes the report's verdict and reasons, and the
//! exit code says which kind (see [`report::Verdict::exit_code`]).

pub mod report;
pub mod users;

use std::sync::Arc;
use std::time::Instant;

use mc_core::catalog::{Coverage, Repository};
use mc_core::format::{SegmentSpec, StreamKind};
use mc_core::policy::{KafkaCluster, Policy};
use mongodb::bson::doc;
use mongodb::Client;
use serde_json::json;

use crate::namespaces::NamespaceMap;
use crate::namespaces::{ROLES_NS, USERS_NS};
use crate::plan::{PlanError, RestorePlan};
use crate::point::{format_ts, RestorePoint};
use crate::restore::{self, KafkaStep, Observer, PhaseName, Progress, RestoreOptions, UsersMerge};
use crate::target;
use crate::verify_data;
use report::{DrillReport, NamespaceCheck, Objective, PhaseTiming, Verdict, Volumes};

/// What a drill does.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The protected system's name (policy `name`).
    pub system: String,
    pub source_id: String,
    pub point: RestorePoint,
    pub scratch_uri: String,
    /// The live source, to verify against; `None` verifies against the snapshot's record only.
    pub source_uri: Option<String>,
    pub map: NamespaceMap,
    /// Keep the restored data afterwards.
    pub keep: bool,
    /// The scratch target may be the source's own cluster (only with renamed namespaces).
    pub scratch_is_source_cluster: bool,
    pub rto_seconds: f64,
    pub rpo_seconds: f64,
    pub restore: RestoreOptions,
    /// Extra expectations: namespace → SHA-256 its documents must hash to.
    pub expect_sha256: Vec<(String, String)>,
    /// The command line that reproduces the drill (for the report).
    pub command: String,
    /// Plan (never apply) the Kafka consumer-group reset a real restore would make: proves the
    /// offsets at the point are readable and match the cluster. `None`: no Kafka in the policy.
    pub kafka: Option<crate::kafka::KafkaResetOptions>,
}

/// Why the drill a policy describes cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("the policy's drills.restore_users_and_roles: {0}")]
pub struct DrillPolicyError(#[from] crate::namespaces::NamespaceError);

impl DrillOptions {
    /// The drill `policy` describes, built here once for `mc-restore drill --policy` and the
    /// agent's scheduled drills: the policy's system and source, the latest point, restored into
    /// `scratch_uri` with `map` (plus users and roles when `drills.restore_users_and_roles`),
    /// verified against `source_uri`, kept when `drills.keep`, judged against the objectives,
    /// Kafka's reset planned (never applied) on `kafka`, the policy's cluster
    /// ([`Policy::kafka_cluster`]). The URIs come resolved, so that a caller resolves only the
    /// secrets it uses (the agent takes the policy's, `mc-restore drill` its flags' first); the
    /// command line's other choices (point, `--keep`, expectations) override fields afterwards.
    pub fn from_policy(
        policy: &Policy,
        scratch_uri: String,
        source_uri: Option<String>,
        map: NamespaceMap,
        kafka: Option<KafkaCluster>,
    ) -> Result<Self, DrillPolicyError> {
        let drills = policy.drills.as_ref();
        let map = if drills.is_some_and(|d| d.restore_users_and_roles) {
            map.with_users_and_roles()?
        } else {
            map
        };
        Ok(Self {
            system: policy.name.clone(),
            source_id: policy.source.id.clone(),
            point: RestorePoint::Latest,
            scratch_uri,
            source_uri,
            map,
            keep: drills.is_some_and(|d| d.keep),
            scratch_is_source_cluster: false,
            rto_seconds: policy.objectives.rto.as_secs_f64(),
            rpo_seconds: policy.objectives.rpo.as_secs_f64(),
            restore: RestoreOptions::default(),
            expect_sha256: Vec::new(),
            kafka: kafka.map(crate::kafka::KafkaResetOptions::drill_plan),
            command: format!(
                "mc-restore drill --policy {} --scratch <drills.scratch_uri>",
                policy.file().display()
            ),
        })
    }
}

/// The repository key of a drill's report.
pub fn report_key(id: &str) -> String {
    format!("drills/{id}/report.seg")
}

/// Runs a drill and stores its report in the repository. Never returns an error: failures are
/// the report's verdict.
pub async fn run(repo: &Repository, o: &DrillOptions) -> DrillReport {
    run_watched(repo, o, Default::default(), &restore::Quiet).await
}

/// [`run`], counting into `progress` and telling `observer` of every phase as it starts and
/// ends (the restore's, and the drill's own plan, verification and cleanup): what
/// `mc-restore drill` shows as it runs.
pub async fn run_watched(
    repo: &Repository,
    o: &DrillOptions,
    progress: Arc<Progress>,
    observer: &dyn Observer,
) -> DrillReport {
    let started = chrono::Utc::now();
    let id = mc_core::catalog::names::new_snapshot_id(started);
    let mut report = DrillReport {
        schema: report::REPORT_SCHEMA,
        id: id.clone(),
        system: o.system.clone(),
        source: o.source_id.clone(),
        verdict: Verdict::Pass,
        reasons: Vec::new(),
        started: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        finished: String::new(),
        point: o.point.to_string(),
        restored_to: None,
        snapshot: None,
        scratch: target::redact(&o.scratch_uri),
        phases: Vec::new(),
        rto: Objective {
            target_seconds: o.rto_seconds,
            measured_seconds: None,
            projected_seconds: None,
            met: false,
        },
        rpo: Objective {
            target_seconds: o.rpo_seconds,
            measured_seconds: None,
            projected_seconds: None,
            met: false,
        },
        volumes: Volumes::default(),
        verification: Vec::new(),
        command: o.command.clone(),
        repository_key: None,
        kafka: None,
        users_and_roles: None,
    };
    if let Err(e) = drill(repo, o, &mut report, progress, observer).await {
        report.verdict = Verdict::Error;
        report.reasons.push(e);
    }
    report.finished = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let key = report_key(&id);
    match store(repo, &key, &report).await {
        Ok(()) => report.repository_key = Some(key),
        Err(e) => {
            report.verdict = Verdict::Error;
            report
                .reasons
                .push(format!("storing the report in the repository failed: {e}"));
        }
    }
    report
}

async fn store(repo: &Repository, key: &str, report: &DrillReport) -> Result<(), String> {
    let spec = SegmentSpec::new(
        StreamKind::DrillReport,
        key,
        &report.source,
        json!({"drill": report.id}),
    );
    let body = serde_json::to_vec(report).map_err(|e| e.to_string())?;
    repo.put_segment(spec, vec![body])
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Every stored drill report, oldest first.
pub async fn list_reports(repo: &Repository) -> Result<Vec<DrillReport>, String> {
    let mut keys: Vec<String> = repo
        .store()
        .list("drills/")
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with("/report.seg"))
        .collect();
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        out.push(read_report(repo, &key).await?);
    }
    Ok(out)
}

/// One stored report by drill id.
pub async fn read_report(repo: &Repository, key: &str) -> Result<DrillReport, String> {
    let (_, records) = repo.read_segment(key).await.map_err(|e| e.to_string())?;
    let record = records
        .first()
        .ok_or_else(|| format!("{key}: the report object holds no record"))?;
    serde_json::from_slice(record).map_err(|e| format!("{key}: {e}"))
}

/// The drill's clock: every phase, the restore's own among them, from the drill's start; each
/// told to `outer` (a progress display) as it starts and ends.
struct Clock<'a> {
    start: Instant,
    lap: Instant,
    phases: std::sync::Mutex<Vec<PhaseTiming>>,
    outer: &'a dyn Observer,
}

impl<'a> Clock<'a> {
    fn new(outer: &'a dyn Observer) -> Self {
        let now = Instant::now();
        Self {
            start: now,
            lap: now,
            phases: Default::default(),
            outer,
        }
    }

    /// A phase of the drill's own starts.
    fn begin(&self, name: PhaseName) {
        self.outer.phase_started(name);
    }

    /// Records the phase that ran since the last one ended.
    fn phase(&mut self, name: PhaseName) {
        let now = Instant::now();
        let seconds = (now - self.lap).as_secs_f64();
        self.push(name, (self.lap - self.start).as_secs_f64(), seconds);
        self.lap = now;
        self.outer.phase_done(name, seconds);
    }

    fn push(&self, name: PhaseName, start_seconds: f64, seconds: f64) {
        self.phases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(PhaseTiming {
                name: name.as_str().to_owned(),
                start_seconds,
                seconds,
            });
    }
}

/// The restore's phases, as they end, on the drill's clock.
impl Observer for Clock<'_> {
    fn phase_started(&self, phase: PhaseName) {
        self.outer.phase_started(phase);
    }
    fn phase_done(&self, phase: PhaseName, seconds: f64) {
        let start = Instant::now().duration_since(self.start).as_secs_f64() - seconds;
        self.push(phase, start, seconds);
        self.outer.phase_done(phase, seconds);
    }
}

async fn drill(
    repo: &Repository,
    o: &DrillOptions,
    report: &mut DrillReport,
    progress: Arc<Progress>,
    observer: &dyn Observer,
) -> Result<(), String> {
    let mut clock = Clock::new(observer);
    clock.begin(PhaseName::Plan);
    let result = drill_phases(repo, o, report, &mut clock, progress).await;
    report.phases = std::mem::take(
        &mut *clock
            .phases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    result
}

async fn drill_phases(
    repo: &Repository,
    o: &DrillOptions,
    report: &mut DrillReport,
    clock: &mut Clock<'_>,
    progress: Arc<Progress>,
) -> Result<(), String> {
    // RPO at drill time: how far the newest restorable point trails now.
    let coverage = Coverage::load(repo, &o.source_id)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(newest) = coverage.newest_restorable() {
        let lag = (chrono::Utc::now().timestamp() - i64::from(newest.t)).max(0) as f64;
        report.rpo.measured_seconds = Some(lag);
        report.rpo.met = lag <= o.rpo_seconds;
    }
    report.volumes.full_snapshot_bytes = coverage.snapshots.last().map(|s| s.bytes()).unwrap_or(0);

    let plan = RestorePlan::build(repo, &o.source_id, o.point, None, &o.map)
        .await
        .map_err(|e| match e {
            PlanError::UsersAndRolesNotCaptured { snapshot, .. } => format!(
                "the drill restores users and roles (policy field drills.restore_users_and_roles, or --restore-users-and-roles), but no snapshot usable for {} captured them (the one chosen: {snapshot}): set the policy field snapshots.include_users_and_roles: true and take a snapshot (mc-agent snapshot --policy FILE), or set drills.restore_users_and_roles: false",
                o.point
            ),
            e => format!("planning: {e}"),
        })?;
    report.snapshot = Some(plan.snapshot.id.clone());
    report.volumes.fetched_bytes = plan.fetch_bytes;
    clock.phase(PhaseName::Plan);

    let scratch = target::connect(&o.scratch_uri)
        .await
        .map_err(|e| format!("scratch: {e}"))?;
    let source = match &o.source_uri {
        Some(uri) => match verify_data::connect_source(uri).await {
            Ok(c) => Some(c),
            Err(e) => {
                report
                    .reasons
                    .push(format!("the source could not be reached for verification ({e}); verified against the snapshot's record only"));
                None
            }
        },
        None => None,
    };
    if let Some(source) = &source {
        if same_cluster(source, &scratch).await? {
            if !o.scratch_is_source_cluster {
                return Err("the scratch target is the source's own replica set: a drill there could destroy production data. Use a separate MongoDB, or pass --scratch-is-source-cluster together with --ns-from/--ns-to so the drill writes only renamed namespaces".into());
            }
            if !o.map.renames() {
                return Err("--scratch-is-source-cluster needs --ns-from/--ns-to: the drill must not write the source's own namespaces".into());
            }
        }
    }

    // The restore itself: the same path as `mc-restore --at`, into the scratch (dropping what
    // an earlier drill left), with the Kafka reset planned, never applied.
    let mut options = o.restore.clone();
    options.drop = true;
    options.users = UsersMerge::Recorded;
    // As `mc-restore --at` sizes them, so the drill times the restore an operator would run.
    options.replay.workers = target::replay_workers(&scratch).await;
    options.load.workers = target::load_workers(&scratch).await;
    options.kafka = o.kafka.clone().map(|mut k| {
        k.dry_run = true;
        KafkaStep { options: k }
    });
    let restored = restore::run(
        repo,
        &scratch,
        &plan,
        o.point,
        &o.map,
        &options,
        progress.clone(),
        &*clock,
    )
    .await;
    clock.lap = Instant::now();
    clock.begin(PhaseName::Verify);
    let restored = restored.map_err(|e| e.to_string())?;
    report.volumes.collections = restored.load.collections;
    report.volumes.documents = restored.load.documents;
    report.volumes.document_bytes = restored.load.bytes;
    report.volumes.oplog_entries_replayed =
        restored.replay.applied_writes + restored.replay.applied_commands;
    let restored_to = restored.restored_to;
    report.restored_to = Some(format_ts(restored_to));
    let users_and_roles = restored.users_and_roles.clone();
    if let Some(merged) = &users_and_roles {
        report.users_and_roles = serde_json::to_value(merged).ok();
    }
    match &restored.kafka {
        Some(Ok(k)) => {
            report.kafka = Some(json!({
                "groups": k.plan.groups.len(),
                "partitions": k.plan.groups.iter().map(|g| g.partitions.len()).sum::<usize>(),
                "segment": k.plan.segment,
                "warnings": k.plan.warnings,
            }))
        }
        Some(Err(f)) => return Err(format!("Kafka offsets plan (dry run): {}", f.error)),
        None => {}
    }
    let replayed = restored.replay;
    let phases_so_far: Vec<PhaseTiming> = clock
        .phases
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();

    // The RTO is the restore itself: every phase so far (plan through replay, users and the
    // Kafka plan when they ran), not verification or cleanup.
    let restore_seconds: f64 = phases_so_far.iter().map(|p| p.seconds).sum();
    // Load and index builds grow with the data; scale them to the newest snapshot's full size
    // at the throughput this drill measured.
    let load_seconds: f64 = phases_so_far
        .iter()
        .filter(|p| p.name == PhaseName::Load.as_str() || p.name == PhaseName::Indexes.as_str())
        .map(|p| p.seconds)
        .sum();
    let projected = if restored.load.bytes > 0 {
        let scale = report.volumes.full_snapshot_bytes as f64 / restored.load.bytes as f64;
        Some(restore_seconds + load_seconds * (scale - 1.0).max(0.0))
    } else {
        report.reasons.push(
            "no documents were loaded (the snapshot holds none in scope), so the RTO at full size could not be projected from this drill".into(),
        );
        None
    };
    report.rto.measured_seconds = Some(restore_seconds);
    report.rto.projected_seconds = projected;
    report.rto.met =
        restore_seconds <= o.rto_seconds && projected.is_none_or(|p| p <= o.rto_seconds);

    let exact = RestorePoint::Exact(restored_to);
    match &source {
        Some(source) => {
            let at = mongodb::bson::Timestamp {
                time: restored_to.t,
                increment: restored_to.i,
            };
            // Users and roles are compared below, as users and roles: their staging
            // collections are gone after the merge.
            let data = verify_data::verify_counted(
                source,
                &scratch,
                exact,
                at,
                &o.map.without_users_and_roles(),
                &progress.verify,
            )
            .await
            .map_err(|e| format!("verification: {e}"))?;
            for n in &data.namespaces {
                let mut details = n.mismatches.clone();
                details.extend(n.not_verifiable.iter().cloned());
                if let Some(d) = &n.documents {
                    details.push(format!(
                        "{} documents, sha256 {}",
                        d.target_count,
                        short(&d.target_sha256)
                    ));
                    if let Some((_, want)) =
                        o.expect_sha256.iter().find(|(ns, _)| *ns == n.source_ns)
                    {
                        if !d.target_sha256.eq_ignore_ascii_case(want) {
                            details
                                .push(format!("expected sha256 {} (--expect-sha256)", short(want)));
                            report.verification.push(NamespaceCheck {
                                ns: n.source_ns.clone(),
                                method: "source-at-T".into(),
                                status: "mismatch".into(),
                                details,
                            });
                            continue;
                        }
                    }
                }
                report.verification.push(NamespaceCheck {
                    ns: n.source_ns.clone(),
                    method: "source-at-T".into(),
                    status: serde_json::to_value(n.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    details,
                });
            }
            if let Some(merged) = &users_and_roles {
                let checks = users::verify_against_source(source, &scratch, at, merged).await?;
                report.verification.extend(checks);
            }
        }
        None => {
            // The snapshot's record: a collection replay left untouched must hold exactly the
            // snapshot's count and indexes; one replay changed cannot be judged without the
            // source, and the report says so.
            for c in &plan.collections {
                if c.entry.ns == USERS_NS || c.entry.ns == ROLES_NS {
                    continue;
                }
                let check = snapshot_record_check(&scratch, c, &replayed.decoded).await?;
                report.verification.push(check);
            }
            if let Some(merged) = &users_and_roles {
                let checks =
                    users::verify_restored(&scratch, merged, &plan, &replayed.decoded).await?;
                report.verification.extend(checks);
            }
        }
    }
    clock.phase(PhaseName::Verify);

    clock.begin(PhaseName::Cleanup);
    if !o.keep {
        target::prepare(&scratch, &o.map, true)
            .await
            .map_err(|e| format!("cleaning up the scratch target: {e}"))?;
        if o.map.users_and_roles() {
            crate::users::remove_added(&scratch)
                .await
                .map_err(|e| format!("cleaning up the scratch target: {e}"))?;
        }
    }
    clock.phase(PhaseName::Cleanup);

    let failed: Vec<String> = report
        .verification
        .iter()
        .filter(|c| c.status == "mismatch")
        .map(|c| format!("{} differs: {}", c.ns, c.details.join("; ")))
        .collect();
    let unverified: Vec<String> = report
        .verification
        .iter()
        .filter(|c| c.status == "not_verifiable")
        .map(|c| format!("{} not verified: {}", c.ns, c.details.join("; ")))
        .collect();
    if !failed.is_empty() {
        report.verdict = Verdict::VerificationFailed;
        report.reasons.extend(failed);
    } else if report.rto.met && report.rpo.met {
        if !unverified.is_empty() {
            report.verdict = Verdict::NotFullyVerified;
            report.reasons.extend(unverified);
        }
    } else {
        report.verdict = Verdict::TargetMissed;
        if !report.rto.met {
            report.reasons.push(format!(
                "RTO missed: restore took {:.1} s (projected {} at full size) against {:.0} s",
                restore_seconds,
                projected.map_or("not computed".into(), |p| format!("{p:.1} s")),
                o.rto_seconds
            ));
        }
        if !report.rpo.met {
            report.reasons.push(format!(
                "RPO missed: {} against {:.0} s",
                report.rpo.measured_seconds.map_or_else(
                    || "no restorable point was found".into(),
                    |lag| format!("the newest restorable point trailed now by {lag:.0} s")
                ),
                o.rpo_seconds
            ));
        }
        report.reasons.extend(unverified);
    }
    Ok(())
}

/// Whether two clients reach the same replica set (same set name and a shared member).
async fn same_cluster(a: &Client, b: &Client) -> Result<bool, String> {
    let hello = |c: Client| async move {
        c.database("admin")
            .run_command(doc! {"hello": 1})
            .await
            .map_err(|e| format!("hello: {e}"))
    };
    let (ha, hb) = (hello(a.clone()).await?, hello(b.clone()).await?);
    let hosts = |h: &mongodb::bson::Document| -> Vec<String> {
        h.get_array("hosts")
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (set_a, set_b) = (ha.get_str("setName").ok(), hb.get_str("setName").ok());
    let shared = hosts(&ha).iter().any(|h| hosts(&hb).contains(h));
    Ok(set_a.is_some() && set_a == set_b && shared)
}

/// Checks one collection against what the snapshot recorded.
async fn snapshot_record_check(
    scratch: &Client,
    c: &crate::plan::PlannedCollection,
    replayed: &crate::replay::entry::DecodeStats,
) -> Result<NamespaceCheck, String> {
    let (db, coll) = c.target_ns.split_once('.').unwrap_or((&c.target_ns, ""));
    let check = |status: &str, details: Vec<String>| NamespaceCheck {
        ns: c.entry.ns.clone(),
        method: "snapshot-record".into(),
        status: status.into(),
        details,
    };
    if !replayed.untouched(&c.target_ns) {
        return Ok(check(
            "not_verifiable",
            vec!["changed by the replayed oplog; without the source only the snapshot's state is known".into()],
        ));
    }
    if c.entry.kind == "view" {
        return Ok(check(
            "not_verifiable",
            vec!["a view: no documents to count".into()],
        ));
    }
    let data = if c.entry.kind == "timeseries" {
        format!("system.buckets.{coll}")
    } else {
        coll.to_owned()
    };
    let database = scratch.database(db);
    let count = database
        .collection::<mongodb::bson::Document>(&data)
        .count_documents(doc! {})
        .await
        .map_err(|e| format!("verification: counting {}: {e}", c.target_ns))?;
    let mut names: Vec<String> = Vec::new();
    if c.entry.kind == "collection" {
        use futures::TryStreamExt;
        let mut cursor = database
            .run_cursor_command(doc! {"listIndexes": coll})
            .await
            .map_err(|e| format!("verification: listing indexes of {}: {e}", c.target_ns))?;
        while let Some(spec) = cursor
            .try_next()
            .await
            .map_err(|e| format!("verification: listing indexes of {}: {e}", c.target_ns))?
        {
            names.push(spec.get_str("name").unwrap_or_default().to_owned());
        }
    }
    let recorded: Vec<String> = c
        .entry
        .indexes
        .iter()
        .filter_map(|i| i["name"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&String> = recorded.iter().filter(|n| !names.contains(n)).collect();
    let mut details = vec![format!(
        "{count} documents (snapshot recorded {})",
        c.entry.count
    )];
    let ok = count == c.entry.count && (c.entry.kind != "collection" || missing.is_empty());
    if !missing.is_empty() && c.entry.kind == "collection" {
        details.push(format!("indexes missing: {missing:?}"));
    }
    Ok(check(if ok { "match" } else { "mismatch" }, details))
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}
