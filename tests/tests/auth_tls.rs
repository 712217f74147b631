//! Production MongoDB (issue #15): keyFile authentication and TLS, least-privilege users.
//!
//! Against the authenticated TLS replica set of `scripts/services.sh` (`MC_TEST_MONGODB_TLS_*`),
//! every component runs as a user holding exactly the built-in roles docs/operations.md ("MongoDB
//! users and roles") lists for it, over `tls=true&tlsCAFile=…&authSource=admin`:
//!
//! - `mc-agent run` (capture and its first snapshot) as `backup`;
//! - `mc-restore --at` into the same set under other names (`--ns-from/--ns-to`) as `restore` +
//!   `readWriteAnyDatabase`, and a drill with that scratch user verifying against the source as
//!   `backup`.
//!
//! Each role is shown to be needed: without it the operation fails with an error that names the
//! role to grant (capture without `backup`, a snapshot without `backup`, a restore without
//! `restore` or without `readWriteAnyDatabase`). No password ever appears in the output.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_agent::capture::oplog::OplogSource;
use mc_agent::metrics::Metrics;
use mc_agent::snapshot::{take, SnapshotSettings};
use mc_core::format::WriterInfo;
use mc_tests::agent::{capture_settings, free_port, http_get, metric_value, wait_durable};
use mc_tests::auth::{assert_output_hides, assert_secret_absent, session_roles, TestUser, TlsSet};
use mc_tests::restore::{
    assert_same_state, db_state, drill_phases, repo_paths, show, temp_repository,
};
use mc_tests::*;
use mongodb::bson::{doc, Document};
use tokio::sync::watch;

/// The environment variable the test policies read the source URI from.
const SOURCE_ENV: &str = "MC_AUTH_SOURCE_URI";

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Fills `db` with a little of everything replay has to apply later: inserts, an index.
async fn seed(admin: &mongodb::Client, db: &str) {
    let things = admin.database(db).collection::<Document>("things");
    things
        .insert_many(
            (0..200)
                .map(|i| doc! {"_id": i, "name": format!("t{i}"), "n": 0})
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    things
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! {"name": 1})
                .build(),
        )
        .await
        .unwrap();
}

/// Writes after a snapshot: updates, deletes, inserts, a new collection (replay's `applyOps`).
async fn churn(admin: &mongodb::Client, db: &str) {
    let things = admin.database(db).collection::<Document>("things");
    things
        .update_many(doc! {"_id": {"$lt": 50}}, doc! {"$inc": {"n": 1}})
        .await
        .unwrap();
    things
        .delete_many(doc! {"_id": {"$gte": 180}})
        .await
        .unwrap();
    admin
        .database(db)
        .collection::<Document>("later")
        .insert_many((0..20).map(|i| doc! {"_id": i}).collect::<Vec<_>>())
        .await
        .unwrap();
}

fn agent_policy(dir: &Path, source_id: &str, port: u16) -> std::path::PathBuf {
    let extra = format!(
        "capture:\n  seal_interval: 300ms\n  max_segment_bytes: 64KiB\nhttp:\n  listen: 127.0.0.1:{port}\n"
    );
    mc_tests::agent::write_test_policy(dir, "auth-tls", source_id, SOURCE_ENV, &extra)
}

fn spawn_agent(policy: &Path, source_uri: &str, log: &Path) -> std::process::Child {
    Command::new(workspace_bin("mc-agent"))
        .args(["run", "--policy"])
        .arg(policy)
        .env(SOURCE_ENV, source_uri)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start mc-agent")
}

