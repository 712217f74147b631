//! `mc-bench-capture`: how fast, how far behind and how heavy the oplog capture agent is
//! (issue 4). It prints figures; it asserts nothing.
//!
//! ```text
//! scripts/services.sh up && eval "$(scripts/services.sh env)"
//! cargo build --release -p mc-agent -p mc-tests --bin mc-agent --bin mc-bench-capture
//! target/release/mc-bench-capture [--rate 5000] [--duration 30s] [--batch 10]
//! ```
//!
//! Self-contained: it starts its own single-node replica set (the harness's [`PrivateReplSet`]:
//! `mongod` from `--mongod`, else `$MC_TEST_MONGOD_BIN`, else `~/.cache/mc-backup/bin/mongod`,
//! the binary `scripts/services.sh` installs) on a free loopback port with a 2 GB oplog, data
//! and repositories in temporary directories, and kills it at the end. Three phases:
//!
//! 1. **inproc** — the real pipeline (`mc_agent::capture::run`, the production settings of
//!    `mc-agent run`: seal 1 s, 16 MiB segments, zstd 3, 4 uploads in flight, local-directory
//!    repository) in this process, while the workload of `mc-loadgen` (~1 KiB inserts,
//!    `$set`/`$inc` updates, deletes, small transactions) runs at `--rate` on its own runtime,
//!    each writer grouping `--batch` writes per round trip (10; 1 is one command per write).
//!    The RPO gauge (now − wall time of the newest durable entry, what `mc_rpo_seconds`
//!    exports) is sampled every 10 ms after `--warmup`.
//! 2. **process** — the same, against the release `mc-agent run --policy <generated>` as a child
//!    process (what operators deploy): RPO from its `/status` every 50 ms, CPU seconds
//!    (`/proc/<pid>/stat`) and peak RSS (`VmHWM`) of the agent.
//!
//!    For both, the per-op RPO is also computed exactly afterwards from the repository: every
//!    entry's `wall` (commit time) against the moment its segment was linked into place (the
//!    object file's ctime).
//! 3. **catchup** — the maximum sustained capture rate: a timeline is created (agent run
//!    briefly, stopped with SIGTERM), `--backlog` small inserts are written as fast as possible
//!    with the agent stopped, then (a) a bare tailable read of those entries from
//!    `local.oplog.rs` as raw BSON (the driver's raw batches, reading each entry's `ts`) is
//!    timed (before and again after (b); the faster counts), and (b) the agent is started again and timed from the moment its `/status` says it is tailing
//!    (polled every 5 ms) until it reports the backlog's last entry durable. Both end at the
//!    same entry, the backlog's last; the bare reader's clock starts with its `find`.
//!
//! Everything (mongod, the agent, the workload, this process) shares the machine's cores; the
//! figures say what this machine achieved, not what the agent needs alone.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use futures::TryStreamExt;
use mc_agent::capture::oplog::OplogSource;
use mc_agent::capture::{self, CaptureSettings};
use mc_agent::metrics::Metrics;
use mc_core::catalog::{Catalog, Repository};
use mc_core::crypto::keys::create_keyring_file;
use mc_core::crypto::{Keyring, KeyringSource, SecretKey};
use mc_core::format::{OplogTs, StreamKind};
use mc_core::storage::local::LocalDir;
use mc_tests::bench::{
    cpu_seconds, loadavg, machine_description, percentile, proc_status_kib, signal,
};
use mc_tests::mongod::{PrivateReplSet, ReplSetConfig};
use mc_tests::workload::{worker, Counts, Pace};
use mongodb::bson::{doc, Bson, Document, RawDocument, RawDocumentBuf, Timestamp};
use mongodb::options::CursorType;
use mongodb::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "mc-bench-capture",
    about = "Benchmark oplog capture: RPO under load, agent CPU and RSS, catch-up rate vs a bare oplog reader"
)]
struct Args {
    /// Target client writes per second of the workload (a transaction counts as one).
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// How long the workload runs in each of the inproc and process phases.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// RPO samples and per-op delays before this much time into the workload are not counted.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Concurrent writer tasks of the workload.
    #[arg(long, default_value_t = 32)]
    workers: u64,
    /// Writes per round trip of each writer (see `mc-loadgen --batch`). Grouping by kind lets a
    /// 2-core machine, where the generator and mongod share the cores with the agent, reach
    /// 5 k writes/s (one command per write tops out near 3 k/s there); the agent sees the same
    /// oplog entries either way.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    batch: u64,
    /// `capture.max_segment_bytes` in MiB (the production policy's is 16).
    #[arg(long, default_value_t = 16)]
    segment_mib: u64,
    /// Small inserts written as the backlog of the catchup phase. A million (336 MiB of oplog)
    /// so that the rate, not the fixed latency of the first and last segment (about a
    /// segment's read and seal time, ~0.1 s), is what the ratio measures.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,
    /// Phases to run, comma-separated: inproc, process, catchup.
    #[arg(long, default_value = "inproc,process,catchup", value_delimiter = ',')]
    phases: Vec<String>,
    /// The mongod binary (default: $MC_TEST_MONGOD_BIN, else ~/.cache/mc-backup/bin/mongod).
    #[arg(long)]
    mongod: Option<PathBuf>,
    /// `--oplogSize` (MB) of the private mongod: large enough that no phase's oplog rolls over.
    #[arg(long, default_value_t = 2048)]
    oplog_mb: u32,
    /// The mc-agent binary (default: `mc-agent` next to this executable, i.e. target/release).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Keep the temporary directory (mongod data, repositories, agent logs) and print its path.
    #[arg(long)]
    keep: bool,
}

