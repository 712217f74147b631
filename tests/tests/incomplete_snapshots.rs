//! Incomplete snapshots (issue 4): `mc-agent snapshot` killed with SIGKILL in the middle of a
//! base snapshot leaves data objects that no manifest names. `mc-agent prune` keeps them within
//! the grace (a snapshot being taken, here by a live process, is never touched), shows them in
//! `--dry-run`, and with `--incomplete-grace 0s` deletes exactly them; every kept snapshot stays
//! complete, covered by the oplog and verifiable. A snapshot whose parts are pruned while it runs
//! fails instead of writing a manifest that names missing parts. A running `mc-agent run` reports
//! on `/metrics` what its scheduled retention found: the killed snapshot kept within the grace
//! (`mc_incomplete_snapshots`), then deleted after it (`mc_incomplete_snapshots_deleted_total`).
//!
//! The kill lands mid-snapshot deterministically: a private replica set with test commands holds
//! the find of one collection at the `waitInFindBeforeMakingBatch` fail point (filtered to that
//! namespace) while another collection is written whole; the test waits for both (the find
//! waiting at the fail point in `currentOp`, every document of the other collection in parts).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_agent::capture::oplog::OplogSource;
use mc_agent::metrics::Metrics;
use mc_core::catalog::names::{parse_oplog_key, snapshot_data_key};
use mc_core::catalog::{list_snapshots, restorable_windows, Catalog, Repository, Timeline};
use mc_core::format::StreamKind;
use mc_tests::agent::{capture_settings, free_port, http_get, metric_value, wait_durable};
use mc_tests::mongod::{PrivateReplSet, ReplSetConfig};
use mc_tests::restore::temp_repository;
use mc_tests::*;
use mongodb::bson::{doc, Document};
use tokio::sync::watch;

const SOURCE: &str = "rs0";
const URI_VAR: &str = "MC_TEST_INCOMPLETE_URI";
const BLOCKED: &str = "app.z_blocked";

/// A daily snapshot schedule: `mc-agent run` then takes only the first snapshot (none exists).
const DAILY: &str = "0 0 2 * * *";

/// Writes the policy with snapshots on `schedule`; `extra` goes right after `retention:`'s
/// `pitr_window` (more retention fields, then further sections).
fn write_policy(dir: &Path, schedule: &str, extra: &str) -> std::path::PathBuf {
    // A day's window keeps every snapshot of this test, so only incomplete data may go.
    let policy = format!(
        "version: 1\nname: incomplete-test\nsource:\n  id: {SOURCE}\n  mongodb:\n    uri: {{ env: {URI_VAR} }}\n\
repository:\n  url: {repo}\n  keyring: {{ file: {keyring} }}\n  spool_dir: {spool}\n\
objectives:\n  rpo: 15m\n  rto: 4h\ncapture:\n  max_segment_bytes: 64KiB\n\
snapshots:\n  schedule: \"{schedule}\"\nretention:\n  pitr_window: 1d\n{extra}",
        repo = dir.join("repo").display(),
        keyring = dir.join("keyring").display(),
        spool = dir.join("spool").display(),
    );
    let path = dir.join("policy.yaml");
    std::fs::write(&path, policy).unwrap();
    path
}

fn agent(policy: &Path, uri: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(workspace_bin("mc-agent"));
    cmd.args(args)
        .arg("--policy")
        .arg(policy)
        .env(URI_VAR, uri)
        .stdin(Stdio::null());
    cmd
}

fn run_agent(policy: &Path, uri: &str, args: &[&str]) -> Output {
    agent(policy, uri, args).output().expect("mc-agent runs")
}