fn sigterm(agent: &mut std::process::Child, log: &Path) {
    let status = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = agent.wait().unwrap();
    assert_eq!(
        exit.code(),
        Some(0),
        "graceful stop exits 0; log: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// `mc-agent run` as a user with `backup` alone, over TLS: it captures, takes its first
/// snapshot, and stops cleanly; its log never shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_captures_and_snapshots_with_backup_alone() {
    let set = TlsSet::from_env();
    let admin = set.admin_client().await;
    let db = unique_db("authagent");
    seed(&admin, &db).await;
    let user = set
        .create_user(&admin, "agent", &[("backup", "admin")])
        .await;
    assert_eq!(session_roles(&set, &user).await, ["backup@admin"]);

    let dir = tempfile::tempdir().unwrap();
    mc_core::crypto::keys::create_keyring_file(&dir.path().join("keyring")).unwrap();
    let source_id = unique_name("authagent");
    let port = free_port();
    let policy = agent_policy(dir.path(), &source_id, port);
    let log = dir.path().join("agent.log");
    let mut agent = spawn_agent(&policy, &set.user_uri(&user), &log);

    let last_snapshot = || {
        http_get(port, "/metrics")
            .and_then(|(_, m)| metric_value(&m, "mc_last_snapshot_timestamp_seconds"))
            .filter(|v| *v > 0.0)
    };
    let newest_durable = || -> Option<String> {
        let (_, body) = http_get(port, "/status")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["capture"]["newest_durable_ts"]
            .as_str()
            .map(str::to_owned)
    };
    let alive = |agent: &mut std::process::Child| agent.try_wait().unwrap().is_none();
    let t0 = Instant::now();
    while last_snapshot().is_none() || newest_durable().is_none() {
        assert!(
            alive(&mut agent) && t0.elapsed() < Duration::from_secs(60),
            "no snapshot and durable capture within 60 s; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Capture goes on past a write made now.
    admin
        .database(&db)
        .collection::<Document>("things")
        .insert_one(doc! {"_id": 1000})
        .await
        .unwrap();
    let source = OplogSource::connect(&set.user_uri(&user)).await.unwrap();
    let point = source.majority_point().await.unwrap();
    let parse = |s: String| -> Option<mc_core::format::OplogTs> {
        let (t, i) = s.split_once('.')?;
        Some(mc_core::format::OplogTs::new(
            t.parse().ok()?,
            i.parse().ok()?,
        ))
    };
    wait_for("capture past the write", Duration::from_secs(30), || {
        newest_durable()
            .and_then(parse)
            .is_some_and(|ts| ts >= point)
    })
    .await;
    sigterm(&mut agent, &log);

    let text = std::fs::read_to_string(&log).unwrap();
    assert_secret_absent("the agent's log", &text, &user.password);
    assert!(!text.contains("Unauthorized"), "{text}");
    let status = Command::new(workspace_bin("mc-agent"))
        .args(["status", "--policy"])
        .arg(&policy)
        .env(SOURCE_ENV, set.user_uri(&user))
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", show(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("snapshots: 1 (newest"),
        "{}",
        show(&status)
    );
    assert_output_hides("mc-agent status", &status, &[&user.password]);
    set.drop_user(&admin, &user).await;
    set.drop_databases(&admin, &[&db]).await;
}

/// Without `backup`: capture refused the oplog (`readAnyDatabase` reads every database but not
/// `local`) and a snapshot refused the database list (`read` on `local` reads the oplog only);
/// both errors name the role to grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_names_backup_when_the_user_lacks_it() {
    let set = TlsSet::from_env();
    let admin = set.admin_client().await;
    let no_oplog = set
        .create_user(&admin, "nooplog", &[("readAnyDatabase", "admin")])
        .await;
    let oplog_only = set
        .create_user(&admin, "oplogonly", &[("read", "local")])
        .await;
    let dir = tempfile::tempdir().unwrap();
    mc_core::crypto::keys::create_keyring_file(&dir.path().join("keyring")).unwrap();
    let port = free_port();
    let policy = agent_policy(dir.path(), &unique_name("authneg"), port);

    // Capture start: the tail of local.oplog.rs is refused.
    let log = dir.path().join("agent.log");
    let mut agent = spawn_agent(&policy, &set.user_uri(&no_oplog), &log);
    let wanted = "the MongoDB user lacks a privilege for find on local: grant it the built-in role `backup` (docs/operations.md, 'MongoDB users and roles')";
    wait_for(
        "the agent's log to name the missing role",
        Duration::from_secs(30),
        || std::fs::read_to_string(&log).is_ok_and(|t| t.contains(wanted)),
    )
    .await;
    agent.kill().unwrap();
    agent.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_secret_absent("the agent's log", &text, &no_oplog.password);
    assert!(
        !text.contains("to execute command {"),
        "the refused command is not repeated: {text}"
    );

    // A snapshot: the list of databases is refused (never silently narrowed to what the user
    // may read).
    let out = Command::new(workspace_bin("mc-agent"))
        .args(["snapshot", "--policy"])
        .arg(&policy)
        .env(SOURCE_ENV, set.user_uri(&oplog_only))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "lacks a privilege for listDatabases on admin: grant it the built-in role `backup`"
        ),
        "{}",
        show(&out)
    );
    assert_output_hides("mc-agent snapshot", &out, &[&oplog_only.password]);
    set.drop_user(&admin, &no_oplog).await;
    set.drop_user(&admin, &oplog_only).await;
}

