//! `mc-bench-restore`: restore throughput (issue 5). In one run, on the same data, it measures
//! mc-restore's bulk load and oplog replay, and a plain baseline of each, and prints docs/s,
//! MB/s, ops/s, the ratios, and the projected time for 100 GB. It prints figures; it asserts
//! nothing.
//!
//! ```text
//! cargo run --release -p mc-tests --bin mc-bench-restore -- [--docs 200000] [--ops 100000]
//! cargo build --release -p mc-restore -p mc-tests --bin mc-restore --bin mc-bench-restore
//! target/release/mc-bench-restore --end-to-end --ops 0 --rounds 5 \
//!     [--mc-restore before=/path/to/old/mc-restore --mc-restore after=target/release/mc-restore]
//! ```
//!
//! Setup (not timed): a source database of `--docs` documents of ~1 KiB on the services' replica
//! set (`MC_TEST_MONGODB_URI`), captured in-process by the agent's pipeline into a
//! local-directory repository (zstd + AES-GCM, as in production), a snapshot of it, then
//! `--ops` oplog entries (updates, inserts, deletes) captured after the snapshot. The target is a
//! private single-node replica set started by the bench.
//!
//! Timed, in this order, each into an emptied target database:
//! 1. **mc-restore load**: `mc_restore::load::load` from the repository (fetch, decrypt,
//!    decompress, insert, build indexes).
//! 2. **mc-restore replay**: `mc_restore::replay::replay` of the captured oplog (partitioned,
//!    batched `applyOps`), on top of that load.
//! 3. **baseline load**: the same documents, already in memory, inserted by one task with
//!    `insert_many` of 1,000 (what a plain loader does, without fetching or decrypting).
//! 4. **baseline replay**: the same entries, already decoded in memory (`ui` and session fields
//!    removed), applied by one task with `applyOps` of 1,000 — the 58.6 k ops/s reference of
//!    the issue.
//!
//! With `--end-to-end` (issue 16) it times instead `mc-restore --at latest` as a process, end to
//! end, into the source's own replica set (or `--target-uri`) under another database name:
//! see `end_to_end.rs`.

mod end_to_end;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use mc_agent::capture::oplog::OplogSource;
use mc_agent::metrics::Metrics;
use mc_agent::snapshot::{take, SnapshotSettings};
use mc_core::format::WriterInfo;
use mc_restore::load::{load, LoadProgress, LoadSettings};
use mc_restore::namespaces::NamespaceMap;
use mc_restore::plan::RestorePlan;
use mc_restore::point::RestorePoint;
use mc_restore::replay::entry::{apply_ops_command, Action, Decoder};
use mc_restore::replay::{replay, ReplaySettings};
use mc_tests::mongod::{PrivateReplSet, ReplSetConfig};
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::Client;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "mc-bench-restore",
    about = "Benchmark mc-restore's load and replay against plain baselines"
)]
struct Args {
    /// Source replica set.
    #[arg(long, env = "MC_TEST_MONGODB_URI")]
    uri: String,
    /// Documents in the snapshot (~1 KiB each).
    #[arg(long, default_value_t = 200_000)]
    docs: i64,
    /// Collections they are spread over.
    #[arg(long, default_value_t = 4)]
    collections: i64,
    /// Oplog entries written after the snapshot (and replayed).
    #[arg(long, default_value_t = 100_000)]
    ops: i64,
    /// Replay partitions (mc-restore's default is the target's cores, 2 to 8).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Entries per applyOps.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// The constrained workload: a unique index on `email` whose values move between documents
    /// (swaps through a temporary value, one oplog entry each) and a capped collection that
    /// wraps, instead of plain updates.
    #[arg(long)]
    constrained: bool,
    /// Time `mc-restore --at latest` as a process, end to end, instead of the in-process phases.
    #[arg(long)]
    end_to_end: bool,
    /// Rounds of `--end-to-end`.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// `--end-to-end`: a binary to time, as LABEL=PATH; repeatable, the binaries take turns in
    /// each round (default: the mc-restore beside this bench).
    #[arg(long, value_name = "LABEL=PATH")]
    mc_restore: Vec<String>,
    /// `--end-to-end`: an extra argument for every mc-restore run (`--restore-arg=--load-workers=4`).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    restore_arg: Vec<String>,
    /// `--end-to-end`: the MongoDB to restore into (default: the source replica set).
    #[arg(long, value_name = "URI")]
    target_uri: Option<String>,
}

