//! `mc-bench-kafka`: what capturing Kafka consumer-group offsets costs at scale (issue 6): time
//! per capture cycle, bytes stored per hour, and the agent's CPU and memory, with `--groups`
//! groups (default 200) each committing on a topic of `--partitions` partitions (default 50).
//! It prints figures; it asserts nothing.
//!
//! ```text
//! scripts/services.sh up && eval "$(scripts/services.sh env)"
//! cargo build --release -p mc-agent -p mc-tests --bin mc-agent --bin mc-bench-kafka
//! target/release/mc-bench-kafka [--groups 200] [--partitions 50] [--duration 180s]
//! ```
//!
//! Against the broker at `$MC_TEST_KAFKA_BOOTSTRAP`; the agent also captures MongoDB, as in
//! production, from an empty private replica set it starts (the harness's `PrivateReplSet`),
//! so its snapshot and oplog capture add next to nothing to the figures. Phases:
//!
//! 1. **setup** — `--groups` topics of `--partitions` partitions (one topic per group), a few
//!    messages in every partition, and every group committed on every partition of its topic.
//! 2. **agent** — the release `mc-agent run` with a `kafka:` section (interval `--interval`)
//!    for `--duration`, while every group commits new offsets on every partition each interval
//!    (`--churn` of them; 1.0, the worst case for the change-only encoding). Reported: cycle
//!    time from `mc_kafka_cycle_seconds` (sampled after every cycle), agent CPU (`/proc`), peak
//!    RSS (`VmHWM`), and the stored `kafka-offsets` bytes per hour of capture.
//! 3. **cycle** — one capture cycle as the agent runs it (`OffsetSource::observe`: list groups,
//!    ListConsumerGroupOffsets for all of them, two ListOffsets per broker), timed `--cycles`
//!    times; against the baseline it replaced, measured in the same run (`--baseline-cycles`
//!    times): a consumer per group asking for every partition of the cluster, and a ListOffsets
//!    pair per partition.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use mc_agent::kafka::source::OffsetSource;
use mc_core::kafka::KafkaClient;
use mc_tests::agent::{free_port, http_get, metric_value, write_test_policy};
use mc_tests::bench::{
    cpu_seconds, loadavg, machine_description, percentile, proc_status_kib, signal,
};
use mc_tests::mongod::PrivateReplSet;
use mc_tests::restore::temp_repository;
use mc_tests::{kafka_bootstrap, unique_name};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(Debug, Parser)]
#[command(
    name = "mc-bench-kafka",
    about = "Benchmark Kafka offset capture: cycle time, bytes per hour, agent CPU and RSS"
)]
struct Args {
    /// Consumer groups, each on a topic of its own.
    #[arg(long, default_value_t = 200)]
    groups: usize,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 50)]
    partitions: i32,
    /// Messages produced into every partition at setup (offsets cycle within them).
    #[arg(long, default_value_t = 10)]
    messages: i64,
    /// Timed cycles of the batched reader.
    #[arg(long, default_value_t = 12)]
    cycles: usize,
    /// Timed cycles of the baseline reader (each takes minutes at the default scale; 0 skips it).
    #[arg(long, default_value_t = 2)]
    baseline_cycles: usize,
    /// The agent's `kafka.interval`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// How long the agent phase runs.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Fraction of groups that commit new offsets each interval during the agent phase.
    #[arg(long, default_value_t = 1.0)]
    churn: f64,
    /// Phases to run, comma-separated: agent, cycle (setup and cleanup always run).
    #[arg(long, value_delimiter = ',', default_value = "agent,cycle")]
    phases: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bootstrap = kafka_bootstrap();
    println!(
        "mc-bench-kafka: {} groups × {} partitions ({} partitions), interval {:?}, {}; load {}",
        args.groups,
        args.partitions,
        args.groups as i64 * i64::from(args.partitions),
        args.interval,
        machine_description(),
        loadavg()
    );
    let run = unique_name("bench").to_lowercase();
    let t0 = Instant::now();
    for p in &args.phases {
        if p != "agent" && p != "cycle" {
            bail!("unknown phase {p:?}; use agent, cycle");
        }
    }
    let want = |p: &str| args.phases.iter().any(|x| x == p);
    let groups = setup(&args, &bootstrap, &run).await;
    println!("setup: {:.1} s", t0.elapsed().as_secs_f64());
    let result = match &groups {
        Ok(groups) => {
            let mut result = Ok(());
            if want("agent") {
                result = agent_phase(&args, &bootstrap, &run, groups).await;
            }
            if result.is_ok() && want("cycle") {
                result = cycle_phase(&args, &bootstrap, &run, groups).await;
            }
            result
        }
        Err(_) => Ok(()),
    };
    // The run's topics and groups go, whatever happened: 10 000 partitions left behind would
    // slow every later run and test on the same broker.
    cleanup(&bootstrap, &run, args.groups).await;
    groups?;
    result
}

