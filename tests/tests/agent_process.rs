//! The `mc-agent run` process as operators run it: started from a policy file, stopped with
//! SIGTERM (must exit 0 having flushed) and killed with SIGKILL, five times each, while a
//! workload writes. Afterwards the repository's timeline is one run whose entries are exactly
//! the oplog's, each once, in order. Also checks the HTTP endpoints it serves.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mc_agent::capture::oplog::OplogSource;
use mc_core::catalog::Repository;
use mc_core::format::OplogTs;
use mc_core::storage::local::LocalDir;
use mc_tests::agent::{free_port, http_get, write_test_policy};
use mc_tests::writer::{Steady, SteadyWriter};
use mc_tests::*;

fn write_policy(dir: &Path, source_id: &str, port: u16) -> std::path::PathBuf {
    let extra = format!(
        "capture:\n  seal_interval: 300ms\n  max_segment_bytes: 64KiB\nhttp:\n  listen: 127.0.0.1:{port}\n"
    );
    write_test_policy(
        dir,
        "process-test",
        source_id,
        "MC_TEST_MONGODB_URI",
        &extra,
    )
}

fn newest_durable(port: u16) -> Option<OplogTs> {
    let (_, body) = http_get(port, "/status")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let ts = v["capture"]["newest_durable_ts"].as_str()?;
    let (t, i) = ts.split_once('.')?;
    Some(OplogTs::new(t.parse().ok()?, i.parse().ok()?))
}

fn start_agent(policy: &Path, log: &Path) -> Child {
    Command::new(workspace_bin("mc-agent"))
        .args(["run", "--policy"])
        .arg(policy)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start mc-agent")
}

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigkill_restarts_keep_the_timeline_exact() {
    let dir = tempfile::tempdir().unwrap();
    let source_id = unique_db("proc").replace('_', "-");
    let port = free_port();
    let policy = write_policy(dir.path(), &source_id, port);
    let keyring = mc_core::crypto::keys::create_keyring_file(&dir.path().join("keyring")).unwrap();
    let log = dir.path().join("agent.log");
    let source = OplogSource::connect(&mongodb_uri()).await.unwrap();

    let client = mongo_client().await;
    let db = unique_db("proc");
    let writer = SteadyWriter::start(
        client.database(&db).collection("c"),
        Steady {
            pause: Duration::from_millis(1),
            pad: 100,
            update: true,
        },
    );

    let mut first_snapshot = None;
    for round in 0..10 {
        let mut agent = start_agent(&policy, &log);
        wait_for("readyz", Duration::from_secs(30), || {
            http_get(port, "/readyz").is_some_and(|(code, _)| code == 200)
        })
        .await;
        let target = source.majority_point().await.unwrap();
        wait_for("durable progress", Duration::from_secs(30), || {
            newest_durable(port).is_some_and(|ts| ts >= target)
        })
        .await;
        // The first start takes a base snapshot (the repository has none). Its time is read
        // back from the repository after a restart, not reset to 0.
        let last_snapshot = || {
            let (_, text) = http_get(port, "/metrics")?;
            mc_tests::agent::metric_value(&text, "mc_last_snapshot_timestamp_seconds")
                .filter(|v| *v > 0.0)
        };
        match round {
            0 => {
                wait_for("the first snapshot", Duration::from_secs(60), || {
                    last_snapshot().is_some()
                })
                .await;
                first_snapshot = last_snapshot();
            }
            1 => {
                wait_for(
                    "the snapshot time after a restart",
                    Duration::from_secs(10),
                    || last_snapshot().is_some(),
                )
                .await;
                let (before, after) = (first_snapshot.unwrap(), last_snapshot().unwrap());
                assert!(
                    (before - after).abs() < 5.0,
                    "last snapshot time {after} after a restart, {before} before"
                );
            }
            _ => {}
        }
        if round == 0 {
            let (code, metrics) = http_get(port, "/metrics").unwrap();
            assert_eq!(code, 200);
            assert!(
                metrics.contains(&format!("mc_rpo_seconds{{source=\"{source_id}\"}}")),
                "{metrics}"
            );
            assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
        }
        if round % 2 == 0 {
            let pid = agent.id().to_string();
            assert!(Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success());
            let status = agent.wait().unwrap();
            assert_eq!(
                status.code(),
                Some(0),
                "graceful stop exits 0; log: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        } else {
            agent.kill().unwrap(); // SIGKILL
            agent.wait().unwrap();
        }
    }

    writer.stop().await;
    let end = source.majority_point().await.unwrap();
    let mut agent = start_agent(&policy, &log);
    wait_for("final catch-up", Duration::from_secs(30), || {
        newest_durable(port).is_some_and(|ts| ts >= end)
    })
    .await;
    Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(agent.wait().unwrap().code(), Some(0));

    let repo = Repository::new(
        std::sync::Arc::new(LocalDir::new(dir.path().join("repo")).unwrap()),
        keyring,
    );
    mc_tests::agent::assert_one_run_equals_oplog(&repo, &client, &source_id, end).await;

    // The operator's view of the same repository.
    let run_cmd = |args: &[&str]| {
        let out = Command::new(workspace_bin("mc-agent"))
            .args(args)
            .arg("--policy")
            .arg(&policy)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = run_cmd(&["status"]);
    assert!(status.contains(&format!("source {source_id}")), "{status}");
    assert!(
        status.contains("continuous") && !status.contains("GAP"),
        "{status}"
    );
    assert!(
        status.contains("snapshots: 1 (newest"),
        "the agent took its first snapshot: {status}"
    );
    assert!(status.contains("restorable"), "{status}");
    let prune = run_cmd(&["prune", "--dry-run"]);
    assert!(
        prune.contains("keep ") && prune.contains("newest"),
        "{prune}"
    );
    client.database(&db).drop().await.unwrap();
}
