//! The Kafka options `mc-restore kafka-offsets` and `mc-restore --at T --kafka-groups …` share:
//! the cluster to reset (bootstrap and TLS/SASL from the flags or the policy), the library's
//! [`KafkaResetOptions`] from the flags, the plan as text, and the `kafka-offsets` command line
//! that retries a reset. Command-line concerns only; the work is `mc_restore::kafka`.

use std::time::Duration;

use anyhow::Context;
use mc_core::cli::SourceOpts;
use mc_core::kafka::KafkaSecurity;
use mc_core::policy::Policy;
use mc_restore::kafka::{format_table, KafkaResetOptions, KafkaResetPlan, TopicMap};

use super::kafka_security::KafkaSecurityArgs;

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
