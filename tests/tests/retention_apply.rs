//! Pruning on real storage (local directory and S3): forgotten snapshots disappear whole, the
//! oplog before the oldest kept snapshot goes, and afterwards every kept snapshot is still
//! restorable: its start is covered by the timeline, the catalog reports nothing missing, and
//! every remaining object verifies.

use std::sync::Arc;

use mc_core::catalog::names::{oplog_key, snapshot_data_key};
use mc_core::catalog::retention::{apply, plan, KeepRules};
use mc_core::catalog::{
    list_snapshots, Catalog, CollectionEntry, Repository, SnapshotManifest, Timeline,
};
use mc_core::crypto::{Keyring, SecretKey};
use mc_core::format::{OplogRange, OplogTs, SegmentSpec, StreamKind};
use mc_core::storage::local::LocalDir;
use mc_core::storage::s3::{S3Settings, S3Store};
use mc_core::storage::ObjectStore;
use mc_tests::*;

const DAY: u32 = 86_400;
const T0: u32 = 1_795_000_000 - 1_795_000_000 % DAY; // a UTC midnight

async fn populate(repo: &Repository) -> Vec<SnapshotManifest> {
    // Oplog: one chained segment per day, days 0..=10.
    let mut prev = None;
    for d in 0..=10 {
        let first = OplogTs::new(T0 + d * DAY, 1);
        let last = OplogTs::new(T0 + (d + 1) * DAY - 1, 1);
        let key = oplog_key("rs0", first, last);
        let range = OplogRange {
            first,
            last,
            prev,
            count: 1,
        };
        let spec = SegmentSpec::new(
            StreamKind::Oplog,
            &key,
            "rs0",
            serde_json::to_value(range).unwrap(),
        );
        repo.put_segment(spec, vec![format!("op of day {d}").into_bytes()])
            .await
            .unwrap();
        prev = Some(last);
    }
    // A snapshot every day at 02:00 with one data part.
    let mut manifests = Vec::new();
    for d in 0..=10 {
        let start = OplogTs::new(T0 + d * DAY + 7200, 1);
        let id = format!("day{d:02}-000000");
        let part = snapshot_data_key("rs0", &id, "app.users", 0);
        let spec = SegmentSpec::new(
            StreamKind::SnapshotData,
            &part,
            "rs0",
            serde_json::json!({"snapshot": id, "ns": "app.users", "part": 0}),
        );
        repo.put_segment(spec, vec![b"doc".to_vec()]).await.unwrap();
        let m = SnapshotManifest {
            id,
            source: "rs0".into(),
            start,
            end: OplogTs::new(start.t + 600, 1),
            started: String::new(),
            finished: String::new(),
            collections: vec![CollectionEntry {
                ns: "app.users".into(),
                kind: "collection".into(),
                options: serde_json::json!({}),
                indexes: Vec::new(),
                count: 1,
                bytes: 3,
                parts: vec![part],
            }],
            reason: "schedule".into(),
        };
        m.store(repo).await.unwrap();
        manifests.push(m);
    }
    // An index with checksums, as a long-running agent would have.
    mc_core::catalog::index::rebuild(repo, "rs0", StreamKind::Oplog)
        .await
        .unwrap();
    manifests
}

async fn prune_and_check(store: Arc<dyn ObjectStore>) {
    let repo = Repository::new(
        store.clone(),
        Keyring::new(vec![SecretKey::generate().unwrap()], "t").unwrap(),
    );
    repo.init().await.unwrap();
    let manifests = populate(&repo).await;
    let now = chrono::DateTime::from_timestamp(i64::from(T0 + 10 * DAY + 43_200), 0).unwrap();
    let oplog = Catalog::load(&repo, "rs0", StreamKind::Oplog)
        .await
        .unwrap();
    let rules = KeepRules {
        daily: 3,
        weekly: 0,
        monthly: 0,
        pitr_window: None,
        ..KeepRules::default()
    };
    let decided = plan(&manifests, &oplog.segments, rules, now);
    assert_eq!(decided.keep.len(), 3);
    assert_eq!(decided.forget.len(), 8);
    assert_eq!(
        decided.delete_segments.len(),
        8,
        "days 0..=7 end before day 8's snapshot"
    );
    let done = apply(&repo, "rs0", &decided).await.unwrap();
    assert_eq!(done.snapshots_deleted, 8);

    // Forgotten snapshots are gone whole; kept ones are intact.
    let left = list_snapshots(&repo, "rs0").await.unwrap();
    let ids: Vec<&str> = left.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["day08-000000", "day09-000000", "day10-000000"]);
    for m in &manifests[..8] {
        assert!(
            store
                .head(&m.collections[0].parts[0])
                .await
                .unwrap()
                .is_none(),
            "{} data deleted",
            m.id
        );
    }
    // Every kept snapshot is restorable: its start lies in a run that reaches past its end.
    let catalog = Catalog::load(&repo, "rs0", StreamKind::Oplog)
        .await
        .unwrap();
    assert!(catalog.missing.is_empty(), "{:?}", catalog.missing);
    let timeline = Timeline::build(&catalog.segments);
    assert_eq!(timeline.runs.len(), 1, "{timeline:?}");
    for m in &left {
        let run = timeline
            .run_containing(m.start)
            .unwrap_or_else(|| panic!("{} start not covered", m.id));
        assert!(run.end >= m.end);
    }
    assert!(mc_core::catalog::verify(&repo, None).await.unwrap().is_ok());
    // Pruning again changes nothing.
    let again = plan(&left, &catalog.segments, rules, now);
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test]
async fn prune_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    prune_and_check(Arc::new(LocalDir::new(dir.path().join("repo")).unwrap())).await;
}

#[tokio::test]
async fn prune_on_s3() {
    let client = s3_client();
    let bucket = fresh_bucket(&client, "prune").await;
    let settings = S3Settings {
        endpoint: Some(S3Env::from_env().endpoint),
        ..S3Settings::default()
    };
    prune_and_check(Arc::new(S3Store::from_client(
        client, &bucket, "p", settings,
    )))
    .await;
}
