//! `mc-restore kafka-offsets --at T --groups 'orders-*' --bootstrap HOST:PORT`: reset consumer
//! groups to the offsets they had committed in the last capture at or before T. `--dry-run`
//! prints the plan (group, topic, partition, current committed, target, delta) and changes
//! nothing. The work is `mc_restore::kafka`.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use mc_core::cli::SourceOpts;
use mc_core::policy::Policy;
use mc_restore::kafka::{format_table, reset_offsets, KafkaPoint, KafkaResetOptions, TopicMap};
use mc_restore::point::RestorePoint;

#[derive(Debug, Args)]
pub struct KafkaOffsetsArgs {
    /// Point in time: RFC 3339 time, `latest`, or ts:SECONDS:INCREMENT (a MongoDB cluster time).
    #[arg(long, value_name = "TIME", value_parser = parse_point)]
    pub at: RestorePoint,

    /// Consumer groups to reset (`*`, `?` wildcards); repeatable or comma-separated. Each
    /// pattern must match a group recorded at T.
    #[arg(long, value_name = "GLOB", required = true, value_delimiter = ',')]
    pub groups: Vec<String>,

    #[command(flatten)]
    pub source: SourceOpts,

    /// Brokers of the cluster to reset (host:port[,host:port]); default: the policy's
    /// kafka.bootstrap_servers.
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Option<String>,

    /// Map a recorded topic to another name on the target cluster (SOURCE=TARGET); repeatable.
    #[arg(long = "topic-map", value_name = "SOURCE=TARGET")]
    pub topic_map: Vec<String>,

    /// Wait (default up to 5m) for active groups to become inactive instead of refusing them.
    #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "5m", value_parser = parse_wait)]
    pub wait_inactive: Option<Duration>,

    /// Longest wait for one Kafka request; an unreachable cluster fails after it.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_wait)]
    pub timeout: Duration,

    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the plan or report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_point(s: &str) -> Result<RestorePoint, mc_restore::point::BadPoint> {
    s.parse()
}

fn parse_wait(s: &str) -> Result<Duration, String> {
    mc_core::policy::parse_duration(s)
}

pub async fn run(args: KafkaOffsetsArgs) -> anyhow::Result<i32> {
    let bootstrap = match (&args.bootstrap, &args.source.policy) {
        (Some(b), _) => b.clone(),
        (None, Some(path)) => Policy::load(path)?
            .kafka_bootstrap_servers()?
            .map(|s| s.join(","))
            .with_context(|| {
                format!(
                    "{} has no kafka section: pass --bootstrap HOST:PORT",
                    path.display()
                )
            })?,
        (None, None) => anyhow::bail!("no Kafka cluster given: pass --bootstrap HOST:PORT"),
    };
    let (repo, source) = args.source.open().await?;
    let options = KafkaResetOptions {
        bootstrap,
        groups: args.groups.clone(),
        dry_run: args.dry_run,
        wait_inactive: args.wait_inactive,
        topic_map: TopicMap::parse(&args.topic_map)?,
        timeout: args.timeout,
    };
    let point = KafkaPoint::from(args.at);
    let report = reset_offsets(&repo, &source, point, &options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    let plan = &report.plan;
    println!(
        "Kafka offsets of source {source} at {} (segment {}), cluster {}:",
        plan.point, plan.segment, plan.bootstrap
    );
    for g in &plan.groups {
        println!(
            "  group {}: captured at {}{}{}",
            g.group,
            g.captured_at,
            g.cluster_time
                .map(|t| format!(" (cluster time ts:{}:{})", t.t, t.i))
                .unwrap_or_default(),
            if g.active_members.is_empty() {
                String::new()
            } else {
                format!(", {} active member(s)", g.active_members.len())
            }
        );
    }
    print!("{}", format_table(plan));
    for w in &plan.warnings {
        println!("warning: {w}");
    }
    if report.dry_run {
        println!("dry run: nothing committed");
    } else {
        println!(
            "committed {} partition offset(s) in {} group(s)",
            report.committed,
            plan.groups.len()
        );
    }
    Ok(0)
}
