//! `mc-restore kafka-offsets --at T --groups 'orders-*' --bootstrap HOST:PORT`: reset consumer
//! groups to the offsets they had committed in the last capture at or before T. `--dry-run`
//! prints the plan (group, topic, partition, current committed, target, delta) and changes
//! nothing. The work is `mc_restore::kafka`; the flags' handling is `super::kafka_args`, shared
//! with `mc-restore --at T --kafka-groups …`.

use std::time::Duration;

use clap::Args;
use mc_core::cli::SourceOpts;
use mc_restore::kafka::{reset_offsets, KafkaPoint};
use mc_restore::point::RestorePoint;

use super::kafka_args::{parse_wait, print_plan, reset_options, resolve_cluster};
use super::kafka_security::KafkaSecurityArgs;

#[derive(Debug, Args)]
pub struct KafkaOffsetsArgs {
    /// Point in time: RFC 3339 time, `latest`, or ts:SECONDS:INCREMENT (a MongoDB cluster time).
    #[arg(long, value_name = "TIME", value_parser = super::parse_point)]
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

    #[command(flatten)]
    pub kafka_security: KafkaSecurityArgs,

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

pub async fn run(args: KafkaOffsetsArgs) -> anyhow::Result<i32> {
    let cluster = resolve_cluster(
        args.bootstrap.as_deref(),
        &args.source,
        "--bootstrap",
        &args.kafka_security,
    )?;
    let (repo, source) = args.source.open().await?;
    let options = reset_options(
        cluster,
        &args.groups,
        &args.topic_map,
        args.wait_inactive,
        args.timeout,
        args.dry_run,
    )?;
    let point = KafkaPoint::from(args.at);
    let report = reset_offsets(&repo, &source, point, &options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    print_plan(&source, &report.plan);
    if report.dry_run {
        println!("dry run: nothing committed");
    } else {
        println!(
            "committed {} partition offset(s) in {} group(s)",
            report.committed,
            report.plan.groups.len()
        );
    }
    Ok(0)
}
