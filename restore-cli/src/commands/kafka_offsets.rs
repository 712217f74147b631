//! `mc-restore kafka-offsets --at T --groups 'orders-*' --bootstrap HOST:PORT`: reset consumer
//! groups to the offsets they had committed in the last capture at or before T. `--dry-run`
//! prints the plan (group, topic, partition, current committed, target, delta) and changes
//! nothing. The work is `mc_restore::kafka`; the helpers here (bootstrap from the policy, options,
//! the plan's text, the command line) are shared with `mc-restore --at T --kafka-groups …`.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use mc_core::cli::SourceOpts;
use mc_core::kafka::KafkaSecurity;
use mc_core::policy::Policy;
use mc_restore::kafka::{
    format_table, reset_offsets, KafkaPoint, KafkaResetOptions, KafkaResetPlan, TopicMap,
};
use mc_restore::point::RestorePoint;

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

/// A duration flag (`--wait-inactive`, `--timeout`, `--kafka-wait-inactive`): `30s`, `5m`, …
pub fn parse_wait(s: &str) -> Result<Duration, String> {
    mc_core::policy::parse_duration(s)
}

/// The cluster to reset: `explicit` (given with `flag`), else the policy's
/// `kafka.bootstrap_servers`; with the security the `--kafka-*` flags describe, else the
/// policy's `kafka.security` (TLS, SASL) when a policy is given, else plaintext.
pub fn resolve_cluster(
    explicit: Option<&str>,
    source: &SourceOpts,
    flag: &str,
    flags: &KafkaSecurityArgs,
) -> anyhow::Result<(String, KafkaSecurity)> {
    let policy = source.policy.as_deref().map(Policy::load).transpose()?;
    let security = match (flags.security()?, &policy) {
        (Some(from_flags), Some(p)) if p.kafka.as_ref().is_some_and(|k| k.security.is_some()) => {
            tracing::info!(
                security = %from_flags.describe(),
                "Kafka security from the command line; the policy's kafka.security is not used"
            );
            from_flags
        }
        (Some(from_flags), _) => from_flags,
        (None, Some(p)) => p.kafka_security()?,
        (None, None) => KafkaSecurity::default(),
    };
    let bootstrap = match (explicit, &policy) {
        (Some(b), _) => b.to_owned(),
        (None, Some(p)) => p
            .kafka_bootstrap_servers()?
            .map(|s| s.join(","))
            .with_context(|| {
                format!(
                    "{} has no kafka section: pass {flag} HOST:PORT",
                    p.file().display()
                )
            })?,
        (None, None) => anyhow::bail!("no Kafka cluster given: pass {flag} HOST:PORT"),
    };
    Ok((bootstrap, security))
}

/// The library's options from the Kafka flags (`--topic-map` entries parsed here).
pub fn reset_options(
    (bootstrap, security): (String, KafkaSecurity),
    groups: &[String],
    topic_map: &[String],
    wait_inactive: Option<Duration>,
    timeout: Duration,
    dry_run: bool,
) -> anyhow::Result<KafkaResetOptions> {
    Ok(KafkaResetOptions {
        bootstrap,
        groups: groups.to_vec(),
        dry_run,
        wait_inactive,
        topic_map: TopicMap::parse(topic_map)?,
        timeout,
        security,
    })
}

/// The plan as text: where the offsets come from, one line per group, the table, warnings.
pub fn print_plan(source: &str, plan: &KafkaResetPlan) {
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
                .map(|t| format!(" (cluster time {})", t.arg()))
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
}

/// The `mc-restore kafka-offsets` command that resets `groups` at `at` with `options` against
/// the repository `source` names (source id `source_id`), with the security flags given
/// (`security`; the password by reference only), shell-quoted: what to run to retry.
pub fn command_line(
    at: &str,
    groups: &[String],
    options: &KafkaResetOptions,
    source: &SourceOpts,
    source_id: &str,
    security: &KafkaSecurityArgs,
) -> String {
    let mut args: Vec<String> = vec![
        "mc-restore".into(),
        "kafka-offsets".into(),
        "--at".into(),
        at.into(),
        "--groups".into(),
        groups.join(","),
    ];
    if let Some(policy) = &source.policy {
        args.extend(["--policy".into(), policy.display().to_string()]);
    } else {
        if let Some(repo) = &source.repo {
            args.extend(["--repo".into(), mc_restore::target::redact(repo)]);
        }
        if let Some(keyring) = &source.keys.keyring {
            args.extend(["--keyring".into(), keyring.display().to_string()]);
        }
        if let Some(var) = &source.keys.keyring_env {
            args.extend(["--keyring-env".into(), var.clone()]);
        }
    }
    args.extend(["--source".into(), source_id.into()]);
    args.extend(["--bootstrap".into(), options.bootstrap.clone()]);
    for (flag, value) in security.given() {
        args.extend([flag.to_owned(), value]);
    }
    for (a, b) in &options.topic_map.0 {
        args.extend(["--topic-map".into(), format!("{a}={b}")]);
    }
    if let Some(wait) = options.wait_inactive {
        args.extend([
            "--wait-inactive".into(),
            format!("{}s", wait.as_secs().max(1)),
        ]);
    }
    if options.timeout != Duration::from_secs(10) {
        args.extend([
            "--timeout".into(),
            format!("{}s", options.timeout.as_secs().max(1)),
        ]);
    }
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `a` as one shell word.
fn shell_quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        a.to_owned()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_command_is_quoted_and_complete() {
        let source = SourceOpts {
            policy: None,
            repo: Some("/backups/repo".into()),
            keys: mc_core::cli::KeyringOpts {
                keyring: Some("/etc/mc/keyring".into()),
                keyring_env: None,
            },
            source: None,
        };
        let mut options = KafkaResetOptions::new("k0:9092,k1:9092", vec![], false);
        options.topic_map = TopicMap::parse(&["orders=dr.orders"]).unwrap();
        options.wait_inactive = Some(Duration::from_secs(300));
        let security = KafkaSecurityArgs {
            kafka_security_protocol: Some(mc_core::kafka::SecurityProtocol::SaslSsl),
            kafka_sasl_mechanism: Some(mc_core::kafka::SaslMechanism::ScramSha512),
            kafka_sasl_username: Some("dr".into()),
            kafka_sasl_password_env: Some("DR_KAFKA_PW".into()),
            ..KafkaSecurityArgs::default()
        };
        let line = command_line(
            "ts:1764065700:3",
            &["orders-*".into(), "billing".into()],
            &options,
            &source,
            "rs0",
            &security,
        );
        assert_eq!(
            line,
            "mc-restore kafka-offsets --at ts:1764065700:3 --groups 'orders-*,billing' \
             --repo /backups/repo --keyring /etc/mc/keyring --source rs0 --bootstrap k0:9092,k1:9092 \
             --kafka-security-protocol sasl_ssl --kafka-sasl-mechanism scram-sha-512 \
             --kafka-sasl-username dr --kafka-sasl-password-env DR_KAFKA_PW \
             --topic-map orders=dr.orders --wait-inactive 300s"
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