/// Deletes the topics and groups of `run`.
async fn cleanup(bootstrap: &str, run: &str, n: usize) {
    let admin: AdminClient<DefaultClientContext> = match ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cleanup: no admin client: {e}");
            return;
        }
    };
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    let groups: Vec<String> = (0..n).map(|i| format!("{run}-g{i:04}")).collect();
    let topics: Vec<String> = (0..n).map(|i| format!("{run}-t{i:04}")).collect();
    for chunk in groups.chunks(50) {
        let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
        if let Err(e) = admin.delete_groups(&names, &opts).await {
            eprintln!("cleanup: deleting groups: {e}");
        }
    }
    for chunk in topics.chunks(50) {
        let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
        if let Err(e) = admin.delete_topics(&names, &opts).await {
            eprintln!("cleanup: deleting topics: {e}");
        }
    }
    println!("cleanup: {} topics and groups of run {run} deleted", n);
}

/// (group, topic) pairs, and the groups' commits.
struct Groups {
    pairs: Vec<(String, String)>,
    committer: Arc<KafkaClient>,
}

async fn setup(args: &Args, bootstrap: &str, run: &str) -> anyhow::Result<Groups> {
    // Topics are created before anything can fail, so cleanup() always has them to delete.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("Kafka admin client")?;
    let pairs: Vec<(String, String)> = (0..args.groups)
        .map(|i| (format!("{run}-g{i:04}"), format!("{run}-t{i:04}")))
        .collect();
    for chunk in pairs.chunks(50) {
        let topics: Vec<NewTopic> = chunk
            .iter()
            .map(|(_, t)| NewTopic::new(t, args.partitions, TopicReplication::Fixed(1)))
            .collect();
        for r in admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .context("creating topics")?
        {
            r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
        }
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .create()
        .context("producer")?;
    let payload = vec![b'x'; 100];
    for (_, topic) in &pairs {
        let mut sends = Vec::new();
        for partition in 0..args.partitions {
            for _ in 0..args.messages {
                sends.push(
                    producer.send_result(
                        FutureRecord::<(), _>::to(topic)
                            .partition(partition)
                            .payload(&payload),
                    ),
                );
            }
        }
        for send in sends {
            let delivery = send
                .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?
                .await
                .context("delivery")?;
            delivery.map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
        }
    }
    let committer = Arc::new(
        tokio::task::spawn_blocking({
            let bootstrap = bootstrap.to_owned();
            move || KafkaClient::connect(&bootstrap, Duration::from_secs(10))
        })
        .await??,
    );
    let groups = Groups { pairs, committer };
    commit_round(args, &groups, 1, 1.0).await?;
    Ok(groups)
}

/// Every group in the first `churn` of them commits offset `(round % messages) + 1` on every
/// partition of its topic.
async fn commit_round(args: &Args, groups: &Groups, round: i64, churn: f64) -> anyhow::Result<()> {
    let take = ((groups.pairs.len() as f64) * churn).ceil() as usize;
    let pairs: Vec<(String, String)> = groups.pairs.iter().take(take).cloned().collect();
    let committer = groups.committer.clone();
    let partitions = args.partitions;
    let offset = round % args.messages + 1;
    tokio::task::spawn_blocking(move || {
        for (group, topic) in &pairs {
            let offsets: Vec<(String, i32, i64)> = (0..partitions)
                .map(|p| (topic.clone(), p, offset))
                .collect();
            committer.commit(group, &offsets)?;
        }
        Ok::<_, mc_core::kafka::KafkaError>(())
    })
    .await??;
    Ok(())
}

async fn cycle_phase(
    args: &Args,
    bootstrap: &str,
    run: &str,
    groups: &Groups,
) -> anyhow::Result<()> {
    let patterns = vec![format!("{run}-*")];
    let mut source = OffsetSource::new(bootstrap, Default::default(), Duration::from_secs(30));
    // The first cycle connects; it is not timed.
    let first = source.observe(&patterns, None).await?;
    let parts: usize = first.groups.values().map(Vec::len).sum();
    if first.groups.len() != groups.pairs.len()
        || parts != groups.pairs.len() * args.partitions as usize
    {
        bail!(
            "the reader saw {} groups and {parts} partitions; expected {} and {}",
            first.groups.len(),
            groups.pairs.len(),
            groups.pairs.len() * args.partitions as usize
        );
    }
    let mut batched = Vec::new();
    for _ in 0..args.cycles {
        let t = Instant::now();
        source.observe(&patterns, None).await?;
        batched.push(t.elapsed().as_secs_f64());
    }

    let names: Vec<String> = groups.pairs.iter().map(|(g, _)| g.clone()).collect();
    let baseline_cycles = args.baseline_cycles;
    let bootstrap = bootstrap.to_owned();
    let baseline = tokio::task::spawn_blocking(move || {
        let client = KafkaClient::connect(&bootstrap, Duration::from_secs(30))?;
        let mut times = Vec::new();
        // The first pass creates the per-group clients; it is not timed (as above).
        // 0: skipped (no pass at all, not even the untimed one).
        for pass in (0..=baseline_cycles).filter(|_| baseline_cycles > 0) {
            let t = Instant::now();
            per_group_cycle(&client, &names)?;
            let took = t.elapsed().as_secs_f64();
            eprintln!("baseline pass {pass}: {took:.1} s");
            if pass > 0 {
                times.push(took);
            }
        }
        Ok::<_, mc_core::kafka::KafkaError>(times)
    })
    .await??;

    let mut b = batched.clone();
    let mut o = baseline.clone();
    let (b50, b99) = (percentile(&mut b, 50.0), percentile(&mut b, 99.0));
    let (o50, o99) = (percentile(&mut o, 50.0), percentile(&mut o, 99.0));
    println!(
        "\ncycle (one observation of {} groups, {parts} partitions):",
        groups.pairs.len()
    );
    println!(
        "  {:<44} {:>8} {:>8} {:>6}",
        "reader", "p50 ms", "max ms", "runs"
    );
    println!(
        "  {:<44} {:>8.1} {:>8.1} {:>6}",
        "batched (ListConsumerGroupOffsets + ListOffsets)",
        b50 * 1e3,
        b99 * 1e3,
        batched.len()
    );
    if !baseline.is_empty() {
        println!(
            "  {:<44} {:>8.1} {:>8.1} {:>6}",
            "baseline (consumer per group, per partition)",
            o50 * 1e3,
            o99 * 1e3,
            baseline.len()
        );
        println!("  speed-up at p50: {:.1}×", o50 / b50);
    }
    Ok(())
}

/// The capture cycle before batching: each group's committed offsets asked for every partition
/// of the cluster through a consumer of its own, then one ListOffsets pair per partition.
fn per_group_cycle(
    client: &KafkaClient,
    groups: &[String],
) -> Result<usize, mc_core::kafka::KafkaError> {
    let listed = client.groups()?;
    let partitions: Vec<(String, i32)> = client
        .topics()?
        .into_iter()
        .flat_map(|(t, ids)| ids.into_iter().map(move |p| (t.clone(), p)))
        .collect();
    let mut wanted = std::collections::BTreeSet::new();
    for g in listed.iter().filter(|g| groups.contains(&g.name)) {
        for (topic, c) in client.committed(&g.name, &partitions)? {
            wanted.insert((topic, c.partition));
        }
    }
    let mut marks = BTreeMap::new();
    for (topic, partition) in wanted {
        let m = client.watermarks(&topic, partition)?;
        marks.insert((topic, partition), m);
    }
    Ok(marks.len())
}

async fn agent_phase(
    args: &Args,
    bootstrap: &str,
    run: &str,
    groups: &Groups,
) -> anyhow::Result<()> {
    // A MongoDB of its own, empty: the agent's first base snapshot and its oplog capture then
    // cost next to nothing, and what is measured is the Kafka capture.
    let mongod = PrivateReplSet::start(Default::default()).await;
    let (dir, _repo) = temp_repository().await;
    let port = free_port();
    let source = run.to_owned();
    let extra = format!(
        "http:\n  listen: 127.0.0.1:{port}\nkafka:\n  bootstrap_servers: [\"{bootstrap}\"]\n  groups: [\"{run}-*\"]\n  interval: {}s\n",
        args.interval.as_secs().max(1)
    );
    let policy = write_test_policy(
        dir.path(),
        "bench-kafka",
        &source,
        "MC_BENCH_MONGODB_URI",
        &extra,
    );
    // Kept after the run (the repository is not): per-cycle timings are in it at debug level.
    let log_path = std::env::temp_dir().join(format!("{run}-agent.log"));
    let log = std::fs::File::create(&log_path)?;
    // The agent built beside this binary (target/release).
    let agent_bin = std::env::current_exe()?
        .parent()
        .context("the executable has a directory")?
        .join("mc-agent");
    if !agent_bin.exists() {
        bail!(
            "{} not found: cargo build --release -p mc-agent --bin mc-agent",
            agent_bin.display()
        );
    }
    let mut agent = Command::new(&agent_bin)
        .args(["run", "--policy"])
        .arg(&policy)
        .env("MC_BENCH_MONGODB_URI", mongod.uri())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting mc-agent")?;
    let pid = agent.id();
    let result = async {
        // Wait for the first cycle: the agent is connected and warm.
        let cycles = |text: &str| metric_value(text, "mc_kafka_cycles_total").unwrap_or(0.0);
        let started = Instant::now();
        loop {
            if let Some((200, text)) = http_get(port, "/metrics") {
                if cycles(&text) >= 1.0 {
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!(
                    "the agent made no Kafka cycle in 120 s; see {}",
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cpu0 = cpu_seconds(pid)?;
        let wall0 = Instant::now();
        let mut cycle_times = Vec::new();
        let mut seen = 0.0;
        let mut round = 2;
        let mut next_commit = Instant::now();
        while wall0.elapsed() < args.duration {
            if Instant::now() >= next_commit {
                commit_round(args, groups, round, args.churn).await?;
                round += 1;
                next_commit += args.interval;
            }
            if let Some((200, text)) = http_get(port, "/metrics") {
                let n = cycles(&text);
                if n > seen {
                    seen = n;
                    if let Some(s) = metric_value(&text, "mc_kafka_cycle_seconds") {
                        cycle_times.push(s);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let cpu = cpu_seconds(pid)? - cpu0;
        let wall = wall0.elapsed().as_secs_f64();
        let hwm = proc_status_kib(pid, "VmHWM")?;
        signal(pid, "TERM")?;
        let status = tokio::task::spawn_blocking(move || agent.wait()).await??;
        if !status.success() {
            bail!("mc-agent exited with {status}");
        }
        let (bytes, span_ms, segments) =
            stored_offsets(&dir.path().join("repo"), &source, args.interval)?;
        println!("  agent log: {}", log_path.display());
        let mut c = cycle_times.clone();
        println!(
            "\nagent (mc-agent run, {} s, churn {}):",
            wall.round(),
            args.churn
        );
        println!(
            "  cycle time: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} cycles",
            percentile(&mut c, 50.0) * 1e3,
            percentile(&mut c, 99.0) * 1e3,
            percentile(&mut c, 100.0) * 1e3,
            cycle_times.len()
        );
        println!(
            "  agent CPU: {:.2} s in {:.0} s = {:.1} % of one core; peak RSS {:.1} MiB",
            cpu,
            wall,
            100.0 * cpu / wall,
            hwm as f64 / 1024.0
        );
        println!(
            "  stored: {} segments, {:.1} KiB covering {:.0} s → {:.1} MiB per hour",
            segments,
            bytes as f64 / 1024.0,
            span_ms as f64 / 1e3,
            bytes as f64 / (span_ms as f64 / 3.6e6) / (1024.0 * 1024.0)
        );
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = signal(pid, "KILL");
    }
    result
}

/// Bytes, covered time (ms, each segment's last − first cycle plus one interval) and count of
/// the stored `kafka-offsets` segments of `source`.
fn stored_offsets(
    repo: &Path,
    source: &str,
    interval: Duration,
) -> anyhow::Result<(u64, u64, usize)> {
    let dir = repo.join("sources").join(source).join("kafka-offsets");
    let (mut bytes, mut span, mut n) = (0u64, 0u64, 0usize);
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((first, last)) = name.strip_suffix(".seg").and_then(|s| s.split_once('_')) else {
            continue;
        };
        let (first, last): (u64, u64) = (first.parse()?, last.parse()?);
        bytes += entry.metadata()?.len();
        span += last - first + interval.as_millis() as u64;
        n += 1;
    }
    Ok((bytes, span, n))
}