/// One line of the result table.
struct Row {
    phase: &'static str,
    what: String,
    value: String,
    goal: String,
}

#[derive(Default)]
struct Table(Vec<Row>);

impl Table {
    fn add(&mut self, phase: &'static str, what: &str, value: String, goal: impl Into<String>) {
        self.0.push(Row {
            phase,
            what: what.into(),
            value,
            goal: goal.into(),
        });
    }

    fn print(&self) {
        let w = |f: fn(&Row) -> usize, min: usize| self.0.iter().map(f).max().unwrap_or(0).max(min);
        let (wp, ww, wv) = (
            w(|r| r.phase.len(), 5),
            w(|r| r.what.chars().count(), 11),
            w(|r| r.value.chars().count(), 5),
        );
        println!(
            "{:<wp$}  {:<ww$}  {:>wv$}  goal",
            "phase", "measurement", "value"
        );
        println!("{}", "-".repeat(wp + ww + wv + 6 + 16));
        for r in &self.0 {
            println!(
                "{:<wp$}  {:<ww$}  {:>wv$}  {}",
                r.phase, r.what, r.value, r.goal
            );
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for p in &args.phases {
        if !["inproc", "process", "catchup"].contains(&p.as_str()) {
            bail!("unknown phase {p:?}; use inproc, process, catchup");
        }
    }
    let want = |p: &str| args.phases.iter().any(|x| x == p);
    let agent_bin = match &args.agent {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the executable has a directory")?
            .join("mc-agent"),
    };
    if (want("process") || want("catchup")) && !agent_bin.exists() {
        bail!(
            "{} does not exist; build it first: cargo build --release -p mc-agent (or pass --agent)",
            agent_bin.display()
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix("mc-bench-capture-")
        .tempdir()?;
    let root = tmp.path().to_owned();
    let machine = machine_description();
    let load_before = loadavg();
    eprintln!(
        "bench: {machine}; load average {load_before}; work directory {}",
        root.display()
    );

    let mongod = Mongod::start(&args).await?;
    eprintln!(
        "bench: private mongod pid {} ({}) at {}",
        mongod.pid(),
        mongod.version,
        mongod.uri
    );
    let client = Client::with_uri_str(&mongod.uri).await?;
    let mut table = Table::default();

    if want("inproc") {
        inproc_phase(&args, &mongod, &root.join("inproc"), &mut table).await?;
        client.database("loadgen").drop().await?;
    }
    if want("process") {
        process_phase(
            &args,
            &mongod,
            &agent_bin,
            &root.join("process"),
            &mut table,
        )
        .await?;
        client.database("loadgen").drop().await?;
    }
    if want("catchup") {
        catchup_phase(
            &args,
            &mongod,
            &client,
            &agent_bin,
            &root.join("catchup"),
            &mut table,
        )
        .await?;
    }
    drop(client);
    let version = mongod.version.clone();
    drop(mongod);

    println!();
    println!(
        "mc-bench-capture: {machine}; mongod {} single-node replica set (private); workload target {} writes/s × {:?}, {} writers, {} writes per round trip; warm-up {:?} not counted",
        version,
        args.rate,
        args.duration,
        args.workers,
        args.batch,
        args.warmup
    );
    println!(
        "load average (1/5/15 min) at start: {load_before}; at end: {}; capture.max_segment_bytes {} MiB",
        loadavg(),
        args.segment_mib
    );
    println!();
    table.print();
    if args.keep {
        let kept = tmp.keep();
        println!("\nkept {}", kept.display());
    }
    Ok(())
}

// --- phase 1: the pipeline in-process ------------------------------------------------------------

/// The settings `mc-agent run` derives from a production-like policy (`capture:` with
/// `segment_mib` segments sealed every second, zstd level 3), the same constructor it calls.
fn production_settings(source: &str, spool: &Path, segment_mib: u64) -> CaptureSettings {
    let capture = mc_core::policy::CaptureSettings {
        seal_interval: Duration::from_secs(1),
        max_segment_bytes: segment_mib << 20,
        zstd_level: 3,
    };
    CaptureSettings::new(&capture, source, "mc-bench-capture", spool.to_owned())
}

async fn inproc_phase(
    args: &Args,
    mongod: &Mongod,
    dir: &Path,
    table: &mut Table,
) -> anyhow::Result<()> {
    const P: &str = "inproc";
    eprintln!(
        "bench: [inproc] capture::run in this process, workload {} writes/s for {:?}",
        args.rate, args.duration
    );
    std::fs::create_dir_all(dir)?;
    let repo_dir = dir.join("repo");
    let store = Arc::new(LocalDir::new(&repo_dir)?);
    let keyring = Keyring::new(vec![SecretKey::generate()?], "bench")?;
    let repo = Repository::new(store, keyring);
    repo.init().await?;
    let source = OplogSource::connect(&mongod.uri).await?;
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(capture::run(
        repo.clone(),
        source,
        production_settings("bench", &dir.join("spool"), args.segment_mib),
        metrics.clone(),
        stop_rx,
    ));
    wait_until(Duration::from_secs(30), "capture to start tailing", || {
        let m = metrics.clone();
        async move { Ok(m.capture.capturing.get() == 1) }
    })
    .await?;

    let load = Load::spawn(&mongod.uri, args);
    let warm_until = load.started_ms + args.warmup.as_millis() as i64;
    let mut gauge = Vec::new();
    let mut ops_at_warm = None;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut done = tokio::task::spawn_blocking(move || load.handle.join());
    let report = loop {
        tokio::select! {
            joined = &mut done => break joined?.map_err(|_| anyhow!("the workload thread panicked"))??,
            _ = tick.tick() => {
                let now = unix_ms();
                if now < warm_until { continue; }
                ops_at_warm.get_or_insert((now, metrics.capture.ops_captured.get()));
                let wall = metrics.capture.durable_wall_ms.load(Relaxed);
                if wall > 0 { gauge.push((now - wall) as f64 / 1000.0); }
            }
        }
    };
    let ops_rate = ops_at_warm.map(|(t0, n0)| {
        (metrics.capture.ops_captured.get() - n0) as f64 / ((unix_ms() - t0) as f64 / 1000.0)
    });
    let last = mongod.set.last_write(0).await;
    let drain_from = Instant::now();
    let target = pack(last);
    wait_until(
        Duration::from_secs(120),
        "the last write to become durable",
        || {
            let m = metrics.clone();
            async move { Ok(m.capture.durable_ts.load(Relaxed) >= target) }
        },
    )
    .await?;
    let drain = drain_from.elapsed();
    stop_tx.send(true)?;
    task.await??;

    report.add_rows(P, args, table);
    add_gauge_rows(P, &gauge, table);
    table.add(
        P,
        "oplog entries durable /s (steady)",
        ops_rate.map_or("-".into(), |r| format!("{r:.0}")),
        "",
    );
    let delays = per_op_delays(&repo, &repo_dir, "bench", warm_until, report.ended_ms).await?;
    delays.add_rows(P, table);
    table.add(
        P,
        "drain after load stops (last write durable)",
        format!("{:.2} s", drain.as_secs_f64()),
        "",
    );
    Ok(())
}

// --- phase 2: the agent as a process -------------------------------------------------------------

async fn process_phase(
    args: &Args,
    mongod: &Mongod,
    agent_bin: &Path,
    dir: &Path,
    table: &mut Table,
) -> anyhow::Result<()> {
    const P: &str = "process";
    eprintln!(
        "bench: [process] {} run, workload {} writes/s for {:?}",
        agent_bin.display(),
        args.rate,
        args.duration
    );
    let setup = AgentSetup::create(dir, args.segment_mib)?;
    let mut agent = setup.spawn(agent_bin, &mongod.uri, "process")?;
    agent.wait_ready_with_snapshot().await?;

    let cpu0 = (
        cpu_seconds(agent.pid())?,
        cpu_seconds(mongod.pid())?,
        cpu_seconds(std::process::id())?,
    );
    let load = Load::spawn(&mongod.uri, args);
    let load_start = Instant::now();
    let warm_until = load.started_ms + args.warmup.as_millis() as i64;
    let mut gauge = Vec::new();
    let mut rss_max_kib = 0u64;
    let mut rss_samples = Vec::new();
    let mut ops_at_warm = None;
    let mut last_ops = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = 0u64;
    let mut done = tokio::task::spawn_blocking(move || load.handle.join());
    let report = loop {
        tokio::select! {
            joined = &mut done => break joined?.map_err(|_| anyhow!("the workload thread panicked"))??,
            _ = tick.tick() => {
                n += 1;
                if n.is_multiple_of(5) {
                    let rss = proc_status_kib(agent.pid(), "VmRSS")?;
                    rss_max_kib = rss_max_kib.max(rss);
                    if unix_ms() >= warm_until { rss_samples.push(rss as f64 / 1024.0); }
                }
                let Ok(status) = agent.status().await else { continue };
                let now = unix_ms();
                last_ops = status.ops_captured;
                if now < warm_until { continue; }
                ops_at_warm.get_or_insert((now, status.ops_captured));
                if let Some(rpo) = status.rpo_seconds { gauge.push(rpo); }
            }
        }
    };
    let load_secs = load_start.elapsed().as_secs_f64();
    let ops_rate =
        ops_at_warm.map(|(t0, n0)| (last_ops - n0) as f64 / ((unix_ms() - t0) as f64 / 1000.0));
    let cpu1 = (
        cpu_seconds(agent.pid())?,
        cpu_seconds(mongod.pid())?,
        cpu_seconds(std::process::id())?,
    );
    let last = mongod.set.last_write(0).await;
    let drain_from = Instant::now();
    agent.wait_durable(last, Duration::from_secs(120)).await?;
    let drain = drain_from.elapsed();
    let hwm = proc_status_kib(agent.pid(), "VmHWM")?;
    let cpu_total = cpu_seconds(agent.pid())?;
    let stopped = agent.stop().await?;

    report.add_rows(P, args, table);
    add_gauge_rows(P, &gauge, table);
    table.add(
        P,
        "oplog entries durable /s (steady)",
        ops_rate.map_or("-".into(), |r| format!("{r:.0}")),
        "",
    );
    let repo = setup.open_repo()?;
    let delays =
        per_op_delays(&repo, &setup.repo_dir, "bench", warm_until, report.ended_ms).await?;
    delays.add_rows(P, table);
    table.add(
        P,
        "drain after load stops (last write durable)",
        format!("{:.2} s", drain.as_secs_f64()),
        "",
    );
    let pct = |a: f64, b: f64| format!("{:.0} %", 100.0 * (b - a) / load_secs);
    table.add(
        P,
        "agent CPU during load (of one core)",
        pct(cpu0.0, cpu1.0),
        "",
    );
    table.add(P, "mongod CPU during load", pct(cpu0.1, cpu1.1), "");
    table.add(P, "bench+workload CPU during load", pct(cpu0.2, cpu1.2), "");
    table.add(
        P,
        "agent CPU seconds, whole run",
        format!("{cpu_total:.2} s"),
        "",
    );
    let rss_p50 = percentile(&mut rss_samples, 50.0);
    table.add(
        P,
        "agent RSS during load p50 / max (0.25 s samples)",
        format!("{rss_p50:.1} / {:.1} MiB", rss_max_kib as f64 / 1024.0),
        "",
    );
    table.add(
        P,
        "agent peak RSS (VmHWM)",
        format!("{:.1} MiB", hwm as f64 / 1024.0),
        verdict(hwm as f64 / 1024.0 <= 64.0, "≤ 64 MiB"),
    );
    table.add(
        P,
        "agent SIGTERM → exit",
        format!("{:.2} s ({})", stopped.0.as_secs_f64(), stopped.1),
        "",
    );
    Ok(())
}

// --- phase 3: catching up a backlog --------------------------------------------------------------

async fn catchup_phase(
    args: &Args,
    mongod: &Mongod,
    client: &Client,
    agent_bin: &Path,
    dir: &Path,
    table: &mut Table,
) -> anyhow::Result<()> {
    const P: &str = "catchup";
    eprintln!(
        "bench: [catchup] creating a timeline, then a backlog of {} inserts",
        args.backlog
    );
    let setup = AgentSetup::create(dir, args.segment_mib)?;
    // A timeline whose end the next start resumes from.
    let mut agent = setup.spawn(agent_bin, &mongod.uri, "first")?;
    agent.wait_ready_with_snapshot().await?;
    client
        .database("backlog")
        .collection::<Document>("marker")
        .insert_one(doc! {"started": true})
        .await?;
    agent
        .wait_durable(mongod.set.last_write(0).await, Duration::from_secs(30))
        .await?;
    agent.stop().await?;

    // The backlog, written with no agent running.
    let before = mongod.set.last_write(0).await;
    let write_from = Instant::now();
    write_backlog(client, args.backlog).await?;
    let write_secs = write_from.elapsed().as_secs_f64();
    let last = mongod.set.last_write(0).await;
    eprintln!(
        "bench: [catchup] wrote {} inserts in {write_secs:.1} s; oplog {before} .. {last}",
        args.backlog
    );

    // (a) A bare reader: tail the oplog from the same point to the same last entry, counting
    // entries and bytes. Run before and again after the agent (both with the oplog as warm as
    // the agent had it); the faster of the two is the reference.
    let (bare_n, bare_bytes, bare_secs_before) = bare_read(client, before, last).await?;

    // (b) The agent, resuming after the end of its timeline.
    let spawned = Instant::now();
    let mut agent = setup.spawn(agent_bin, &mongod.uri, "catchup")?;
    let mut capturing_at = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    // (seconds since spawn, entries durable) at every change.
    let mut progress = vec![(0.0, 0u64)];
    let status = loop {
        if Instant::now() > deadline {
            bail!(
                "the agent did not catch up within 600 s; see {}",
                agent.log.display()
            );
        }
        agent.check_alive()?;
        if let Ok(s) = agent.status().await {
            if s.capturing && capturing_at.is_none() {
                capturing_at = Some(spawned.elapsed());
            }
            if progress.last().is_none_or(|&(_, n)| n != s.ops_captured) {
                progress.push((spawned.elapsed().as_secs_f64(), s.ops_captured));
            }
            if s.durable_ts.is_some_and(|ts| pack(ts) >= pack(last)) {
                break s;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let total = spawned.elapsed();
    let hwm = proc_status_kib(agent.pid(), "VmHWM")?;
    let cpu = cpu_seconds(agent.pid())?;
    agent.stop().await?;
    let from_capturing = total - capturing_at.unwrap_or_default();
    let (_, _, bare_secs_after) = bare_read(client, before, last).await?;
    let bare_secs = bare_secs_before.min(bare_secs_after);
    let steps: Vec<String> = progress
        .iter()
        .map(|(t, n)| format!("{t:.2}s:{n}"))
        .collect();
    eprintln!(
        "bench: [catchup] durable entries over time: {}",
        steps.join(" ")
    );

    let bare_rate = bare_n as f64 / bare_secs;
    let agent_rate = status.ops_captured as f64 / from_capturing.as_secs_f64();
    table.add(
        P,
        "backlog written (insert_many, as fast as possible)",
        format!(
            "{} ops in {write_secs:.1} s = {:.0} /s",
            args.backlog,
            args.backlog as f64 / write_secs
        ),
        "",
    );
    table.add(
        P,
        "(a) bare tailable read of the oplog (raw BSON), best of 2",
        format!(
            "{bare_n} entries, {:.1} MiB in {bare_secs:.2} s = {bare_rate:.0} /s (runs: {bare_secs_before:.2}, {bare_secs_after:.2} s)",
            bare_bytes as f64 / (1 << 20) as f64
        ),
        "",
    );
    table.add(
        P,
        "(b) agent catch-up, from tailing to last durable",
        format!(
            "{} entries in {:.2} s = {agent_rate:.0} /s",
            status.ops_captured,
            from_capturing.as_secs_f64()
        ),
        "",
    );
    table.add(
        P,
        "    same, from process start",
        format!(
            "{:.2} s = {:.0} /s (tailing after {:.2} s)",
            total.as_secs_f64(),
            status.ops_captured as f64 / total.as_secs_f64(),
            capturing_at.unwrap_or_default().as_secs_f64()
        ),
        "",
    );
    // Throughput while full segments flow: from the first durable segment to the last full one
    // (the final, partial segment waits out the seal interval, a latency, not a rate).
    let sustained = match progress.len() {
        n if n >= 4 => {
            let (t0, n0) = progress[1];
            let (t1, n1) = progress[n - 2];
            Some((n1 - n0) as f64 / (t1 - t0))
        }
        _ => None,
    };
    table.add(
        P,
        "(b') agent sustained, full segments only",
        sustained.map_or("- (too few segments)".into(), |r| {
            format!("{r:.0} /s = {:.2}× bare", r / bare_rate)
        }),
        "",
    );
    let ratio = agent_rate / bare_rate;
    table.add(
        P,
        "agent / bare reader",
        format!("{ratio:.2}×"),
        verdict(ratio >= 0.9, "≥ 0.9×"),
    );
    table.add(
        P,
        "agent CPU seconds / peak RSS while catching up",
        format!("{cpu:.2} s / {:.1} MiB", hwm as f64 / 1024.0),
        verdict(hwm as f64 / 1024.0 <= 64.0, "RSS ≤ 64 MiB"),
    );
    Ok(())
}

async fn write_backlog(client: &Client, n: u64) -> anyhow::Result<()> {
    const BATCH: u64 = 1000;
    const TASKS: u64 = 4;
    let coll = client.database("backlog").collection::<Document>("small");
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let coll = coll.clone();
        tasks.push(tokio::spawn(async move {
            let mut start = t * BATCH;
            while start < n {
                let end = (start + BATCH).min(n);
                let docs: Vec<Document> = (start..end)
                    .map(|i| doc! {"_id": i as i64, "n": i as i64, "s": "0123456789abcdef0123456789abcdef"})
                    .collect();
                coll.insert_many(docs).await?;
                start += BATCH * TASKS;
            }
            Ok::<_, mongodb::error::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Tails `local.oplog.rs` from after `after` until the entry `last`, as raw BSON, through the
/// driver's raw batch API (the cheapest way it offers, which the agent uses too), reading each
/// entry's `ts` and nothing else. Returns (entries, bytes, seconds).
async fn bare_read(
    client: &Client,
    after: Timestamp,
    last: Timestamp,
) -> anyhow::Result<(u64, u64, f64)> {
    let oplog = client
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs");
    let started = Instant::now();
    let mut cursor = oplog
        .find(doc! {"ts": {"$gt": after}})
        .cursor_type(CursorType::TailableAwait)
        .max_await_time(Duration::from_millis(250))
        .batch()
        .await?;
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Some(reply) = cursor.try_next().await? {
        for doc in reply.doc_slices()? {
            let Some(raw) = doc?.as_document() else {
                bail!("oplog reply holds a value that is not a document");
            };
            n += 1;
            bytes += raw.as_bytes().len() as u64;
            let ts = raw.get_timestamp("ts")?;
            if pack(ts) >= pack(last) {
                return Ok((n, bytes, started.elapsed().as_secs_f64()));
            }
        }
    }
    bail!("the oplog cursor ended before {last}")
}

// --- the workload (the mix of mc-loadgen) --------------------------------------------------------

struct LoadReport {
    counts: Counts,
    secs: f64,
    ended_ms: i64,
}

impl LoadReport {
    fn add_rows(&self, phase: &'static str, args: &Args, table: &mut Table) {
        let c = self.counts;
        table.add(
            phase,
            "workload writes achieved /s (target)",
            format!("{:.0} ({})", c.total() as f64 / self.secs, args.rate),
            "",
        );
        table.add(
            phase,
            "  inserts / updates / deletes / txns",
            format!(
                "{} / {} / {} / {}",
                c.inserts, c.updates, c.deletes, c.transactions
            ),
            "",
        );
    }
}

/// The workload, on a thread and Tokio runtime of its own so that its tasks do not queue behind
/// the capture pipeline's (and the other way round).
struct Load {
    started_ms: i64,
    handle: std::thread::JoinHandle<anyhow::Result<LoadReport>>,
}

impl Load {
    fn spawn(uri: &str, args: &Args) -> Self {
        let (rate, workers, batch, duration) = (args.rate, args.workers, args.batch, args.duration);
        let uri = uri.to_owned();
        let started_ms = unix_ms();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let client = Client::with_uri_str(&uri).await?;
                let started = Instant::now();
                let deadline = started + duration;
                let pace = Pace {
                    rate: (rate / workers.max(1)).max(1),
                    batch,
                };
                let mut handles = Vec::new();
                for w in 0..workers {
                    let client = client.clone();
                    handles.push(tokio::spawn(worker(
                        client,
                        "loadgen".into(),
                        w,
                        pace,
                        deadline,
                    )));
                }
                let mut total = Counts::default();
                for h in handles {
                    total.add(h.await??);
                }
                Ok(LoadReport {
                    counts: total,
                    secs: started.elapsed().as_secs_f64(),
                    ended_ms: unix_ms(),
                })
            })
        });
        Self { started_ms, handle }
    }
}

fn add_gauge_rows(phase: &'static str, gauge: &[f64], table: &mut Table) {
    let mut g = gauge.to_vec();
    let (p50, p99, max) = (
        percentile(&mut g, 50.0),
        percentile(&mut g, 99.0),
        percentile(&mut g, 100.0),
    );
    table.add(
        phase,
        "RPO gauge p50 / p99 / max (now − newest durable wall)",
        format!("{p50:.2} / {p99:.2} / {max:.2} s ({} samples)", g.len()),
        verdict(p99 <= 5.0, "p99 ≤ 5 s"),
    );
}

/// Commit → durable delay of every entry in a window, from the repository.
struct OpDelays {
    delays: Vec<f64>,
    /// Per segment in the window: seconds from its last entry's commit to durable.
    tail: Vec<f64>,
    segments: usize,
    ops_per_segment: f64,
    stored_per_segment: f64,
    raw_per_segment: f64,
}

impl OpDelays {
    fn add_rows(mut self, phase: &'static str, table: &mut Table) {
        let (p50, p99, max) = (
            percentile(&mut self.delays, 50.0),
            percentile(&mut self.delays, 99.0),
            percentile(&mut self.delays, 100.0),
        );
        table.add(
            phase,
            "per-op RPO p50 / p99 / max (commit → segment durable)",
            format!(
                "{p50:.2} / {p99:.2} / {max:.2} s ({} ops)",
                self.delays.len()
            ),
            verdict(p99 <= 5.0, "p99 ≤ 5 s"),
        );
        let (t50, tmax) = (
            percentile(&mut self.tail, 50.0),
            percentile(&mut self.tail, 100.0),
        );
        table.add(
            phase,
            "segment's last op commit → durable p50 / max",
            format!("{t50:.2} / {tmax:.2} s"),
            "",
        );
        table.add(
            phase,
            "segments: count, ops, raw → stored KiB (mean)",
            format!(
                "{}, {:.0} ops, {:.0} → {:.0} KiB",
                self.segments,
                self.ops_per_segment,
                self.raw_per_segment / 1024.0,
                self.stored_per_segment / 1024.0
            ),
            "",
        );
    }
}

/// Reads every oplog segment of `source` back, and for each entry whose `wall` lies in
/// `[from_ms, to_ms]` computes how long after its commit its segment became durable: the ctime
/// of the object's file, set when it was hard-linked into place (after the data's fsync).
async fn per_op_delays(
    repo: &Repository,
    repo_dir: &Path,
    source: &str,
    from_ms: i64,
    to_ms: i64,
) -> anyhow::Result<OpDelays> {
    let catalog = Catalog::load(repo, source, StreamKind::Oplog).await?;
    let mut out = OpDelays {
        delays: Vec::new(),
        tail: Vec::new(),
        segments: 0,
        ops_per_segment: 0.0,
        stored_per_segment: 0.0,
        raw_per_segment: 0.0,
    };
    let (mut ops, mut stored, mut raw_total) = (0u64, 0u64, 0u64);
    for seg in &catalog.segments {
        let meta = std::fs::metadata(repo_dir.join(&seg.key))
            .with_context(|| format!("segment file {}", seg.key))?;
        let durable_ms = meta.ctime() * 1000 + meta.ctime_nsec() / 1_000_000;
        let (_, records) = repo.read_segment(&seg.key).await?;
        let mut in_window = 0u64;
        let mut newest = i64::MIN;
        let mut raw = 0u64;
        for r in &records {
            raw += r.len() as u64;
            let Ok(wall) = RawDocument::from_bytes(r)?.get_datetime("wall") else {
                continue;
            };
            let wall = wall.timestamp_millis();
            newest = newest.max(wall);
            if (from_ms..=to_ms).contains(&wall) {
                in_window += 1;
                out.delays.push((durable_ms - wall) as f64 / 1000.0);
            }
        }
        if in_window > 0 {
            out.segments += 1;
            ops += records.len() as u64;
            stored += seg.size;
            raw_total += raw;
            out.tail.push((durable_ms - newest) as f64 / 1000.0);
        }
    }
    if out.segments > 0 {
        let n = out.segments as f64;
        out.ops_per_segment = ops as f64 / n;
        out.stored_per_segment = stored as f64 / n;
        out.raw_per_segment = raw_total as f64 / n;
    }
    Ok(out)
}

fn verdict(ok: bool, goal: &str) -> String {
    format!("{goal}: {}", if ok { "met" } else { "MISSED" })
}

// --- the agent process ---------------------------------------------------------------------------

/// A repository, keyring and policy for `mc-agent run`.
struct AgentSetup {
    dir: PathBuf,
    repo_dir: PathBuf,
    keyring: PathBuf,
    policy: PathBuf,
    listen: SocketAddr,
}

impl AgentSetup {
    fn create(dir: &Path, segment_mib: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let repo_dir = dir.join("repo");
        let keyring = dir.join("keyring");
        create_keyring_file(&keyring)?;
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let policy = dir.join("policy.yaml");
        // The structure of policies/dev.yaml, with production capture settings; the snapshot
        // schedule is yearly so that only the first snapshot (of a near-empty server) runs.
        std::fs::write(
            &policy,
            format!(
                r#"version: 1
name: bench-capture
source:
  id: bench
  mongodb:
    uri: {{ env: MC_MONGODB_URI }}
repository:
  url: "{repo}"
  keyring: {{ file: "{keyring}" }}
  spool_dir: "{spool}"
objectives:
  rpo: 15m
  rto: 4h
capture:
  seal_interval: 1s
  max_segment_bytes: {segment_mib}MiB
  zstd_level: 3
snapshots:
  schedule: "0 0 0 1 1 *"
  parallelism: 2
retention:
  keep_daily: 2
  pitr_window: 1d
http:
  listen: {listen}
"#,
                repo = repo_dir.display(),
                keyring = keyring.display(),
                spool = dir.join("spool").display(),
            ),
        )?;
        Ok(Self {
            dir: dir.to_owned(),
            repo_dir,
            keyring,
            policy,
            listen,
        })
    }

    fn spawn(&self, bin: &Path, uri: &str, tag: &str) -> anyhow::Result<AgentProc> {
        let log = self.dir.join(format!("agent-{tag}.log"));
        let out = File::create(&log)?;
        let child = Command::new(bin)
            .args(["run", "--policy"])
            .arg(&self.policy)
            .env("MC_MONGODB_URI", uri)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(AgentProc {
            child: Some(child),
            listen: self.listen,
            log,
        })
    }

    fn open_repo(&self) -> anyhow::Result<Repository> {
        let keyring = Keyring::load(&KeyringSource::File(self.keyring.clone()))?;
        Ok(Repository::new(
            Arc::new(LocalDir::new(&self.repo_dir)?),
            keyring,
        ))
    }
}

/// What `/status` says, the parts the bench reads.
struct AgentStatus {
    capturing: bool,
    ops_captured: u64,
    durable_ts: Option<Timestamp>,
    rpo_seconds: Option<f64>,
}

/// A running `mc-agent run`; killed if dropped while running.
struct AgentProc {
    child: Option<Child>,
    listen: SocketAddr,
    log: PathBuf,
}

impl AgentProc {
    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!(
                    "mc-agent exited with {status}; log {}:\n{}",
                    self.log.display(),
                    log_tail(&self.log, 20)
                );
            }
        }
        Ok(())
    }

    async fn status(&self) -> anyhow::Result<AgentStatus> {
        let (code, body) = http_get(self.listen, "/status").await?;
        if code != 200 {
            bail!("/status answered {code}");
        }
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let c = &v["capture"];
        Ok(AgentStatus {
            capturing: c["capturing"].as_bool().unwrap_or(false),
            ops_captured: c["ops_captured"].as_u64().unwrap_or(0),
            durable_ts: c["newest_durable_ts"].as_str().and_then(parse_ts),
            rpo_seconds: c["rpo_seconds"].as_f64(),
        })
    }

    async fn snapshots_taken(&self) -> anyhow::Result<u64> {
        let (_, body) = http_get(self.listen, "/metrics").await?;
        Ok(body
            .lines()
            .find(|l| l.starts_with("mc_snapshots_total{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Waits until the agent tails the oplog and its first snapshot is stored.
    async fn wait_ready_with_snapshot(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.check_alive()?;
            if let Ok(s) = self.status().await {
                if s.capturing && self.snapshots_taken().await.unwrap_or(0) >= 1 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("mc-agent not ready after 120 s; log {}", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_durable(&mut self, ts: Timestamp, patience: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            self.check_alive()?;
            if let Ok(s) = self.status().await {
                if s.durable_ts.is_some_and(|d| pack(d) >= pack(ts)) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{ts} not durable after {patience:?}; log {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for the exit. Returns how long it took and the exit status.
    async fn stop(&mut self) -> anyhow::Result<(Duration, String)> {
        let Some(mut child) = self.child.take() else {
            bail!("mc-agent is not running");
        };
        let started = Instant::now();
        signal(child.id(), "TERM")?;
        let deadline = started + Duration::from_secs(40);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    eprintln!(
                        "bench: mc-agent exited with {status}; log {}:\n{}",
                        self.log.display(),
                        log_tail(&self.log, 20)
                    );
                }
                return Ok((started.elapsed(), status.to_string()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("mc-agent did not exit within 40 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A minimal HTTP/1.1 GET (the agent's endpoints answer with a Content-Length body).
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(2), async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("malformed HTTP answer"))?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("no HTTP status"))?;
        Ok((code, body.to_owned()))
    })
    .await
    .map_err(|_| anyhow!("GET {path} timed out"))?
}

// --- the private mongod --------------------------------------------------------------------------

/// A single-node replica set of our own (the harness's [`PrivateReplSet`]), with the figures the
/// bench prints about it.
struct Mongod {
    set: PrivateReplSet,
    uri: String,
    version: String,
    pid: u32,
}

impl Mongod {
    async fn start(args: &Args) -> anyhow::Result<Self> {
        // The harness reads the binary from $MC_TEST_MONGOD_BIN.
        let bin = match (&args.mongod, std::env::var_os("MC_TEST_MONGOD_BIN")) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => PathBuf::from(p),
            (None, None) => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
                .join(".cache/mc-backup/bin/mongod"),
        };
        if !bin.exists() {
            bail!(
                "{} does not exist; install it with scripts/services.sh up (or pass --mongod)",
                bin.display()
            );
        }
        std::env::set_var("MC_TEST_MONGOD_BIN", &bin);
        let set = PrivateReplSet::start(ReplSetConfig {
            oplog_mb: args.oplog_mb,
            ..ReplSetConfig::default()
        })
        .await;
        let uri = set.uri();
        let build = set.admin_command(0, doc! {"buildInfo": 1}).await;
        let status = set.admin_command(0, doc! {"serverStatus": 1}).await;
        let pid = match status.get("pid") {
            Some(Bson::Int64(p)) => *p as u32,
            Some(Bson::Int32(p)) => *p as u32,
            other => bail!("serverStatus.pid is {other:?}"),
        };
        Ok(Self {
            uri,
            version: build.get_str("version").unwrap_or("?").to_owned(),
            pid,
            set,
        })
    }

    fn pid(&self) -> u32 {
        self.pid
    }
}

// --- small helpers -------------------------------------------------------------------------------

/// An oplog timestamp packed as the agent's metrics store it.
fn pack(ts: Timestamp) -> u64 {
    mc_tests::agent::pack(OplogTs::new(ts.time, ts.increment))
}

/// Parses `/status`'s `newest_durable_ts`, `<seconds>.<increment, 10 digits>`.
fn parse_ts(s: &str) -> Option<Timestamp> {
    let (t, i) = s.split_once('.')?;
    Some(Timestamp {
        time: t.parse().ok()?,
        increment: i.parse().ok()?,
    })
}

async fn wait_until<F, Fut>(patience: Duration, what: &str, mut cond: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + patience;
    while !cond().await? {
        if Instant::now() > deadline {
            bail!("timed out after {patience:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}

fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
