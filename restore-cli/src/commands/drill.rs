//! `mc-restore drill`: a timed, verified restore into a scratch MongoDB with a report (JSON,
//! Markdown, HTML) stored in the repository and, with `--out`, locally; `drill list` and
//! `drill show ID` read stored reports back. Each phase's progress is shown as it runs
//! (`commands::progress`).
//!
//! Exit codes: 0 pass, 3 verification failed, 4 RTO or RPO target missed, 1 error.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use mc_core::policy::Policy;
use mc_restore::drill::{self, report::Verdict, DrillOptions};
use mc_restore::point::RestorePoint;

// `list` and `show` take only the global --policy and --json; the drill's own options are
// ignored by them.
#[derive(Debug, Args)]
pub struct DrillArgs {
    #[command(subcommand)]
    pub command: Option<DrillCommand>,

    /// The backup policy: repository, keyring, source, RTO/RPO targets, and by default the
    /// scratch target (`drills.scratch_uri`) and the source (`source.mongodb.uri`).
    #[arg(long, value_name = "FILE", global = true)]
    pub policy: Option<PathBuf>,

    /// Scratch MongoDB to restore into; everything in scope there is dropped.
    #[arg(
        long,
        value_name = "URI",
        env = "MC_DRILL_SCRATCH_URI",
        hide_env_values = true
    )]
    pub scratch: Option<String>,

    /// Restore point (as for `mc-restore --at`).
    #[arg(long, value_name = "TIME", default_value = "latest", value_parser = super::parse_point)]
    pub at: RestorePoint,

    /// The live source to verify against (default: the policy's MongoDB URI).
    #[arg(long, value_name = "URI", hide_env_values = true)]
    pub source_uri: Option<String>,

    /// Verify against the snapshot's record only, without reading the source.
    #[arg(long, conflicts_with = "source_uri")]
    pub no_source: bool,

    #[command(flatten)]
    pub namespaces: super::NamespaceArgs,

    /// Allow a scratch target in the source's own replica set; requires --ns-from/--ns-to so
    /// only renamed namespaces are written.
    #[arg(long)]
    pub scratch_is_source_cluster: bool,

    /// Keep the restored data after the drill.
    #[arg(long)]
    pub keep: bool,

    /// Also require namespace NS's documents to hash to HEX (sha256, as reports print);
    /// repeatable. Pins a known state, e.g. from an earlier drill.
    #[arg(long, value_name = "NS=HEX")]
    pub expect_sha256: Vec<String>,

    /// Write the report as <id>.json, <id>.md and <id>.html into this directory too.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Skip the Kafka offsets plan even when the policy has a `kafka:` section.
    #[arg(long)]
    pub no_kafka: bool,

    /// Also restore users and roles as at the point onto the scratch target and verify them
    /// (on by default with the policy's drills.restore_users_and_roles). The scratch's own users
    /// are never removed or changed. Needs a snapshot taken with snapshots.include_users_and_roles.
    #[arg(long)]
    pub restore_users_and_roles: bool,

    /// Print the JSON report on stdout instead of the summary, and progress as JSON events on
    /// stderr.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(flatten)]
    pub progress: super::progress::ProgressArgs,
}

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// The drills recorded in the repository.
    List,
    /// One recorded drill (Markdown; --json for the report).
    Show {
        /// Drill id, as `drill list` prints it.
        id: String,
    },
}

