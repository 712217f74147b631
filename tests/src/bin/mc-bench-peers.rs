//! `mc-bench-peers`: mc-backup against mongodump and mongorestore (issue 16), measured in one run
//! on the same data, each tool as the separate process a user runs. It prints figures; it asserts
//! nothing.
//!
//! ```text
//! cargo build --release --bin mc-agent --bin mc-restore --bin mc-bench-peers
//! eval "$(scripts/services.sh env)"   # MC_TEST_MONGOD_BIN
//! target/release/mc-bench-peers [--size-gb 0.23] [--rounds 3] \
//!     [--mongodump PATH --mongorestore PATH] [--oplog-gb 2] [--drill-ns transcripts] [--csv FILE]
//! ```
//!
//! Setup (not timed): a source replica set (a private single-node set started by the bench, or
//! `--source-uri`; `mc-agent snapshot` copies every database of its source, so a shared server's
//! other databases would be copied too) seeded with `--size-gb` of BSON in four collections of
//! compressible text (the interview vocabulary of `mc_tests::workload`): `users` (~300 B, a
//! unique index on `email` and a compound one on `org, login`), `interviews` (~1 KiB, an index on
//! `candidate`), `events` (200–600 B, a compound index on `interview, at`) and `transcripts`
//! (4–64 KiB, an index on `interview`). A local-directory repository (zstd + AES-GCM) with the
//! agent's capture running in this process, so the snapshots become restorable; a private target
//! replica set, so the restores' writes never enter the source's oplog.
//!
//! Timed, per round, alternating which tool goes first:
//! - `mongodump --uri SRC --db DB --out DIR` vs `mc-agent snapshot --policy P` (the policy's
//!   defaults: 4 collections at once, zstd 3, encrypted);
//! - `mongorestore --uri TGT --nsInclude 'DB.*' --nsFrom 'DB.*' --nsTo 'NEW.*' DIR` vs
//!   `mc-restore --at latest --policy P --target TGT --ns 'DB.*' --ns-from DB --ns-to NEW`, each
//!   into a fresh database with the same indexes built; the documents and indexes the target holds
//!   are checked after every restore, then the database is dropped.
//!
//! For each: wall time min/median/max, CPU seconds (user + system) and peak RSS of the child
//! (wait4), the CPU seconds the mongod it talks to spent meanwhile (the source's for a dump, the
//! target's for a restore; from /proc, not shown with `--source-uri`), and per round the speed
//! ratio peer time / mc-backup time (above 1: mc-backup is faster). Without `--mongodump`/
//! `--mongorestore` (or `MC_BENCH_MONGODUMP`/`MC_BENCH_MONGORESTORE`) only mc-backup's figures
//! are printed.
//!
//! `--drill-ns COLL` then runs `mc-restore drill --ns DB.COLL` (a sample) and compares the RTO it
//! projects for the full snapshot with the full restores just measured. `--oplog-gb N` then
//! writes at least N GB of oplog on the source (large updates and inserts), waits until capture
//! has it, and times one more `mc-restore --at latest`: the snapshot loaded and that oplog
//! replayed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Parser;
use futures::TryStreamExt;
use mc_agent::capture::oplog::OplogSource;
use mc_agent::capture::CaptureSettings;
use mc_agent::metrics::Metrics;
use mc_core::catalog::Repository;
use mc_core::crypto::keys::create_keyring_file;
use mc_core::storage::local::LocalDir;
use mc_tests::bench::{cpu_seconds, loadavg, machine_description, percentile};
use mc_tests::mongod::{PrivateReplSet, ReplSetConfig};
use mc_tests::workload::{self, next, text};
use mongodb::bson::{doc, DateTime, Document, RawDocumentBuf};
use mongodb::options::IndexOptions;
use mongodb::{Client, IndexModel};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "mc-bench-peers",
    about = "mc-agent snapshot and mc-restore against mongodump and mongorestore, same run"
)]
struct Args {
    /// Dataset size: GB (10^9 bytes) of BSON documents.
    #[arg(long, default_value_t = 0.23)]
    size_gb: f64,
    /// Rounds of each timed command.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// mongodump binary (without it, no dump figures).
    #[arg(long, env = "MC_BENCH_MONGODUMP")]
    mongodump: Option<PathBuf>,
    /// mongorestore binary (without it, no mongorestore figures).
    #[arg(long, env = "MC_BENCH_MONGORESTORE")]
    mongorestore: Option<PathBuf>,
    /// Where mc-agent and mc-restore are (default: this binary's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Seed an existing replica set instead of a private one. mc-agent snapshot copies every
    /// database on it, mongodump only the bench's.
    #[arg(long)]
    source_uri: Option<String>,
    /// After the rounds: a drill of this collection alone, its projected full-size RTO compared
    /// with the full restores measured.
    #[arg(long, value_name = "COLL")]
    drill_ns: Option<String>,
    /// After the rounds: write at least this many GB of oplog on the source and time a restore
    /// that replays it.
    #[arg(long, default_value_t = 0.0)]
    oplog_gb: f64,
    /// Directory for the repository and the dumps (default: the system's temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Append one CSV line of the figures to this file (a header first if it is new).
    #[arg(long)]
    csv: Option<PathBuf>,
}

