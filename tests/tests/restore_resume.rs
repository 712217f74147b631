//! Resumable restore (issue 16): `mc-restore --at T … --resume` continues a restore killed with
//! SIGKILL during the load, during the index builds and during replay, and one whose target
//! mongod was killed and restarted, and the result equals an uninterrupted restore of the same
//! plan (every document's bytes, options, index specifications, capped natural order). Replay
//! applies no entry twice: the target's own oplog holds exactly as many replayed writes for the
//! resumed database as for the uninterrupted one. A different plan is refused, a restore from
//! the start refuses an interrupted restore's journal without --drop, and `--resume` with
//! nothing to resume says so. Also: MongoDB applies an `applyOps` holding the journal's count
//! atomically with the writes it counts (what replay's checkpoints rely on).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mc_tests::mongod::{PrivateReplSet, ReplSetConfig};
use mc_tests::restore::{
    db_state, marker_point, mc_restore, repo_paths, show, state_differences, Captured,
};
use mc_tests::*;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::{Client, IndexModel};

const JOURNAL_DB: &str = "admin";
/// Journals are `admin.mc_restore_journal.<key of the namespace options>`.
const JOURNAL_PREFIX: &str = "mc_restore_journal.";
const PATIENCE: Duration = Duration::from_secs(180);

