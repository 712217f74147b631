//! `mc-restore verify-data` against real servers (issue 5): a target holding a database as it was
//! at T must verify (exit 0) although the source changed after T, with exactly the namespaces
//! whose catalog changed after T reported not verifiable; a changed document, or an extra
//! collection, on the target is a mismatch (exit 3) that names the namespace and the `_id`; an
//! unreachable source is an error (exit 1) that says so.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use futures::TryStreamExt;
use mc_tests::mongod::PrivateReplSet;
use mc_tests::restore::{copy_db, show};
use mc_tests::*;
use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;
use serde_json::Value;

fn verify_data(args: &[&str]) -> Output {
    std::process::Command::new(workspace_bin("mc-restore"))
        .arg("verify-data")
        .args(args)
        .env_remove("MC_RESTORE_TARGET")
        .env_remove("MC_VERIFY_SOURCE")
        .output()
        .expect("mc-restore runs")
}

/// source namespace → (status, the whole entry).
fn by_ns(report: &Value) -> BTreeMap<String, (String, Value)> {
    report["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .map(|n| {
            (
                n["source_ns"].as_str().unwrap().to_owned(),
                (n["status"].as_str().unwrap().to_owned(), n.clone()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proves_a_copy_of_the_state_at_t_and_names_every_difference() {
    let client = mongo_client().await;
    let db_name = unique_db("vd");
    let db = client.database(&db_name);
    let users = db.collection::<Document>("users");
    users
        .insert_many(
            (0..100)
                .map(|i| doc! {"_id": i, "email": format!("u{i}@example.com"), "n": i})
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    users
        .create_index(
            IndexModel::builder()
                .keys(doc! {"email": 1})
                .options(IndexOptions::builder().unique(true).build())
                .build(),
        )
        .await
        .unwrap();
    for (name, n) in [("orders", 50), ("keep", 20), ("gone", 10), ("moved", 10)] {
        db.collection::<Document>(name)
            .insert_many(
                (0..n)
                    .map(|i| doc! {"_id": i, "k": i * 7})
                    .collect::<Vec<_>>(),
            )
            .await
            .unwrap();
    }
    db.run_command(
        doc! {"create": "active", "viewOn": "users", "pipeline": [{"$match": {"n": {"$gte": 50}}}]},
    )
    .await
    .unwrap();
    db.run_command(doc! {"create": "metrics", "timeseries": {"timeField": "t", "metaField": "m"}})
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    db.collection::<Document>("metrics")
        .insert_many(
            (0..30)
                .map(|i| doc! {"t": mongodb::bson::DateTime::from_millis(now - 1000 * i), "m": i % 3, "v": i})
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    // T: the last write, exactly.
    let mut session = client.start_session().await.unwrap();
    users
        .insert_one(doc! {"_id": 1000, "email": "last@example.com", "n": 1000})
        .session(&mut session)
        .await
        .unwrap();
    let t = session.operation_time().expect("an operation time");
    let t_wall = client
        .database("local")
        .collection::<Document>("oplog.rs")
        .find_one(doc! {"ts": t})
        .await
        .unwrap()
        .expect("T's oplog entry")
        .get_datetime("wall")
        .unwrap()
        .timestamp_millis();

    // The target: the database as it is at T, under another name.
    let target = PrivateReplSet::start(Default::default()).await;
    let restored = format!("{db_name}_r");
    copy_db(&client, &db_name, target.node_client(0), &restored).await;

    // Changes after T, each later by the wall clock too.
    while chrono::Utc::now().timestamp_millis() <= t_wall + 5 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    users
        .update_many(doc! {"_id": {"$lt": 10}}, doc! {"$set": {"n": -1}})
        .await
        .unwrap();
    users
        .delete_many(doc! {"_id": {"$gte": 20, "$lt": 30}})
        .await
        .unwrap();
    db.collection::<Document>("orders")
        .insert_one(doc! {"_id": 999, "k": 0})
        .await
        .unwrap();
    db.collection::<Document>("metrics")
        .insert_one(doc! {"t": mongodb::bson::DateTime::now(), "m": 9, "v": 9})
        .await
        .unwrap();
    db.collection::<Document>("late")
        .insert_one(doc! {"_id": 1})
        .await
        .unwrap();
    db.collection::<Document>("gone").drop().await.unwrap();
    client
        .database("admin")
        .run_command(doc! {"renameCollection": format!("{db_name}.moved"), "to": format!("{db_name}.moved2")})
        .await
        .unwrap();
    db.collection::<Document>("keep")
        .create_index(IndexModel::builder().keys(doc! {"k": 1}).build())
        .await
        .unwrap();
    // The source's commit point must pass T's second for the RFC 3339 form.
    while chrono::Utc::now().timestamp_millis() < (t_wall / 1000 + 1) * 1000 + 50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client
        .database(&format!("{db_name}_marker"))
        .collection::<Document>("m")
        .insert_one(doc! {"at": 1})
        .await
        .unwrap();

    let source_uri = mongodb_uri();
    let target_uri = target.uri();
    let ns = format!("{db_name}.*");
    let at_ts = format!("ts:{}:{}", t.time, t.increment);
    let at_time = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t_wall)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let args = |at: &str, json: bool| {
        let mut a = vec![
            "--at".to_owned(),
            at.to_owned(),
            "--source-uri".into(),
            source_uri.clone(),
            "--target".into(),
            target_uri.clone(),
            "--ns".into(),
            ns.clone(),
            "--ns-from".into(),
            db_name.clone(),
            "--ns-to".into(),
            restored.clone(),
        ];
        if json {
            a.push("--json".into());
        }
        a
    };
    let run = |a: Vec<String>| verify_data(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let name = |c: &str| format!("{db_name}.{c}");

    // (1) The copy is the state at T: everything verifiable matches, exactly the namespaces
    // created, dropped or renamed after T are not verifiable, keep's indexes alone too.
    let out = run(args(&at_ts, true));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let got = by_ns(&report);
    let with = |status: &str| {
        got.iter()
            .filter(|(_, (s, _))| s == status)
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>()
    };
    let mut want_nv: Vec<String> = ["gone", "late", "moved", "moved2"]
        .iter()
        .map(|c| name(c))
        .collect();
    want_nv.sort();
    assert_eq!(with("not_verifiable"), want_nv, "{report:#}");
    let mut want_match: Vec<String> = [
        "active",
        "keep",
        "metrics",
        "orders",
        "system.buckets.metrics",
        "users",
    ]
    .iter()
    .map(|c| name(c))
    .collect();
    want_match.sort();
    assert_eq!(with("match"), want_match, "{report:#}");
    assert_eq!(report["mismatched"], 0);
    assert_eq!(report["not_verifiable"], 4);
    let users_entry = &got[&name("users")].1;
    assert_eq!(
        users_entry["documents"]["source_count"], 101,
        "{users_entry:#}"
    );
    assert_eq!(users_entry["target_ns"], format!("{restored}.users"));
    assert_eq!(users_entry["indexes"]["status"], "match");
    assert_eq!(got[&name("keep")].1["indexes"]["status"], "not_verifiable");
    assert_eq!(
        got[&name("system.buckets.metrics")].1["documents"]["status"],
        "match"
    );
    assert_eq!(got[&name("active")].1["definition"]["status"], "match");

    // The same point as an RFC 3339 time, human output.
    let out = run(args(&at_time, false));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("6 match, 0 mismatch, 4 not verifiable"),
        "{}",
        show(&out)
    );
    assert!(text.contains("NOT VERIFIABLE"), "{}", show(&out));

    // (2) One document changed on the target: exit 3, the namespace and the _id named.
    let target_users = target
        .node_client(0)
        .database(&restored)
        .collection::<Document>("users");
    let original = target_users
        .find_one(doc! {"_id": 7})
        .await
        .unwrap()
        .unwrap();
    target_users
        .update_one(doc! {"_id": 7}, doc! {"$set": {"n": 777}})
        .await
        .unwrap();
    let out = run(args(&at_ts, true));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = by_ns(&report);
    let (status, entry) = &got[&name("users")];
    assert_eq!(status, "mismatch", "{entry:#}");
    assert_eq!(
        entry["documents"]["first_difference"]["id"], "7",
        "{entry:#}"
    );
    assert_eq!(entry["documents"]["first_difference"]["what"], "differs");
    assert_eq!(report["mismatched"], 1, "{report:#}");
    let out = run(args(&at_ts, false));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("MISMATCH")
            && l.contains(&name("users"))
            && l.contains("_id 7")),
        "{}",
        show(&out)
    );
    target_users
        .replace_one(doc! {"_id": 7}, original)
        .await
        .unwrap();

    // (3) An extra collection in scope on the target: a mismatch naming it.
    target
        .node_client(0)
        .database(&restored)
        .collection::<Document>("extra")
        .insert_one(doc! {"_id": 1})
        .await
        .unwrap();
    let out = run(args(&at_ts, true));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = by_ns(&report);
    assert_eq!(got[&name("users")].0, "match", "{report:#}");
    let (status, entry) = &got[&name("extra")];
    assert_eq!(status, "mismatch", "{entry:#}");
    assert_eq!(entry["target_ns"], format!("{restored}.extra"));
    assert_eq!(report["mismatched"], 1, "{report:#}");
}

#[tokio::test]
async fn an_unreachable_source_is_an_error_that_says_so() {
    let out = verify_data(&[
        "--at",
        "latest",
        "--source-uri",
        "mongodb://verifier:s3cr3tpw@127.0.0.1:1/",
        "--target",
        &mongodb_uri(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the source MongoDB") && err.contains("--source-uri"),
        "{}",
        show(&out)
    );
    assert!(
        !err.contains("s3cr3tpw"),
        "password printed: {}",
        show(&out)
    );
}

/// Capped collections cannot be read at a past cluster time; verify-data rebuilds the state at T
/// from today's documents and the oplog since, and compares natural order, not only the set.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capped_collections_are_verified_in_natural_order() {
    let client = mongo_client().await;
    let db_name = unique_db("vdcap");
    let db = client.database(&db_name);
    db.run_command(doc! {"create": "log", "capped": true, "size": 8192, "max": 20})
        .await
        .unwrap();
    let log = db.collection::<Document>("log");
    for round in 0..4 {
        log.insert_many(
            (0..10)
                .map(|i| doc! {"_id": round * 10 + i, "line": format!("entry {round}/{i}")})
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    }
    // T: the newest write so far; the collection holds _id 20..39 in that order.
    let t = client
        .database("local")
        .collection::<Document>("oplog.rs")
        .find_one(doc! {"ns": format!("{db_name}.log")})
        .sort(doc! {"$natural": -1})
        .await
        .unwrap()
        .expect("the inserts' oplog entries")
        .get_timestamp("ts")
        .unwrap();

    // The target: an exact copy in natural order.
    let target = PrivateReplSet::start(Default::default()).await;
    let restored = format!("{db_name}_r");
    let tdb = target.node_client(0).database(&restored);
    tdb.run_command(doc! {"create": "log", "capped": true, "size": 8192, "max": 20})
        .await
        .unwrap();
    let at_t: Vec<Document> = log
        .find(doc! {})
        .sort(doc! {"$natural": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(at_t.len(), 20);
    let tlog = tdb.collection::<Document>("log");
    for d in &at_t {
        tlog.insert_one(d.clone()).await.unwrap();
    }

    // After T the source wraps again: half its documents at T are evicted.
    log.insert_many(
        (40..50)
            .map(|i| doc! {"_id": i, "line": format!("late {i}")})
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();

    let source_uri = mongodb_uri();
    let target_uri = target.uri();
    let ns = format!("{db_name}.*");
    let at = format!("ts:{}:{}", t.time, t.increment);
    let args = [
        "--at",
        &at,
        "--source-uri",
        &source_uri,
        "--target",
        &target_uri,
        "--ns",
        &ns,
        "--ns-from",
        &db_name,
        "--ns-to",
        &restored,
        "--json",
    ];
    let out = verify_data(&args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = by_ns(&report);
    let (status, entry) = &got[&format!("{db_name}.log")];
    assert_eq!(status, "match", "{report:#}");
    assert_eq!(entry["documents"]["source_count"], 20, "{report:#}");

    // The same documents in another order: a mismatch (exit 3) that says where.
    let first = at_t[0].clone();
    tdb.run_command(doc! {"delete": "log", "deletes": [{"q": {"_id": first.get("_id").unwrap().clone()}, "limit": 1}]})
        .await
        .unwrap();
    tlog.insert_one(first).await.unwrap();
    let out = verify_data(&args);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (status, entry) = &by_ns(&report)[&format!("{db_name}.log")];
    assert_eq!(status, "mismatch", "{report:#}");
    assert!(
        entry["mismatches"].to_string().contains("natural order"),
        "{report:#}"
    );
}
