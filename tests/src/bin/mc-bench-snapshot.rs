//! `mc-bench-snapshot`: base-snapshot speed, end to end (issues 4 and 16). Seeds N documents of
//! about `--doc-bytes` (words from a vocabulary in pseudo-random order, so compression is
//! realistic; ObjectId `_id`s; one secondary index) into `--collections` collections, then times
//! in each of `--rounds` rounds, as separate processes the way a user runs them:
//!
//! - `mc-agent snapshot --policy …` (release build; local-directory repository, zstd + AES-GCM);
//! - `mongodump --uri … --out DIR` when `--mongodump PATH` (or `MC_BENCH_MONGODUMP`) is given;
//! - with `--inproc`, also the agent's snapshot code called in this process (no process start,
//!   no policy, no repository open), to separate the command's overheads from the copy.
//!
//! It prints wall time, CPU seconds (user + sys of the process and its children) and peak RSS,
//! each as min/median/max over the rounds, and the ratio of mongodump's time to the agent's in
//! every round (above 1: the agent is faster).
//!
//!   cargo build --release -p mc-agent -p mc-tests --bin mc-agent --bin mc-bench-snapshot
//!   target/release/mc-bench-snapshot --docs 200000 --rounds 5 --mongodump /path/to/mongodump
//!
//! Without `--uri` the data goes into a private single-node replica set started for the run
//! (same mongod binary and cache size as `scripts/services.sh`), because `mc-agent snapshot`
//! copies every database of its source: on the shared test replica set it would copy the other
//! tests' databases too. With `--uri` the seeded database is dropped at the end unless `--keep`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use mc_agent::capture::oplog::OplogSource;
use mc_agent::snapshot::{take, SnapshotSettings};
use mc_core::catalog::Repository;
use mc_core::crypto::{Keyring, SecretKey};
use mc_core::format::WriterInfo;
use mc_core::storage::local::LocalDir;
use mc_tests::bench::{clock_ticks, loadavg, machine_description, percentile, proc_status_kib};
use mc_tests::mongod::{PrivateReplSet, ReplSetConfig};
use mongodb::bson::{doc, oid::ObjectId, Document};
use mongodb::IndexModel;

/// The database the documents are seeded into.
const DB: &str = "bench_snapshot";

#[derive(Debug, Parser)]
struct Args {
    /// MongoDB replica set to use; without it a private single-node set is started.
    #[arg(long)]
    uri: Option<String>,
    /// Documents to seed.
    #[arg(long, default_value_t = 200_000)]
    docs: u32,
    /// Approximate BSON size of a document.
    #[arg(long, default_value_t = 1100)]
    doc_bytes: usize,
    /// Collections the documents are spread over.
    #[arg(long, default_value_t = 1)]
    collections: u32,
    /// The policy's `snapshots.parallelism` (and the in-process snapshot's).
    #[arg(long, default_value_t = 4)]
    parallelism: usize,
    /// Rounds of each measurement.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The mc-agent binary to run.
    #[arg(long, default_value = "target/release/mc-agent")]
    agent: PathBuf,
    /// mongodump to compare with (mongo-tools); none: the agent's figures alone.
    #[arg(long, env = "MC_BENCH_MONGODUMP")]
    mongodump: Option<PathBuf>,
    /// Also time the snapshot code in this process.
    #[arg(long)]
    inproc: bool,
    /// With --uri: keep the seeded database (and reuse it when it already holds --docs).
    #[arg(long)]
    keep: bool,
}

/// One process run: wall time, CPU seconds, peak RSS.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.agent.exists() {
        bail!(
            "{} does not exist; build it first: cargo build --release -p mc-agent",
            args.agent.display()
        );
    }
    let private = match &args.uri {
        Some(_) => None,
        None => Some(
            PrivateReplSet::start(ReplSetConfig {
                oplog_mb: 1024,
                ..ReplSetConfig::default()
            })
            .await,
        ),
    };
    let uri = match (&args.uri, &private) {
        (Some(uri), _) => uri.clone(),
        (None, Some(set)) => set.uri(),
        (None, None) => unreachable!("a private set is started without --uri"),
    };
    let client = mongodb::Client::with_uri_str(&uri)
        .await
        .context("connect")?;
    let db = client.database(DB);
    let result = run(&args, &uri, &db).await;
    if args.uri.is_none() || !args.keep {
        db.drop().await.context("dropping the benchmark database")?;
    }
    result
}

