//! Base snapshots against the real replica set: every collection's documents are stored
//! byte for byte, with the collection options (capped, validator, collation), views and index
//! definitions, per-collection counts, and the majority optimes that make it restorable.

use std::sync::Arc;

use futures::TryStreamExt;
use mc_agent::capture::oplog::OplogSource;
use mc_agent::snapshot::{take, SnapshotSettings};
use mc_core::catalog::{list_snapshots, Repository};
use mc_core::crypto::{Keyring, SecretKey};
use mc_core::format::WriterInfo;
use mc_core::storage::local::LocalDir;
use mc_tests::*;
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::options::{CreateCollectionOptions, IndexOptions};
use mongodb::IndexModel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_copies_documents_options_views_and_indexes() {
    let client = mongo_client().await;
    let db_name = unique_db("snap");
    let db = client.database(&db_name);

    let users = db.collection::<Document>("users");
    let docs: Vec<Document> = (0..3000)
        .map(|i: i32| doc! {"_id": i, "email": format!("u{i}@example.com"), "bio": "b".repeat(900 + (i % 50) as usize)})
        .collect();
    users.insert_many(docs).await.unwrap();
    users
        .create_index(
            IndexModel::builder()
                .keys(doc! {"email": 1})
                .options(
                    IndexOptions::builder()
                        .unique(true)
                        .name("email_unique".to_string())
                        .build(),
                )
                .build(),
        )
        .await
        .unwrap();
    db.create_collection("events")
        .capped(true)
        .size(1 << 20)
        .await
        .unwrap();
    db.collection::<Document>("events")
        .insert_one(doc! {"kind": "start"})
        .await
        .unwrap();
    let opts = CreateCollectionOptions::builder()
        .validator(doc! {"$jsonSchema": {"required": ["name"]}})
        .collation(mongodb::options::Collation::builder().locale("fr").build())
        .build();
    db.create_collection("people")
        .with_options(opts)
        .await
        .unwrap();
    db.collection::<Document>("people")
        .insert_one(doc! {"name": "Zoé"})
        .await
        .unwrap();
    db.create_collection("metrics")
        .timeseries(
            mongodb::options::TimeseriesOptions::builder()
                .time_field("at".to_string())
                .meta_field(Some("host".to_string()))
                .build(),
        )
        .await
        .unwrap();
    let now = mongodb::bson::DateTime::now();
    for (i, host) in ["a", "a", "b"].iter().enumerate() {
        db.collection::<Document>("metrics")
            .insert_one(doc! {"at": now, "host": *host, "cpu": i as i32})
            .await
            .unwrap();
    }
    db.create_collection("active_users")
        .view_on("users".to_string())
        .pipeline(vec![doc! {"$match": {"_id": {"$lt": 10}}}])
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::new(
        Arc::new(LocalDir::new(dir.path().join("repo")).unwrap()),
        Keyring::new(vec![SecretKey::generate().unwrap()], "t").unwrap(),
    );
    repo.init().await.unwrap();
    let source = OplogSource::connect(&mongodb_uri()).await.unwrap();
    let before = source.majority_point().await.unwrap();
    let settings = SnapshotSettings {
        source: "rs0".into(),
        parallelism: 3,
        max_segment_bytes: 256 * 1024,
        zstd_level: 3,
        writer: WriterInfo {
            id: "test".into(),
            fence: 7,
        },
        reason: "on-demand".into(),
        databases: Some(vec![db_name.clone()]),
        users_and_roles: false,
    };
    let manifest = take(&repo, &source, &settings).await.unwrap();

    assert!(manifest.start >= before && manifest.end >= manifest.start);
    let listed = list_snapshots(&repo, "rs0").await.unwrap();
    assert_eq!(listed, vec![manifest.clone()]);
    let entry = |name: &str| {
        manifest
            .collections
            .iter()
            .find(|c| c.ns == format!("{db_name}.{name}"))
            .unwrap_or_else(|| panic!("{name} in {:?}", manifest.collections))
            .clone()
    };
    assert_eq!(manifest.collections.len(), 5, "{:?}", manifest.collections);
    // Time-series data is kept as its buckets: one per host here, holding all 3 measurements.
    let ts = entry("metrics");
    assert_eq!(ts.kind, "timeseries");
    assert_eq!(ts.options["timeseries"]["timeField"], "at");
    assert_eq!(ts.count, 2, "two buckets (hosts a and b)");
    let mut measurements = 0;
    for part in &ts.parts {
        for bucket in repo.read_segment(part).await.unwrap().1 {
            let b = RawDocumentBuf::from_bytes(bucket).unwrap();
            measurements += b
                .get_document("data")
                .unwrap()
                .get_document("cpu")
                .unwrap()
                .into_iter()
                .count();
        }
    }
    assert_eq!(measurements, 3);

    let u = entry("users");
    assert_eq!((u.kind.as_str(), u.count), ("collection", 3000));
    assert!(u.parts.len() > 5, "256 KiB parts: {}", u.parts.len());
    let index = u
        .indexes
        .iter()
        .find(|i| i["name"] == "email_unique")
        .expect("email index");
    assert_eq!(index["unique"], true);
    assert_eq!(
        index["key"]["email"],
        serde_json::json!({"$numberInt": "1"})
    );
    // Documents come back exactly as the server stores them.
    let mut stored: Vec<Vec<u8>> = Vec::new();
    for part in &u.parts {
        stored.extend(repo.read_segment(part).await.unwrap().1);
    }
    let mut live: Vec<Vec<u8>> = db
        .collection::<RawDocumentBuf>("users")
        .find(doc! {})
        .await
        .unwrap()
        .map_ok(|d| d.into_bytes())
        .try_collect()
        .await
        .unwrap();
    stored.sort();
    live.sort();
    assert!(
        stored == live,
        "snapshot documents differ from the collection"
    );
    assert_eq!(u.bytes, live.iter().map(|d| d.len() as u64).sum::<u64>());

    let e = entry("events");
    assert_eq!(e.options["capped"], true);
    assert_eq!(e.count, 1);
    let p = entry("people");
    assert_eq!(p.options["collation"]["locale"], "fr");
    assert!(p.options["validator"]["$jsonSchema"].is_object());
    let v = entry("active_users");
    assert_eq!(v.kind, "view");
    assert_eq!(v.options["viewOn"], "users");
    assert!(v.parts.is_empty());

    // Every part opens and says what it is.
    let header = repo.read_header(&u.parts[0]).await.unwrap();
    assert_eq!(header.writer.fence, 7);
    assert_eq!(header.range["ns"], format!("{db_name}.users"));
    assert!(mc_core::catalog::verify(&repo, None).await.unwrap().is_ok());
    db.drop().await.unwrap();
}
