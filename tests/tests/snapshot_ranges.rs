//! A large collection is snapshotted as ranges of its `_id` index read at once (issue 16); the
//! split must neither lose nor duplicate a document whatever the `_id` types. Against the real
//! replica set: collections whose `_id`s mix every type an `_id` can have (and one with a
//! collation, whose string order is not the bytes' order) are split into ranges; a quiet
//! snapshot holds exactly the source's documents, each once; a snapshot taken during writes to
//! every type, restored with `mc-restore`, equals the source (documents compared byte for byte
//! and hashed).

use mc_agent::snapshot::ranges;
use mc_core::catalog::SnapshotManifest;
use mc_tests::restore::{assert_same_state, db_state, mc_restore, show, Captured, DbState};
use mc_tests::*;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, DateTime, Decimal128, Document, RawDocumentBuf, Timestamp};
use mongodb::options::{Collation, CollationStrength};
use sha2::{Digest, Sha256};

/// Documents per collection: enough for the sampling that splits (2,000 at least) and, at
/// ~600 B each, ten parts of 128 KiB or more.
const DOCS: i64 = 3_000;

/// The `_id` of document `i`: one of every type an `_id` may hold, in turn, with values spread
/// so that split points fall inside and between types.
fn mixed_id(i: i64) -> Bson {
    let n = i / 14;
    match i % 14 {
        // Numbers of the four types never equal one another (`_id`s compare across them).
        0 => Bson::Int32(-(n as i32) - 1_000),
        1 => Bson::Int64(n * 1_000_003 + 1),
        2 => Bson::Double(n as f64 + 0.5),
        3 => Bson::Decimal128(format!("{n}.25").parse::<Decimal128>().unwrap()),
        4 => Bson::String(format!("s{n:05}")),
        5 => Bson::String(format!("S{n:05}")),
        6 => Bson::ObjectId(ObjectId::from_bytes([
            0x65,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            (n >> 24) as u8,
            (n >> 16) as u8,
            (n >> 8) as u8,
            n as u8,
        ])),
        7 => Bson::Document(doc! {"k": n, "s": format!("{n}")}),
        8 => Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: n.to_be_bytes().to_vec(),
        }),
        9 => Bson::DateTime(DateTime::from_millis(1_700_000_000_000 + n)),
        10 => Bson::Timestamp(Timestamp {
            time: 1_700_000_000,
            increment: n as u32,
        }),
        // The types with few values: each value once, then more of other types.
        11 if n < 2 => Bson::Boolean(n == 0),
        11 => Bson::String(format!("t{n:05}")),
        12 if n == 0 => Bson::Null,
        12 if n == 1 => Bson::MinKey,
        12 if n == 2 => Bson::MaxKey,
        12 => Bson::Int64(-n),
        _ => Bson::Double(-(n as f64) - 0.75),
    }
}

fn mixed_doc(i: i64) -> Document {
    doc! {"_id": mixed_id(i), "i": i, "text": format!("{i:08} {}", "lorem ipsum dolor ".repeat(30))}
}

async fn seed(db: &mongodb::Database) {
    db.create_collection("mixed").await.unwrap();
    db.create_collection("collated")
        .collation(
            Collation::builder()
                .locale("en")
                .strength(CollationStrength::Secondary)
                .build(),
        )
        .await
        .unwrap();
    let docs: Vec<Document> = (0..DOCS).map(mixed_doc).collect();
    db.collection::<Document>("mixed")
        .insert_many(docs)
        .await
        .unwrap();
    // Case-insensitive strings (en, strength 2): "b" < "C" < "d" there, "C" < "b" < "d" in bytes.
    let collated: Vec<Document> = (0..DOCS)
        .map(|i| {
            let id = match i % 3 {
                0 => Bson::String(format!("{}{i:05}", ["a", "B", "c", "D"][(i % 4) as usize])),
                1 => Bson::Int64(i),
                _ => Bson::String(format!("{}x{i:05}", ["e", "F"][(i % 2) as usize])),
            };
            doc! {"_id": id, "text": "dolor sit amet ".repeat(40)}
        })
        .collect();
    db.collection::<Document>("collated")
        .insert_many(collated)
        .await
        .unwrap();
}

/// Every document of `ns` in the snapshot's parts, as raw bytes, sorted.
async fn snapshot_documents(cap: &Captured, manifest: &SnapshotManifest, ns: &str) -> Vec<Vec<u8>> {
    let entry = manifest
        .collections
        .iter()
        .find(|c| c.ns == ns)
        .unwrap_or_else(|| panic!("{ns} in {:?}", manifest.collections));
    let mut docs = Vec::new();
    for part in &entry.parts {
        docs.extend(cap.repo.read_segment(part).await.unwrap().1);
    }
    assert_eq!(entry.count, docs.len() as u64, "{ns}: the manifest's count");
    docs.sort();
    docs
}

