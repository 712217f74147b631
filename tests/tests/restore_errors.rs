//! `mc-restore` on bad input and damaged repositories (issue 5): every case is a clear error
//! naming the cause, a non-zero exit, and no silent partial success. Also `list` and
//! `--dry-run`, which read the same plan.

use mc_core::catalog::names::parse_oplog_key;
use mc_core::crypto::keys::create_keyring_file;
use mc_core::format::OplogTs;
use mc_tests::mongod::PrivateReplSet;
use mc_tests::restore::{mc_restore, repo_paths, show, Captured};
use mc_tests::*;
use mongodb::bson::{doc, Document};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_points_targets_keys_and_damaged_segments_fail_clearly() {
    let client = mongo_client().await;
    let db_name = unique_db("rsterr");
    let items = client.database(&db_name).collection::<Document>("items");
    items
        .insert_many(
            (0..200)
                .map(|i| doc! {"_id": i, "v": 0})
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let source_id = unique_name("rsterr").to_lowercase();
    let cap = Captured::start(&source_id).await;
    let snapshot = cap.snapshot(&db_name).await;
    // Three bursts, each sealed apart, so the timeline has several segments after the snapshot.
    for burst in 1..=3 {
        for i in 0..200 {
            items
                .update_one(
                    doc! {"_id": i},
                    doc! {"$set": {"v": burst, "pad": "p".repeat(300)}},
                )
                .await
                .unwrap();
        }
        cap.settle().await;
    }
    let (dir, _repo) = cap.finish().await;
    let (repo, keyring) = repo_paths(dir.path());
    let repo_s = repo.to_str().unwrap().to_owned();
    let target = PrivateReplSet::start(Default::default()).await;
    let uri = target.uri();
    let ns = format!("{db_name}.*");
    let restore = |at: &str, extra: &[&str]| {
        let mut args = vec!["--at", at, "--target", &uri, "--repo", &repo_s, "--ns", &ns];
        args.extend_from_slice(extra);
        mc_restore(&args, &keyring)
    };

    // A point that is not a point: a command-line error.
    let out = restore("yesterday", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("RFC 3339"), "{}", show(&out));

    // Before the first snapshot: refused, naming the windows.
    let before = format!("ts:{}:0", snapshot.start.t - 3600);
    let out = restore(&before, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let e = stderr(&out);
    assert!(
        e.contains("not restorable")
            && e.contains("before the end of the oldest usable snapshot")
            && e.contains("Restorable windows: ts:"),
        "{e}"
    );

    // In the future: the repository cannot prove it.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let out = restore(&future, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("does not hold the oplog through it"),
        "{}",
        show(&out)
    );

    // An unreachable target.
    let out = mc_restore(
        &[
            "--at",
            "latest",
            "--target",
            "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500",
            "--repo",
            &repo_s,
        ],
        &keyring,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("cannot reach the target MongoDB"),
        "{}",
        show(&out)
    );

    // The wrong key.
    let other = dir.path().join("other-keyring");
    create_keyring_file(&other).unwrap();
    let out = mc_restore(
        &["--at", "latest", "--target", &uri, "--repo", &repo_s],
        &other,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).to_lowercase().contains("key"),
        "{}",
        show(&out)
    );
    assert_eq!(
        target
            .node_client(0)
            .list_database_names()
            .await
            .unwrap()
            .iter()
            .filter(|d| d.starts_with("rsterr"))
            .count(),
        0,
        "nothing written with the wrong key"
    );

    // list and --dry-run read the plan without writing.
    let out = mc_restore(&["list", "--repo", &repo_s], &keyring);
    assert!(out.status.success(), "{}", show(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&snapshot.id) && listed.contains("newest restorable point"),
        "{listed}"
    );
    let out = restore("latest", &["--dry-run"]);
    assert!(out.status.success(), "{}", show(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains(&snapshot.id)
            && plan.contains("estimate")
            && plan.contains(&format!("{db_name}.items")),
        "{plan}"
    );

    // A good restore, then a second one into the now non-empty target without --drop.
    let out = restore("latest", &[]);
    assert!(out.status.success(), "{}", show(&out));
    let restored = target
        .node_client(0)
        .database(&db_name)
        .collection::<Document>("items");
    assert_eq!(restored.count_documents(doc! {"v": 3}).await.unwrap(), 200);
    let out = restore("latest", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let e = stderr(&out);
    assert!(
        e.contains("already holds")
            && e.contains(&format!("{db_name}.items"))
            && e.contains("--drop"),
        "{e}"
    );
    assert!(
        e.contains("nothing was written") && !e.contains("partial restore"),
        "a refusal before any write must not claim a partial restore: {e}"
    );
    assert_eq!(
        restored.count_documents(doc! {}).await.unwrap(),
        200,
        "the refused restore changed nothing"
    );

    // A source the repository does not hold: an error naming the ones it holds, for the
    // restore and for `list` (which must not answer "nothing is restorable yet").
    let out = restore("latest", &["--source", "no-such-source", "--drop"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let e = stderr(&out);
    assert!(
        e.contains("no-such-source") && e.contains(&source_id),
        "{e}"
    );
    let out = mc_restore(
        &["list", "--repo", &repo_s, "--source", "no-such-source"],
        &keyring,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains(&source_id), "{}", show(&out));

    // Damage: flip a byte inside the last oplog segment's data.
    let oplog_dir = repo.join("sources").join(&source_id).join("oplog");
    let mut segments: Vec<(OplogTs, OplogTs, std::path::PathBuf)> = std::fs::read_dir(&oplog_dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let key = format!("sources/{source_id}/oplog/{}", path.file_name()?.to_str()?);
            parse_oplog_key(&key).map(|(f, l)| (f, l, path))
        })
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "{segments:?}");
    let (_, _, last) = segments.last().unwrap().clone();
    let mut bytes = std::fs::read(&last).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x55;
    std::fs::write(&last, &bytes).unwrap();
    let out = restore("latest", &["--drop"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let e = stderr(&out);
    let name = last.file_name().unwrap().to_str().unwrap();
    assert!(
        e.contains(name) && e.contains("did not complete") && e.contains("--drop"),
        "{e}"
    );

    // A missing segment after the snapshot: a gap. Points in it are refused; `latest` refuses
    // to quietly stop before the gap.
    let (first, last_ts, middle) = segments
        .iter()
        .find(|(f, _, _)| *f > snapshot.end)
        .cloned()
        .expect("a segment after the snapshot");
    std::fs::remove_file(&middle).unwrap();
    let inside = if first < last_ts { first } else { last_ts };
    let out = restore(&format!("ts:{}:{}", inside.t, inside.i), &["--drop"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("gap"), "{}", show(&out));
    let out = restore("latest", &["--drop"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("older than the newest captured oplog"),
        "{}",
        show(&out)
    );
}

/// `--at latest` right after a snapshot of an idle database: the snapshot ends at the newest
/// captured entry, nothing is left to replay, and the restore is the snapshot itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latest_right_after_a_snapshot_with_nothing_to_replay() {
    let client = mongo_client().await;
    let db_name = unique_db("rstidle");
    let items = client.database(&db_name).collection::<Document>("items");
    items
        .insert_many((0..50).map(|i| doc! {"_id": i}).collect::<Vec<_>>())
        .await
        .unwrap();
    let source_id = unique_name("rstidle").to_lowercase();
    let cap = Captured::start(&source_id).await;
    cap.snapshot(&db_name).await;
    let (dir, _repo) = cap.finish().await;
    let (repo, keyring) = repo_paths(dir.path());
    let target = PrivateReplSet::start(Default::default()).await;
    let ns = format!("{db_name}.*");
    let out = mc_restore(
        &[
            "--at",
            "latest",
            "--target",
            &target.uri(),
            "--repo",
            repo.to_str().unwrap(),
            "--ns",
            &ns,
        ],
        &keyring,
    );
    assert!(out.status.success(), "{}", show(&out));
    let restored = target
        .node_client(0)
        .database(&db_name)
        .collection::<Document>("items");
    assert_eq!(restored.count_documents(doc! {}).await.unwrap(), 50);
}