/// One collection of the dataset.
struct Spec {
    name: &'static str,
    /// Share of the dataset's bytes.
    share: f64,
    make: fn(i64, &mut u64) -> Document,
    indexes: fn() -> Vec<IndexModel>,
}

const SOURCE_ID: &str = "bench";
const SOURCE_URI_VAR: &str = "MC_BENCH_SOURCE_URI";

fn specs() -> [Spec; 4] {
    [
        Spec {
            name: "users",
            share: 0.10,
            make: |id, rng| {
                let bio = 40 + (next(rng) % 200) as usize;
                doc! {
                    "_id": id,
                    "email": format!("user{id}@example.com"),
                    "org": format!("org-{}", next(rng) % 1000),
                    "login": format!("login{id}"),
                    "created": DateTime::from_millis(1_700_000_000_000 + id * 1000),
                    "bio": text(bio, rng),
                }
            },
            indexes: || {
                vec![
                    IndexModel::builder()
                        .keys(doc! {"email": 1})
                        .options(IndexOptions::builder().unique(true).build())
                        .build(),
                    IndexModel::builder()
                        .keys(doc! {"org": 1, "login": 1})
                        .build(),
                ]
            },
        },
        Spec {
            name: "interviews",
            share: 0.40,
            make: workload::document,
            indexes: || vec![IndexModel::builder().keys(doc! {"candidate": 1}).build()],
        },
        Spec {
            name: "events",
            share: 0.15,
            make: |id, rng| {
                let detail = 100 + (next(rng) % 400) as usize;
                doc! {
                    "_id": id,
                    "interview": id / 4,
                    "kind": text(1, rng).trim_end().to_owned(),
                    "at": DateTime::from_millis(1_700_000_000_000 + id * 250),
                    "detail": text(detail, rng),
                }
            },
            indexes: || {
                vec![IndexModel::builder()
                    .keys(doc! {"interview": 1, "at": -1})
                    .build()]
            },
        },
        Spec {
            name: "transcripts",
            share: 0.35,
            make: |id, rng| {
                let len = 4096 + (next(rng) % (60 * 1024)) as usize;
                doc! {
                    "_id": id,
                    "interview": (id * 37) % 1_000_003,
                    "language": "en",
                    "body": text(len, rng),
                }
            },
            indexes: || vec![IndexModel::builder().keys(doc! {"interview": 1}).build()],
        },
    ]
}

/// One timed child process.
#[derive(Debug, Clone)]
struct Run {
    wall: f64,
    /// User + system seconds of the child (and of children it waited for).
    cpu: f64,
    /// Peak resident set of the child, MiB.
    rss_mib: f64,
    /// CPU seconds the mongod serving the child spent while it ran (None: not ours to see).
    server_cpu: Option<f64>,
    stdout: String,
    stderr: String,
}

/// Figures of one kind of work over the rounds.
#[derive(Default)]
struct Series {
    runs: Vec<Run>,
}

impl Series {
    fn walls(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.wall).collect()
    }
    fn median_wall(&self) -> f64 {
        percentile(&mut self.walls(), 50.0)
    }
    fn row(&self, work: &str, tool: &str, bytes: u64) -> String {
        let mut w = self.walls();
        let mut cpu: Vec<f64> = self.runs.iter().map(|r| r.cpu).collect();
        let mut server: Vec<f64> = self.runs.iter().filter_map(|r| r.server_cpu).collect();
        let server = if server.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.2}", percentile(&mut server, 50.0))
        };
        let rss = self.max_rss();
        let med = percentile(&mut w, 50.0);
        format!(
            "| {work} | {tool} | {:.2} / {:.2} / {:.2} | {:.0} | {:.2} | {server} | {:.0} |",
            percentile(&mut w, 0.0),
            med,
            percentile(&mut w, 100.0),
            bytes as f64 / 1e6 / med,
            percentile(&mut cpu, 50.0),
            rss
        )
    }
    fn max_rss(&self) -> f64 {
        self.runs.iter().map(|r| r.rss_mib).fold(0.0, f64::max)
    }
}