/// A repository of the TLS set's `db`, captured in-process as a `backup` user: a snapshot, then
/// updates, deletes and inserts for replay.
async fn capture_as(set: &TlsSet, user: &TestUser, db: &str, source_id: &str) -> tempfile::TempDir {
    let admin = set.admin_client().await;
    let (dir, repo) = temp_repository().await;
    let source = OplogSource::connect(&set.user_uri(user)).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(mc_agent::capture::run(
        repo.clone(),
        source.clone(),
        capture_settings(source_id, &dir.path().join("spool")),
        metrics.clone(),
        rx,
    ));
    wait_durable(&metrics, source.majority_point().await.unwrap()).await;
    let settings = SnapshotSettings {
        source: source_id.to_owned(),
        parallelism: 2,
        max_segment_bytes: 128 * 1024,
        zstd_level: 3,
        writer: WriterInfo {
            id: "test".into(),
            fence: 0,
        },
        reason: "on-demand".into(),
        databases: Some(vec![db.to_owned()]),
        users_and_roles: false,
    };
    take(&repo, &source, &settings)
        .await
        .expect("a snapshot as the backup user");
    churn(&admin, db).await;
    wait_durable(&metrics, source.majority_point().await.unwrap()).await;
    stop.send(true).unwrap();
    task.await.unwrap().expect("capture stops cleanly");
    dir
}

/// `mc-restore --at latest` into the TLS set under another name, as `user` (the target URI in
/// MC_RESTORE_TARGET, never on the command line).
fn restore_as(
    set: &TlsSet,
    user: &TestUser,
    dir: &Path,
    db: &str,
    to: &str,
) -> std::process::Output {
    let (repo, keyring) = repo_paths(dir);
    let ns = format!("{db}.*");
    Command::new(workspace_bin("mc-restore"))
        .args(["--at", "latest", "--repo"])
        .arg(&repo)
        .args([
            "--ns",
            &ns,
            "--ns-from",
            db,
            "--ns-to",
            to,
            "--drop",
            "--json",
        ])
        .env("MC_KEYRING_FILE", &keyring)
        .env("MC_RESTORE_TARGET", set.user_uri(user))
        .env_remove("MC_REPO")
        .output()
        .expect("mc-restore runs")
}

