//! The object store away under the real `mc-agent run` process and a real mongod, in two ways:
//! a private SeaweedFS frozen with SIGSTOP (connections stay open, nothing answers), or killed
//! (connections refused) and started again on the same ports and data. Each for 60 s under a
//! steady write load:
//!
//! - the capturing agent WARNs within 35 s, `mc_repository_up` is 0, `/status` says down;
//!   SIGTERM inside the outage ends with a line that states the real durable point (the
//!   repository holds it), not "everything is durable", and exit 1;
//! - an agent started inside the outage answers `/healthz` within 2 s, is not ready and says
//!   why; it is killed with SIGKILL there; a third is started inside the outage;
//! - `/metrics` answers in under a second throughout (whichever agent runs);
//! - once the store is back, RPO is under 5 s within 30 s, and restoring the newest point gives
//!   the source's documents (hashed).
//!
//! Also: started with the store frozen, the agent answers `/healthz` within 2 s, is not ready and
//! says why, WARNs within 35 s, and captures once the store is thawed.
//!
//! The agent runs with its default attempt deadlines (15 s plus a second per MiB). The two
//! outage tests take about three minutes each; nextest runs them beside the rest of the suite.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_core::catalog::{Catalog, Repository, Timeline};
use mc_core::format::{OplogTs, StreamKind};
use mc_core::storage::s3::StaticCredentials;
use mc_core::storage::RepoUrl;
use mc_tests::agent::{free_port, http_get, metric_value};
use mc_tests::restore::{assert_same_state, db_state};
use mc_tests::seaweed::PrivateSeaweed;
use mc_tests::writer::{Steady, SteadyWriter};
use mc_tests::*;

const WARN_LINE: &str = "the object store is not answering";

struct Setup {
    dir: tempfile::TempDir,
    policy: PathBuf,
    keyring: PathBuf,
    ring: mc_core::crypto::Keyring,
    repo_url: String,
    port: u16,
    source_id: String,
    /// The MongoDB the agent captures.
    mongodb_uri: String,
}

fn setup(store: &PrivateSeaweed, bucket: &str, mongodb_uri: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let source_id = unique_db("outage").replace('_', "-");
    let port = free_port();
    let keyring = dir.path().join("keyring");
    let ring = mc_core::crypto::keys::create_keyring_file(&keyring).unwrap();
    let env = S3Env::from_env();
    let repo_url = format!(
        "s3://{bucket}/repo?endpoint={}&region={}",
        store.endpoint(),
        env.region
    );
    let policy_text = format!(
        "version: 1\nname: outage-test\nsource:\n  id: {source_id}\n  mongodb:\n    uri: {{ env: MC_TEST_MONGODB_URI }}\n\
repository:\n  url: \"{repo_url}\"\n  keyring: {{ file: {keyring} }}\n  spool_dir: {spool}\n\
objectives:\n  rpo: 15m\n  rto: 4h\nsnapshots:\n  schedule: \"0 0 2 * * *\"\nretention:\n  keep_daily: 1\n\
capture:\n  seal_interval: 300ms\n  max_segment_bytes: 64KiB\nhttp:\n  listen: 127.0.0.1:{port}\n",
        keyring = keyring.display(),
        spool = dir.path().join("spool").display(),
    );
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, policy_text).unwrap();
    Setup {
        dir,
        policy,
        keyring,
        ring,
        repo_url,
        port,
        source_id,
        mongodb_uri: mongodb_uri.to_owned(),
    }
}

impl Setup {
    fn log(&self, n: u32) -> PathBuf {
        self.dir.path().join(format!("agent-{n}.log"))
    }

