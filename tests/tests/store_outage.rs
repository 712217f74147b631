//! The object store stops answering (a private SeaweedFS frozen with SIGSTOP: connections stay
//! open, nothing answers) under the real `mc-agent run` process and a real mongod:
//!
//! - while frozen the agent WARNs within 35 s, `/metrics` answers in under a second throughout,
//!   `mc_repository_up` is 0; SIGTERM inside the freeze ends with a line that states the real
//!   durable point (the repository holds it; uploads in flight may land after the thaw, never
//!   past the majority point of the stop), not "everything is durable", and exit 1;
//!   after SIGCONT and a restart capture catches up (RPO under 5 s within 30 s) and restoring
//!   the newest point gives the source's documents;
//! - started with the store frozen, the agent answers `/healthz` within 2 s, is not ready and
//!   says why, WARNs within 35 s, and captures once the store is thawed.
//!
//! The agent runs with its default attempt deadlines (15 s plus a second per MiB).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mc_core::catalog::{Catalog, Repository, Timeline};
use mc_core::format::{OplogTs, StreamKind};
use mc_core::storage::s3::StaticCredentials;
use mc_core::storage::RepoUrl;
use mc_tests::agent::{free_port, http_get, metric_value};
use mc_tests::restore::{assert_same_state, db_state};
use mc_tests::seaweed::PrivateSeaweed;
use mc_tests::*;
use mongodb::bson::doc;
use tokio::sync::watch;

const WARN_LINE: &str = "the object store is not answering";

struct Setup {
    dir: tempfile::TempDir,
    policy: PathBuf,
    keyring: PathBuf,
    ring: mc_core::crypto::Keyring,
    repo_url: String,
    port: u16,
    source_id: String,
}

fn setup(store: &PrivateSeaweed, bucket: &str) -> Setup {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_store_is_reported_and_a_sigterm_inside_it_states_the_durable_point() {
    let store = PrivateSeaweed::start().await;
    let bucket = store.bucket("mc-outage").await;
    let s = setup(&store, &bucket);

    // A light write load for the whole test.
    let client = mongo_client().await;
    let db = unique_db("outage");
    let (stop_tx, stop_rx) = watch::channel(false);
    let coll = client
        .database(&db)
        .collection::<mongodb::bson::Document>("c");
    let writer = tokio::spawn(async move {
        let mut i = 0i64;
        while !*stop_rx.borrow() {
            coll.insert_one(doc! {"_id": i, "pad": "w".repeat(200)})
                .await
                .unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        i
    });

    let mut agent = s.start_agent(1);
    let log1 = s.log(1);
    let show1 = || {
        format!(
            "metrics:\n{}\nagent log:\n{}",
            s.metrics(),
            std::fs::read_to_string(&log1).unwrap_or_default()
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
        show1,
    )
    .await;

    // Freeze. /metrics must keep answering fast until the SIGTERM.
    store.freeze();
    let frozen_at = Instant::now();
    let port = s.port;
    let (probe_stop_tx, probe_stop) = watch::channel(false);
    let prober = std::thread::spawn(move || {
        let mut slowest = Duration::ZERO;
        let mut answers = 0u32;
        while !*probe_stop.borrow() {
            let t0 = Instant::now();
            let ok = http_get(port, "/metrics").is_some_and(|(status, _)| status == 200);
            let took = t0.elapsed();
            assert!(ok, "/metrics did not answer during the freeze");
            slowest = slowest.max(took);
            answers += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        (slowest, answers)
    });

    let warned_after = await_until(
        "a WARN naming the store",
        Duration::from_secs(35),
        || {
            std::fs::read_to_string(&log1)
                .unwrap_or_default()
                .contains(WARN_LINE)
        },
        show1,
    )
    .await;
    eprintln!("WARN {warned_after:?} into the freeze");
    let metrics = s.metrics();
    assert_eq!(
        metric_value(&metrics, "mc_repository_up"),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("mc_store_errors_total{source=") && metrics.contains("kind=\"timeout\""),
        "{metrics}"
    );
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

    // SIGTERM inside the freeze: the store accepts nothing within the 8 s grace.
    sigterm(&agent);
    let _ = probe_stop_tx.send(true);
    let exit = await_exit(&mut agent, Duration::from_secs(20), &log1).await;
    let (slowest, answers) = prober
        .join()
        .expect("/metrics answered throughout the freeze");
    eprintln!("/metrics: {answers} answers, slowest {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "slowest /metrics {slowest:?}"
    );
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

    // Thaw. The line named a point the repository really holds; segments whose upload was in
    // flight when the agent gave up may still land as the store wakes up (it reads the requests
    // waiting in its sockets), never beyond what was majority-committed at the stop.
    store.thaw();
    eprintln!("thawed {:?} after the freeze", frozen_at.elapsed());
    let majority_at_stop = majority_in(&log).unwrap_or_else(|| panic!("no majority:\n{log}"));
    let newest = s.newest_stored().await.expect("a timeline");
    let packed = |ts: OplogTs| (u64::from(ts.t) << 32) | u64::from(ts.i);
    assert!(
        packed(claimed) <= packed(newest) && packed(newest) < packed(majority_at_stop),
        "claimed {claimed}, stored {newest}, majority at the stop {majority_at_stop}\n{log}"
    );
    let repo = s.repository().await;
    let catalog = Catalog::load(&repo, &s.source_id, StreamKind::Oplog)
        .await
        .unwrap();
    let runs = Timeline::build(&catalog.segments).runs.len();
    assert_eq!(runs, 1, "one run, no gap");

    // Restart: capture catches up.
    let mut agent = s.start_agent(2);
    let log2 = s.log(2);
    let show2 = || {
        format!(
            "metrics:\n{}\nagent log:\n{}",
            s.metrics(),
            std::fs::read_to_string(&log2).unwrap_or_default()
        )
    };
    let caught_up = await_until(
        "RPO back under 5 s",
        Duration::from_secs(30),
        || {
            s.metric("mc_rpo_seconds")
                .is_some_and(|r| (0.0..5.0).contains(&r))
        },
        show2,
    )
    .await;
    eprintln!("caught up {caught_up:?} after the restart");

    // Stop writing, let the last write become durable, stop cleanly.
    let _ = stop_tx.send(true);
    let written = writer.await.unwrap();
    let majority = mc_agent::capture::oplog::OplogSource::connect(&mongodb_uri())
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
                .is_some_and(|d| packed(d) >= packed(majority))
        },
        show2,
    )
    .await;
    sigterm(&agent);
    let exit = await_exit(&mut agent, Duration::from_secs(20), &log2).await;
    let log = std::fs::read_to_string(&log2).unwrap();
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
    let s = setup(&store, &bucket);
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
