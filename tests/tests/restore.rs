//! Point-in-time restore, end to end against real servers (issue 5, the gold test): a workload
//! of inserts, updates, deletes, transactions (one large enough to be split across oplog
//! entries), collection creates, drops and renames and index changes runs while the agent
//! captures; at several moments the workload pauses and the test records the source's exact
//! state; afterwards `mc-restore` restores each moment into a second, private mongod and the
//! restored database must equal the recorded state byte for byte.

use std::time::Duration;

use mc_core::format::OplogTs;
use mc_tests::mongod::PrivateReplSet;
use mc_tests::restore::{assert_same_state, db_state, mc_restore, show, Captured, DbState};
use mc_tests::*;
use mongodb::bson::{doc, Document, Timestamp};
use mongodb::options::IndexOptions;
use mongodb::{Client, IndexModel};

fn ts(t: Timestamp) -> OplogTs {
    OplogTs::new(t.time, t.increment)
}

/// Writes one document outside the restored database, so the oplog moves past this moment.
async fn write_marker(client: &Client, db: &str) {
    client
        .database(&format!("{db}_marker"))
        .collection::<Document>("m")
        .insert_one(doc! {"at": chrono::Utc::now().timestamp_millis()})
        .await
        .unwrap();
}

fn user(i: i32) -> Document {
    doc! {"_id": i, "email": format!("u{i}@example.com"), "plan": "free", "logins": 0, "tags": ["a", "b"], "bio": "x".repeat(200)}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restores_each_recorded_moment_exactly() {
    let client = mongo_client().await;
    let db_name = unique_db("rst");
    let db = client.database(&db_name);
    let users = db.collection::<Document>("users");
    let orders = db.collection::<Document>("orders");
    users
        .insert_many((0..400).map(user).collect::<Vec<_>>())
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
    orders
        .insert_many(
            (0..200)
                .map(|i| doc! {"_id": i, "user": i % 50, "total": i * 3})
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();

    let source_id = unique_name("rst").to_lowercase();
    let cap = Captured::start(&source_id).await;
    // Writes while the snapshot reads: replay must reconcile them (the snapshot's window).
    let during = {
        let users = users.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                users
                    .update_one(
                        doc! {"_id": i},
                        doc! {"$inc": {"logins": 1}, "$set": {"plan": "pro"}},
                    )
                    .await
                    .unwrap();
                if i % 10 == 0 {
                    users.delete_one(doc! {"_id": 399 - i}).await.unwrap();
                    users.insert_one(user(1000 + i)).await.unwrap();
                }
            }
        })
    };
    cap.snapshot(&db_name).await;
    during.await.unwrap();

    // Phase A: ordinary writes and a small transaction. T1 = the exact timestamp of its last op.
    for i in 0..100 {
        users
            .update_one(
                doc! {"_id": i},
                doc! {"$set": {"tags.1": "c", "seen": true}, "$unset": {"bio": ""}},
            )
            .await
            .unwrap();
    }
    users
        .replace_one(
            doc! {"_id": 200},
            doc! {"email": "replaced@example.com", "v": 2},
        )
        .await
        .unwrap();
    users
        .delete_many(doc! {"_id": {"$gte": 300, "$lt": 320}})
        .await
        .unwrap();
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    orders
        .insert_one(doc! {"_id": 5000, "user": 1, "total": 99})
        .session(&mut session)
        .await
        .unwrap();
    users
        .update_one(doc! {"_id": 1}, doc! {"$inc": {"logins": 10}})
        .session(&mut session)
        .await
        .unwrap();
    session.commit_transaction().await.unwrap();
    let t1 = ts(session.operation_time().unwrap());
    let state1 = db_state(&client, &db_name).await;

    // Phase B: catalog changes. T2 = a wall-clock time (milliseconds) between two writes.
    db.create_collection("late").await.unwrap();
    db.collection::<Document>("late")
        .insert_many((0..50).map(|i| doc! {"_id": i, "k": i}).collect::<Vec<_>>())
        .await
        .unwrap();
    orders
        .create_index(
            IndexModel::builder()
                .keys(doc! {"user": 1, "total": -1})
                .build(),
        )
        .await
        .unwrap();
    client
        .database("admin")
        .run_command(doc! {"renameCollection": format!("{db_name}.orders"), "to": format!("{db_name}.orders_v2")})
        .await
        .unwrap();
    let state2 = db_state(&client, &db_name).await;
    let t2_ms = chrono::Utc::now().timestamp_millis();
    // The next write must carry a later wall time than T2 (a condition on the clock).
    while chrono::Utc::now().timestamp_millis() <= t2_ms + 1 {
        tokio::task::yield_now().await;
    }
    db.collection::<Document>("late").drop().await.unwrap();
    users.drop_index("email_1").await.unwrap();

    // Phase C: a transaction too large for one oplog entry (split with partialTxn). T3 = the
    // first of its entries: inside its span, so none of it is restored.
    let big = db.collection::<Document>("big");
    db.create_collection("big").await.unwrap();
    let state3 = db_state(&client, &db_name).await;
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    for i in 0..20 {
        big.insert_one(doc! {"_id": i, "blob": "z".repeat(1 << 20)})
            .session(&mut session)
            .await
            .unwrap();
    }
    session.commit_transaction().await.unwrap();
    let partial: Document = client
        .database("local")
        .collection::<Document>("oplog.rs")
        .find_one(doc! {"o.partialTxn": true, "o.applyOps.ns": format!("{db_name}.big")})
        .sort(doc! {"$natural": 1})
        .await
        .unwrap()
        .expect("a 20 MB transaction is split into partial oplog entries");
    let t3 = ts(partial.get_timestamp("ts").unwrap());

    // Phase D: drop a collection and end. T4 = latest.
    users.delete_many(doc! {"_id": {"$lt": 10}}).await.unwrap();
    db.collection::<Document>("orders_v2").drop().await.unwrap();
    let state4 = db_state(&client, &db_name).await;
    // Capture must pass T2's second for it to be provably restorable.
    while chrono::Utc::now().timestamp_millis() < (t2_ms / 1000 + 1) * 1000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write_marker(&client, &db_name).await;
    let (dir, _repo) = cap.finish().await;

    let target = PrivateReplSet::start(Default::default()).await;
    let repo_path = dir.path().join("repo");
    let keyring = dir.path().join("keyring");
    let t2 = mc_restore_time(t2_ms);
    // (point, state, whether a transaction is open at the point)
    let cases: Vec<(String, &DbState, bool)> = vec![
        ("latest".into(), &state4, false),
        (format!("ts:{}:{}", t1.t, t1.i), &state1, false),
        (t2, &state2, false),
        (format!("ts:{}:{}", t3.t, t3.i), &state3, true),
    ];
    let ns = format!("{db_name}.*");
    for (at, want, open_txn) in cases {
        let out = mc_restore(
            &[
                "--at",
                &at,
                "--target",
                &target.uri(),
                "--repo",
                repo_path.to_str().unwrap(),
                "--source",
                &source_id,
                "--ns",
                &ns,
                "--drop",
                "--json",
            ],
            &keyring,
        );
        assert!(out.status.success(), "restore to {at}: {}", show(&out));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let got = db_state(target.node_client(0), &db_name).await;
        assert_same_state(&format!("restore to {at}"), want, &got);
        let open = summary["replay"]["open_transactions"].as_u64().unwrap();
        assert_eq!(
            open >= 1,
            open_txn,
            "restore to {at}: open transactions: {summary}"
        );
    }
}