fn show(out: &Output) -> String {
    mc_tests::restore::show(out)
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", show(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every object key of the repository.
async fn keys(repo: &Repository) -> BTreeSet<String> {
    repo.store()
        .list("sources/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Snapshot ids with data in the repository but no manifest, and their data objects.
async fn incomplete(repo: &Repository) -> Vec<(String, Vec<String>)> {
    let all = keys(repo).await;
    let prefix = format!("sources/{SOURCE}/snapshots/");
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for key in &all {
        let Some((id, rest)) = key.strip_prefix(&prefix).and_then(|r| r.split_once('/')) else {
            continue;
        };
        if !rest.starts_with("data/") || all.contains(&format!("{prefix}{id}/manifest.seg")) {
            continue;
        }
        match out.last_mut() {
            Some((last, objects)) if last == id => objects.push(key.clone()),
            _ => out.push((id.to_owned(), vec![key.clone()])),
        }
    }
    out
}

/// Starts `mc-agent snapshot` with the blocked collection held by the fail point and waits (on
/// conditions, not a sleep) until the snapshot is certainly in the middle and writes nothing
/// more until released: its find of [`BLOCKED`] waits at the fail point (`currentOp`), and
/// every other collection is stored whole (its parts hold all of its documents). Returns the
/// child and the incomplete snapshot's id.
///
/// The first part to appear is not enough: a collection of more than one segment
/// (`a_small` is two at 64 KiB) is still being written then, and a part appearing after the
/// return made "a running snapshot is not touched" compare unequal now and then.
async fn start_held_snapshot(
    set: &PrivateReplSet,
    repo: &Repository,
    policy: &Path,
    uri: &str,
) -> (Child, String) {
    set.admin_command(
        0,
        doc! {"configureFailPoint": "waitInFindBeforeMakingBatch", "mode": "alwaysOn", "data": {"nss": BLOCKED}},
    )
    .await;
    // What the snapshot copies besides the blocked collection: every other collection of the
    // set (nothing writes to them while the snapshot runs).
    let client = set.node_client(0);
    let mut others = Vec::new();
    for db in client.list_database_names().await.unwrap() {
        if ["admin", "config", "local"].contains(&db.as_str()) {
            continue;
        }
        for name in client.database(&db).list_collection_names().await.unwrap() {
            let ns = format!("{db}.{name}");
            if ns != BLOCKED && !name.starts_with("system.") {
                let count = client
                    .database(&db)
                    .collection::<Document>(&name)
                    .count_documents(doc! {})
                    .await
                    .unwrap();
                others.push((ns, count));
            }
        }
    }
    assert!(!others.is_empty(), "a collection besides {BLOCKED} to copy");

    let before: BTreeSet<String> = incomplete(repo)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut child = agent(policy, uri, &["snapshot"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mc-agent snapshot starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut waiting_for = String::from("a part of the snapshot");
    loop {
        let new = incomplete(repo)
            .await
            .into_iter()
            .find(|(id, _)| !before.contains(id));
        if let Some((id, parts)) = new {
            match held_and_stored(set, repo, &id, &parts, &others).await {
                Ok(()) => return (child, id),
                Err(what) => waiting_for = what,
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "mc-agent snapshot ended ({status}) while waiting for {waiting_for}: {}",
                show(&child.wait_with_output().unwrap())
            );
        }
        assert!(
            Instant::now() < deadline,
            "the held snapshot: no {waiting_for} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether snapshot `id` (data objects `parts`) is held at the fail point with each of `others`
/// (namespace, documents) stored whole; if not, what is still missing.
async fn held_and_stored(
    set: &PrivateReplSet,
    repo: &Repository,
    id: &str,
    parts: &[String],
    others: &[(String, u64)],
) -> Result<(), String> {
    let held = set
        .admin_command(
            0,
            doc! {"currentOp": 1, "ns": BLOCKED, "failpointMsg": "waitInFindBeforeMakingBatch"},
        )
        .await;
    if held.get_array("inprog").map_or(true, |ops| ops.is_empty()) {
        return Err(format!("find of {BLOCKED} waiting at the fail point"));
    }
    for (ns, count) in others {
        // `.../data/<ns>/<part>.seg`: this collection's parts, whatever their number.
        let first = snapshot_data_key(SOURCE, id, ns, 0);
        let dir = &first[..=first.rfind('/').unwrap()];
        let mut stored = 0u64;
        for key in parts.iter().filter(|k| k.starts_with(dir)) {
            // Objects are written whole (temporary file, then link), so a listed part reads.
            let (_, records) = repo.read_segment(key).await.unwrap();
            stored += records.len() as u64;
        }
        assert!(
            stored <= *count,
            "{ns}: {stored} of {count} documents stored"
        );
        if stored < *count {
            return Err(format!("{ns} stored whole ({stored} of {count} documents)"));
        }
    }
    Ok(())
}

async fn release(set: &PrivateReplSet) {
    set.fail_point(0, "waitInFindBeforeMakingBatch", false)
        .await;
}

/// A private replica set with test commands (for the fail point) and two collections to copy.
async fn seeded_set() -> PrivateReplSet {
    let set = PrivateReplSet::start(ReplSetConfig {
        test_commands: true,
        ..ReplSetConfig::default()
    })
    .await;
    let client = mongodb::Client::with_uri_str(&set.uri()).await.unwrap();
    let app = client.database("app");
    for coll in ["a_small", "z_blocked"] {
        app.collection::<Document>(coll)
            .insert_many((0..200).map(|i| doc! {"_id": i, "pad": "x".repeat(500)}))
            .await
            .unwrap();
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prune_removes_exactly_the_parts_of_a_killed_snapshot_after_the_grace() {
    let set = seeded_set().await;
    let uri = set.uri();

    let (dir, repo) = temp_repository().await;
    let policy = write_policy(dir.path(), DAILY, "");
    // Oplog capture runs throughout, so complete snapshots are restorable.
    let source = OplogSource::connect(&uri).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let (stop, stop_rx) = watch::channel(false);
    let capture = tokio::spawn(mc_agent::capture::run(
        repo.clone(),
        source.clone(),
        capture_settings(SOURCE, &dir.path().join("capture-spool")),
        metrics.clone(),
        stop_rx,
    ));
    wait_durable(&metrics, source.majority_point().await.unwrap()).await;

    let first = stdout(&run_agent(&policy, &uri, &["snapshot"]));
    assert!(first.contains("snapshot "), "{first}");

    // A snapshot in the middle, held by the fail point: pruning with the default grace while
    // it runs leaves it alone.
    let (mut child, id) = start_held_snapshot(&set, &repo, &policy, &uri).await;
    let held = incomplete(&repo).await;
    let objects = held.iter().find(|(i, _)| *i == id).unwrap().1.clone();
    let out = stdout(&run_agent(&policy, &uri, &["prune"]));
    assert!(
        out.contains(&format!("keep    incomplete snapshot {id}"))
            && out.contains("within the 1d grace"),
        "{out}"
    );
    assert_eq!(
        incomplete(&repo).await,
        held,
        "a running snapshot is not touched"
    );

    // Killed as a crash kills: its parts stay, without a manifest.
    child.kill().unwrap();
    child.wait().unwrap();
    release(&set).await;
    let second = stdout(&run_agent(&policy, &uri, &["snapshot"]));
    assert!(second.contains("snapshot "), "{second}");
    wait_durable(&metrics, source.majority_point().await.unwrap()).await;
    stop.send(true).unwrap();
    capture.await.unwrap().expect("capture stops cleanly");
    let complete = list_snapshots(&repo, SOURCE).await.unwrap();
    assert_eq!(complete.len(), 2);
    assert!(complete.iter().all(|s| s.id != id));
    assert_eq!(incomplete(&repo).await, vec![(id.clone(), objects.clone())]);

    let before = keys(&repo).await;
    // Dry run: shows exactly the incomplete snapshot's objects, deletes nothing.
    let out = stdout(&run_agent(
        &policy,
        &uri,
        &["prune", "--dry-run", "--incomplete-grace", "0s"],
    ));
    assert!(
        out.contains(&format!("would delete incomplete snapshot {id}")),
        "{out}"
    );
    let listed: BTreeSet<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("would delete "))
        .filter(|k| k.contains("/snapshots/"))
        .collect();
    let expected: BTreeSet<&str> = objects.iter().map(String::as_str).collect();
    assert_eq!(listed, expected, "{out}");
    assert_eq!(keys(&repo).await, before, "a dry run deletes nothing");

    // The default grace (a day) keeps it.
    let out = stdout(&run_agent(&policy, &uri, &["prune"]));
    assert!(
        out.contains(&format!("keep    incomplete snapshot {id}")),
        "{out}"
    );
    let after_default = keys(&repo).await;
    assert!(objects.iter().all(|k| after_default.contains(k)), "{out}");

    // Grace 0: exactly the incomplete snapshot's objects go from the snapshots; the only other
    // deletions are oplog segments ending before the oldest kept snapshot's start.
    let out = stdout(&run_agent(
        &policy,
        &uri,
        &["prune", "--incomplete-grace", "0s"],
    ));
    assert!(out.contains("1 incomplete snapshots)"), "{out}");
    let after = keys(&repo).await;
    let gone: BTreeSet<&String> = before.difference(&after).collect();
    let snapshot_gone: BTreeSet<&str> = gone
        .iter()
        .filter(|k| k.contains("/snapshots/"))
        .map(|k| k.as_str())
        .collect();
    assert_eq!(snapshot_gone, expected);
    let oldest_start = complete.iter().map(|s| s.start).min().unwrap();
    for key in gone.iter().filter(|k| !k.contains("/snapshots/")) {
        let (_, last) = parse_oplog_key(key).unwrap_or_else(|| panic!("{key} deleted"));
        assert!(last < oldest_start, "{key} was needed");
    }
    assert!(incomplete(&repo).await.is_empty());

    // Every kept snapshot is whole, restorable and verifies.
    let kept = list_snapshots(&repo, SOURCE).await.unwrap();
    assert_eq!(kept, complete);
    for s in &kept {
        for part in s.collections.iter().flat_map(|c| &c.parts) {
            assert!(after.contains(part), "{part} of {} is gone", s.id);
        }
    }
    let catalog = Catalog::load(&repo, SOURCE, StreamKind::Oplog)
        .await
        .unwrap();
    assert!(catalog.missing.is_empty(), "{:?}", catalog.missing);
    let windows = restorable_windows(&kept, &Timeline::build(&catalog.segments));
    assert_eq!(
        windows.iter().map(|w| &w.snapshot).collect::<Vec<_>>(),
        kept.iter().map(|s| &s.id).collect::<Vec<_>>(),
        "both snapshots stay restorable"
    );
    let report = mc_core::catalog::verify(&repo, None).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    let out = stdout(&run_agent(
        &policy,
        &uri,
        &["prune", "--incomplete-grace", "0s"],
    ));
    assert!(out.contains("nothing to delete"), "{out}");

    // A snapshot whose parts are pruned while it runs (a grace of 0 while it is held) fails
    // and writes no manifest.
    let (child, id) = start_held_snapshot(&set, &repo, &policy, &uri).await;
    let out = stdout(&run_agent(
        &policy,
        &uri,
        &["prune", "--incomplete-grace", "0s"],
    ));
    assert!(
        out.contains(&format!("deleted incomplete snapshot {id}")),
        "{out}"
    );
    release(&set).await;
    let failed = child.wait_with_output().unwrap();
    assert!(!failed.status.success(), "{}", show(&failed));
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("vanished while it was being taken"),
        "{}",
        show(&failed)
    );
    assert_eq!(list_snapshots(&repo, SOURCE).await.unwrap(), complete);
    drop(dir);
}

/// `mc-agent run` on `policy`, its log in `log`.
fn start_agent_run(policy: &Path, uri: &str, log: &Path) -> Child {
    agent(policy, uri, &["run"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("mc-agent run starts")
}

/// Polls the agent's `/metrics` until `ready` holds for it (a condition, not a sleep); fails
/// the test if the agent exits or 60 s pass.
async fn metrics_when(
    port: u16,
    agent: &mut Child,
    log: &Path,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, body)) = http_get(port, "/metrics") {
            if ready(&body) {
                return body;
            }
        }
        if let Some(status) = agent.try_wait().unwrap() {
            panic!(
                "mc-agent run exited {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not on /metrics within 60 s; log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stop_agent_run(mut agent: Child, log: &Path) {
    mc_tests::bench::signal(agent.id(), "TERM").unwrap();
    let status = agent.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_agent_reports_incomplete_snapshots_its_retention_keeps_and_deletes() {
    let set = seeded_set().await;
    let uri = set.uri();
    let (dir, repo) = temp_repository().await;
    let log = dir.path().join("agent.log");
    let policy = write_policy(dir.path(), DAILY, "");

    // A snapshot killed in the middle, as a crash leaves it.
    let (mut child, id) = start_held_snapshot(&set, &repo, &policy, &uri).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = Instant::now();
    release(&set).await;
    let held = incomplete(&repo).await;
    assert_eq!(held.len(), 1, "{held:?}");

    // No complete snapshot yet, so the agent takes one at once and runs retention after it:
    // the killed snapshot is within the policy's default grace (a day), so kept and counted.
    let port = free_port();
    let listen = format!("http:\n  listen: 127.0.0.1:{port}\n");
    let policy = write_policy(dir.path(), DAILY, &listen);
    let mut agent = start_agent_run(&policy, &uri, &log);
    let text = metrics_when(port, &mut agent, &log, "a retention run", |m| {
        metric_value(m, "mc_incomplete_snapshots").is_some_and(|v| v >= 0.0)
    })
    .await;
    assert_eq!(
        metric_value(&text, "mc_snapshots_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "mc_incomplete_snapshots"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "mc_incomplete_snapshots_deleted_total"),
        Some(0.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE mc_incomplete_snapshots gauge"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE mc_incomplete_snapshots_deleted_total counter"),
        "{text}"
    );
    stop_agent_run(agent, &log);
    assert_eq!(incomplete(&repo).await, held, "kept within the grace");
    let complete = list_snapshots(&repo, SOURCE).await.unwrap();
    assert_eq!(complete.len(), 1);

    // A grace of 1 s and snapshots every 2 s: the first scheduled snapshot's retention deletes
    // the killed snapshot's data. The grace is a span of time, not an event, so let it pass.
    let grace = Duration::from_millis(1500);
    if let Some(rest) = grace.checked_sub(killed_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let policy = write_policy(
        dir.path(),
        "*/2 * * * * *",
        &format!("  incomplete_snapshot_grace: 1s\n{listen}"),
    );
    let mut agent = start_agent_run(&policy, &uri, &log);
    let text = metrics_when(port, &mut agent, &log, "the deletion", |m| {
        metric_value(m, "mc_incomplete_snapshots_deleted_total").is_some_and(|v| v >= 1.0)
    })
    .await;
    assert_eq!(
        metric_value(&text, "mc_incomplete_snapshots_deleted_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "mc_incomplete_snapshots"),
        Some(0.0),
        "{text}"
    );
    stop_agent_run(agent, &log);

    // The metrics tell the truth: the killed snapshot's data is gone, the complete ones whole.
    assert!(incomplete(&repo).await.is_empty());
    let kept = list_snapshots(&repo, SOURCE).await.unwrap();
    assert!(kept.len() >= 2, "{kept:?}");
    assert!(kept.iter().all(|s| s.id != id));
    let all = keys(&repo).await;
    for s in &kept {
        for part in s.collections.iter().flat_map(|c| &c.parts) {
            assert!(all.contains(part), "{part} of {} is gone", s.id);
        }
    }
    let report = mc_core::catalog::verify(&repo, None).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    drop(dir);
}