async fn run(args: &Args, uri: &str, db: &mongodb::Database) -> anyhow::Result<()> {
    let load_s = seed(args, db).await?;
    let dir = tempfile::tempdir()?;
    let keyring = SecretKey::generate()?;
    std::fs::write(
        dir.path().join("keyring"),
        format!("{}\n", *keyring.to_base64()),
    )?;
    let policy = mc_tests::agent::write_test_policy(
        dir.path(),
        "bench",
        "bench",
        "MC_BENCH_SOURCE_URI",
        "capture:\n  max_segment_bytes: 16MiB\n  zstd_level: 3\n",
    );
    // The policy's snapshot parallelism: write_test_policy's `snapshots:` has none, so append it.
    let text = std::fs::read_to_string(&policy)?.replace(
        "snapshots:\n",
        &format!("snapshots:\n  parallelism: {}\n", args.parallelism),
    );
    std::fs::write(&policy, text)?;

    println!(
        "mc-bench-snapshot: {} documents of ~{} B in {} collection(s), parallelism {}, {} rounds",
        args.docs, args.doc_bytes, args.collections, args.parallelism, args.rounds
    );
    println!(
        "machine: {}; load before: {}; seeding took {load_s:.1} s",
        machine_description(),
        loadavg()
    );
    let (mut agent, mut dump, mut inproc) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        if let Some(mongodump) = &args.mongodump {
            let out = dir.path().join("dump");
            let _ = std::fs::remove_dir_all(&out);
            let mut cmd = Command::new(mongodump);
            cmd.arg("--uri")
                .arg(uri)
                .arg("--out")
                .arg(&out)
                .arg("--quiet");
            if args.uri.is_some() {
                cmd.arg("--db").arg(DB);
            }
            let r = measure(cmd)?;
            std::fs::remove_dir_all(&out)?;
            dump.push(r);
        }
        let repo = dir.path().join("repo");
        let _ = std::fs::remove_dir_all(&repo);
        let mut cmd = Command::new(&args.agent);
        cmd.arg("snapshot")
            .arg("--policy")
            .arg(&policy)
            .env("MC_BENCH_SOURCE_URI", uri);
        agent.push(measure(cmd)?);
        if args.inproc {
            inproc.push(in_process(args, uri, dir.path()).await?);
        }
        let last = |v: &Vec<Run>| {
            v.last()
                .map_or(String::new(), |r| format!("{:.2} s", r.wall))
        };
        println!(
            "round {}: agent {}  mongodump {}  in-process {}  (load {})",
            round + 1,
            last(&agent),
            last(&dump),
            last(&inproc),
            loadavg()
        );
    }
    let mb = args.docs as f64 * args.doc_bytes as f64 / 1e6;
    println!("\n| process | wall s (min / median / max) | MB/s (median) | CPU s (median) | peak RSS MiB (max) |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, runs) in [
        ("mc-agent snapshot", &agent),
        ("mongodump", &dump),
        ("in-process take()", &inproc),
    ] {
        if runs.is_empty() {
            continue;
        }
        let mut wall: Vec<f64> = runs.iter().map(|r| r.wall).collect();
        let mut cpu: Vec<f64> = runs.iter().map(|r| r.cpu).collect();
        let rss = runs.iter().map(|r| r.rss_mib).fold(0.0, f64::max);
        let (min, med, max) = (
            percentile(&mut wall, 0.0),
            percentile(&mut wall, 50.0),
            percentile(&mut wall, 100.0),
        );
        println!(
            "| {name} | {min:.2} / {med:.2} / {max:.2} | {:.0} | {:.2} | {rss:.0} |",
            mb / med,
            percentile(&mut cpu, 50.0)
        );
    }
    if !dump.is_empty() {
        let mut ratios: Vec<f64> = dump
            .iter()
            .zip(&agent)
            .map(|(d, a)| d.wall / a.wall)
            .collect();
        println!(
            "\nspeed vs mongodump (mongodump's wall time / the agent's, same round): {:.2}× / {:.2}× / {:.2}× (min / median / max)",
            percentile(&mut ratios, 0.0),
            percentile(&mut ratios, 50.0),
            percentile(&mut ratios, 100.0)
        );
    }
    println!("load after: {}", loadavg());
    Ok(())
}

