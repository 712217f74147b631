//! A gap, for real: on a private 1-node replica set with the smallest oplog mongod allows (1 MB),
//! capture stops, the oplog rolls over past the last durable entry, and capture starts again.
//! It must see that it cannot continue the timeline, count one gap, and start a new run at the
//! oldest entry the oplog still has: the repository's timeline then has two runs and one gap
//! between exactly the old durable end and the new run's first entry, and the new run is not
//! chained to the old one (`prev` is `None`). Right after the gap the agent takes a new base
//! snapshot, so restorable time resumes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_agent::capture::oplog::{to_ts, OplogSource};
use mc_agent::metrics::Metrics;
use mc_agent::snapshot::{SnapshotPlan, SnapshotSettings};
use mc_agent::supervisor::{self, AgentParts};
use mc_core::catalog::{list_snapshots, Catalog, Repository, Timeline};
use mc_core::crypto::{Keyring, SecretKey};
use mc_core::format::{StreamKind, WriterInfo};
use mc_core::storage::local::LocalDir;
use mc_tests::agent::{capture_settings, wait_durable};
use mc_tests::mongod::PrivateReplSet;
use mc_tests::*;
use mongodb::bson::{doc, Document};
use tokio::sync::watch;

/// Runs the agent (capture plus unscheduled snapshots: one at once when the source has none, one
/// after a gap) until the set's current majority point is durable and `snapshots` snapshots are
/// done, then stops it gracefully.
async fn capture_once(
    repo: &Repository,
    set: &PrivateReplSet,
    source_id: &str,
    dir: &std::path::Path,
    snapshots: u64,
) -> Arc<Metrics> {
    let source = OplogSource::connect(&set.uri()).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = watch::channel(false);
    let plan = SnapshotPlan {
        settings: SnapshotSettings {
            source: source_id.into(),
            parallelism: 2,
            max_segment_bytes: 1 << 20,
            zstd_level: 1,
            writer: WriterInfo {
                id: "test".into(),
                fence: 0,
            },
            reason: String::new(),
            databases: None,
            users_and_roles: false,
        },
        schedule: None,
        retention: None,
    };
    let parts = AgentParts {
        repo: repo.clone(),
        source,
        capture: capture_settings(source_id, dir),
        snapshots: Some(plan),
        kafka: None,
        drills: None,
        lease: None,
        holder: "test".into(),
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(supervisor::run(parts, rx));
    wait_durable(&metrics, to_ts(set.majority_point(0).await)).await;
    let t0 = Instant::now();
    while metrics.snapshots.taken.get() < snapshots {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{snapshots} snapshot(s) within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send(true).unwrap();
    task.await.unwrap().expect("graceful stop");
    metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oplog_rolled_over_while_stopped_is_one_recorded_gap() {
    let started = Instant::now();
    let set = PrivateReplSet::single_rolling(1).await;
    let client = mongodb::Client::with_uri_str(set.uri()).await.unwrap();
    let coll = client
        .database(&unique_db("gap"))
        .collection::<Document>("big");

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalDir::new(dir.path().join("repo")).unwrap());
    let repo = Repository::new(
        store,
        Keyring::new(vec![SecretKey::generate().unwrap()], "t").unwrap(),
    );
    repo.init().await.unwrap();
    let source_id = unique_name("gap");

    // 1. Capture something, then stop.
    for i in 0..5 {
        coll.insert_one(doc! {"_id": i, "v": "small"})
            .await
            .unwrap();
    }
    let first = capture_once(&repo, &set, &source_id, dir.path(), 1).await;
    assert_eq!(first.capture.gaps.get(), 0);
    let catalog = Catalog::load(&repo, &source_id, StreamKind::Oplog)
        .await
        .unwrap();
    let durable_end = Timeline::build(&catalog.segments)
        .newest()
        .expect("the first capture stored something");

    // 2. While capture is stopped, write 100 KiB documents until the oplog no longer holds the
    //    last durable entry (about 1 s of writing with a 1 MB oplog checkpointed every second).
    let pad = "x".repeat(100 * 1024);
    let mut written = 0;
    let roll_started = Instant::now();
    while to_ts(set.oplog_oldest(0).await) <= durable_end {
        let docs: Vec<Document> = (0..10).map(|_| doc! {"pad": &pad}).collect();
        coll.insert_many(docs).await.unwrap();
        written += 10;
        assert!(
            roll_started.elapsed() < Duration::from_secs(30),
            "the oplog did not roll over after {written} documents of 100 KiB"
        );
    }
    let rolled_in = roll_started.elapsed();
    // The oplog is cut lazily: right now it may hold tens of MB that the next checkpoints cut
    // down. Let that finish before capture starts, so the restart does not also race truncation
    // under its cursor (which would be a second, legitimate, gap).
    let oldest_at_restart = to_ts(set.wait_oplog_settled(0).await);
    assert!(oldest_at_restart > durable_end);
    eprintln!(
        "oplog rolled over after {written} documents in {rolled_in:?}; settled at {} bytes after {:?}",
        set.oplog_size(0).await.0,
        roll_started.elapsed()
    );

    // 3. Capture again, with fresh metrics, until it makes progress.
    let second = capture_once(&repo, &set, &source_id, dir.path(), 1).await;
    assert_eq!(second.capture.gaps.get(), 1, "exactly one gap is counted");

    // The timeline: the old run, a gap from its end to the new run's start, the new run.
    let catalog = Catalog::load(&repo, &source_id, StreamKind::Oplog)
        .await
        .unwrap();
    let timeline = Timeline::build(&catalog.segments);
    assert_eq!(timeline.runs.len(), 2, "{timeline:?}");
    assert_eq!(timeline.gaps.len(), 1, "{timeline:?}");
    let (old_run, new_run, gap) = (&timeline.runs[0], &timeline.runs[1], &timeline.gaps[0]);
    assert_eq!(old_run.end, durable_end);
    assert_eq!(
        gap.after, durable_end,
        "the gap starts at the old durable end"
    );
    assert_eq!(
        gap.before, new_run.start,
        "the gap ends at the new run's first entry"
    );
    assert!(
        new_run.start >= oldest_at_restart,
        "the new run starts at the oldest entry the oplog had at restart ({oldest_at_restart}) or later, not at {}",
        new_run.start
    );
    let first_segment = catalog
        .segments
        .iter()
        .find(|s| s.key == new_run.segments[0])
        .expect("the new run's first segment is in the catalog");
    let range = first_segment.oplog_range().expect("an oplog range");
    assert_eq!(range.first, new_run.start);
    assert_eq!(
        range.prev, None,
        "the new run is not chained to the old one"
    );

    // Restorable time resumes: right after the gap the agent took a new base snapshot, whose
    // start lies in the new run (so replay from it is possible).
    let snapshots = list_snapshots(&repo, &source_id).await.unwrap();
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    let after_gap = &snapshots[1];
    assert_eq!(after_gap.reason, "gap");
    assert!(
        after_gap.start >= new_run.start && after_gap.end <= new_run.end,
        "{after_gap:?} in {new_run:?}"
    );
    eprintln!(
        "gap {} → {}; total {:?}",
        gap.after,
        gap.before,
        started.elapsed()
    );
}
