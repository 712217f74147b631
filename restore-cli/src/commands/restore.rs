//! `mc-restore --at T --target URI`: plan, then (unless `--dry-run`) prepare the target, load
//! the snapshot and replay the oplog, with each phase's progress shown as it runs
//! (`commands::progress`) and a final summary (`--json`: machine-readable). With `--kafka-groups`, the Kafka consumer groups are
//! then reset to their offsets at the same point (`mc_restore::kafka`; docs/restore.md,
//! "MongoDB and Kafka together").

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use mc_core::cli::SourceOpts;
use mc_restore::kafka::{self, KafkaPoint, KafkaResetReport};
use mc_restore::load::LoadSettings;
use mc_restore::plan::RestorePlan;
use mc_restore::point::{format_ts, RestorePoint};
use mc_restore::replay::ReplaySettings;
use mc_restore::restore::{self, KafkaStep, Progress, RestoreOptions, UsersMerge};
use mc_restore::target;

use super::kafka_args;

/// Throughputs the dry-run estimate assumes (measured, docs/performance.md).
const ESTIMATE_LOAD_DOCS_PER_S: f64 = 40_000.0;
const ESTIMATE_REPLAY_OPS_PER_S: f64 = 25_000.0;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Restore point: RFC 3339 time (2026-11-25T10:15:00Z; offsets accepted), `latest`, or an
    /// oplog timestamp ts:SECONDS:INCREMENT. See docs/restore.md for the exact boundary.
    #[arg(long, value_name = "TIME", value_parser = super::parse_point)]
    pub at: Option<RestorePoint>,

    /// MongoDB to restore into (mongodb://…). Required unless --dry-run.
    #[arg(
        long,
        value_name = "URI",
        env = "MC_RESTORE_TARGET",
        hide_env_values = true
    )]
    pub target: Option<String>,

    #[command(flatten)]
    pub source: SourceOpts,

    /// Use this snapshot instead of the newest usable one.
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,

    #[command(flatten)]
    pub namespaces: super::NamespaceArgs,

    /// Drop namespaces in scope that exist on the target first (otherwise such a target is
    /// refused).
    #[arg(long)]
    pub drop: bool,

    /// Continue the restore interrupted on this target (killed, or the target restarted), from
    /// the journal it keeps there (admin.mc_restore_journal.<key>): give the same --at,
    /// --snapshot and namespace options. Finished parts, applied oplog entries and built
    /// indexes are not done again; a different plan is refused.
    #[arg(long, conflicts_with_all = ["drop", "dry_run"])]
    pub resume: bool,

    /// Also restore users and roles (with their hashed credentials) as they were at the point,
    /// merged into the target's: users and roles the target already has are kept. Needs a
    /// snapshot taken with the policy's snapshots.include_users_and_roles: true.
    #[arg(long)]
    pub restore_users_and_roles: bool,

    /// Print the plan and an estimated duration; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the final summary as JSON on stdout, and progress as JSON events on stderr (one
    /// object per line).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub progress: super::progress::ProgressArgs,

    /// Parallel replay partitions (default: the target's CPU cores, from `hostInfo`, 2 to 8).
    #[arg(long, value_name = "N")]
    pub replay_workers: Option<usize>,

    /// Oplog entries per applyOps batch.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub replay_batch: usize,

    /// Snapshot parts loaded at once, across collections, and collections whose indexes are
    /// built at once (default: the target's CPU cores, from `hostInfo`, 2 to 8).
    #[arg(long, alias = "load-collections", value_name = "N")]
    pub load_workers: Option<usize>,

    /// After the MongoDB restore succeeds, reset the Kafka consumer groups matching this
    /// pattern (`*`, `?`) to their committed offsets at the same point; repeatable or
    /// comma-separated (as `kafka-offsets --groups`).
    #[arg(long, value_name = "GLOB", value_delimiter = ',')]
    pub kafka_groups: Vec<String>,

    /// Brokers of the Kafka cluster to reset (host:port[,host:port]); default: the policy's
    /// kafka.bootstrap_servers.
    #[arg(long, value_name = "HOST:PORT", requires = "kafka_groups")]
    pub kafka_bootstrap: Option<String>,

    #[command(flatten)]
    pub kafka_security: super::kafka_security::KafkaSecurityArgs,

    /// Wait (default up to 5m) for the groups' members to leave instead of refusing active
    /// groups.
    #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "5m",
        value_parser = kafka_args::parse_wait, requires = "kafka_groups")]
    pub kafka_wait_inactive: Option<Duration>,

    /// Commit the offsets recorded for Kafka topic SOURCE to topic TARGET; repeatable.
    #[arg(
        long = "topic-map",
        value_name = "SOURCE=TARGET",
        requires = "kafka_groups"
    )]
    pub topic_map: Vec<String>,
}