/// What the bench started, stopped at the end whether it succeeded or not.
struct Setup {
    source_uri: String,
    source_set: Option<PrivateReplSet>,
    target_set: PrivateReplSet,
    source: Client,
    db: String,
    dir: tempfile::TempDir,
    bin_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary's directory")?
            .to_owned(),
    };
    for tool in ["mc-agent", "mc-restore"] {
        ensure!(
            bin_dir.join(tool).exists(),
            "{} not found: build it first (cargo build --release --bin mc-agent --bin mc-restore) or pass --bin-dir",
            bin_dir.join(tool).display()
        );
    }
    let started = Instant::now();
    eprintln!("starting the replica sets");
    let source_set = match &args.source_uri {
        Some(_) => None,
        None => Some(
            PrivateReplSet::start(ReplSetConfig {
                // Capture tails it while the --oplog-gb writes run; room for a slow moment.
                oplog_mb: if args.oplog_gb > 0.0 { 2048 } else { 256 },
                ..ReplSetConfig::default()
            })
            .await,
        ),
    };
    let source_uri = match (&args.source_uri, &source_set) {
        (Some(uri), _) => uri.clone(),
        (None, Some(set)) => set.uri(),
        (None, None) => unreachable!("a private set is started without --source-uri"),
    };
    let target_set = PrivateReplSet::start(ReplSetConfig {
        oplog_mb: 256,
        ..ReplSetConfig::default()
    })
    .await;
    let dir = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::tempdir_in(d)?
        }
        None => tempfile::tempdir()?,
    };
    let setup = Setup {
        source: Client::with_uri_str(&source_uri).await?,
        source_uri,
        source_set,
        target_set,
        db: mc_tests::unique_db("peers"),
        dir,
        bin_dir,
    };
    let result = bench(&args, &setup).await;
    // Drop what was created, also after a failure.
    if args.source_uri.is_some() {
        if let Err(e) = setup.source.database(&setup.db).drop().await {
            eprintln!("could not drop {} on the source: {e}", setup.db);
        }
    }
    drop(setup.source_set);
    drop(setup.target_set);
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    result
}

