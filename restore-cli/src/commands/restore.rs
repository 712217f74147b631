//! `mc-restore --at T --target URI`: plan, then (unless `--dry-run`) prepare the target, load
//! the snapshot and replay the oplog, with a progress bar per phase on a terminal and a final
//! summary (`--json`: machine-readable). With `--kafka-groups`, the Kafka consumer groups are
//! then reset to their offsets at the same point (`mc_restore::kafka`; docs/restore.md,
//! "MongoDB and Kafka together").

use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mc_core::cli::SourceOpts;
use mc_restore::kafka::{self, KafkaPoint, KafkaResetReport};
use mc_restore::load::LoadSettings;
use mc_restore::plan::RestorePlan;
use mc_restore::point::{format_ts, RestorePoint};
use mc_restore::replay::ReplaySettings;
use mc_restore::restore::{
    self, KafkaStep, Observer, PhaseName, Progress, RestoreOptions, UsersMerge,
};
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

    /// Also restore users and roles (with their hashed credentials) as they were at the point,
    /// merged into the target's: users and roles the target already has are kept. Needs a
    /// snapshot taken with the policy's snapshots.include_users_and_roles: true.
    #[arg(long)]
    pub restore_users_and_roles: bool,

    /// Print the plan and an estimated duration; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Parallel replay partitions (default: the target's CPU cores, from `hostInfo`, 2 to 8).
    #[arg(long, value_name = "N")]
    pub replay_workers: Option<usize>,

    /// Oplog entries per applyOps batch.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub replay_batch: usize,

    /// Collections loaded at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub load_collections: usize,

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

    let show = std::io::stderr().is_terminal() && !args.json;
    let docs_total: u64 = plan.collections.iter().map(|c| c.entry.count).sum();
    let display = Arc::new(PhaseDisplay::new(show, docs_total, plan.ops_upper_bound));
    let progress = Arc::new(Progress::default());
    let ticker = {
        let (progress, display) = (progress.clone(), display.clone());
        tokio::spawn(async move {
            loop {
                display.tick(&progress);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let options = RestoreOptions {
        drop: args.drop,
        load: LoadSettings {
            collections: args.load_collections,
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
        &repo, &client, &plan, point, &map, &options, progress, &*display,
    )
    .await;
    ticker.abort();
    display.clear();
    let summary = result.map_err(|e| {
        let context = if e.target_written() {
            format!(
                "restore of source {source} to {} into {} did not complete; the target holds a partial restore: re-run with --drop",
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

/// What a person at a terminal sees during a restore: one line per phase, with a bar, counts
/// in human units, a rate and an ETA where the phase has a known size (load: documents; replay:
/// oplog entries, an upper bound), a spinner with the elapsed time where it has none (index
/// builds, users, Kafka). Without a terminal (or with `--json`), a log line as each phase starts
/// and ends instead.
struct PhaseDisplay {
    bar: ProgressBar,
    docs_total: u64,
    entries_total: u64,
    phase: std::sync::Mutex<Option<PhaseName>>,
}

impl PhaseDisplay {
    fn new(show: bool, docs_total: u64, entries_total: u64) -> Self {
        Self {
            bar: if show {
                ProgressBar::new_spinner()
            } else {
                ProgressBar::hidden()
            },
            docs_total,
            entries_total,
            phase: Default::default(),
        }
    }

    fn tick(&self, progress: &Progress) {
        let phase = *self
            .phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match phase {
            Some(PhaseName::Load) => self.bar.set_position(progress.load.documents.load(Relaxed)),
            Some(PhaseName::Replay) => self.bar.set_position(progress.entries.load(Relaxed)),
            _ => self.bar.tick(),
        }
    }

    fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for PhaseDisplay {
    fn phase_started(&self, phase: PhaseName) {
        *self
            .phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(phase);
        let (len, template) = match phase {
            PhaseName::Load => (
                Some(self.docs_total),
                "{prefix:8} {bar:30} {human_pos}/{human_len} documents  {rate}  ETA {eta}",
            ),
            PhaseName::Replay => (
                Some(self.entries_total),
                "{prefix:8} {bar:30} {human_pos}/{human_len} oplog entries (at most)  {rate}  ETA {eta}",
            ),
            _ => (None, "{prefix:8} {spinner} {elapsed}"),
        };
        if self.bar.is_hidden() {
            tracing::info!(phase = phase.as_str(), "phase started");
            return;
        }
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.bar.set_style(style.with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}/s", human_count(state.per_sec()));
                },
            ));
        }
        self.bar.reset();
        self.bar.set_length(len.unwrap_or(0));
        self.bar.set_prefix(phase.as_str());
    }

    fn phase_done(&self, phase: PhaseName, seconds: f64) {
        if self.bar.is_hidden() {
            tracing::info!(phase = phase.as_str(), seconds, "phase done");
        } else {
            self.bar.println(format!(
                "{:8} done in {}",
                phase.as_str(),
                human_seconds(seconds)
            ));
        }
    }
}

/// 68721.9 → "68.7 k"; 950 → "950".
fn human_count(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.1} G", n / 1e9),
        n if n >= 1e6 => format!("{:.1} M", n / 1e6),
        n if n >= 1e3 => format!("{:.1} k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

/// 0.42 → "0.4 s"; 125 → "2 min 5 s"; 7300 → "2 h 1 min".
fn human_seconds(s: f64) -> String {
    let whole = s.round() as u64;
    match whole {
        0..60 => format!("{s:.1} s"),
        60..3600 => format!("{} min {} s", whole / 60, whole % 60),
        _ => format!("{} h {} min", whole / 3600, whole % 3600 / 60),
    }
}