fn hash(docs: &[Vec<u8>]) -> String {
    let mut h = Sha256::new();
    for d in docs {
        h.update(d);
    }
    hex::encode(h.finalize())
}

fn state_hash(state: &DbState) -> String {
    let mut h = Sha256::new();
    for (name, c) in state {
        h.update(name.as_bytes());
        h.update(hash(&c.documents).as_bytes());
    }
    hex::encode(h.finalize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranges_of_mixed_id_types_lose_and_repeat_nothing() {
    let client = mongo_client().await;
    let db_name = unique_db("ranges");
    let restored_name = format!("{db_name}_r");
    let db = client.database(&db_name);
    seed(&db).await;

    let cap = Captured::start(&unique_name("ranges")).await;
    // Parallelism 16: four cursors (ranges) of up to four sealers each.
    let mut settings = cap.snapshot_settings(&db_name);
    settings.parallelism = 16;
    settings.max_segment_bytes = 128 * 1024;
    for name in ["mixed", "collated"] {
        let coll = db.collection::<RawDocumentBuf>(name);
        let plan = ranges::plan(&coll, 4, settings.max_segment_bytes)
            .await
            .unwrap();
        assert_eq!(
            plan.ranges().len(),
            4,
            "{name}: a collection of ~1.8 MB in 128 KiB parts is read as 4 ranges: {plan:?}"
        );
    }

    // A quiet snapshot holds exactly the source's documents, each once.
    let quiet = cap.snapshot_with(&settings).await;
    for name in ["mixed", "collated"] {
        let ns = format!("{db_name}.{name}");
        let stored = snapshot_documents(&cap, &quiet, &ns).await;
        let mut live: Vec<Vec<u8>> = db_state(&client, &db_name).await[name].documents.clone();
        live.sort();
        let ids = |docs: &[Vec<u8>], not_in: &[Vec<u8>]| -> Vec<String> {
            docs.iter()
                .filter(|d| not_in.binary_search(d).is_err())
                .map(|d| {
                    format!(
                        "{:?}",
                        RawDocumentBuf::from_bytes(d.clone()).unwrap().get("_id")
                    )
                })
                .collect()
        };
        assert_eq!(
            stored.len(),
            live.len(),
            "{ns}: documents in the snapshot; missing {:?}, extra {:?}",
            ids(&live, &stored),
            ids(&stored, &live)
        );
        assert!(
            stored == live,
            "{ns}: the snapshot's documents differ from the collection's"
        );
        assert!(
            quiet
                .collections
                .iter()
                .find(|c| c.ns == ns)
                .unwrap()
                .parts
                .len()
                >= 4,
            "{ns}: parts of every range"
        );
    }

    // A snapshot during writes to every type, then restored: equal to the source.
    let writer = {
        let coll = db.collection::<Document>("mixed");
        tokio::spawn(async move {
            for i in 0..400i64 {
                let id = mixed_id(i * 7 % DOCS);
                coll.update_one(doc! {"_id": id.clone()}, doc! {"$inc": {"i": 1_000_000}})
                    .await
                    .unwrap();
                if i % 4 == 0 {
                    coll.delete_one(doc! {"_id": mixed_id((i * 11 + 3) % DOCS)})
                        .await
                        .unwrap();
                    coll.insert_one(mixed_doc(DOCS + i)).await.unwrap();
                }
            }
        })
    };
    let during = cap.snapshot_with(&settings).await;
    writer.await.unwrap();
    let (dir, _repo) = cap.finish().await;
    let source = db_state(&client, &db_name).await;
    let (repo, keyring) = mc_tests::restore::repo_paths(dir.path());
    let out = mc_restore(
        &[
            "--at",
            "latest",
            "--target",
            &mongodb_uri(),
            "--repo",
            repo.to_str().unwrap(),
            "--ns",
            &format!("{db_name}.*"),
            "--ns-from",
            &db_name,
            "--ns-to",
            &restored_name,
            "--drop",
        ],
        &keyring,
    );
    assert!(out.status.success(), "{}", show(&out));
    let restored = db_state(&client, &restored_name).await;
    assert_same_state("the restored copy", &source, &restored);
    assert_eq!(state_hash(&source), state_hash(&restored));
    assert!(during.collections.iter().all(|c| c.kind == "collection"));
    client.database(&restored_name).drop().await.unwrap();
    db.drop().await.unwrap();
}
