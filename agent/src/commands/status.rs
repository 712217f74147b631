//! `mc-agent status --policy FILE`: what the repository holds for the policy's source, read from
//! the repository itself (not from a running agent): timeline coverage, gaps, and how far the
//! newest restorable point trails now.

use std::path::Path;

use anyhow::Context;
use mc_core::catalog::{Coverage, Repository};
use mc_core::policy::Policy;

pub async fn run(policy_path: &Path, json: bool) -> anyhow::Result<()> {
    let policy = Policy::load(policy_path)?;
    let url = policy.repository_url()?;
    let repo = Repository::open(&url, policy.keyring()?, false)
        .await
        .with_context(|| format!("opening repository {url}"))?;
    let source = &policy.source.id;
    let Coverage {
        catalog,
        timeline,
        snapshots,
        windows,
    } = Coverage::load(&repo, source).await?;
    let now = chrono::Utc::now().timestamp();
    let lag = timeline.newest().map(|ts| now - i64::from(ts.t));
    let bytes: u64 = catalog.segments.iter().map(|s| s.size).sum();
    let windows: Vec<(String, u32, u32)> = windows
        .into_iter()
        .map(|w| (w.snapshot, w.from.t, w.to.t))
        .collect();
    if json {
        let out = serde_json::json!({
            "source": source,
            "repository": url.to_string(),
            "segments": catalog.segments.len(),
            "bytes": bytes,
            "timeline": timeline,
            "missing": catalog.missing,
            "rpo_seconds": lag,
            "snapshots": snapshots.iter().map(|s| serde_json::json!({
                "id": s.id, "start": s.start, "end": s.end, "finished": s.finished,
                "documents": s.documents(), "bytes": s.bytes(), "reason": s.reason,
            })).collect::<Vec<_>>(),
            "restorable_windows": windows.iter().map(|(id, from, to)| serde_json::json!({
                "snapshot": id, "from": fmt_ts(*from), "to": fmt_ts(*to),
            })).collect::<Vec<_>>(),
            "rpo_target_seconds": policy.objectives.rpo.as_secs(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("source {source} in {url}");
    println!(
        "  oplog segments: {} ({} bytes stored)",
        catalog.segments.len(),
        bytes
    );
    for run in &timeline.runs {
        println!(
            "  continuous {} .. {} ({} ops, {} segments)",
            fmt_ts(run.start.t),
            fmt_ts(run.end.t),
            run.ops,
            run.segments.len()
        );
    }
    for gap in &timeline.gaps {
        println!(
            "  GAP: {} .. {}: no point in between can be restored",
            fmt_ts(gap.after.t),
            fmt_ts(gap.before.t)
        );
    }
    for key in &catalog.missing {
        println!("  MISSING: {key} (listed in the index, absent from storage)");
    }
    match lag {
        Some(s) => {
            let target = policy.objectives.rpo.as_secs() as i64;
            let verdict = if s <= target { "within" } else { "ABOVE" };
            println!("  newest captured point is {s} s old: {verdict} the RPO of {target} s");
        }
        None => println!("  nothing captured yet"),
    }
    match snapshots.last() {
        Some(last) => println!(
            "  snapshots: {} (newest {} finished {}, {} documents, {} bytes)",
            snapshots.len(),
            last.id,
            last.finished,
            last.documents(),
            last.bytes()
        ),
        None => {
            println!("  snapshots: none yet: nothing is restorable until the first one completes")
        }
    }
    for (id, from, to) in &windows {
        println!(
            "  restorable {} .. {} from snapshot {id}",
            fmt_ts(*from),
            fmt_ts(*to)
        );
    }
    Ok(())
}

fn fmt_ts(secs: u32) -> String {
    chrono::DateTime::from_timestamp(i64::from(secs), 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}
