//! Helpers for tests that run the agent's capture in-process: settings sized for tests (small
//! segments, short seal interval, fast ticks) and waiting on durability as a condition.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use mc_agent::capture::CaptureSettings;
use mc_agent::metrics::Metrics;
use mc_core::format::OplogTs;

/// Capture settings for tests: what `mc-agent run` builds from a policy with the default
/// `capture:` section ([`CaptureSettings::new`]), written by `test` and spooling under `spool`,
/// then sized for tests: 64 KiB segments sealed at least every 200 ms, the majority polled every
/// 50 ms.
pub fn capture_settings(source: &str, spool: &Path) -> CaptureSettings {
    let mut settings = CaptureSettings::new(&Default::default(), source, "test", spool.to_owned());
    settings.rules.max_bytes = 64 * 1024;
    settings.rules.seal_interval = Duration::from_millis(200);
    settings.tick = Duration::from_millis(50);
    settings
}

/// An oplog timestamp packed as the metrics store it.
pub fn pack(ts: OplogTs) -> u64 {
    (u64::from(ts.t) << 32) | u64::from(ts.i)
}

/// Waits until the newest durable entry is at or after `ts` (a condition, not a sleep); fails the
/// test after 60 s.
pub async fn wait_durable(metrics: &Metrics, ts: OplogTs) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while metrics.capture.durable_ts.load(Relaxed) < pack(ts) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("capture did not make {ts} durable within 60 s"));
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `GET path` from the agent's HTTP server on `port`: (status, body), or `None` if it does not
/// answer (yet).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The value of an unlabelled-but-`source` metric line `name{source="…"} value` in `/metrics`.
pub fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Writes `dir/policy.yaml` for tests: a policy named `name` for source `source_id`, its MongoDB
/// URI read from environment variable `mongodb_env`, the repository, keyring and spool in `dir`
/// (`repo/`, `keyring`, `spool/`, as [`crate::restore::repo_paths`] expects), the usual
/// objectives, a daily snapshot and one kept, plus `extra` (more YAML sections: capture, http,
/// lease, kafka, drills). Returns its path.
pub fn write_test_policy(
    dir: &Path,
    name: &str,
    source_id: &str,
    mongodb_env: &str,
    extra: &str,
) -> std::path::PathBuf {
    let policy = format!(
        "version: 1\nname: {name}\nsource:\n  id: {source_id}\n  mongodb:\n    uri: {{ env: {mongodb_env} }}\n\
repository:\n  url: {repo}\n  keyring: {{ file: {keyring} }}\n  spool_dir: {spool}\n\
objectives:\n  rpo: 15m\n  rto: 4h\nsnapshots:\n  schedule: \"0 0 2 * * *\"\nretention:\n  keep_daily: 1\n{extra}",
        repo = dir.join("repo").display(),
        keyring = dir.join("keyring").display(),
        spool = dir.join("spool").display(),
    );
    let path = dir.join("policy.yaml");
    std::fs::write(&path, policy).expect("writing the test policy");
    path
}

/// Starts `mc-agent run --policy <policy>` with the source and scratch URIs in `MC_SOURCE_URI`
/// and `MC_SCRATCH_URI` (stderr into `log`), and waits until its `/metrics` on `port` report a
/// passing scheduled drill (early drills may find nothing restorable yet: the first snapshot
/// and the capture past its end take a moment). Returns the running agent and those metrics;
/// panics after 120 s, or if the agent exits, with the metrics and the agent's log.
pub async fn run_until_a_drill_passes(
    policy: &Path,
    source_uri: &str,
    scratch_uri: &str,
    port: u16,
    log: &Path,
) -> (std::process::Child, String) {
    let mut agent = std::process::Command::new(crate::workspace_bin("mc-agent"))
        .args(["run", "--policy"])
        .arg(policy)
        .env("MC_SOURCE_URI", source_uri)
        .env("MC_SCRATCH_URI", scratch_uri)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("create the agent log"))
        .spawn()
        .expect("start mc-agent");
    let started = std::time::Instant::now();
    loop {
        let metrics = http_get(port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        if metric_value(&metrics, "mc_drill_last_success") == Some(1.0) {
            return (agent, metrics);
        }
        let exited = agent.try_wait().ok().flatten().is_some();
        if started.elapsed() > Duration::from_secs(120) || exited {
            let _ = agent.kill();
            panic!(
                "no passing scheduled drill within 120 s (agent exited: {exited}); metrics:\n{metrics}\nagent log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The entries of `local.oplog.rs` from `start` to `end` (both included), in the oplog's order,
/// as the raw bytes the server stores: what a captured run must equal byte for byte.
pub async fn oplog_between(client: &mongodb::Client, start: OplogTs, end: OplogTs) -> Vec<Vec<u8>> {
    use futures::TryStreamExt;
    use mc_agent::capture::oplog::to_bson_ts;
    use mongodb::bson::{doc, RawDocumentBuf};

    client
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs")
        .find(doc! {"ts": {"$gte": to_bson_ts(start), "$lte": to_bson_ts(end)}})
        .sort(doc! {"$natural": 1})
        .await
        .unwrap()
        .map_ok(|d| d.into_bytes())
        .try_collect()
        .await
        .unwrap()
}

/// Asserts that the oplog captured for `source_id` is one run reaching `end`, holding exactly the
/// entries `local.oplog.rs` holds over that run's range, byte for byte, in strictly increasing
/// order: nothing lost, nothing duplicated.
pub async fn assert_one_run_equals_oplog(
    repo: &mc_core::catalog::Repository,
    client: &mongodb::Client,
    source_id: &str,
    end: OplogTs,
) {
    use mc_agent::capture::oplog::to_ts;
    use mc_core::catalog::{Catalog, Timeline};
    use mc_core::format::StreamKind;
    use mongodb::bson::RawDocumentBuf;

    let catalog = Catalog::load(repo, source_id, StreamKind::Oplog)
        .await
        .unwrap();
    let timeline = Timeline::build(&catalog.segments);
    assert_eq!(timeline.runs.len(), 1, "{timeline:?}");
    let run = &timeline.runs[0];
    assert!(run.end >= end);
    let mut captured = Vec::new();
    for key in &run.segments {
        captured.extend(repo.read_segment(key).await.unwrap().1);
    }
    let expected = oplog_between(client, run.start, run.end).await;
    assert_eq!(captured.len(), expected.len());
    assert!(
        captured == expected,
        "captured entries differ from the oplog"
    );
    let ts: Vec<OplogTs> = captured
        .iter()
        .map(|r| {
            to_ts(
                RawDocumentBuf::from_bytes(r.clone())
                    .unwrap()
                    .get_timestamp("ts")
                    .unwrap(),
            )
        })
        .collect();
    assert!(
        ts.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing, no duplicate"
    );
}