/// Seeds the documents (skipped when the database already holds them). Returns the seconds taken.
async fn seed(args: &Args, db: &mongodb::Database) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut present = 0;
    for c in 0..args.collections {
        present += db
            .collection::<Document>(&format!("c{c}"))
            .estimated_document_count()
            .await?;
    }
    if present == u64::from(args.docs) {
        return Ok(0.0);
    }
    db.drop().await?;
    const WORDS: &[&str] = &[
        "interview",
        "candidate",
        "question",
        "answer",
        "score",
        "panel",
        "feedback",
        "schedule",
        "room",
        "python",
        "rust",
        "system",
        "design",
        "hire",
        "offer",
        "remote",
        "onsite",
        "notes",
    ];
    let per = args.docs / args.collections;
    let text_len = args.doc_bytes.saturating_sub(90).max(10);
    let mut tasks = Vec::new();
    for c in 0..args.collections {
        // Two writers per collection, each with its own slice of the documents.
        for half in 0..2u32 {
            let coll = db.collection::<Document>(&format!("c{c}"));
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(c * 2 + half + 1);
            let (from, to) = (per / 2 * half, if half == 0 { per / 2 } else { per });
            tasks.push(tokio::spawn(async move {
                let mut batch = Vec::with_capacity(1000);
                for i in from..to {
                    let mut text = String::with_capacity(text_len + 16);
                    while text.len() < text_len {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        text.push_str(WORDS[(rng % WORDS.len() as u64) as usize]);
                        text.push(' ');
                    }
                    batch.push(doc! {
                        "_id": ObjectId::new(),
                        "n": i64::from(i),
                        "user": format!("user{}", i % 5000),
                        "text": text,
                    });
                    if batch.len() == 1000 {
                        coll.insert_many(std::mem::take(&mut batch)).await?;
                    }
                }
                if !batch.is_empty() {
                    coll.insert_many(batch).await?;
                }
                anyhow::Ok(())
            }));
        }
    }
    for t in tasks {
        t.await??;
    }
    for c in 0..args.collections {
        db.collection::<Document>(&format!("c{c}"))
            .create_index(IndexModel::builder().keys(doc! {"user": 1}).build())
            .await?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Runs `cmd` to completion (its output discarded unless it fails) and measures it: wall time,
/// CPU of the process and of its descendants (this process's children's times from
/// `/proc/self/stat`, which count exactly the children waited for), and peak RSS (`VmHWM`,
/// polled every 10 ms).
fn measure(mut cmd: Command) -> anyhow::Result<Run> {
    let before = children_cpu()?;
    let t = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let poller = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(kib) = proc_status_kib(pid, "VmHWM") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let output = child.wait_with_output()?;
    let wall = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = poller.join();
    if !output.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(Run {
        wall,
        cpu: children_cpu()? - before,
        rss_mib: peak.load(Ordering::Relaxed) as f64 / 1024.0,
    })
}

/// cutime + cstime of this process (its waited-for children and theirs), in seconds.
fn children_cpu() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/self/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 16 and 17 of stat(5); `after` starts at field 3.
    let ticks: u64 = fields[13].parse::<u64>()? + fields[14].parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks() as f64)
}

/// The agent's snapshot code in this process, into a fresh local-directory repository. CPU and
/// RSS are not separable from this process's own and are reported as 0.
async fn in_process(args: &Args, uri: &str, dir: &Path) -> anyhow::Result<Run> {
    let path = dir.join("repo-inproc");
    let _ = std::fs::remove_dir_all(&path);
    let repo = Repository::new(
        Arc::new(LocalDir::new(&path)?),
        Keyring::new(vec![SecretKey::generate()?], "bench")?,
    );
    repo.init().await?;
    let t = Instant::now();
    let source = OplogSource::connect(uri).await?;
    let settings = SnapshotSettings {
        source: "bench".into(),
        parallelism: args.parallelism,
        max_segment_bytes: 16 << 20,
        zstd_level: 3,
        writer: WriterInfo {
            id: "bench".into(),
            fence: 0,
        },
        reason: "on-demand".into(),
        databases: Some(vec![DB.into()]),
        users_and_roles: false,
    };
    let manifest = take(&repo, &source, &settings).await?;
    let wall = t.elapsed().as_secs_f64();
    if manifest.documents() != u64::from(args.docs) {
        bail!(
            "the snapshot holds {} documents, not {}",
            manifest.documents(),
            args.docs
        );
    }
    std::fs::remove_dir_all(&path)?;
    Ok(Run {
        wall,
        cpu: 0.0,
        rss_mib: 0.0,
    })
}
