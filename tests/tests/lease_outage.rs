//! The Redis lease under an outage (issue #15): two `mc-agent run` processes share a policy whose
//! lease is in a private Redis; one captures. Redis then stops answering for longer than the
//! lease TTL, in one of two ways: the process frozen with SIGSTOP (connections hang, as in a
//! network partition), or killed with SIGKILL and started again later on the same port and
//! data (connections refused, then the agents' connections are dead: they must open new ones).
//! The holder must stop capturing before its lease could expire, the standby must not take over
//! while Redis is away, never are both capturing; once Redis answers again one agent takes the
//! lease with a larger fencing token and capture catches up (RPO back under a few seconds), and
//! the repository's timeline is one continuous run whose writers (fencing tokens) never
//! interleave.
//!
//! The private Redis keeps an append-only file (`appendfsync always`), as the lease's Redis
//! must in production: a Redis that restarts without its data forgets the fencing counter and
//! the lease (docs/operations.md, "When Redis is down").

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_agent::capture::oplog::OplogSource;
use mc_core::catalog::{Catalog, Repository, Timeline};
use mc_core::format::{OplogTs, StreamKind};
use mc_core::storage::local::LocalDir;
use mc_tests::agent::{free_port, http_get, metric_value, write_test_policy};
use mc_tests::writer::{Steady, SteadyWriter};
use mc_tests::*;

/// The lease TTL of the test policy; the agent renews every TTL/3.
const TTL: Duration = Duration::from_secs(5);
/// How long a frozen Redis does not answer: four TTLs.
const FREEZE: Duration = Duration::from_secs(20);
/// How long a killed Redis stays down before it is started again: two TTLs.
const DOWN: Duration = Duration::from_secs(10);

/// How Redis goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// SIGSTOP, then SIGCONT.
    Freeze,
    /// SIGKILL, then a new process on the same port and data.
    Restart,
}

