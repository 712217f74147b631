//! `mc-restore verify-data --at T --source-uri URI --target URI`: the proof that a restore is
//! right. Compares the target with the source as it was at T (snapshot reads), namespace by
//! namespace, showing how many are compared as it goes (`commands::progress`); see
//! `mc_restore::verify_data` and docs/restore.md ("Proving a restore").

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use mc_restore::point::RestorePoint;
use mc_restore::restore::{PhaseName, Progress};
use mc_restore::target::redact;
use mc_restore::verify_data::{self, DataReport, Status};

#[derive(Debug, Args)]
pub struct VerifyDataArgs {
    /// The restore point the target was restored to: RFC 3339 time, `latest` (the source's
    /// commit point now: only right after a restore with nothing written since), or
    /// ts:SECONDS:INCREMENT. Same meaning as the restore's --at.
    #[arg(long, value_name = "TIME")]
    pub at: String,

    /// The source MongoDB (a replica set member; its oplog and snapshot history are read).
    #[arg(
        long,
        value_name = "URI",
        env = "MC_VERIFY_SOURCE",
        hide_env_values = true
    )]
    pub source_uri: String,

    /// The restored MongoDB.
    #[arg(
        long,
        value_name = "URI",
        env = "MC_RESTORE_TARGET",
        hide_env_values = true
    )]
    pub target: String,

    #[command(flatten)]
    pub namespaces: super::NamespaceArgs,

    /// Print the report as JSON on stdout, and progress as JSON events on stderr.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub progress: super::progress::ProgressArgs,
}

/// Runs the comparison; returns the exit code (0 all verifiable namespaces match, 3 a mismatch).
pub async fn run(args: VerifyDataArgs) -> anyhow::Result<i32> {
    let point: RestorePoint = args.at.parse()?;
    let map = args.namespaces.map()?;
    let source = verify_data::connect_source(&args.source_uri).await?;
    let target = verify_data::connect_target(&args.target).await?;
    let at = verify_data::resolve_point(&source, point)
        .await
        .with_context(|| format!("resolving --at {point} on {}", redact(&args.source_uri)))?;
    eprintln!(
        "verifying {} against {} as of {} (--at {point})",
        redact(&args.target),
        redact(&args.source_uri),
        mc_core::format::OplogTs::from(at).text(),
    );
    let progress = Arc::new(Progress::default());
    let (monitor, ticker) = args.progress.start(args.json, progress.clone());
    let phase = PhaseName::Verify.as_str();
    monitor.started(phase);
    let started = Instant::now();
    let report =
        verify_data::verify_counted(&source, &target, point, at, &map, &progress.verify).await;
    monitor.done(phase, started.elapsed().as_secs_f64());
    drop(ticker);
    monitor.finish();
    let report = report.with_context(|| {
        format!(
            "verifying {} against {}",
            redact(&args.target),
            redact(&args.source_uri)
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", describe(&report));
    }
    Ok(match report.status {
        Status::Mismatch => super::EXIT_VERIFY_FAILED,
        _ => 0,
    })
}

/// The human report: one line per namespace, then the verdict.
fn describe(r: &DataReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for n in &r.namespaces {
        let name = if n.source_ns == n.target_ns {
            n.source_ns.clone()
        } else {
            format!("{} -> {}", n.source_ns, n.target_ns)
        };
        match n.status {
            Status::Match => {
                let docs = n
                    .documents
                    .as_ref()
                    .map(|d| format!(", {} documents", d.source_count))
                    .unwrap_or_default();
                let ix = match &n.indexes {
                    Some(i) if i.status == Status::NotVerifiable => format!(
                        "; indexes NOT VERIFIABLE against the live source ({})",
                        i.details.join("; ")
                    ),
                    _ => String::new(),
                };
                let _ = writeln!(out, "MATCH          {name} ({}{docs}){ix}", n.kind);
            }
            Status::Mismatch => {
                for m in &n.mismatches {
                    let _ = writeln!(out, "MISMATCH       {name}: {m}");
                }
            }
            Status::NotVerifiable => {
                let _ = writeln!(
                    out,
                    "NOT VERIFIABLE {name}: not verifiable against the live source: {}",
                    n.not_verifiable.join("; ")
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "{} namespace(s) compared at {}: {} match, {} mismatch, {} not verifiable against the live source{}",
        r.namespaces.len(),
        r.cluster_time.text(),
        r.matched,
        r.mismatched,
        r.not_verifiable,
        if r.indexes_not_verifiable > 0 {
            format!(
                " (and {} whose indexes alone are not verifiable)",
                r.indexes_not_verifiable
            )
        } else {
            String::new()
        }
    );
    let verdict = match (r.status, r.not_verifiable + r.indexes_not_verifiable) {
        (Status::Mismatch, _) => "the target does NOT equal the source at T",
        (_, 0) => "the target equals the source at T",
        _ => "everything verifiable matches; the namespaces above marked NOT VERIFIABLE changed on the source after T and were not checked",
    };
    let _ = writeln!(out, "{verdict}");
    out
}