/// Longest wait for one Kafka request in a combined restore (as `kafka-offsets --timeout`).
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: RestoreArgs) -> anyhow::Result<i32> {
    let Some(point) = args.at else {
        eprintln!("mc-restore: error: give --at TIME (and --target URI) to restore, or a subcommand; try --help");
        return Ok(2);
    };
    let mut map = args.namespaces.map()?;
    if args.restore_users_and_roles {
        map = map.with_users_and_roles()?;
    }
    if args.target.is_none() && !args.dry_run {
        anyhow::bail!("no --target given: name the MongoDB to restore into (mongodb://host:port/?replicaSet=…), or pass --dry-run to see the plan");
    }
    let kafka_options = if args.kafka_groups.is_empty() {
        if let Some((flag, _)) = args.kafka_security.given().first() {
            anyhow::bail!("{flag} is for the Kafka reset: add --kafka-groups GLOB, or drop {flag}");
        }
        None
    } else {
        let cluster = kafka_args::resolve_cluster(
            args.kafka_bootstrap.as_deref(),
            &args.source,
            "--kafka-bootstrap",
            &args.kafka_security,
        )?;
        Some(kafka_args::reset_options(
            cluster,
            &args.kafka_groups,
            &args.topic_map,
            args.kafka_wait_inactive,
            KAFKA_TIMEOUT,
            args.dry_run,
        )?)
    };
    let (repo, source) = args.source.open().await?;
    let point = match (args.resume, point, args.target.as_deref()) {
        // Resuming `latest` means the interrupted restore's `latest`, not the newest point now.
        (true, RestorePoint::Latest, Some(uri)) => {
            let client = target::connect(uri).await?;
            match mc_restore::journal::interrupted(&client, &map.describe())
                .await?
                .and_then(|was| was.latest_as_exact())
            {
                Some(exact) => {
                    eprintln!("resuming: latest is the interrupted restore's, {exact}");
                    exact
                }
                None => point,
            }
        }
        _ => point,
    };
    let plan = RestorePlan::build(&repo, &source, point, args.snapshot.as_deref(), &map)
        .await
        .with_context(|| format!("planning the restore of source {source}"))?;
    let kafka_point = restore::kafka_point(&plan, point);
    if args.dry_run {
        // Planned read-only, in Kafka too: no offsets at T, a pattern matching no recorded
        // group, an unreachable cluster or a missing partition fail here.
        let kafka_report = match &kafka_options {
            Some(options) => Some(KafkaResetReport {
                dry_run: true,
                plan: kafka::plan(&repo, &source, KafkaPoint::from(kafka_point), options)
                    .await
                    .with_context(|| {
                        format!("planning the Kafka consumer-group reset at {kafka_point}")
                    })?,
                committed: 0,
            }),
            None => None,
        };
        if args.json {
            let mut value = serde_json::to_value(&plan)?;
            if let (Some(report), Some(object)) = (&kafka_report, value.as_object_mut()) {
                object.insert("kafka".into(), serde_json::to_value(report)?);
            }
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            print!(
                "{}",
                plan.describe(ESTIMATE_LOAD_DOCS_PER_S, ESTIMATE_REPLAY_OPS_PER_S)
            );
            if let Some(report) = &kafka_report {
                println!();
                kafka_args::print_plan(&source, &report.plan);
                println!("dry run: nothing restored, no Kafka offset committed");
            }
        }
        return Ok(0);
    }
    let uri = args.target.as_deref().unwrap_or_default();
    let client = target::connect(uri).await?;
    eprintln!(
        "restoring source {source} to {} from snapshot {} into {}",
        plan.point,
        plan.snapshot.id,
        target::redact(uri)
    );

    let progress = Arc::new(Progress::default());
    let (monitor, ticker) = args.progress.start(args.json, progress.clone());
    let options = RestoreOptions {
        drop: args.drop,
        resume: args.resume,
        load: LoadSettings {
            workers: match args.load_workers {
                Some(n) => n,
                None => target::load_workers(&client).await,
            },
            ..LoadSettings::default()
        },
        replay: ReplaySettings {
            batch: args.replay_batch,
            workers: match args.replay_workers {
                Some(n) => n,
                None => target::replay_workers(&client).await,
            },
        },
        users: UsersMerge::Merge,
        kafka: kafka_options.clone().map(|options| KafkaStep { options }),
    };
    let result = restore::run(
        &repo, &client, &plan, point, &map, &options, progress, &*monitor,
    )
    .await;
    drop(ticker);
    monitor.finish();
    let summary = result.map_err(|e| {
        let context = if e.target_written() {
            format!(
                "restore of source {source} to {} into {} did not complete; the target holds a partial restore: continue it with the same command and --resume, or start over with --drop",
                plan.point,
                target::redact(uri)
            )
        } else {
            format!(
                "restore of source {source} to {} into {} refused; nothing was written",
                plan.point,
                target::redact(uri)
            )
        };
        anyhow::Error::new(e).context(context)
    })?;
    let kafka = match (&kafka_options, summary.kafka.clone()) {
        (Some(options), Some(result)) => Some(result.map_err(|mut failure| {
            failure.retry = kafka_args::command_line(
                &kafka_point.to_string(),
                &failure.not_reset,
                options,
                &args.source,
                &source,
                &args.kafka_security,
            );
            failure
        })),
        _ => None,
    };
    if args.json {
        let mut value = serde_json::to_value(&summary)?;
        if let (Some(kafka), Some(object)) = (&kafka, value.as_object_mut()) {
            let field = match kafka {
                Ok(report) => serde_json::to_value(report)?,
                Err(failure) => serde_json::to_value(failure)?,
            };
            object.insert("kafka".into(), field);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let r = &summary.replay;
        println!(
            "restored source {source} to {}: {} collections, {} documents loaded; {} writes and {} commands replayed ({} transactions){}; state is the source's just after {} ({:.1} s)",
            summary.point,
            summary.load.collections,
            summary.load.documents,
            r.applied_writes,
            r.applied_commands,
            r.decoded.transactions,
            if r.open_transactions > 0 {
                format!(", {} uncommitted at the point left out", r.open_transactions)
            } else {
                String::new()
            },
            r.last_applied
                .map(format_ts)
                .unwrap_or_else(|| format!("the snapshot's end {}", format_ts(plan.snapshot.end))),
            summary.seconds
        );
        if let Some(u) = &summary.users_and_roles {
            println!(
                "users and roles: {} users, {} roles restored{}",
                u.users.len(),
                u.roles.len(),
                if u.kept_existing_users.is_empty() && u.kept_existing_roles.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; kept the target's own {} (same names, left unchanged)",
                        u.kept_existing_users
                            .iter()
                            .chain(&u.kept_existing_roles)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
        }
        for p in &summary.phases {
            println!("  {:8} {:.2} s", p.name, p.seconds);
        }
        if let Some(Ok(report)) = &kafka {
            for g in &report.plan.groups {
                let rewound: i64 = g
                    .partitions
                    .iter()
                    .filter_map(|p| p.delta)
                    .filter(|d| *d < 0)
                    .sum();
                println!(
                    "kafka group {}: {} partition(s) reset to the offsets captured at {}{}{}",
                    g.group,
                    g.partitions.len(),
                    g.captured_at,
                    g.cluster_time
                        .map(|t| format!(" (cluster time {})", t.arg()))
                        .unwrap_or_default(),
                    if rewound < 0 {
                        format!(", {} message(s) to re-read", -rewound)
                    } else {
                        String::new()
                    }
                );
            }
            for w in &report.plan.warnings {
                println!("warning: kafka: {w}");
            }
        }
    }
    match kafka {
        Some(Err(failure)) => {
            eprintln!(
                "mc-restore: error: MongoDB is restored (source {source} to {} into {}), but resetting the Kafka consumer groups failed: {}\n  groups reset: {}\n  groups NOT reset: {}\n  to reset them (stop their consumers first), run:\n    {}",
                summary.point,
                target::redact(uri),
                failure.error,
                list_or_none(&failure.reset),
                list_or_none(&failure.not_reset),
                failure.retry,
            );
            Ok(1)
        }
        _ => Ok(0),
    }
}

fn list_or_none(groups: &[String]) -> String {
    if groups.is_empty() {
        "none".into()
    } else {
        groups.join(", ")
    }
}