/// A `redis-server` of this test alone, on a free port, with an append-only file in a directory
/// of its own; killed on drop.
struct PrivateRedis {
    port: u16,
    pid: u32,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let pid = Self::spawn(dir.path(), port);
        Self { port, pid, dir }
    }

    /// Starts `redis-server` daemonized on `port` with its data in `dir`; returns its pid once
    /// it accepts connections.
    fn spawn(dir: &Path, port: u16) -> u32 {
        let pidfile = dir.join("redis.pid");
        let _ = std::fs::remove_file(&pidfile);
        let status = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(dir)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--daemonize", "yes", "--pidfile"])
            .arg(&pidfile)
            .stdout(Stdio::null())
            .status()
            .expect("redis-server is installed");
        assert!(status.success(), "redis-server did not start");
        let t0 = Instant::now();
        loop {
            let pid = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|p| p.trim().parse().ok());
            if let (Some(pid), true) = (
                pid,
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            ) {
                return pid;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "private redis-server on port {port} did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.pid);
    }

    /// Takes Redis away as `outage` says.
    fn take_away(&self, outage: Outage) {
        match outage {
            Outage::Freeze => self.signal("-STOP"),
            Outage::Restart => {
                self.signal("-KILL");
                let t0 = Instant::now();
                while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    assert!(
                        t0.elapsed() < Duration::from_secs(10),
                        "killed redis-server still accepts connections"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Brings Redis back after [`PrivateRedis::take_away`].
    fn bring_back(&mut self, outage: Outage) {
        match outage {
            Outage::Freeze => self.signal("-CONT"),
            Outage::Restart => self.pid = Self::spawn(self.dir.path(), self.port),
        }
    }

    /// Waits for the holder's next renewal to reach Redis and returns the moment the lease's
    /// `PTTL` was read just after it, and that `PTTL` (ms).
    ///
    /// Why just after a renewal: the lease expires no earlier than `read + pttl`, but a renewal
    /// landing between the read and the outage would move the real expiry (and the holder's own
    /// deadline) later, making that bound too early by up to a renewal period. Right after a
    /// renewal the next one is a third of the TTL away, far more than the read-to-outage gap.
    async fn lease_pttl_after_renewal(&self, source_id: &str) -> (Instant, i64) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let fresh = (TTL - TTL / 10).as_millis() as i64;
        let t0 = Instant::now();
        loop {
            let read = Instant::now();
            let pttl: i64 = redis::cmd("PTTL")
                .arg(format!("mc-backup:lease:{source_id}"))
                .query_async(&mut conn)
                .await
                .unwrap();
            if pttl >= fresh {
                return (read, pttl);
            }
            assert!(
                t0.elapsed() < TTL,
                "the holder did not renew its lease within a TTL (pttl {pttl} ms)"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.pid.to_string()])
            .status();
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
    }
}

/// One `mc-agent run` process and its HTTP port; killed on drop.
struct Agent {
    name: &'static str,
    port: u16,
    child: Child,
    log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one agent's `/status` says.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    lease_held: bool,
    fence: u64,
    capturing: bool,
    segments: u64,
    rpo: Option<f64>,
    durable: Option<OplogTs>,
}

impl Agent {
    fn start(name: &'static str, policy: &Path, redis_url: &str, port: u16, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(workspace_bin("mc-agent"))
            .args(["run", "--policy"])
            .arg(policy)
            .env("POD_NAME", name)
            .env("MC_TEST_LEASE_REDIS", redis_url)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start mc-agent");
        Self {
            name,
            port,
            child,
            log,
        }
    }

    fn status(&self) -> Option<Seen> {
        let (_, body) = http_get(self.port, "/status")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let c = &v["capture"];
        let durable = c["newest_durable_ts"].as_str().and_then(|ts| {
            let (t, i) = ts.split_once('.')?;
            Some(OplogTs::new(t.parse().ok()?, i.parse().ok()?))
        });
        Some(Seen {
            lease_held: c["lease_held"].as_bool()?,
            fence: c["lease_fence"].as_u64()?,
            capturing: c["capturing"].as_bool()?,
            segments: c["segments_uploaded"].as_u64()?,
            rpo: c["rpo_seconds"].as_f64(),
            durable,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sigterm(mut self) -> Option<i32> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap().code()
    }
}

/// Both agents' `/status` now (a missing answer is a failure: both stay up throughout).
fn both(a: &Agent, b: &Agent) -> (Seen, Seen) {
    let see = |x: &Agent| {
        x.status()
            .unwrap_or_else(|| panic!("{} does not answer /status; log:\n{}", x.name, x.log()))
    };
    (see(a), see(b))
}

/// Polls both agents every 50 ms until `done` holds, failing after `limit`; at every sample no
/// two agents hold the lease. Returns the time taken and the last sample.
async fn poll_until(
    what: &str,
    limit: Duration,
    a: &Agent,
    b: &Agent,
    mut done: impl FnMut(&Seen, &Seen) -> bool,
) -> (Duration, Seen, Seen) {
    let t0 = Instant::now();
    loop {
        let (sa, sb) = both(a, b);
        assert!(
            !(sa.lease_held && sb.lease_held),
            "both agents hold the lease: {sa:?} {sb:?}"
        );
        if done(&sa, &sb) {
            return (t0.elapsed(), sa, sb);
        }
        assert!(
            t0.elapsed() < limit,
            "{what} did not happen within {limit:?}: {}={sa:?} {}={sb:?}\n{} log:\n{}\n{} log:\n{}",
            a.name,
            b.name,
            a.name,
            a.log(),
            b.name,
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_stops_the_holder_in_time_and_capture_resumes_without_a_gap() {
    lease_through(Outage::Freeze, FREEZE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_redis_is_reached_again_and_capture_resumes_with_a_larger_token() {
    lease_through(Outage::Restart, DOWN).await;
}

/// Two agents capture under a steady load while Redis goes away for `outage_for` as `outage`
/// says, then comes back.
async fn lease_through(outage: Outage, outage_for: Duration) {
    let mut redis = PrivateRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let source_id = unique_db("outage").replace('_', "-");
    let (port_a, port_b) = (free_port(), free_port());
    let extra = |port: u16| {
        format!(
            "capture:\n  seal_interval: 300ms\n  max_segment_bytes: 64KiB\nhttp:\n  listen: 127.0.0.1:{port}\n\
lease:\n  redis_url: {{ env: MC_TEST_LEASE_REDIS }}\n  ttl: {}s\n",
            TTL.as_secs()
        )
    };
    // One repository and keyring; each agent its own policy file (HTTP port) and spool, as two
    // pods of a DaemonSet have.
    let policy_a = write_test_policy(
        dir.path(),
        "outage-test",
        &source_id,
        "MC_TEST_MONGODB_URI",
        &extra(port_a),
    );
    // Retention (after each snapshot) keeps the oplog of a PITR window, from the oldest kept
    // snapshot on, so the timeline checked below spans the outage.
    let keep = "retention:\n  keep_daily: 1\n";
    let text_a = std::fs::read_to_string(&policy_a).unwrap();
    assert!(text_a.contains(keep), "{text_a}");
    let text_a = text_a.replace(keep, &format!("{keep}  pitr_window: 1h\n"));
    std::fs::write(&policy_a, &text_a).unwrap();
    let spool = dir.path().join("spool").display().to_string();
    let text_b = text_a
        .replace(&extra(port_a), &extra(port_b))
        .replace(&spool, &format!("{spool}-b"));
    let policy_b = dir.path().join("policy-b.yaml");
    std::fs::write(&policy_b, text_b).unwrap();
    let keyring = mc_core::crypto::keys::create_keyring_file(&dir.path().join("keyring")).unwrap();
    let source = OplogSource::connect(&mongodb_uri()).await.unwrap();

    // A workload writing throughout.
    let client = mongo_client().await;
    let db = unique_db("outage");
    let writer = SteadyWriter::start(
        client.database(&db).collection("c"),
        Steady {
            pause: Duration::from_millis(2),
            pad: 100,
            update: false,
        },
    );

    let a = Agent::start("agent-a", &policy_a, &redis.url(), port_a, dir.path());
    let b = Agent::start("agent-b", &policy_b, &redis.url(), port_b, dir.path());
    let up = Instant::now();
    while a.status().is_none() || b.status().is_none() {
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "agents answer /status; logs:\n{}\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Before: one holder, capturing up to now.
    let (_, sa, _) = poll_until(
        "one agent holds the lease",
        Duration::from_secs(20),
        &a,
        &b,
        |x, y| x.lease_held || y.lease_held,
    )
    .await;
    let (holder, standby) = if sa.lease_held { (&a, &b) } else { (&b, &a) };
    // The holder's first snapshot done: were it cut short by the outage, the next holder would
    // take a first snapshot again, and retention would then prune the oplog before it, that is,
    // what this test checks is continuous.
    let t0 = Instant::now();
    while !http_get(holder.port, "/metrics").is_some_and(|(_, m)| {
        metric_value(&m, "mc_last_snapshot_timestamp_seconds").is_some_and(|v| v > 0.0)
    }) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{}'s first snapshot within 60 s; log:\n{}",
            holder.name,
            holder.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = source.majority_point().await.unwrap();
    let (_, s1, s2) = poll_until(
        "the holder captures",
        Duration::from_secs(60),
        &a,
        &b,
        |x, y| {
            let h = if sa.lease_held { x } else { y };
            h.durable.is_some_and(|ts| ts >= before)
        },
    )
    .await;
    let (before_holder, before_standby) = if sa.lease_held { (s1, s2) } else { (s2, s1) };
    assert_eq!(before_standby.segments, 0, "the standby stores nothing");
    let first_fence = before_holder.fence;

    // Redis stops answering just after a renewal. The lease expires no earlier than `pttl`
    // after we read it: the earliest moment another agent could take it. The holder must have
    // stopped before then.
    let (read, pttl) = redis.lease_pttl_after_renewal(&source_id).await;
    redis.take_away(outage);
    let frozen = Instant::now();
    let expires_no_earlier = read + Duration::from_millis(pttl as u64);
    let (stopped_after, _, _) = poll_until(
        "the holder stops capturing",
        TTL + Duration::from_secs(2),
        &a,
        &b,
        |x, y| !x.lease_held && !y.lease_held,
    )
    .await;
    let stopped = frozen + stopped_after;
    assert!(
        stopped < expires_no_earlier,
        "the holder gave the lease up {stopped_after:?} after Redis froze, {:?} after the lease could expire",
        stopped - expires_no_earlier
    );
    let at_stop = holder.status().unwrap().segments;
    // The deposed holder's upload task may still store the batches already handed to it just
    // after the stop; then nothing more for the rest of the outage. The standby stores nothing
    // and neither holds the lease.
    let (mut last_count, mut last_change) = (at_stop, stopped_after);
    let (_, h_end, s_end) = poll_until("the outage lasts", outage_for, holder, standby, |x, y| {
        assert!(
            !x.lease_held && !y.lease_held,
            "nobody holds the lease while Redis is away"
        );
        assert_eq!(y.segments, 0, "the standby stores nothing");
        if x.segments != last_count {
            (last_count, last_change) = (x.segments, frozen.elapsed());
        }
        frozen.elapsed() >= outage_for
    })
    .await;
    assert!(
        last_change <= stopped_after + Duration::from_secs(1),
        "the deposed holder stored segments until {last_change:?} after the freeze, {stopped_after:?} after which it had stopped"
    );
    eprintln!(
        "{outage:?} outage: lease pttl {pttl} ms at freeze; holder {} stopped {stopped_after:?} after the freeze ({:?} before the lease could expire); segments {} at stop, {} at end (last stored {last_change:?} after the freeze); capturing flag after stop: holder {} standby {}",
        holder.name,
        expires_no_earlier - stopped,
        at_stop,
        h_end.segments,
        h_end.capturing,
        s_end.capturing
    );
    assert!(
        !h_end.capturing && !s_end.capturing,
        "a deposed holder must not report capturing (mc_capturing, /readyz, /status): holder {} standby {}",
        h_end.capturing,
        s_end.capturing
    );

    // Redis answers again: one agent takes the lease with a larger token and catches up.
    redis.bring_back(outage);
    let resumed = Instant::now();
    let (took, sa, sb) = poll_until("an agent takes the lease again", TTL * 3, &a, &b, |x, y| {
        x.lease_held || y.lease_held
    })
    .await;
    let new_holder = if sa.lease_held { &a } else { &b };
    let new_fence = if sa.lease_held { sa.fence } else { sb.fence };
    assert!(
        new_fence > first_fence,
        "fencing token {new_fence} after {first_fence}"
    );
    let target = source.majority_point().await.unwrap();
    let (caught_up, _, _) = poll_until(
        "capture catches up after the outage",
        Duration::from_secs(30),
        &a,
        &b,
        |x, y| {
            let h = if sa.lease_held { x } else { y };
            h.durable.is_some_and(|ts| ts >= target) && h.rpo.is_some_and(|r| r < 3.0)
        },
    )
    .await;
    eprintln!(
        "resume: {} took the lease (fence {first_fence} -> {new_fence}) {took:?} after Redis answered; caught up (RPO < 3 s) {:?} after",
        new_holder.name,
        resumed.elapsed().min(took + caught_up)
    );
    // Stable again: exactly one holder for a few renewal periods.
    poll_until("one holder stays", TTL * 2, &a, &b, |_, _| {
        resumed.elapsed() > took + caught_up + TTL
    })
    .await;

    writer.stop().await;
    let end = source.majority_point().await.unwrap();
    poll_until(
        "the last writes are durable",
        Duration::from_secs(30),
        &a,
        &b,
        |x, y| {
            let h = if sa.lease_held { x } else { y };
            h.durable.is_some_and(|ts| ts >= end)
        },
    )
    .await;
    let (log_a, log_b) = (a.log(), b.log());
    assert_eq!(a.sigterm(), Some(0), "agent-a exits 0; log:\n{log_a}");
    assert_eq!(b.sigterm(), Some(0), "agent-b exits 0; log:\n{log_b}");

    // The repository: one continuous run across the outage, each fencing token's segments
    // after the previous token's (writers never interleave), the post-outage token the largest.
    let repo = Repository::new(
        Arc::new(LocalDir::new(dir.path().join("repo")).unwrap()),
        keyring,
    );
    let catalog = Catalog::load(&repo, &source_id, StreamKind::Oplog)
        .await
        .unwrap();
    let timeline = Timeline::build(&catalog.segments);
    assert_eq!(timeline.runs.len(), 1, "no gap: {timeline:?}");
    assert!(timeline.gaps.is_empty(), "no gap: {timeline:?}");
    assert!(
        timeline.runs[0].start <= before && timeline.runs[0].end >= end,
        "the run spans the outage ({before} .. {end}): {timeline:?}"
    );
    let mut segments: Vec<(OplogTs, OplogTs, u64)> = catalog
        .segments
        .iter()
        .map(|s| {
            let r = s.oplog_range().expect("an oplog range");
            (r.first, r.last, s.fence)
        })
        .collect();
    segments.sort();
    assert!(
        segments
            .windows(2)
            .all(|w| w[0].1 < w[1].0 && w[0].2 <= w[1].2),
        "segments overlap or fencing tokens go back: {segments:?}"
    );
    let fences: std::collections::BTreeSet<u64> = segments.iter().map(|s| s.2).collect();
    assert!(
        fences.contains(&first_fence) && fences.contains(&new_fence),
        "{fences:?}"
    );
    assert!(mc_core::catalog::verify(&repo, None).await.unwrap().is_ok());
    eprintln!(
        "repository: {} segments, fences {fences:?}, one run {} .. {}",
        segments.len(),
        timeline.runs[0].start,
        timeline.runs[0].end
    );
    client.database(&db).drop().await.unwrap();
}
