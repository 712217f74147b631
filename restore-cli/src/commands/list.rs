//! `mc-restore list`: what a source can be restored to: snapshots, restorable windows, gaps in
//! the oplog timeline, and the newest restorable time.

use mc_core::catalog::Coverage;
use mc_core::cli::SourceOpts;
use mc_restore::plan::captured_users_and_roles;
use mc_restore::point::format_ts;

pub async fn run(opts: &SourceOpts, json: bool) -> anyhow::Result<()> {
    let (repo, source) = opts.open().await?;
    let coverage = Coverage::load(&repo, &source).await?;
    if coverage.snapshots.is_empty() && coverage.catalog.segments.is_empty() {
        mc_restore::plan::require_known_source(&repo, &source).await?;
    }
    let newest = coverage.newest_restorable();
    let Coverage {
        timeline,
        snapshots,
        windows,
        ..
    } = coverage;
    let kafka = mc_restore::kafka::coverage(&repo, &source).await?;
    if json {
        let out = serde_json::json!({
            "source": source,
            "repository": repo.store().describe(),
            "snapshots": snapshots.iter().map(|s| serde_json::json!({
                "id": s.id, "start": s.start, "end": s.end, "started": s.started,
                "finished": s.finished, "collections": s.collections.len(),
                "documents": s.documents(), "bytes": s.bytes(), "reason": s.reason,
                "users_and_roles": captured_users_and_roles(s),
            })).collect::<Vec<_>>(),
            "windows": windows,
            "gaps": timeline.gaps,
            "newest_restorable": newest,
            "kafka_offsets": kafka,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("source {source} in {}", repo.store().describe());
    println!("snapshots ({}):", snapshots.len());
    for s in &snapshots {
        println!(
            "  {}  {} .. {}  {} collections, {} documents, {} bytes ({}){}",
            s.id,
            s.started,
            s.finished,
            s.collections.len(),
            s.documents(),
            s.bytes(),
            s.reason,
            if captured_users_and_roles(s) {
                ", with users and roles"
            } else {
                ""
            }
        );
    }
    println!("restorable windows ({}):", windows.len());
    for w in &windows {
        println!(
            "  {} .. {}  from snapshot {}",
            format_ts(w.from),
            format_ts(w.to),
            w.snapshot
        );
    }
    if !timeline.gaps.is_empty() {
        println!("gaps in the oplog timeline ({}):", timeline.gaps.len());
        for g in &timeline.gaps {
            println!(
                "  after {} before {}",
                format_ts(g.after),
                format_ts(g.before)
            );
        }
    }
    if !kafka.is_empty() {
        let ms = |v: u64| mc_restore::point::format_ms(i64::try_from(v).unwrap_or(i64::MAX));
        println!(
            "kafka offsets captured ({} run(s); between runs, cycles were missed):",
            kafka.len()
        );
        for r in &kafka {
            println!(
                "  {} .. {}  {} segment(s)",
                ms(r.first_ms),
                ms(r.last_ms),
                r.segments
            );
        }
    }
    match newest {
        Some(ts) => println!("newest restorable point: {}", format_ts(ts)),
        None => println!("nothing is restorable yet: no snapshot is covered by captured oplog"),
    }
    Ok(())
}
