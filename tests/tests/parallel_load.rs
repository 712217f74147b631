//! The load's parallel paths (issue 16): a collection spread over many snapshot parts, loaded
//! by several workers at once in insert batches closed by bytes and by count, a capped
//! collection of several parts loaded by one writer in natural order, and a clustered
//! collection, restore to exactly the source's state (every document's bytes in `_id` order,
//! the capped collection's natural order, options and index definitions), in process with tiny
//! batches and as `mc-restore --load-workers` runs it.

use std::sync::Arc;

use mc_restore::load::LoadSettings;
use mc_restore::namespaces::NamespaceMap;
use mc_restore::plan::RestorePlan;
use mc_restore::point::RestorePoint;
use mc_restore::restore::{self, Progress, Quiet, RestoreOptions};
use mc_tests::restore::{db_state, mc_restore, repo_paths, show, state_differences, Captured};
use mc_tests::*;
use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

/// Documents from about 100 B to 40 KiB, with a unique `email` and a few shapes.
fn varied(i: i32) -> Document {
    let size = match i % 10 {
        0 => 40_000,
        1..=3 => 2_000,
        _ => 60,
    };
    doc! {
        "_id": i,
        "email": format!("u{i}@example.com"),
        "k": i % 7,
        "n": f64::from(i) / 3.0,
        "body": "y".repeat(size),
        "nested": {"a": [i, i + 1], "b": {"c": i % 2 == 0}},
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_parts_loaded_in_parallel_equal_the_source() {
    let client = mongo_client().await;
    let db_name = unique_db("pload");
    let db = client.database(&db_name);
    let big = db.collection::<Document>("big");
    for start in (0..3000).step_by(500) {
        big.insert_many((start..start + 500).map(varied).collect::<Vec<_>>())
            .await
            .unwrap();
    }
    big.create_index(
        IndexModel::builder()
            .keys(doc! {"email": 1})
            .options(IndexOptions::builder().unique(true).build())
            .build(),
    )
    .await
    .unwrap();
    big.create_index(IndexModel::builder().keys(doc! {"k": 1, "n": -1}).build())
        .await
        .unwrap();
    // Wraps several times: its content and order depend on the order of inserts.
    db.run_command(doc! {"create": "ring", "capped": true, "size": 96 * 1024})
        .await
        .unwrap();
    let ring = db.collection::<Document>("ring");
    for start in (0..3000).step_by(300) {
        ring.insert_many(
            (start..start + 300)
                .map(|i| doc! {"_id": i, "pad": "r".repeat(150)})
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    }
    db.run_command(
        doc! {"create": "clustered", "clusteredIndex": {"key": {"_id": 1}, "unique": true}},
    )
    .await
    .unwrap();
    db.collection::<Document>("clustered")
        .insert_many((0..800).map(varied).collect::<Vec<_>>())
        .await
        .unwrap();

    let source_id = unique_name("pload");
    let cap = Captured::start(&source_id).await;
    let mut settings = cap.snapshot_settings(&db_name);
    settings.max_segment_bytes = 32 * 1024;
    let manifest = cap.snapshot_with(&settings).await;
    let parts = |coll: &str| {
        manifest
            .collections
            .iter()
            .find(|c| c.ns == format!("{db_name}.{coll}"))
            .map_or(0, |c| c.parts.len())
    };
    assert!(parts("big") >= 16, "big spans {} parts", parts("big"));
    assert!(parts("ring") >= 2, "ring spans {} parts", parts("ring"));
    let (dir, repo) = cap.finish().await;
    let want = db_state(&client, &db_name).await;

    // In process: 8 workers, batches of at most 16 KiB or 7 documents (every large document a
    // batch of its own), one batch read ahead.
    let in_process = format!("{db_name}_a");
    let map = NamespaceMap::new(
        vec![format!("{db_name}.*")],
        vec![],
        Some(db_name.clone()),
        Some(in_process.clone()),
    )
    .unwrap();
    let plan = RestorePlan::build(&repo, &source_id, RestorePoint::Latest, None, &map)
        .await
        .unwrap();
    let options = RestoreOptions {
        load: LoadSettings {
            workers: 8,
            batch_bytes: 16 * 1024,
            batch_docs: 7,
            read_ahead: 1,
        },
        ..RestoreOptions::default()
    };
    let summary = restore::run(
        &repo,
        &client,
        &plan,
        RestorePoint::Latest,
        &map,
        &options,
        Arc::new(Progress::default()),
        &Quiet,
    )
    .await
    .unwrap();
    assert_eq!(summary.load.documents, manifest.documents());
    assert_eq!(
        summary.indexes, 2,
        "both secondary indexes of big, in one build"
    );
    let differences = state_differences(&want, &db_state(&client, &in_process).await);
    assert!(differences.is_empty(), "in process: {differences:#?}");

    // As operators run it.
    let as_process = format!("{db_name}_b");
    let (repo_dir, keyring) = repo_paths(dir.path());
    let out = mc_restore(
        &[
            "--at",
            "latest",
            "--target",
            &mongodb_uri(),
            "--repo",
            repo_dir.to_str().unwrap(),
            "--source",
            &source_id,
            "--ns",
            &format!("{db_name}.*"),
            "--ns-from",
            &db_name,
            "--ns-to",
            &as_process,
            "--load-workers",
            "6",
        ],
        &keyring,
    );
    assert!(out.status.success(), "{}", show(&out));
    let differences = state_differences(&want, &db_state(&client, &as_process).await);
    assert!(differences.is_empty(), "mc-restore: {differences:#?}");

    for name in [&db_name, &in_process, &as_process] {
        client.database(name).drop().await.unwrap();
    }
}
