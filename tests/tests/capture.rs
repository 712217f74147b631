//! Continuous oplog capture against the real replica set: while a workload writes, capture is
//! stopped gracefully and killed abruptly several times; afterwards the repository's timeline is
//! one continuous run whose decoded entries are exactly the oplog's, byte for byte, each once,
//! in order.

use std::sync::Arc;

use mc_agent::capture::oplog::OplogSource;
use mc_agent::capture::{self};
use mc_agent::metrics::Metrics;
use mc_core::catalog::{Catalog, Repository, Timeline};
use mc_core::crypto::{Keyring, SecretKey};
use mc_core::format::StreamKind;
use mc_core::storage::local::LocalDir;
use mc_tests::agent::{capture_settings, wait_durable};
use mc_tests::*;
use mongodb::bson::{doc, RawDocumentBuf};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_and_crashes_lose_and_repeat_nothing() {
    let client = mongo_client().await;
    let db = unique_db("capture");
    let source_id = unique_db("src").replace('_', "-");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalDir::new(dir.path().join("repo")).unwrap());
    let repo = Repository::new(
        store,
        Keyring::new(vec![SecretKey::generate().unwrap()], "t").unwrap(),
    );
    repo.init().await.unwrap();
    let source = OplogSource::connect(&mongodb_uri()).await.unwrap();

    // A workload of inserts, updates and deletes, running throughout.
    let (stop_tx, stop_rx) = watch::channel(false);
    let coll = client
        .database(&db)
        .collection::<mongodb::bson::Document>("items");
    let writer = tokio::spawn(async move {
        let mut i: i64 = 0;
        while !*stop_rx.borrow() {
            coll.insert_one(doc! {"_id": i, "v": 0, "pad": "x".repeat(200)})
                .await
                .unwrap();
            if i % 3 == 0 {
                coll.update_one(doc! {"_id": i / 2}, doc! {"$inc": {"v": 1}})
                    .await
                    .unwrap();
            }
            if i % 7 == 0 {
                coll.delete_one(doc! {"_id": i / 3}).await.unwrap();
            }
            i += 1;
        }
        i
    });

    let mut first_metrics = None;
    for round in 0..6 {
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(capture::run(
            repo.clone(),
            source.clone(),
            capture_settings(&source_id, dir.path()),
            metrics.clone(),
            rx,
        ));
        // Let each round make something durable, then stop it one way or the other.
        let target = source.majority_point().await.unwrap();
        wait_durable(&metrics, target).await;
        if round % 2 == 0 {
            tx.send(true).unwrap();
            task.await.unwrap().expect("graceful stop");
        } else {
            task.abort(); // a crash: whatever was in flight is lost from memory
            let _ = task.await;
        }
        first_metrics.get_or_insert(metrics);
    }

    // Final round: stop the workload, capture up to the last write, stop.
    stop_tx.send(true).unwrap();
    let written = writer.await.unwrap();
    assert!(written > 100, "the workload wrote {written} documents");
    let end = source.majority_point().await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(capture::run(
        repo.clone(),
        source.clone(),
        capture_settings(&source_id, dir.path()),
        metrics.clone(),
        rx,
    ));
    wait_durable(&metrics, end).await;
    tx.send(true).unwrap();
    task.await.unwrap().unwrap();

    // The timeline is one run with no gap.
    let catalog = Catalog::load(&repo, &source_id, StreamKind::Oplog)
        .await
        .unwrap();
    let timeline = Timeline::build(&catalog.segments);
    assert_eq!(timeline.runs.len(), 1, "{timeline:?}");
    assert!(timeline.gaps.is_empty());
    let run = &timeline.runs[0];
    assert!(run.end >= end);

    // Decoded, it is exactly the oplog between its ends: every entry once, in order, same bytes.
    let mut captured: Vec<Vec<u8>> = Vec::new();
    for key in &run.segments {
        let (_, records) = repo.read_segment(key).await.unwrap();
        captured.extend(records);
    }
    let expected = mc_tests::agent::oplog_between(&client, run.start, run.end).await;
    assert_eq!(captured.len(), expected.len(), "entry count");
    for (i, (got, want)) in captured.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "entry {i} differs");
    }
    // And our workload's writes are all in there.
    let ours = captured
        .iter()
        .filter(|r| {
            RawDocumentBuf::from_bytes(r.to_vec())
                .ok()
                .and_then(|d| d.get_str("ns").ok().map(|ns| ns == format!("{db}.items")))
                .unwrap_or(false)
        })
        .count();
    assert!(
        ours as i64 >= written,
        "{ours} of our ops captured, {written} inserts written"
    );
    assert!(first_metrics.unwrap().capture.segments_uploaded.get() > 0);
    client.database(&db).drop().await.unwrap();
}