fn text(i: i32) -> String {
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
    ];
    (0..120)
        .map(|k| words[((i as usize) * 7 + k * 3) % words.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// The source: a large collection with several secondary indexes (a text index makes the
/// builds take a while), a capped collection that wraps, a snapshot, then a stream of writes
/// and catalog changes to replay. Returns the restore point.
async fn source(client: &Client, db_name: &str, cap: &Captured) -> mc_core::format::OplogTs {
    let db = client.database(db_name);
    let big = db.collection::<Document>("big");
    for chunk in 0..6 {
        let docs: Vec<Document> = (chunk * 5000..(chunk + 1) * 5000)
            .map(|i| doc! {"_id": i, "n": i, "tag": format!("t{}", i % 97), "body": text(i)})
            .collect();
        big.insert_many(docs).await.unwrap();
    }
    for (keys, unique) in [
        (doc! {"n": 1}, true),
        (doc! {"tag": 1, "n": -1}, false),
        (doc! {"body": "text"}, false),
    ] {
        big.create_index(
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(unique).build())
                .build(),
        )
        .await
        .unwrap();
    }
    db.run_command(doc! {"create": "log", "capped": true, "size": 512 * 1024})
        .await
        .unwrap();
    let log = db.collection::<Document>("log");
    log.insert_many(
        (0..2000)
            .map(|i| doc! {"_id": i, "line": "x".repeat(400)})
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    cap.snapshot(db_name).await;

    // Replay's work: updates of every document (one oplog entry each), deletes, inserts, a
    // collection created, filled, indexed and renamed, capped inserts that evict.
    big.update_many(
        doc! {},
        doc! {"$inc": {"n": 1_000_000}, "$set": {"seen": true}},
    )
    .await
    .unwrap();
    big.delete_many(doc! {"_id": {"$mod": [10, 3]}})
        .await
        .unwrap();
    big.insert_many(
        (100_000..103_000)
            .map(|i| doc! {"_id": i, "n": i, "tag": "late", "body": text(i)})
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let fresh = db.collection::<Document>("fresh");
    fresh
        .insert_many(
            (0..500)
                .map(|i| doc! {"_id": i, "k": i})
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    fresh
        .create_index(IndexModel::builder().keys(doc! {"k": -1}).build())
        .await
        .unwrap();
    client
        .database("admin")
        .run_command(doc! {"renameCollection": format!("{db_name}.fresh"), "to": format!("{db_name}.renamed")})
        .await
        .unwrap();
    log.insert_many(
        (2000..3000)
            .map(|i| doc! {"_id": i, "line": "y".repeat(400)})
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    big.update_many(doc! {"_id": {"$lt": 10_000}}, doc! {"$set": {"second": 2}})
        .await
        .unwrap();
    marker_point(client, db_name).await
}

struct Restore {
    at: String,
    repo: String,
    keyring: std::path::PathBuf,
    source_id: String,
    from: String,
    /// `--ns`: the source database alone (the shared source holds other tests' databases).
    scope: String,
    target: String,
}

impl Restore {
    fn args<'a>(&'a self, to: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "--ns",
            &self.scope,
            "--at",
            &self.at,
            "--target",
            &self.target,
            "--repo",
            &self.repo,
            "--source",
            &self.source_id,
            "--ns-from",
            &self.from,
            "--ns-to",
            to,
            "--replay-batch",
            "50",
            // One part and one index build at a time: each phase lasts long enough to be
            // interrupted in.
            "--load-workers",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        args
    }

    fn run(&self, to: &str, extra: &[&str]) -> std::process::Output {
        mc_restore(&self.args(to, extra), &self.keyring)
    }

    fn spawn(&self, to: &str) -> Child {
        Command::new(workspace_bin("mc-restore"))
            .args(self.args(to, &[]))
            .env("MC_KEYRING_FILE", &self.keyring)
            .env_remove("MC_REPO")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mc-restore starts")
    }
}

/// The documents of every journal on the target (empty when there is none; the test has one
/// restore at a time).
async fn journal(target: &Client) -> Vec<Document> {
    let admin = target.database(JOURNAL_DB);
    let mut out = Vec::new();
    for name in admin.list_collection_names().await.unwrap() {
        if name.starts_with(JOURNAL_PREFIX) {
            let docs: Vec<Document> = admin
                .collection::<Document>(&name)
                .find(doc! {})
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            out.extend(docs);
        }
    }
    out
}

fn phase(journal: &[Document]) -> Option<String> {
    journal
        .iter()
        .find(|d| d.get_str("_id").ok() == Some("restore"))
        .and_then(|d| d.get_str("phase").ok())
        .map(str::to_owned)
}

fn marks(journal: &[Document], prefix: &str) -> Vec<Document> {
    journal
        .iter()
        .filter(|d| d.get_str("_id").is_ok_and(|id| id.starts_with(prefix)))
        .cloned()
        .collect()
}

fn replay_applied(journal: &[Document]) -> i64 {
    marks(journal, "replay.w")
        .iter()
        .map(|d| d.get_i64("applied").unwrap_or(0))
        .sum()
}

/// Polls the journal until `ready` holds, while the restore runs; panics if it ends first.
async fn wait_journal(
    target: &Client,
    child: &mut Child,
    what: &str,
    ready: impl Fn(&[Document]) -> bool,
) -> Vec<Document> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let j = journal(target).await;
        if ready(&j) {
            return j;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mc-restore ended ({status}) before {what}; journal: {j:?}");
        }
        assert!(Instant::now() < deadline, "no {what} in the journal: {j:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no `applyOps` a killed mc-restore sent is still running on the target.
async fn applies_done(target: &Client) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let running: Vec<Document> = target
            .database("admin")
            .aggregate(vec![
                doc! {"$currentOp": {}},
                doc! {"$match": {"command.applyOps": {"$exists": true}}},
            ])
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        if running.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "applyOps still running: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes replay applied to database `db` on the target, as its own oplog records them (the
/// operations inside `applyOps` entries).
async fn replayed_writes(target: &Client, db: &str) -> u64 {
    let prefix = format!("{db}.");
    let mut cursor = target
        .database("local")
        .collection::<Document>("oplog.rs")
        .find(doc! {"op": "c", "o.applyOps": {"$exists": true}})
        .await
        .unwrap();
    let mut n = 0;
    while let Some(entry) = cursor.try_next().await.unwrap() {
        let ops = entry
            .get_document("o")
            .and_then(|o| o.get_array("applyOps"))
            .cloned()
            .unwrap_or_default();
        n += ops
            .iter()
            .filter_map(Bson::as_document)
            .filter(|op| op.get_str("ns").is_ok_and(|ns| ns.starts_with(&prefix)))
            .count() as u64;
    }
    n
}

fn summary(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "mc-restore failed: {}", show(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not a JSON summary ({e}): {}", show(out)))
}

/// Resumes the restore into `to`, then checks it against the reference restore; returns the
/// summary's `resumed` field.
async fn resume_and_compare(
    r: &Restore,
    target: &Client,
    to: &str,
    reference: &str,
    reference_writes: u64,
) -> serde_json::Value {
    let out = r.run(to, &["--resume"]);
    let s = summary(&out);
    let resumed = s["resumed"].clone();
    assert!(resumed.is_object(), "no resumed section: {s:#}");
    assert!(
        journal(target).await.is_empty(),
        "{to}: a finished restore leaves no journal"
    );
    let differences = state_differences(
        &db_state(target, reference).await,
        &db_state(target, to).await,
    );
    assert!(
        differences.is_empty(),
        "{to}: differs from the uninterrupted restore: {differences:#?}"
    );
    assert_eq!(
        replayed_writes(target, to).await,
        reference_writes,
        "{to}: replayed writes in the target's oplog (an entry applied twice, or missed)"
    );
    eprintln!("{to}: resumed {resumed}");
    resumed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_resumes_after_each_kind_of_interruption() {
    let client = mongo_client().await;
    let db_name = unique_db("rsm");
    let source_id = unique_name("rsm").to_lowercase();
    let cap = Captured::start(&source_id).await;
    let at = source(&client, &db_name, &cap).await;
    let (dir, _repo) = cap.finish().await;
    let (repo, keyring) = repo_paths(dir.path());
    // An oplog large enough to keep every restore's entries (they are counted).
    let mut set = PrivateReplSet::start(ReplSetConfig {
        oplog_mb: 2048,
        ..ReplSetConfig::default()
    })
    .await;
    let target = Client::with_uri_str(set.uri()).await.unwrap();
    let r = Restore {
        at: at.arg().to_string(),
        repo: repo.to_str().unwrap().to_owned(),
        keyring,
        source_id,
        from: db_name.clone(),
        scope: format!("{db_name}.*"),
        target: set.uri(),
    };

    // The uninterrupted restore everything is compared with.
    summary(&r.run("reference", &[]));
    assert!(journal(&target).await.is_empty());
    let writes = replayed_writes(&target, "reference").await;
    assert!(writes > 40_000, "replay applied {writes} writes");

    // Killed during the load, once parts are recorded.
    let mut child = r.spawn("in_load");
    let big_parts = |j: &[Document]| {
        marks(j, "part:")
            .iter()
            .filter(|m| m.get_str("ns").is_ok_and(|ns| ns.ends_with(".big")))
            .count()
    };
    wait_journal(&target, &mut child, "three loaded parts", |j| {
        phase(j).as_deref() == Some("load") && big_parts(j) >= 3
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let loaded = big_parts(&journal(&target).await);
    eprintln!("killed during the load after {loaded} part(s) of big");
    let resumed = resume_and_compare(&r, &target, "in_load", "reference", writes).await;
    assert_eq!(resumed["phase"], "load");
    assert!(
        resumed["parts_skipped"].as_u64() >= Some(loaded as u64),
        "the parts loaded before are not loaded again: {resumed}"
    );

    // Killed during replay, once workers have applied writes.
    let mut child = r.spawn("in_replay");
    wait_journal(&target, &mut child, "replayed writes", |j| {
        phase(j).as_deref() == Some("replay") && replay_applied(j) > 0
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    applies_done(&target).await;
    let j = journal(&target).await;
    let applied = replay_applied(&j);
    let parts = marks(&j, "part:").len();
    eprintln!("killed during replay after {applied} write(s)");
    let out = r.run("in_replay", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the target holds an interrupted restore") && err.contains("--resume"),
        "a restore from the start refuses an interrupted one's journal: {err}"
    );
    let resumed = resume_and_compare(&r, &target, "in_replay", "reference", writes).await;
    assert_eq!(resumed["phase"], "replay");
    assert_eq!(
        resumed["parts_skipped"].as_u64(),
        Some(parts as u64),
        "{resumed}"
    );
    assert_eq!(
        resumed["writes_skipped"].as_i64(),
        Some(applied),
        "exactly the writes applied are not sent again: {resumed}"
    );

    // Killed during the index builds.
    let mut child = r.spawn("in_indexes");
    wait_journal(&target, &mut child, "the index phase", |j| {
        phase(j).as_deref() == Some("indexes")
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = resume_and_compare(&r, &target, "in_indexes", "reference", writes).await;
    assert_eq!(resumed["phase"], "indexes", "{resumed}");

    // The target mongod killed during replay and started again.
    let mut child = r.spawn("restarted");
    wait_journal(&target, &mut child, "replayed writes", |j| {
        phase(j).as_deref() == Some("replay") && replay_applied(j) > 0
    })
    .await;
    set.kill_node(0);
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "mc-restore did not stop with its target gone"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    set.restart_node(0).await;
    set.wait_healthy().await;
    let target = Client::with_uri_str(set.uri()).await.unwrap();
    let after_restart = journal(&target).await;
    assert!(
        !after_restart.is_empty(),
        "the journal survives the restart"
    );
    // The count seen before the kill was a local read: batches not yet in mongod's own journal
    // when it was killed are lost together with their count (one applyOps holds both), so what
    // the resume must skip is the count the restarted target holds, which may be below the one
    // seen before the kill (a full suite run saw 0).
    let applied = replay_applied(&after_restart);
    let resumed = resume_and_compare(&r, &target, "restarted", "reference", writes).await;
    assert_eq!(
        resumed["writes_skipped"].as_i64(),
        Some(applied),
        "exactly the writes the restarted target holds are not sent again: {resumed}"
    );

    // Another plan is refused; nothing to resume is said.
    let mut child = r.spawn("mismatch");
    wait_journal(&target, &mut child, "a loaded part", |j| {
        !marks(j, "part:").is_empty()
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let other = Restore {
        at: mc_core::format::OplogTs::new(at.t, at.i.saturating_sub(1))
            .arg()
            .to_string(),
        repo: r.repo.clone(),
        keyring: r.keyring.clone(),
        source_id: r.source_id.clone(),
        from: r.from.clone(),
        scope: r.scope.clone(),
        target: r.target.clone(),
    };
    let out = other.run("mismatch", &["--resume"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--resume refused") && err.contains(&format!("pass --at {}", at.arg())),
        "another point is refused, naming the interrupted one's: {err}"
    );
    let out = r.run("mismatch_renamed", &["--resume"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1)
            && err.contains("--resume refused")
            && err.contains("namespaces"),
        "other namespaces are refused: {}",
        show(&out)
    );
    // Starting over with --drop discards the journal and restores.
    summary(&r.run("mismatch", &["--drop"]));
    assert!(journal(&target).await.is_empty());
    let out = r.run("mismatch", &["--resume"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && err.contains("no interrupted restore"),
        "nothing to resume: {}",
        show(&out)
    );
    client.database(&db_name).drop().await.unwrap();
}

/// What replay's checkpoints rely on, on the server the suite runs (6.0): an `applyOps` of CRUD
/// operations across databases (the writes and the journal's count in `admin`) applies all of
/// them or none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_ops_with_the_journal_count_is_atomic() {
    let client = mongo_client().await;
    let db_name = unique_db("rsmatomic");
    let count_coll = unique_name("mc_journal_probe");
    let admin = client.database("admin");
    admin.create_collection(&count_coll).await.unwrap();
    client
        .database(&db_name)
        .create_collection("c")
        .await
        .unwrap();
    let ns = format!("{db_name}.c");
    let count_ns = format!("admin.{count_coll}");
    let count = |n: i64| doc! {"op": "i", "ns": &count_ns, "o": {"_id": "replay.w0", "applied": n}};
    let ok = admin
        .run_command(doc! {"applyOps": [
            {"op": "i", "ns": &ns, "o": {"_id": 1, "v": 1}},
            count(1),
        ], "alwaysUpsert": false})
        .await
        .unwrap();
    assert_eq!(ok.get_i32("applied").ok(), Some(2), "{ok}");
    // The second batch fails on its last write (an update of a missing document): neither its
    // first write nor the count may be there.
    let failed = admin
        .run_command(doc! {"applyOps": [
            {"op": "i", "ns": &ns, "o": {"_id": 2, "v": 1}},
            {"op": "u", "ns": &ns, "o2": {"_id": 99}, "o": {"$v": 2, "diff": {"u": {"v": 5}}}},
            count(3),
        ], "alwaysUpsert": false})
        .await;
    assert!(failed.is_err(), "an update of a missing document fails");
    let docs: Vec<Document> = client
        .database(&db_name)
        .collection::<Document>("c")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        docs,
        vec![doc! {"_id": 1, "v": 1}],
        "the failed batch left no write"
    );
    let mark = admin
        .collection::<Document>(&count_coll)
        .find_one(doc! {"_id": "replay.w0"})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        mark.get_i64("applied").ok(),
        Some(1),
        "the count stayed with the writes"
    );
    // An insert of the count again is applied as an upsert (the count moves on).
    admin
        .run_command(doc! {"applyOps": [count(4)], "alwaysUpsert": false})
        .await
        .unwrap();
    let mark = admin
        .collection::<Document>(&count_coll)
        .find_one(doc! {"_id": "replay.w0"})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mark.get_i64("applied").ok(), Some(4));
    admin
        .collection::<Document>(&count_coll)
        .drop()
        .await
        .unwrap();
    client.database(&db_name).drop().await.unwrap();
}