    fn start_agent(&self, n: u32) -> Child {
        let env = S3Env::from_env();
        Command::new(workspace_bin("mc-agent"))
            .args(["run", "--shutdown-timeout", "8s", "--policy"])
            .arg(&self.policy)
            .env("AWS_ACCESS_KEY_ID", env.access_key)
            .env("AWS_SECRET_ACCESS_KEY", env.secret_key)
            .env("AWS_REGION", env.region)
            .env("RUST_LOG", "info")
            .env("MC_TEST_MONGODB_URI", &self.mongodb_uri)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.log(n)).unwrap())
            .spawn()
            .expect("start mc-agent")
    }

    fn metrics(&self) -> String {
        http_get(self.port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    fn metric(&self, name: &str) -> Option<f64> {
        metric_value(&self.metrics(), name)
    }

    async fn repository(&self) -> Repository {
        let env = S3Env::from_env();
        let RepoUrl::S3(mut config) = RepoUrl::parse(&self.repo_url).unwrap() else {
            unreachable!()
        };
        config.static_credentials = Some(StaticCredentials {
            access_key_id: env.access_key,
            secret_access_key: env.secret_key,
        });
        Repository::open(&RepoUrl::S3(config), self.ring.clone(), false)
            .await
            .unwrap()
    }

    async fn newest_stored(&self) -> Option<OplogTs> {
        let repo = self.repository().await;
        let catalog = Catalog::load(&repo, &self.source_id, StreamKind::Oplog)
            .await
            .unwrap();
        Timeline::build(&catalog.segments).newest()
    }
}

/// Polls `cond` every 100 ms until it holds; panics after `limit` with `what` and `context()`.
async fn await_until(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> bool,
    context: impl Fn() -> String,
) -> Duration {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < limit,
            "{what} within {limit:?}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t0.elapsed()
}

/// Waits for the process to exit, at most `limit`.
async fn await_exit(agent: &mut Child, limit: Duration, log: &Path) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(status) = agent.try_wait().unwrap() {
            return status;
        }
        if t0.elapsed() > limit {
            let _ = agent.kill();
            panic!(
                "the agent did not exit within {limit:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sigterm(agent: &Child) {
    assert!(Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// `ts:S:I` in the shutdown line.
fn durable_point_in(log: &str) -> Option<OplogTs> {
    let line = log.lines().find(|l| l.contains("durable through ts:"))?;
    let rest = &line[line.find("durable through ts:")? + "durable through ts:".len()..];
    let mut parts = rest.split([':', ' ']);
    let t = parts.next()?.parse().ok()?;
    let i = parts.next()?.parse().ok()?;
    Some(OplogTs::new(t, i))
}

/// `majority="T.I"` in the shutdown line.
fn majority_in(log: &str) -> Option<OplogTs> {
    let line = log.lines().find(|l| l.contains("durable through ts:"))?;
    let rest = &line[line.find("majority=\"")? + "majority=\"".len()..];
    let (t, rest) = rest.split_once('.')?;
    let i = rest.split('"').next()?;
    Some(OplogTs::new(t.parse().ok()?, i.parse().ok()?))
}

/// How long the store is away in the outage tests (the 60 s).
const OUTAGE: Duration = Duration::from_secs(60);

/// How the store goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// SIGSTOP: connections open, nothing answers (a hung gateway, a half-open connection).
    Freeze,
    /// SIGKILL, later a new process on the same ports and data: connections refused.
    Stop,
}

impl Outage {
    fn begin(self, store: &mut PrivateSeaweed) {
        match self {
            Outage::Freeze => store.freeze(),
            Outage::Stop => store.stop(),
        }
    }

    async fn end(self, store: &mut PrivateSeaweed) {
        match self {
            Outage::Freeze => store.thaw(),
            Outage::Stop => store.restart().await,
        }
    }

    /// The `kind` label of `mc_store_errors_total` the outage produces.
    fn error_kind(self) -> &'static str {
        match self {
            Outage::Freeze => "timeout",
            Outage::Stop => "unreachable",
        }
    }
}

/// Asks `/metrics` every 200 ms from a thread of its own. While an agent is expected to serve
/// (between its `/healthz` answering and the test signalling it), every probe must answer 200
/// in under a second; probes around a signal are not judged.
struct Prober {
    expect: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Duration, u32)>,
}

impl Prober {
    fn start(port: u16) -> Self {
        let expect = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (e, st) = (expect.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let (mut slowest, mut judged) = (Duration::ZERO, 0u32);
            while !st.load(SeqCst) {
                let before = e.load(SeqCst);
                let t0 = Instant::now();
                let answer = http_get(port, "/metrics");
                let took = t0.elapsed();
                if before && e.load(SeqCst) {
                    assert!(
                        answer.as_ref().is_some_and(|(code, _)| *code == 200),
                        "/metrics did not answer during the outage: {answer:?}"
                    );
                    slowest = slowest.max(took);
                    judged += 1;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (slowest, judged)
        });
        Self {
            expect,
            stop,
            thread,
        }
    }

    /// Whether an agent is expected to answer from now on.
    fn expect(&self, answering: bool) {
        self.expect.store(answering, SeqCst);
    }

    /// The slowest judged answer and how many were judged.
    fn finish(self) -> (Duration, u32) {
        self.stop.store(true, SeqCst);
        self.thread
            .join()
            .expect("/metrics answered throughout the outage")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_store_is_reported_and_a_sigterm_inside_it_states_the_durable_point() {
    store_outage_under_load(Outage::Freeze).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_store_is_reported_and_a_sigterm_inside_it_states_the_durable_point() {
    store_outage_under_load(Outage::Stop).await;
}

/// The store away for [`OUTAGE`] under a steady load: agent 1 (capturing before) WARNs and is
/// stopped with SIGTERM inside the outage, agent 2 is started and killed with SIGKILL inside
/// it, agent 3 is started inside it and catches up once the store is back; the newest point
/// restores the source's documents.
async fn store_outage_under_load(outage: Outage) {
    let mut store = PrivateSeaweed::start().await;
    let bucket = store.bucket("mc-outage").await;
    // A MongoDB of this test's own with an oplog far larger than the outage needs: the shared
    // one's 128 MB can roll over within a minute while other tests and benchmarks write to it,
    // which would make the resume point vanish (a gap) for reasons that are not this test's.
    let source_set = mc_tests::mongod::PrivateReplSet::start(mc_tests::mongod::ReplSetConfig {
        oplog_mb: 1024,
        ..Default::default()
    })
    .await;
    let s = setup(&store, &bucket, &source_set.uri());

    // A light write load for the whole test.
    let client = source_set.node_client(0).clone();
    let db = unique_db("outage");
    let writer = SteadyWriter::start(
        client.database(&db).collection("c"),
        Steady {
            pause: Duration::from_millis(50),
            pad: 200,
            update: false,
        },
    );
    let prober = Prober::start(s.port);

    let mut agent = s.start_agent(1);
    let log1 = s.log(1);
    let show = |log: &Path| {
        format!(
            "metrics:\n{}\nagent log:\n{}",
            s.metrics(),
            std::fs::read_to_string(log).unwrap_or_default()
        )
    };
    await_until(
        "a first snapshot and a fresh RPO",
        Duration::from_secs(60),
        || {
            let m = s.metrics();
            metric_value(&m, "mc_snapshots_total").unwrap_or(0.0) >= 1.0
                && metric_value(&m, "mc_rpo_seconds").is_some_and(|r| (0.0..5.0).contains(&r))
                && metric_value(&m, "mc_repository_up") == Some(1.0)
        },
        || show(&log1),
    )
    .await;

    // The outage. /metrics must keep answering fast whichever agent runs.
    prober.expect(true);
    outage.begin(&mut store);
    let began = Instant::now();
    let warned_after = await_until(
        "a WARN naming the store",
        Duration::from_secs(35),
        || {
            std::fs::read_to_string(&log1)
                .unwrap_or_default()
                .contains(WARN_LINE)
        },
        || show(&log1),
    )
    .await;
    eprintln!("{outage:?}: WARN {warned_after:?} into the outage");
    let errors_of_kind = format!("kind=\"{}\"", outage.error_kind());
    await_until(
        "mc_repository_up 0 and store errors of the outage's kind",
        Duration::from_secs(10),
        || {
            let m = s.metrics();
            metric_value(&m, "mc_repository_up") == Some(0.0)
                && m.contains("mc_store_errors_total{")
                && m.contains(&errors_of_kind)
        },
        || show(&log1),
    )
    .await;
    let log = std::fs::read_to_string(&log1).unwrap();
    let warn = log.lines().find(|l| l.contains(WARN_LINE)).unwrap();
    assert!(
        warn.contains("waiting_bytes") && warn.contains("kind") && warn.contains(&bucket),
        "{warn}"
    );
    assert!(
        !log.contains(&S3Env::from_env().secret_key),
        "no secret in the log"
    );
    let status = http_get(s.port, "/status").unwrap().1;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["store"]["state"], "down", "{status:#}");
    assert!(status["store"]["since"].is_string(), "{status:#}");

    // SIGTERM inside the outage: the store accepts nothing within the 8 s grace.
    prober.expect(false);
    sigterm(&agent);
    let exit = await_exit(&mut agent, Duration::from_secs(20), &log1).await;
    let log = std::fs::read_to_string(&log1).unwrap();
    assert!(!exit.success(), "not everything is durable: exit 1\n{log}");
    assert!(
        !log.contains("everything majority-committed is durable"),
        "a false claim:\n{log}"
    );
    assert!(
        log.contains(
            "majority-committed oplog not stored, still in the oplog, captured at next start"
        ),
        "{log}"
    );
    let claimed = durable_point_in(&log).unwrap_or_else(|| panic!("no durable point:\n{log}"));
    let majority_at_stop = majority_in(&log).unwrap_or_else(|| panic!("no majority:\n{log}"));
    assert!(claimed < majority_at_stop, "{log}");

    // An agent started inside the outage serves health at once and says what it waits for;
    // SIGKILL it there.
    let mut agent = s.start_agent(2);
    let log2 = s.log(2);
    await_until(
        "/healthz of an agent started inside the outage",
        Duration::from_secs(2),
        || http_get(s.port, "/healthz").is_some_and(|(st, _)| st == 200),
        || show(&log2),
    )
    .await;
    prober.expect(true);
    let (ready, body) = http_get(s.port, "/readyz").unwrap();
    assert_eq!(ready, 503, "{body}");
    assert!(body.contains("waiting for the repository"), "{body}");
    await_until(
        "a WARN naming what the agent waits for",
        Duration::from_secs(35),
        || {
            std::fs::read_to_string(&log2)
                .unwrap_or_default()
                .contains("waiting for the repository's store")
        },
        || show(&log2),
    )
    .await;
    prober.expect(false);
    agent.kill().unwrap(); // SIGKILL
    agent.wait().unwrap();

    // The agent that sees the store come back.
    let mut agent = s.start_agent(3);
    let log3 = s.log(3);
    await_until(
        "/healthz of the third agent",
        Duration::from_secs(2),
        || http_get(s.port, "/healthz").is_some_and(|(st, _)| st == 200),
        || show(&log3),
    )
    .await;
    prober.expect(true);
    assert!(
        began.elapsed() < OUTAGE,
        "the steps inside the outage took {:?}",
        began.elapsed()
    );
    // The outage lasts its full length: a deliberate wait, not a condition.
    tokio::time::sleep_until((began + OUTAGE).into()).await;
    outage.end(&mut store).await;
    let ended = Instant::now();
    eprintln!(
        "{outage:?}: the store is back {:?} after the outage began",
        began.elapsed()
    );

    let caught_up = await_until(
        "RPO back under 5 s",
        Duration::from_secs(30),
        || {
            s.metric("mc_rpo_seconds")
                .is_some_and(|r| (0.0..5.0).contains(&r))
        },
        || show(&log3),
    )
    .await;
    eprintln!(
        "{outage:?}: RPO under 5 s {caught_up:?} after the store came back ({:?} after the end of the outage)",
        ended.elapsed()
    );
    prober.expect(false);
    let (slowest, judged) = prober.finish();
    eprintln!("{outage:?}: /metrics: {judged} answers judged, slowest {slowest:?}");
    assert!(judged > 100, "/metrics was probed {judged} times");
    assert!(
        slowest < Duration::from_secs(1),
        "slowest /metrics {slowest:?}"
    );

    // The line of agent 1 named a point the repository holds, in one run without a gap.
    let newest = s.newest_stored().await.expect("a timeline");
    assert!(claimed <= newest, "claimed {claimed}, stored {newest}");
    let repo = s.repository().await;
    let catalog = Catalog::load(&repo, &s.source_id, StreamKind::Oplog)
        .await
        .unwrap();
    let timeline = Timeline::build(&catalog.segments);
    let mut segments: Vec<String> = catalog
        .segments
        .iter()
        .filter_map(|e| {
            let r = e.oplog_range()?;
            Some(format!("{}..{} prev {:?}", r.first, r.last, r.prev))
        })
        .collect();
    segments.sort();
    assert_eq!(
        timeline.runs.len(),
        1,
        "one run, no gap: {timeline:?}\nsegments:\n{}",
        segments.join("\n")
    );

    // Stop writing, let the last write become durable, stop cleanly.
    let written = writer.stop().await;
    let majority = mc_agent::capture::oplog::OplogSource::connect(&s.mongodb_uri)
        .await
        .unwrap()
        .majority_point()
        .await
        .unwrap();
    await_until(
        "the last write durable",
        Duration::from_secs(30),
        || {
            http_get(s.port, "/status")
                .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
                .and_then(|v| {
                    v["capture"]["newest_durable_ts"]
                        .as_str()
                        .map(str::to_owned)
                })
                .and_then(|ts| {
                    let (t, i) = ts.split_once('.')?;
                    Some(OplogTs::new(t.parse().ok()?, i.parse().ok()?))
                })
                .is_some_and(|d| d >= majority)
        },
        || show(&log3),
    )
    .await;
    sigterm(&agent);
    let exit = await_exit(&mut agent, Duration::from_secs(20), &log3).await;
    let log = std::fs::read_to_string(&log3).unwrap();
    assert!(exit.success(), "{log}");
    assert!(
        log.contains("everything majority-committed is durable"),
        "{log}"
    );

    // Restore the newest point into a scratch mongod: the same documents.
    let target = mc_tests::mongod::PrivateReplSet::start(Default::default()).await;
    let env = S3Env::from_env();
    let ns = format!("{db}.*");
    let out = Command::new(workspace_bin("mc-restore"))
        .args(["--at", "latest", "--target"])
        .arg(target.uri())
        .args([
            "--repo",
            &s.repo_url,
            "--source",
            &s.source_id,
            "--ns",
            &ns,
            "--drop",
        ])
        .env("MC_KEYRING_FILE", &s.keyring)
        .env_remove("MC_REPO")
        .env("AWS_ACCESS_KEY_ID", env.access_key)
        .env("AWS_SECRET_ACCESS_KEY", env.secret_key)
        .env("AWS_REGION", env.region)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore: {}",
        mc_tests::restore::show(&out)
    );
    let want = db_state(&client, &db).await;
    let got = db_state(target.node_client(0), &db).await;
    assert_eq!(
        want.get("c").map(|c| c.documents.len()),
        Some(written as usize),
        "the source holds every write"
    );
    let digest = |state: &mc_tests::restore::DbState| {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for (name, c) in state {
            h.update(name.as_bytes());
            c.documents.iter().for_each(|d| h.update(d));
        }
        hex::encode(h.finalize())
    };
    assert_eq!(digest(&got), digest(&want), "the documents' hash");
    assert_same_state("restore of the newest point", &want, &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_started_with_the_store_frozen_serves_health_warns_and_captures_once_thawed() {
    let store = PrivateSeaweed::start().await;
    let bucket = store.bucket("mc-outage-start").await;
    let s = setup(&store, &bucket, &mongodb_uri());
    store.freeze();

    let mut agent = s.start_agent(1);
    let log1 = s.log(1);
    let show = || {
        format!(
            "metrics:\n{}\nagent log:\n{}",
            s.metrics(),
            std::fs::read_to_string(&log1).unwrap_or_default()
        )
    };
    let healthy = await_until(
        "/healthz",
        Duration::from_secs(2),
        || http_get(s.port, "/healthz").is_some_and(|(st, _)| st == 200),
        show,
    )
    .await;
    eprintln!("/healthz after {healthy:?}");
    let (status, body) = http_get(s.port, "/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("waiting for the repository"), "{body}");
    assert_eq!(s.metric("mc_repository_up"), Some(0.0));

    await_until(
        "a WARN naming what the agent waits for",
        Duration::from_secs(35),
        || {
            let log = std::fs::read_to_string(&log1).unwrap_or_default();
            log.contains("waiting for the repository's store") && log.contains(WARN_LINE)
        },
        show,
    )
    .await;

    store.thaw();
    await_until(
        "capturing with a fresh RPO and a first snapshot once thawed",
        Duration::from_secs(90),
        || {
            let m = s.metrics();
            metric_value(&m, "mc_capturing") == Some(1.0)
                && metric_value(&m, "mc_snapshots_total").unwrap_or(0.0) >= 1.0
                && metric_value(&m, "mc_repository_up") == Some(1.0)
                && metric_value(&m, "mc_rpo_seconds").is_some_and(|r| (0.0..5.0).contains(&r))
        },
        show,
    )
    .await;
    assert_eq!(http_get(s.port, "/readyz").map(|(st, _)| st), Some(200));
    sigterm(&agent);
    let exit = await_exit(&mut agent, Duration::from_secs(20), &log1).await;
    assert!(exit.success(), "{}", show());
    assert!(s.newest_stored().await.is_some());
}

/// Client sockets of this machine connected to `port` on 127.0.0.1 (`/proc/net/tcp`): each
/// one's local port and whether it is ESTABLISHED.
fn client_sockets(port: u16) -> Vec<(u16, bool)> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port_of = |addr: &str| {
        addr.split(':')
            .nth(1)
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
            (port_of(remote)? == port).then(|| (port_of(local).unwrap_or(0), *state == "01"))
        })
        .collect()
}

/// A timed-out attempt is retried on a new connection, and the connection it waited on is
/// closed (not returned to the pool, where a retry could wait on it again): against a frozen
/// SeaweedFS, with a 1 s attempt deadline, every attempt opens a connection of its own and at
/// most one connection is open at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_attempt_is_retried_on_a_new_connection() {
    use mc_core::storage::retry::RetryPolicy;
    use mc_core::storage::timeout::AttemptTimeouts;
    use mc_core::storage::{PutSource, StoreHealth, StoreOptions};

    let store = PrivateSeaweed::start().await;
    let bucket = store.bucket("mc-conn").await;
    let env = S3Env::from_env();
    let RepoUrl::S3(mut config) = RepoUrl::parse(&format!(
        "s3://{bucket}/conn?endpoint={}&region={}",
        store.endpoint(),
        env.region
    ))
    .unwrap() else {
        unreachable!()
    };
    config.static_credentials = Some(StaticCredentials {
        access_key_id: env.access_key,
        secret_access_key: env.secret_key,
    });
    let attempts = 4;
    let options = StoreOptions {
        retry: Some(RetryPolicy {
            max_attempts: Some(attempts),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(200),
        }),
        timeouts: AttemptTimeouts {
            base: Duration::from_secs(1),
            min_throughput: 1 << 20,
        },
        health: StoreHealth::new(),
    };
    let objects = mc_core::storage::open_with(&RepoUrl::S3(config), options)
        .await
        .unwrap();
    // A pooled connection, idle and open.
    objects
        .put_if_absent("warm", PutSource::Bytes(b"x".to_vec().into()))
        .await
        .unwrap();
    let before: Vec<u16> = client_sockets(store.s3_port)
        .iter()
        .filter(|s| s.1)
        .map(|s| s.0)
        .collect();
    eprintln!("before the freeze: open client connections {before:?}");

    store.freeze();
    let t0 = Instant::now();
    let attempt = tokio::spawn({
        let objects = objects.clone();
        async move { objects.head("warm").await }
    });
    // Connections opened after the freeze, and the most of them open at one time (the pool's
    // idle connections from before may stay open: no attempt waits on them).
    let mut fresh = std::collections::BTreeSet::new();
    let mut most_open = 0;
    while !attempt.is_finished() {
        let open: Vec<u16> = client_sockets(store.s3_port)
            .iter()
            .filter(|s| s.1 && !before.contains(&s.0))
            .map(|s| s.0)
            .collect();
        most_open = most_open.max(open.len());
        fresh.extend(open);
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{attempts} attempts of 1 s within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let result = attempt.await.unwrap();
    let still_open: Vec<u16> = client_sockets(store.s3_port)
        .iter()
        .filter(|s| s.1 && fresh.contains(&s.0))
        .map(|s| s.0)
        .collect();
    store.thaw();
    eprintln!(
        "frozen: {:?} for {attempts} attempts; connections before {before:?}, opened after the freeze {fresh:?} (at most {most_open} at once, {still_open:?} still open after): {result:?}",
        t0.elapsed()
    );
    let err = result.expect_err("a frozen store does not answer");
    assert_eq!(err.kind().as_str(), "timeout", "{err}");
    assert!(
        fresh.len() >= attempts as usize - 1,
        "each retry on a new connection: {} new connections for {attempts} attempts",
        fresh.len()
    );
    assert!(
        most_open <= 1 && still_open.is_empty(),
        "a timed-out attempt's connection is closed: {most_open} new ones open at once, {still_open:?} open after"
    );
    // Thawed, the store answers on a connection of its own.
    assert!(objects.head("warm").await.unwrap().is_some());
}