fn document(id: i64) -> Document {
    doc! {
        "_id": id,
        "user": format!("user-{}", id % 10_000),
        "email": format!("u{id}@example.com"),
        "n": id % 97,
        "tags": ["interview", "backend", "rust"],
        "body": "x".repeat(900),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db_name = format!("bench_rst_{}", std::process::id());
    let source_client = Client::with_uri_str(&args.uri).await?;
    let db = source_client.database(&db_name);
    let per = args.docs / args.collections;
    eprintln!(
        "setup: {} documents in {} collections of {db_name}",
        per * args.collections,
        args.collections
    );
    for c in 0..args.collections {
        let coll = db.collection::<Document>(&format!("c{c}"));
        let mut id = 0;
        while id < per {
            let n = 1000.min(per - id);
            coll.insert_many((id..id + n).map(document).collect::<Vec<_>>())
                .await?;
            id += n;
        }
        coll.create_index(
            mongodb::IndexModel::builder()
                .keys(doc! {"user": 1})
                .build(),
        )
        .await?;
        if args.constrained {
            coll.create_index(
                mongodb::IndexModel::builder()
                    .keys(doc! {"email": 1})
                    .options(
                        mongodb::options::IndexOptions::builder()
                            .unique(true)
                            .build(),
                    )
                    .build(),
            )
            .await?;
        }
    }
    if args.constrained {
        db.run_command(doc! {"create": "capped", "capped": true, "size": 4 << 20})
            .await?;
    }

    // repo/ and keyring in a temporary directory, as mc-restore takes them.
    let (dir, repo) = mc_tests::restore::temp_repository().await;
    let source = OplogSource::connect(&args.uri).await?;
    let source_id = "bench";
    let metrics = Arc::new(Metrics::default());
    let (stop, stop_rx) = watch::channel(false);
    let mut settings = mc_tests::agent::capture_settings(source_id, &dir.path().join("spool"));
    settings.rules.max_bytes = 16 << 20;
    settings.rules.seal_interval = Duration::from_secs(1);
    let capture = tokio::spawn(mc_agent::capture::run(
        repo.clone(),
        source.clone(),
        settings,
        metrics.clone(),
        stop_rx,
    ));
    let snapshot = take(
        &repo,
        &source,
        &SnapshotSettings {
            source: source_id.into(),
            parallelism: 4,
            max_segment_bytes: 16 << 20,
            zstd_level: 3,
            writer: WriterInfo {
                id: "bench".into(),
                fence: 0,
            },
            reason: "on-demand".into(),
            databases: Some(vec![db_name.clone()]),
            users_and_roles: false,
        },
    )
    .await?;
    eprintln!(
        "setup: snapshot {} ({} documents); writing {} oplog entries",
        snapshot.id,
        snapshot.documents(),
        args.ops
    );

    // The workload after the snapshot: ranges of updates, inserts and deletes, one oplog entry
    // per document touched.
    let mut written = 0i64;
    let mut round = 0i64;
    let mut next_id = per;
    while written < args.ops {
        let c = round % args.collections;
        let coll = db.collection::<Document>(&format!("c{c}"));
        let base = (round * 500) % (per - 1000).max(1);
        match round % 4 {
            1 if args.constrained => {
                // Unique values move: a and b swap emails through a temporary value.
                for k in 0..100 {
                    let (a, b) = (base + 2 * k, base + 2 * k + 1);
                    let email = |d: Option<Document>| {
                        d.and_then(|d| d.get_str("email").ok().map(str::to_owned))
                    };
                    let (Some(ea), Some(eb)) = (
                        email(coll.find_one(doc! {"_id": a}).await?),
                        email(coll.find_one(doc! {"_id": b}).await?),
                    ) else {
                        continue;
                    };
                    for (id, to) in [(a, format!("tmp-{a}")), (b, ea), (a, eb)] {
                        coll.update_one(doc! {"_id": id}, doc! {"$set": {"email": to}})
                            .await?;
                        written += 1;
                    }
                }
            }
            2 if args.constrained => {
                coll.insert_many((next_id..next_id + 250).map(document).collect::<Vec<_>>())
                    .await?;
                db.collection::<Document>("capped")
                    .insert_many((next_id..next_id + 250).map(document).collect::<Vec<_>>())
                    .await?;
                next_id += 250;
                written += 500;
            }
            0 | 1 => {
                let r = coll
                    .update_many(
                        doc! {"_id": {"$gte": base, "$lt": base + 1000}},
                        doc! {"$inc": {"n": 1}, "$set": {"tags.1": "db"}},
                    )
                    .await?;
                written += r.modified_count as i64;
            }
            2 => {
                coll.insert_many((next_id..next_id + 500).map(document).collect::<Vec<_>>())
                    .await?;
                next_id += 500;
                written += 500;
            }
            _ => {
                let r = coll
                    .delete_many(doc! {"_id": {"$gte": base + 1000, "$lt": base + 1250}})
                    .await?;
                written += r.deleted_count as i64;
            }
        }
        round += 1;
    }
    let end = source.majority_point().await?;
    let packed = (u64::from(end.t) << 32) | u64::from(end.i);
    let started = Instant::now();
    while metrics.capture.durable_ts.load(Relaxed) < packed {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "capture did not catch up in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).ok();
    capture.await??;

    let map = NamespaceMap::new(vec![format!("{db_name}.*")], vec![], None, None)?;
    let plan = RestorePlan::build(&repo, source_id, RestorePoint::Latest, None, &map).await?;
    let raw_bytes: u64 = plan.collections.iter().map(|c| c.entry.bytes).sum();
    let docs: u64 = plan.collections.iter().map(|c| c.entry.count).sum();
    if args.end_to_end {
        let binaries = if args.mc_restore.is_empty() {
            let beside = std::env::current_exe()?.with_file_name("mc-restore");
            vec![("mc-restore".to_owned(), beside)]
        } else {
            args.mc_restore
                .iter()
                .map(|b| {
                    let (label, path) = b.split_once('=').context("--mc-restore LABEL=PATH")?;
                    Ok((label.to_owned(), path.into()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        let timed = end_to_end::EndToEnd {
            binaries,
            rounds: args.rounds,
            extra_args: args.restore_arg.clone(),
            repo_dir: dir.path(),
            source_id,
            source: &source_client,
            db: &db_name,
            target_uri: args.target_uri.as_deref().unwrap_or(&args.uri),
            documents: docs,
            mb: raw_bytes as f64 / 1e6,
        }
        .run()
        .await;
        source_client.database(&db_name).drop().await?;
        return timed;
    }
    let target_set = PrivateReplSet::start(ReplSetConfig {
        oplog_mb: 1024,
        ..ReplSetConfig::default()
    })
    .await;
    let target = target_set.node_client(0).clone();

    // 1 + 2: mc-restore, keeping its journal as a restore does (mc_restore::journal).
    let t = Instant::now();
    let journal = mc_restore::journal::Journal::start(
        &target,
        &mc_restore::journal::Identity::of(&plan, &map),
        &plan.point,
        args.workers,
    )
    .await?;
    let loaded = load(
        &repo,
        &target,
        &plan,
        LoadSettings::default(),
        Arc::new(LoadProgress::default()),
        &journal,
    )
    .await?;
    let mut ours_load = t.elapsed();
    let t = Instant::now();
    let mut catalog = loaded.catalog;
    let replayed = replay(
        &repo,
        &target,
        &plan,
        &map,
        ReplaySettings {
            batch: args.batch,
            workers: args.workers,
        },
        &mut catalog,
        &journal,
        |_| {},
    )
    .await?;
    let ours_replay = t.elapsed();
    // Index builds follow replay now; counted with the load, as before they were part of it.
    let t = Instant::now();
    catalog
        .build_indexes(&target, LoadSettings::default().workers, &journal, &|_| {})
        .await?;
    ours_load += t.elapsed();
    let loaded = loaded.stats;
    let ours_ops = replayed.applied_writes + replayed.applied_commands;
    anyhow::ensure!(
        loaded.documents == docs,
        "loaded {} of {docs} documents",
        loaded.documents
    );
    let (want, got) = (
        count(&source_client, &db_name, args.collections).await?,
        count(&target, &db_name, args.collections).await?,
    );
    anyhow::ensure!(
        want == got,
        "restored counts {got:?} differ from the source's {want:?}"
    );
    target.database(&db_name).drop().await?;

    // 3: baseline load of the same documents from memory.
    let mut by_coll: Vec<(String, Vec<RawDocumentBuf>)> = Vec::new();
    for c in &plan.collections {
        // Created with its options (a capped collection stays capped), as a loader must.
        let (dbn, coll) = c.target_ns.split_once('.').context("namespace")?;
        let mut create = doc! {"create": coll};
        if let mongodb::bson::Bson::Document(options) =
            mongodb::bson::Bson::try_from(c.entry.options.clone())?
        {
            create.extend(options);
        }
        target.database(dbn).run_command(create).await?;
        let mut all = Vec::new();
        for part in &c.entry.parts {
            for rec in repo.read_segment(part).await?.1 {
                all.push(RawDocumentBuf::from_bytes(rec)?);
            }
        }
        by_coll.push((c.target_ns.clone(), all));
    }
    let t = Instant::now();
    for (ns, all) in &by_coll {
        let (dbn, coll) = ns.split_once('.').context("namespace")?;
        let coll = target.database(dbn).collection::<RawDocumentBuf>(coll);
        for chunk in all.chunks(1000) {
            coll.insert_many(chunk).ordered(false).await?;
        }
    }
    let base_load = t.elapsed();
    drop(by_coll);

    // 4: baseline replay of the same entries from memory.
    let mut decoder = Decoder::default();
    let mut ops = Vec::new();
    for seg in &plan.segments {
        for rec in repo.read_segment(&seg.key).await?.1 {
            let raw = RawDocumentBuf::from_bytes(rec)?;
            let head = mc_restore::replay::entry::head(&raw)?;
            if head.ts <= plan.replay_after || !plan.cut.admits(head.ts, head.wall_ms) {
                continue;
            }
            let mut actions = Vec::new();
            decoder.decode(&raw, &map, &mut actions)?;
            for a in actions {
                if let Action::Write { op, .. } = a {
                    ops.push(op);
                }
            }
        }
    }
    let admin = target.database("admin");
    let t = Instant::now();
    for chunk in ops.chunks(1000) {
        admin
            .run_raw_command(apply_ops_command(chunk, true))
            .await?;
    }
    let base_replay = t.elapsed();
    let base_ops = ops.len() as u64;
    source_client.database(&db_name).drop().await?;

    let mb = raw_bytes as f64 / 1e6;
    let rate = |n: f64, d: Duration| n / d.as_secs_f64();
    let hours_100gb = |mbps: f64| 100_000.0 / mbps / 3600.0;
    let ours_mbps = rate(mb, ours_load);
    let base_mbps = rate(mb, base_load);
    println!("mc-bench-restore: {docs} documents ({mb:.1} MB of BSON) in {} collections; {ours_ops} oplog entries replayed; workload {}", args.collections, if args.constrained { "constrained (unique email values moving, a capped collection wrapping)" } else { "unconstrained" });
    println!(
        "machine: {} cores, load average {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!();
    println!("| phase | mc-restore | baseline | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| load docs/s | {:.0} | {:.0} | {:.2}x |",
        rate(docs as f64, ours_load),
        rate(docs as f64, base_load),
        base_load.as_secs_f64() / ours_load.as_secs_f64()
    );
    println!("| load MB/s | {ours_mbps:.1} | {base_mbps:.1} | |");
    println!(
        "| load seconds (incl. index builds for mc-restore) | {:.2} | {:.2} | |",
        ours_load.as_secs_f64(),
        base_load.as_secs_f64()
    );
    println!(
        "| replay ops/s | {:.0} | {:.0} | {:.2}x |",
        rate(ours_ops as f64, ours_replay),
        rate(base_ops as f64, base_replay),
        rate(ours_ops as f64, ours_replay) / rate(base_ops as f64, base_replay)
    );
    println!(
        "| replay seconds | {:.2} | {:.2} | |",
        ours_replay.as_secs_f64(),
        base_replay.as_secs_f64()
    );
    println!();
    println!(
        "projected load of 100 GB of BSON: {:.1} h (mc-restore), {:.1} h (baseline)",
        hours_100gb(ours_mbps),
        hours_100gb(base_mbps)
    );
    println!(
        "replay: {} workers x {} entries per applyOps; window-skipped {}",
        args.workers, args.batch, replayed.window_skipped
    );
    Ok(())
}

async fn count(client: &Client, db: &str, collections: i64) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    for c in 0..collections {
        out.push(
            client
                .database(db)
                .collection::<Document>(&format!("c{c}"))
                .count_documents(doc! {})
                .await?,
        );
    }
    Ok(out)
}