/// `mc-restore --at` as `restore` + `readWriteAnyDatabase`, a drill with that scratch user and
/// the source read as `backup`; without either target role the restore fails naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_and_drill_as_least_privilege_users() {
    let set = TlsSet::from_env();
    let admin = set.admin_client().await;
    let db = unique_db("authrst");
    let restored = format!("{db}_r");
    let drilled = format!("{db}_d");
    seed(&admin, &db).await;
    let backup = set.create_user(&admin, "bk", &[("backup", "admin")]).await;
    let target = set
        .create_user(
            &admin,
            "tgt",
            &[("restore", "admin"), ("readWriteAnyDatabase", "admin")],
        )
        .await;
    let no_restore = set
        .create_user(&admin, "norestore", &[("readWriteAnyDatabase", "admin")])
        .await;
    let no_rw = set
        .create_user(&admin, "norw", &[("restore", "admin")])
        .await;
    let secrets = [
        backup.password.as_str(),
        target.password.as_str(),
        no_restore.password.as_str(),
        no_rw.password.as_str(),
    ];
    let source_id = unique_name("authrst");
    let dir = capture_as(&set, &backup, &db, &source_id).await;
    let want = db_state(&admin, &db).await;

    // Each target role is needed. Without `restore` the load's inserts are refused (they bypass
    // document validation, as the source's documents already passed it); without
    // `readWriteAnyDatabase` the first read of the restore journal in `admin` is, before anything
    // is written (replay's applyOps, its updates and deletes, would be too).
    let grant = "grant it the built-in roles `restore` and `readWriteAnyDatabase` (docs/operations.md, 'MongoDB users and roles')";
    for (user, missing, refused) in [
        (&no_restore, "restore", format!("insert on {restored}")),
        (&no_rw, "readWriteAnyDatabase", "find on admin".to_owned()),
    ] {
        let out = restore_as(&set, user, dir.path(), &db, &restored);
        assert_eq!(
            out.status.code(),
            Some(1),
            "without {missing}: {}",
            show(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "the MongoDB user lacks a privilege for {refused}: {grant}"
            )),
            "without {missing}: {}",
            show(&out)
        );
        if missing == "readWriteAnyDatabase" {
            assert!(
                !stderr.contains("to execute command {"),
                "the refused applyOps (documents and all) is not repeated: {stderr}"
            );
        }
        assert_output_hides("mc-restore", &out, &secrets);
    }

    // Both roles: the copy is the source as it is now (everything was captured).
    let out = restore_as(&set, &target, dir.path(), &db, &restored);
    assert!(out.status.success(), "{}", show(&out));
    assert_output_hides("mc-restore", &out, &secrets);
    assert_same_state(
        "restored as restore + readWriteAnyDatabase",
        &want,
        &db_state(&admin, &restored).await,
    );

    // A drill: scratch = the same set under another name, the source verified as `backup`.
    let policy =
        mc_tests::agent::write_test_policy(dir.path(), "auth-drill", &source_id, SOURCE_ENV, "");
    let drill = Command::new(workspace_bin("mc-restore"))
        .args(["drill", "--policy"])
        .arg(&policy)
        .args([
            "--ns",
            &format!("{db}.*"),
            "--ns-from",
            &db,
            "--ns-to",
            &drilled,
            "--scratch-is-source-cluster",
            "--no-kafka",
            "--json",
        ])
        .env(SOURCE_ENV, set.user_uri(&backup))
        .env("MC_DRILL_SCRATCH_URI", set.user_uri(&target))
        .output()
        .expect("mc-restore drill runs");
    assert_eq!(drill.status.code(), Some(0), "{}", show(&drill));
    assert_output_hides("mc-restore drill", &drill, &secrets);
    let report: serde_json::Value = serde_json::from_slice(&drill.stdout).unwrap();
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_secret_absent("the drill report", &report.to_string(), &backup.password);
    assert_secret_absent("the drill report", &report.to_string(), &target.password);
    assert_eq!(
        drill_phases(&report),
        ["plan", "prepare", "load", "replay", "indexes", "verify", "cleanup"]
    );
    let checks = report["verification"].as_array().unwrap();
    let things = checks
        .iter()
        .find(|c| c["ns"].as_str().is_some_and(|ns| ns.ends_with(".things")))
        .unwrap_or_else(|| panic!("things verified: {report:#}"));
    assert_eq!(things["method"], "source-at-T", "{report:#}");
    assert_eq!(things["status"], "match", "{report:#}");
    assert!(
        !admin
            .list_database_names()
            .await
            .unwrap()
            .contains(&drilled),
        "the drill cleaned its scratch copy up"
    );

    // The drill's source side needs `backup` too: `readWriteAnyDatabase` reads every database
    // but not the oplog, so verification fails (exit 1, verdict error).
    let no_oplog = Command::new(workspace_bin("mc-restore"))
        .args(["drill", "--policy"])
        .arg(&policy)
        .args([
            "--ns",
            &format!("{db}.*"),
            "--ns-from",
            &db,
            "--ns-to",
            &drilled,
            "--scratch-is-source-cluster",
            "--no-kafka",
            "--json",
        ])
        .env(SOURCE_ENV, set.user_uri(&no_restore))
        .env("MC_DRILL_SCRATCH_URI", set.user_uri(&target))
        .output()
        .expect("mc-restore drill runs");
    assert_eq!(no_oplog.status.code(), Some(1), "{}", show(&no_oplog));
    let stderr = String::from_utf8_lossy(&no_oplog.stderr);
    assert!(
        stderr.contains("reading local.oplog.rs") && stderr.contains("Unauthorized"),
        "{}",
        show(&no_oplog)
    );
    assert_output_hides("mc-restore drill", &no_oplog, &secrets);

    for user in [&backup, &target, &no_restore, &no_rw] {
        set.drop_user(&admin, user).await;
    }
    set.drop_databases(&admin, &[&db, &restored, &drilled])
        .await;
}