pub async fn run(args: DrillArgs) -> anyhow::Result<i32> {
    let path = args
        .policy
        .clone()
        .context("a drill needs --policy FILE (repository, keyring, source and objectives)")?;
    let policy = Policy::load(&path)?;
    let url = policy.repository_url()?;
    let repo = mc_core::catalog::Repository::open(&url, policy.keyring()?, false)
        .await
        .with_context(|| format!("opening repository {url}"))?;
    match &args.command {
        Some(DrillCommand::List) => {
            let reports = drill::list_reports(&repo)
                .await
                .map_err(anyhow::Error::msg)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else if reports.is_empty() {
                println!("no drills recorded in {url}");
            }
            if !args.json {
                for r in &reports {
                    println!(
                        "{}  {:22}  {}  RTO {:.1} s  RPO {:.0} s",
                        r.id,
                        r.verdict.word(),
                        r.point,
                        r.rto.measured_seconds.unwrap_or(f64::NAN),
                        r.rpo.measured_seconds.unwrap_or(f64::NAN)
                    );
                }
            }
            return Ok(0);
        }
        Some(DrillCommand::Show { id }) => {
            let report = drill::read_report(&repo, &drill::report_key(id))
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "drill {id}: {e}; `mc-restore drill list` shows the recorded ones"
                    )
                })?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_markdown());
            }
            return Ok(0);
        }
        None => {}
    }

    let scratch = match &args.scratch {
        Some(uri) => uri.clone(),
        None => policy
            .drill_scratch_uri()?
            .map(|s| s.expose().to_owned())
            .context(
                "no scratch target: pass --scratch URI or set drills.scratch_uri in the policy",
            )?,
    };
    let source_uri = if args.no_source {
        None
    } else {
        match &args.source_uri {
            Some(uri) => Some(uri.clone()),
            None => Some(policy.mongodb_uri()?.expose().to_owned()),
        }
    };
    let mut map = args.namespaces.map()?;
    if args.restore_users_and_roles {
        map = map
            .with_users_and_roles()
            .map_err(|e| anyhow::anyhow!("--restore-users-and-roles: {e}"))?;
    }
    let expect_sha256 = args
        .expect_sha256
        .iter()
        .map(|e| {
            e.split_once('=')
                .map(|(ns, hex)| (ns.to_owned(), hex.to_owned()))
                .with_context(|| format!("--expect-sha256 {e:?}: write NS=HEX"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The Kafka reset a real restore would make, planned against the policy's cluster.
    let kafka = if args.no_kafka {
        None
    } else {
        policy.kafka_cluster()?
    };
    // The policy's drill (the one the agent schedules), then the command line's choices.
    let mut options = DrillOptions::from_policy(&policy, scratch, source_uri, map, kafka)?;
    options.point = args.at;
    options.keep = args.keep;
    options.scratch_is_source_cluster = args.scratch_is_source_cluster;
    options.expect_sha256 = expect_sha256;
    options.command = reproduce();
    let progress = std::sync::Arc::new(mc_restore::restore::Progress::default());
    let (monitor, ticker) = args.progress.start(args.json, progress.clone());
    let report = drill::run_watched(&repo, &options, progress, &*monitor).await;
    drop(ticker);
    monitor.finish();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let base = dir.join(&report.id);
        std::fs::write(
            base.with_extension("json"),
            serde_json::to_vec_pretty(&report)?,
        )?;
        std::fs::write(base.with_extension("md"), report.to_markdown())?;
        std::fs::write(base.with_extension("html"), report.to_html())?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let secs = |v: Option<f64>, what: &str| match v {
            Some(s) => format!("{s:.1} s"),
            None => format!("{what} not measured"),
        };
        println!(
            "drill {}: {} (RTO {} of {:.0} s, projected {}; RPO {} of {:.0} s)",
            report.id,
            report.verdict.word(),
            secs(report.rto.measured_seconds, "restore"),
            report.rto.target_seconds,
            report.rto.projected_seconds.map_or_else(
                || "not computed: no documents loaded".into(),
                |p| format!("{p:.1} s")
            ),
            secs(report.rpo.measured_seconds, "lag"),
            report.rpo.target_seconds
        );
        for r in &report.reasons {
            println!("  {r}");
        }
        if let Some(key) = &report.repository_key {
            println!(
                "  report stored as {key}; `mc-restore drill show {} --policy {}`",
                report.id,
                path.display()
            );
        }
    }
    if report.verdict == Verdict::Error {
        eprintln!(
            "mc-restore: drill {} failed: {}",
            report.id,
            report.reasons.join("; ")
        );
    }
    Ok(report.verdict.exit_code())
}

/// The command line, with values of URI options replaced (they may hold passwords).
fn reproduce() -> String {
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in std::env::args() {
        if hide_next {
            out.push("<uri>".to_owned());
            hide_next = false;
            continue;
        }
        if a == "--scratch" || a == "--source-uri" {
            hide_next = true;
        }
        if a.starts_with("--scratch=") || a.starts_with("--source-uri=") {
            out.push(format!("{}=<uri>", a.split('=').next().unwrap_or_default()));
            continue;
        }
        out.push(a);
    }
    out.join(" ")
}