fn mc_restore_time(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Restoring next to production (`--ns-from db --ns-to db_restored --drop` into the source's own
/// replica set) writes only the new names: the source database is left exactly as it was, twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renamed_restore_into_the_source_cluster_never_touches_the_source() {
    let client = mongo_client().await;
    let db_name = unique_db("rstren");
    let restored_name = format!("{db_name}_restored");
    let db = client.database(&db_name);
    db.collection::<Document>("a")
        .insert_many(
            (0..100)
                .map(|i| doc! {"_id": i, "v": i})
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let source_id = unique_name("rstren").to_lowercase();
    let cap = Captured::start(&source_id).await;
    cap.snapshot(&db_name).await;
    db.collection::<Document>("b")
        .insert_one(doc! {"_id": 1, "after": "snapshot"})
        .await
        .unwrap();
    db.collection::<Document>("a")
        .update_many(doc! {}, doc! {"$inc": {"v": 1000}})
        .await
        .unwrap();
    let (dir, _repo) = cap.finish().await;
    let before = db_state(&client, &db_name).await;
    let (repo, keyring) = mc_tests::restore::repo_paths(dir.path());
    let ns = format!("{db_name}.*");
    for round in 0..2 {
        let out = mc_restore(
            &[
                "--at",
                "latest",
                "--target",
                &mongodb_uri(),
                "--repo",
                repo.to_str().unwrap(),
                "--ns",
                &ns,
                "--ns-from",
                &db_name,
                "--ns-to",
                &restored_name,
                "--drop",
            ],
            &keyring,
        );
        assert!(out.status.success(), "round {round}: {}", show(&out));
        assert_same_state(
            &format!("round {round}: the source"),
            &before,
            &db_state(&client, &db_name).await,
        );
        assert_same_state(
            &format!("round {round}: the copy"),
            &before,
            &db_state(&client, &restored_name).await,
        );
    }
}