async fn bench(args: &Args, s: &Setup) -> anyhow::Result<()> {
    // --- The dataset.
    let t = Instant::now();
    let target_bytes = (args.size_gb * 1e9) as u64;
    eprintln!(
        "seeding {:.2} GB into {} on {}",
        args.size_gb,
        s.db,
        redact(&s.source_uri)
    );
    let mut seeding = Vec::new();
    for (i, spec) in specs().into_iter().enumerate() {
        let coll = s
            .source
            .database(&s.db)
            .collection::<RawDocumentBuf>(spec.name);
        let want = (target_bytes as f64 * spec.share) as u64;
        seeding.push(tokio::spawn(async move {
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1);
            let (mut bytes, mut docs) = (0u64, 0i64);
            while bytes < want {
                let (mut batch, mut batch_bytes) = (Vec::new(), 0usize);
                while batch.len() < 1000 && batch_bytes < 8 << 20 && bytes < want {
                    let d = RawDocumentBuf::try_from(&(spec.make)(docs, &mut rng))?;
                    bytes += d.as_bytes().len() as u64;
                    batch_bytes += d.as_bytes().len();
                    batch.push(d);
                    docs += 1;
                }
                coll.insert_many(batch).await?;
            }
            for index in (spec.indexes)() {
                coll.create_index(index).await?;
            }
            anyhow::Ok((spec.name, docs as u64, bytes))
        }));
    }
    let mut counts = Vec::new();
    for task in seeding {
        counts.push(task.await??);
    }
    let docs: u64 = counts.iter().map(|c| c.1).sum();
    let bytes: u64 = counts.iter().map(|c| c.2).sum();
    let indexes = index_names(&s.source, &s.db).await?;
    eprintln!(
        "seeded {docs} documents, {:.1} MB of BSON in {:.0} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // --- Repository, policy and capture.
    let dir = s.dir.path();
    let keyring = create_keyring_file(&dir.join("keyring"))?;
    let repo = Repository::new(Arc::new(LocalDir::new(dir.join("repo"))?), keyring);
    repo.init().await?;
    let policy =
        mc_tests::agent::write_test_policy(dir, "bench-peers", SOURCE_ID, SOURCE_URI_VAR, "");
    let oplog = OplogSource::connect(&s.source_uri).await?;
    let metrics = Arc::new(Metrics::default());
    let (stop, stop_rx) = watch::channel(false);
    let capture = tokio::spawn(mc_agent::capture::run(
        repo.clone(),
        oplog.clone(),
        CaptureSettings::new(
            &Default::default(),
            SOURCE_ID,
            "bench-capture",
            dir.join("capture-spool"),
        ),
        metrics.clone(),
        stop_rx,
    ));
    let result = timed_rounds(
        args, s, &policy, &oplog, &metrics, docs, bytes, &counts, &indexes,
    )
    .await;
    stop.send(true).ok();
    match capture.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("capture ended with an error: {e}"),
        Err(e) => eprintln!("capture task failed: {e}"),
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn timed_rounds(
    args: &Args,
    s: &Setup,
    policy: &Path,
    oplog: &OplogSource,
    metrics: &Metrics,
    docs: u64,
    bytes: u64,
    counts: &[(&str, u64, u64)],
    indexes: &[(String, Vec<String>)],
) -> anyhow::Result<()> {
    wait_durable(oplog, metrics).await?;
    let dir = s.dir.path();
    let dump_dir = dir.join("dump");
    let mc_agent = s.bin_dir.join("mc-agent");
    let mc_restore = s.bin_dir.join("mc-restore");
    let target_uri = s.target_set.uri();
    let target = s.target_set.node_client(0).clone();
    let source_pid = s.source_set.as_ref().and_then(|set| set.pid(0));
    let target_pid = s.target_set.pid(0);
    let load_before = loadavg();

    let (mut dump, mut snap) = (Series::default(), Series::default());
    for round in 0..args.rounds {
        let mc_first = round % 2 == 1;
        for mc in [mc_first, !mc_first] {
            if mc {
                eprintln!("round {}: mc-agent snapshot", round + 1);
                let run = run_timed(
                    Command::new(&mc_agent)
                        .args(["snapshot", "--policy"])
                        .arg(policy)
                        .env(SOURCE_URI_VAR, &s.source_uri),
                    "mc-agent snapshot",
                    source_pid,
                )
                .await?;
                let n = run
                    .stdout
                    .split(" documents")
                    .next()
                    .and_then(|head| head.rsplit(' ').next())
                    .and_then(|n| n.parse::<u64>().ok());
                // With --source-uri the snapshot holds the server's other databases too.
                ensure!(
                    n.is_some_and(|n| n >= docs),
                    "mc-agent snapshot copied {n:?} documents, expected {docs}: {}",
                    run.stdout
                );
                snap.runs.push(run);
            } else if let Some(tool) = &args.mongodump {
                eprintln!("round {}: mongodump", round + 1);
                if dump_dir.exists() {
                    std::fs::remove_dir_all(&dump_dir)?;
                }
                let run = run_timed(
                    Command::new(tool)
                        .arg(format!("--uri={}", s.source_uri))
                        .args(["--db", &s.db, "--out"])
                        .arg(&dump_dir),
                    "mongodump",
                    source_pid,
                )
                .await?;
                let n = mongodump_documents(&run.stderr);
                ensure!(
                    n == docs,
                    "mongodump dumped {n} documents, expected {docs}: {}",
                    run.stderr
                );
                dump.runs.push(run);
            }
        }
    }
    // The newest snapshot becomes restorable once capture passes its end.
    wait_durable(oplog, metrics).await?;

    let (mut peer_restore, mut mc_rest) = (Series::default(), Series::default());
    let mut mc_phases = Vec::new();
    let with_peer = args.mongorestore.is_some() && args.mongodump.is_some();
    for round in 0..args.rounds {
        let mc_first = round % 2 == 0;
        for mc in [mc_first, !mc_first] {
            let to = format!("{}_r{round}_{}", s.db, if mc { "mc" } else { "peer" });
            if mc {
                eprintln!("round {}: mc-restore --at latest", round + 1);
                let run = run_timed(
                    Command::new(&mc_restore)
                        .args(["--at", "latest", "--json", "--policy"])
                        .arg(policy)
                        .args(["--target", &target_uri, "--ns"])
                        .arg(format!("{}.*", s.db))
                        .args(["--ns-from", &s.db, "--ns-to", &to])
                        .env(SOURCE_URI_VAR, &s.source_uri),
                    "mc-restore",
                    target_pid,
                )
                .await?;
                check_restored(&target, &to, counts, indexes).await?;
                mc_phases.push(phases(&run.stdout));
                mc_rest.runs.push(run);
            } else if with_peer {
                let tool = args.mongorestore.as_ref().context("mongorestore")?;
                eprintln!("round {}: mongorestore", round + 1);
                let run = run_timed(
                    Command::new(tool)
                        .arg(format!("--uri={target_uri}"))
                        .arg(format!("--nsInclude={}.*", s.db))
                        .arg(format!("--nsFrom={}.*", s.db))
                        .arg(format!("--nsTo={to}.*"))
                        .arg(&dump_dir),
                    "mongorestore",
                    target_pid,
                )
                .await?;
                check_restored(&target, &to, counts, indexes).await?;
                peer_restore.runs.push(run);
            } else {
                continue;
            }
            target.database(&to).drop().await?;
        }
    }

    let load_after = loadavg();
    println!(
        "mc-bench-peers: {docs} documents, {:.1} MB of BSON in {} collections ({}), {} rounds",
        bytes as f64 / 1e6,
        counts.len(),
        counts
            .iter()
            .map(|(n, d, b)| format!("{n} {d} docs {:.1} MB", *b as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(", "),
        args.rounds
    );
    println!(
        "secondary indexes: {}",
        indexes
            .iter()
            .map(|(c, i)| format!("{c}: {}", i.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "machine: {}; load average {load_before} before the timed rounds, {load_after} after",
        machine_description()
    );
    println!("{}", version(&mc_agent));
    println!();
    println!("| work | tool | wall s min / median / max | MB/s (median) | CPU s (median) | mongod CPU s (median) | peak RSS MiB (max) |");
    println!("|---|---|---|---|---|---|---|");
    if !dump.runs.is_empty() {
        println!("{}", dump.row("full dump", "mongodump", bytes));
    }
    println!("{}", snap.row("full dump", "mc-agent snapshot", bytes));
    if !peer_restore.runs.is_empty() {
        println!(
            "{}",
            peer_restore.row("full restore", "mongorestore", bytes)
        );
    }
    println!(
        "{}",
        mc_rest.row("full restore", "mc-restore --at latest", bytes)
    );
    println!();
    for (work, peer, ours) in [
        ("snapshot vs mongodump", &dump, &snap),
        ("restore vs mongorestore", &peer_restore, &mc_rest),
    ] {
        if peer.runs.is_empty() {
            continue;
        }
        let mut ratios: Vec<f64> = peer
            .runs
            .iter()
            .zip(&ours.runs)
            .map(|(p, o)| p.wall / o.wall)
            .collect();
        let each = ratios
            .iter()
            .map(|r| format!("{r:.2}x"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "speed ratio {work} (peer time / mc-backup time, same round; above 1: mc-backup faster): {each}; min / median / max {:.2} / {:.2} / {:.2}",
            percentile(&mut ratios, 0.0),
            percentile(&mut ratios, 50.0),
            percentile(&mut ratios, 100.0)
        );
    }
    for (i, p) in mc_phases.iter().enumerate() {
        println!("mc-restore round {} phases: {p}", i + 1);
    }

    let mut drill = None;
    if let Some(coll) = &args.drill_ns {
        drill = Some(run_drill(s, &mc_restore, policy, coll, &mc_rest).await?);
    }
    let mut oplog_run = None;
    if args.oplog_gb > 0.0 {
        oplog_run = Some(
            oplog_restore(
                args,
                s,
                &mc_restore,
                policy,
                oplog,
                metrics,
                &target,
                indexes,
            )
            .await?,
        );
    }

    if let Some(path) = &args.csv {
        let gb = bytes as f64 / 1e9;
        let med = |s: &Series| {
            if s.runs.is_empty() {
                f64::NAN
            } else {
                s.median_wall()
            }
        };
        let (oplog_bytes, oplog_wall, oplog_rss, replay_s) = oplog_run
            .as_ref()
            .map_or((0, f64::NAN, f64::NAN, f64::NAN), |o| {
                (o.0, o.1.wall, o.1.rss_mib, o.2)
            });
        let line = format!(
            "{gb:.3},{docs},{:.2},{:.2},{:.1},{:.2},{:.2},{:.1},{:.2},{:.2},{oplog_bytes},{oplog_wall:.2},{oplog_rss:.1},{replay_s:.2},{},{}\n",
            snap.median_wall(),
            snap.median_wall() / gb,
            snap.max_rss(),
            mc_rest.median_wall(),
            mc_rest.median_wall() / gb,
            mc_rest.max_rss(),
            med(&dump),
            med(&peer_restore),
            drill.map_or(String::new(), |d| format!("{d:.2}")),
            loadavg().replace(' ', "/"),
        );
        let new = !path.exists();
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        use std::io::Write;
        if new {
            out.write_all(b"bson_gb,docs,snapshot_s,snapshot_s_per_gb,snapshot_rss_mib,restore_s,restore_s_per_gb,restore_rss_mib,mongodump_s,mongorestore_s,oplog_bytes,oplog_restore_s,oplog_restore_rss_mib,replay_s,drill_projected_s,load_after\n")?;
        }
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// A drill of one collection; prints its projection for the full snapshot against the full
/// restores measured; returns the projected seconds.
async fn run_drill(
    s: &Setup,
    mc_restore: &Path,
    policy: &Path,
    coll: &str,
    full: &Series,
) -> anyhow::Result<f64> {
    eprintln!("drill of {}.{coll}", s.db);
    let run = run_timed(
        Command::new(mc_restore)
            .args([
                "drill",
                "--at",
                "latest",
                "--no-source",
                "--json",
                "--policy",
            ])
            .arg(policy)
            .args(["--scratch", &s.target_set.uri(), "--ns"])
            .arg(format!("{}.{coll}", s.db))
            .env(SOURCE_URI_VAR, &s.source_uri),
        "mc-restore drill",
        s.target_set.pid(0),
    )
    .await?;
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .with_context(|| format!("the drill's JSON report: {}", run.stdout))?;
    let projected = report["rto"]["projected_seconds"]
        .as_f64()
        .with_context(|| format!("no projected RTO in {report:#}"))?;
    let measured = report["rto"]["measured_seconds"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let v = &report["volumes"];
    // The full restores' own phase total (plan through indexes), the drill's measure.
    let mut restore_phases: Vec<f64> = full
        .runs
        .iter()
        .filter_map(|r| restore_seconds(&r.stdout))
        .collect();
    let actual = percentile(&mut restore_phases, 50.0);
    println!();
    println!(
        "drill of {coll} ({} of {} bytes of the snapshot, verdict {}): measured {measured:.2} s, projected for the full snapshot {projected:.2} s; full restores measured: {actual:.2} s (median of their restore phases), {:.2} s (median wall); error of the projection {:+.1} % (phases), {:+.1} % (wall)",
        v["document_bytes"],
        v["full_snapshot_bytes"],
        report["verdict"],
        full.median_wall(),
        (projected / actual - 1.0) * 100.0,
        (projected / full.median_wall() - 1.0) * 100.0
    );
    println!(
        "drill phases: {}",
        report["phases"]
            .as_array()
            .map(|ps| ps
                .iter()
                .map(|p| format!(
                    "{} {:.2} s",
                    p["name"].as_str().unwrap_or("?"),
                    p["seconds"].as_f64().unwrap_or(f64::NAN)
                ))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    Ok(projected)
}

/// Writes at least `--oplog-gb` of oplog on the source, waits until capture has it, then times a
/// restore that loads the snapshot and replays it. Returns (oplog bytes captured, the run, replay
/// seconds).
#[allow(clippy::too_many_arguments)]
async fn oplog_restore(
    args: &Args,
    s: &Setup,
    mc_restore: &Path,
    policy: &Path,
    oplog: &OplogSource,
    metrics: &Metrics,
    target: &Client,
    indexes: &[(String, Vec<String>)],
) -> anyhow::Result<(u64, Run, f64)> {
    let want = (args.oplog_gb * 1e9) as u64;
    let (ops0, bytes0) = (
        metrics.capture.ops_captured.get(),
        metrics.capture.bytes_sealed.get(),
    );
    let t = Instant::now();
    eprintln!("writing {:.2} GB of oplog on the source", args.oplog_gb);
    let db = s.source.database(&s.db);
    let transcripts = db.collection::<Document>("transcripts");
    let interviews = db.collection::<RawDocumentBuf>("interviews");
    let n_transcripts = transcripts.estimated_document_count().await?.max(1) as i64;
    let mut next_interview = interviews.estimated_document_count().await? as i64 + 1_000_000_000;
    let mut rng = 0x5_DEEC_E66Du64;
    let (mut sent, mut round) = (0u64, 0i64);
    while sent < want {
        // New bodies for 50 transcripts (~34 KiB each): one oplog entry per document.
        let from = (round * 50) % n_transcripts;
        let body = text(4096 + (next(&mut rng) % (60 * 1024)) as usize, &mut rng);
        let r = transcripts
            .update_many(
                doc! {"_id": {"$gte": from, "$lt": from + 50}},
                doc! {"$set": {"body": &body, "revised": round}},
            )
            .await?;
        sent += r.modified_count * body.len() as u64;
        // 500 new interviews (~1 KiB).
        let batch: Vec<RawDocumentBuf> = (0..500)
            .map(|_| {
                next_interview += 1;
                RawDocumentBuf::try_from(&workload::document(next_interview, &mut rng))
            })
            .collect::<Result<_, _>>()?;
        sent += batch.iter().map(|d| d.as_bytes().len() as u64).sum::<u64>();
        interviews.insert_many(batch).await?;
        round += 1;
    }
    wait_durable(oplog, metrics).await?;
    let (ops, oplog_bytes) = (
        metrics.capture.ops_captured.get() - ops0,
        metrics.capture.bytes_sealed.get() - bytes0,
    );
    eprintln!(
        "{ops} oplog entries, {:.2} GB captured in {:.0} s",
        oplog_bytes as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    let mut counts = Vec::new();
    for spec in specs() {
        let n = db
            .collection::<Document>(spec.name)
            .estimated_document_count()
            .await?;
        counts.push((spec.name, n, 0));
    }
    let to = format!("{}_oplog", s.db);
    eprintln!("mc-restore --at latest with the oplog");
    let run = run_timed(
        Command::new(mc_restore)
            .args(["--at", "latest", "--json", "--policy"])
            .arg(policy)
            .args(["--target", &s.target_set.uri(), "--ns"])
            .arg(format!("{}.*", s.db))
            .args(["--ns-from", &s.db, "--ns-to", &to])
            .env(SOURCE_URI_VAR, &s.source_uri),
        "mc-restore",
        s.target_set.pid(0),
    )
    .await?;
    check_restored(target, &to, &counts, indexes).await?;
    target.database(&to).drop().await?;
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_default();
    let replay_s = phase_seconds(&summary, "replay").unwrap_or(f64::NAN);
    let replay = &summary["replay"];
    println!();
    println!(
        "restore with {ops} oplog entries ({:.2} GB of oplog) after the snapshot: {:.2} s wall, {:.2} CPU s (target mongod {:.2}), peak RSS {:.0} MiB; replay {replay_s:.2} s ({} writes, {} commands applied; {:.0} MB/s of oplog); phases: {}",
        oplog_bytes as f64 / 1e9,
        run.wall,
        run.cpu,
        run.server_cpu.unwrap_or(f64::NAN),
        run.rss_mib,
        replay["applied_writes"],
        replay["applied_commands"],
        oplog_bytes as f64 / 1e6 / replay_s,
        phases(&run.stdout)
    );
    Ok((oplog_bytes, run, replay_s))
}

/// Waits until capture holds everything majority-committed now (up to 10 minutes).
async fn wait_durable(oplog: &OplogSource, metrics: &Metrics) -> anyhow::Result<()> {
    let now = oplog.majority_point().await?;
    let packed = (u64::from(now.t) << 32) | u64::from(now.i);
    let t = Instant::now();
    while metrics.capture.durable_ts.load(Relaxed) < packed {
        ensure!(
            t.elapsed() < Duration::from_secs(600),
            "capture did not reach {now} in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Runs `cmd` to its end, measuring wall time, CPU seconds and peak RSS of the child, and the CPU
/// seconds process `server` (the mongod it talks to) spent meanwhile; fails with its output when
/// it exits non-zero.
async fn run_timed(cmd: &mut Command, label: &str, server: Option<u32>) -> anyhow::Result<Run> {
    let server_cpu = || server.map(cpu_seconds).transpose();
    let server_before = server_cpu()?;
    let out = tempfile::NamedTempFile::new()?;
    let err = tempfile::NamedTempFile::new()?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(out.reopen()?)
        .stderr(err.reopen()?);
    let t = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {label}"))?;
    let pid = child.id();
    let (status, usage) = tokio::task::spawn_blocking(move || wait_rusage(pid)).await??;
    let wall = t.elapsed().as_secs_f64();
    let server_after = server_cpu()?;
    drop(child);
    let stdout = std::fs::read_to_string(out.path())?;
    let stderr = std::fs::read_to_string(err.path())?;
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    if !libc::WIFEXITED(status) || ![0, 5].contains(&libc::WEXITSTATUS(status)) {
        bail!(
            "{label} failed (wait status {status}):\nstdout: {}\nstderr: {}",
            tail(&stdout),
            tail(&stderr)
        );
    }
    Ok(Run {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        rss_mib: usage.ru_maxrss as f64 / 1024.0,
        server_cpu: server_before.zip(server_after).map(|(b, a)| a - b),
        stdout,
        stderr,
    })
}

/// Waits for child `pid` and returns its wait status and resource usage.
// Exception to the workspace's `unsafe_code = "deny"`: std's `Child::wait` discards the
// child's rusage, and wait4(2) is the only call that returns one child's own CPU time and peak
// RSS (getrusage(RUSAGE_CHILDREN) sums CPU over all children and keeps the largest RSS of any).
#[allow(unsafe_code)]
fn wait_rusage(pid: u32) -> std::io::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain integers and timevals, for which all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live, writable values of the types wait4 expects; `pid`
        // is our own child, not yet reaped (std's Child is never waited for).
        let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if rc >= 0 {
            return Ok((status, usage));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The documents mongodump reports having written (`done dumping db.coll (N documents)`).
fn mongodump_documents(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|l| l.split("done dumping ").nth(1))
        .filter_map(|rest| {
            rest.split('(')
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Every collection's secondary index names, sorted.
async fn index_names(client: &Client, db: &str) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for spec in specs() {
        let mut names: Vec<String> = client
            .database(db)
            .collection::<Document>(spec.name)
            .list_index_names()
            .await?
            .into_iter()
            .filter(|n| n != "_id_")
            .collect();
        names.sort();
        out.push((spec.name.to_owned(), names));
    }
    Ok(out)
}

/// Checks that `db` on the target holds each collection's documents (`counts`) and indexes.
async fn check_restored(
    target: &Client,
    db: &str,
    counts: &[(&str, u64, u64)],
    indexes: &[(String, Vec<String>)],
) -> anyhow::Result<()> {
    for (name, want, _) in counts {
        let got = target
            .database(db)
            .collection::<Document>(name)
            .estimated_document_count()
            .await?;
        ensure!(
            got == *want,
            "{db}.{name}: {got} documents restored, {want} expected"
        );
    }
    let got = index_names(target, db).await?;
    ensure!(
        got == indexes,
        "{db}: indexes {got:?} restored, {indexes:?} expected"
    );
    // A read of every document would double the restore's cost at 16 GB; the counts and index
    // names above are the check, and one document per collection is read back.
    for (name, _, _) in counts {
        let one: Vec<Document> = target
            .database(db)
            .collection::<Document>(name)
            .find(doc! {})
            .limit(1)
            .await?
            .try_collect()
            .await?;
        ensure!(!one.is_empty(), "{db}.{name}: no document can be read");
    }
    Ok(())
}

/// `name seconds` of each phase of mc-restore's JSON summary.
fn phases(stdout: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(stdout).unwrap_or_default();
    v["phases"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    format!(
                        "{} {:.2} s",
                        p["name"].as_str().unwrap_or("?"),
                        p["seconds"].as_f64().unwrap_or(f64::NAN)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "(no JSON summary)".into())
}

fn phase_seconds(summary: &serde_json::Value, name: &str) -> Option<f64> {
    summary["phases"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?["seconds"]
        .as_f64()
}

/// The restore phases' total (`seconds` of mc-restore's JSON summary).
fn restore_seconds(stdout: &str) -> Option<f64> {
    serde_json::from_str::<serde_json::Value>(stdout).ok()?["seconds"].as_f64()
}

fn version(mc_agent: &Path) -> String {
    Command::new(mc_agent)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("mc-agent version: {e}"))
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A URI without its password.
fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}<credentials>{}", &uri[..scheme + 3], &uri[at..])
        }
        _ => uri.to_owned(),
    }
}
