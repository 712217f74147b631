//! `mc-restore --at T --target URI`: plan, then (unless `--dry-run`) prepare the target, load
//! the snapshot and replay the oplog, with a progress bar per phase on a terminal and a final
//! summary (`--json`: machine-readable).

use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mc_core::cli::SourceOpts;
use mc_restore::load::{LoadProgress, LoadSettings};
use mc_restore::namespaces::NamespaceMap;
use mc_restore::plan::RestorePlan;
use mc_restore::point::{format_ts, RestorePoint};
use mc_restore::replay::ReplaySettings;
use mc_restore::restore::{self, RestoreOptions};
use mc_restore::target;

/// Throughputs the dry-run estimate assumes (measured, docs/performance.md).
const ESTIMATE_LOAD_DOCS_PER_S: f64 = 40_000.0;
const ESTIMATE_REPLAY_OPS_PER_S: f64 = 25_000.0;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Restore point: RFC 3339 time (2026-11-25T10:15:00Z; offsets accepted), `latest`, or an
    /// oplog timestamp ts:SECONDS:INCREMENT. See docs/restore.md for the exact boundary.
    #[arg(long, value_name = "TIME", value_parser = parse_point)]
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

    /// Restore only namespaces matching this pattern (db.coll, * wildcards); repeatable.
    #[arg(long = "ns", value_name = "PATTERN")]
    pub include: Vec<String>,

    /// Leave out namespaces matching this pattern; repeatable.
    #[arg(long = "exclude-ns", value_name = "PATTERN")]
    pub exclude: Vec<String>,

    /// Restore database (or db.collection) FROM under the name given by --ns-to.
    #[arg(long, value_name = "NS", requires = "ns_to")]
    pub ns_from: Option<String>,

    /// The new name for --ns-from.
    #[arg(long, value_name = "NS", requires = "ns_from")]
    pub ns_to: Option<String>,

    /// Drop namespaces in scope that exist on the target first (otherwise such a target is
    /// refused).
    #[arg(long)]
    pub drop: bool,

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
}

pub async fn run(args: RestoreArgs) -> anyhow::Result<i32> {
    let Some(point) = args.at else {
        eprintln!("mc-restore: error: give --at TIME (and --target URI) to restore, or a subcommand; try --help");
        return Ok(2);
    };
    let map = NamespaceMap::new(
        args.include.clone(),
        args.exclude.clone(),
        args.ns_from.clone(),
        args.ns_to.clone(),
    )?;
    if args.target.is_none() && !args.dry_run {
        anyhow::bail!("no --target given: name the MongoDB to restore into (mongodb://host:port/?replicaSet=…), or pass --dry-run to see the plan");
    }
    let (repo, source) = args.source.open().await?;
    let plan = RestorePlan::build(&repo, &source, point, args.snapshot.as_deref(), &map)
        .await
        .with_context(|| format!("planning the restore of source {source}"))?;
    if args.dry_run {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!(
                "{}",
                plan.describe(ESTIMATE_LOAD_DOCS_PER_S, ESTIMATE_REPLAY_OPS_PER_S)
            );
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
    let load_bar = bar(
        show,
        docs_total,
        "load   {bar:30} {pos}/{len} docs {per_sec} {eta}",
    );
    let replay_bar = bar(
        show,
        plan.ops_upper_bound,
        "replay {bar:30} {pos}/{len} oplog entries {per_sec} {eta}",
    );
    let progress = Arc::new(LoadProgress::default());
    let ticker = {
        let (progress, load_bar) = (progress.clone(), load_bar.clone());
        tokio::spawn(async move {
            loop {
                load_bar.set_position(progress.documents.load(Relaxed));
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
    };
    let rb = replay_bar.clone();
    let result = restore::run(&repo, &client, &plan, &map, &options, progress, move |n| {
        if n % 1024 == 0 {
            rb.set_position(n);
        }
    })
    .await;
    ticker.abort();
    load_bar.finish_and_clear();
    replay_bar.finish_and_clear();
    let summary = result.with_context(|| {
        format!(
            "restore of source {source} to {} into {} did not complete; the target holds a partial restore: re-run with --drop",
            plan.point,
            target::redact(uri)
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
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
        for p in &summary.phases {
            println!("  {:8} {:.2} s", p.name, p.seconds);
        }
    }
    Ok(0)
}

fn parse_point(s: &str) -> Result<RestorePoint, mc_restore::point::BadPoint> {
    s.parse()
}

fn bar(show: bool, len: u64, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}
