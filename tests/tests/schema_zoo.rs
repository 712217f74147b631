//! The schema zoo (issue 14): ordinary production MongoDB schemas and operations, captured by
//! the real agent code and restored by the real `mc-restore` binary at three points of one run,
//! each restored database compared with the source's exact state recorded at that point.
//!
//! Every shape lives in a collection named after it (`unique_moved`, `capped_size_wrap`, …), so
//! a failure names the shape, the point and the first difference. Shapes that exist before the
//! snapshot are restored by loading it; what the window creates or changes, by oplog replay:
//!
//! * point A: right after the snapshot (the load path, plus unique values moved while the
//!   snapshot read),
//! * point B: after the first half of the window's workload,
//! * point C: at the end.
//!
//! The shapes: unique indexes whose values move between documents (plain, compound, sparse,
//! partial, in one batch, in a transaction, during the snapshot); validators added after
//! violating documents exist (moderate, warn, error, bypass); 8, 12 and ~16 MB documents and a
//! transaction over 16 MB; capped collections wrapping (by size, by count, converted, cloned)
//! compared in natural order; `$out` and `$merge`; views, time-series and clustered collections
//! created, modified and dropped; TTL, collation, text, 2dsphere, hashed, wildcard and hidden
//! indexes; `_id`s of every type; names with dots, spaces and non-ASCII, fields with `$` and `.`,
//! a document nested 100 levels; `renameCollection` across databases and `dropDatabase`.
//! Options (validator, capped size, collation, clustered, time-series, view pipeline) and full
//! index specifications are compared too (`mc_tests::restore::state_differences`).

use std::str::FromStr;

use futures::TryStreamExt;
use mc_agent::snapshot::SnapshotSettings;
use mc_core::format::OplogTs;
use mc_tests::mongod::PrivateReplSet;
use mc_tests::restore::{
    db_state, marker_point, mc_restore, repo_paths, show, state_differences, Captured, DbState,
};
use mc_tests::*;
use mongodb::bson::{
    doc, oid::ObjectId, spec::BinarySubtype, Binary, Bson, DateTime, Decimal128, Document,
    RawDocumentBuf, Timestamp,
};
use mongodb::{Client, Database};

const MIB: usize = 1024 * 1024;

/// The four databases of the zoo: the main one, the other end of cross-database renames, one
/// with a non-ASCII name, and one dropped and re-created in the window.
struct Zoo {
    main: String,
    other: String,
    intl: String,
    dropped: String,
}

impl Zoo {
    fn all(&self) -> [&str; 4] {
        [&self.main, &self.other, &self.intl, &self.dropped]
    }
}

/// Runs a command, failing the test with the command's name if it fails or reports write errors
/// (a zoo whose source operations silently fail would test nothing).
async fn run(db: &Database, command: Document) -> Document {
    let name = command.keys().next().cloned().unwrap_or_default();
    let coll = command.get_str(&name).unwrap_or_default().to_owned();
    let reply = db
        .run_command(command)
        .await
        .unwrap_or_else(|e| panic!("{name} {}.{coll}: {e}", db.name()));
    assert!(
        !reply.contains_key("writeErrors") && !reply.contains_key("writeConcernError"),
        "{name} {}.{coll}: {reply}",
        db.name()
    );
    reply
}

/// Inserts documents with the `insert` command (one batch, and field names the driver's
/// helpers might question).
async fn insert(db: &Database, coll: &str, docs: Vec<Document>) {
    let n = docs.len() as i32;
    let reply = run(db, doc! {"insert": coll, "documents": docs}).await;
    assert_eq!(
        reply.get_i32("n").unwrap_or(-1),
        n,
        "insert {coll}: {reply}"
    );
}

/// Updates with one `update` command: `(filter, update)` pairs applied in order, each matching
/// exactly one document, all landing together in the oplog.
async fn update(db: &Database, coll: &str, updates: Vec<(Document, Bson)>) {
    let n = updates.len() as i32;
    let updates: Vec<Document> = updates
        .into_iter()
        .map(|(q, u)| doc! {"q": q, "u": u})
        .collect();
    let reply = run(
        db,
        doc! {"update": coll, "updates": updates, "ordered": true},
    )
    .await;
    assert_eq!(
        reply.get_i32("n").unwrap_or(-1),
        n,
        "update {coll}: {reply}"
    );
}

/// Deletes one document per filter with one `delete` command.
async fn delete(db: &Database, coll: &str, filters: Vec<Document>) {
    let n = filters.len() as i32;
    let deletes: Vec<Document> = filters
        .into_iter()
        .map(|q| doc! {"q": q, "limit": 1})
        .collect();
    let reply = run(db, doc! {"delete": coll, "deletes": deletes}).await;
    assert_eq!(
        reply.get_i32("n").unwrap_or(-1),
        n,
        "delete {coll}: {reply}"
    );
}

fn set(fields: Document) -> Bson {
    Bson::Document(doc! {"$set": fields})
}

async fn create_index(db: &Database, coll: &str, indexes: Vec<Document>) {
    run(db, doc! {"createIndexes": coll, "indexes": indexes}).await;
}

fn user(i: i32) -> Document {
    doc! {"_id": i, "email": format!("u{i}@example.com"), "name": format!("User {i}")}
}

/// A document of exactly `size` bytes of BSON.
fn sized(id: i32, size: usize, fill: char) -> Document {
    let mut d = doc! {"_id": id, "fill": fill.to_string(), "blob": ""};
    let overhead = bson_len(&d);
    d.insert("blob", fill.to_string().repeat(size - overhead));
    assert_eq!(bson_len(&d), size);
    d
}

fn bson_len(d: &Document) -> usize {
    RawDocumentBuf::try_from(d).unwrap().as_bytes().len()
}

/// Just under the 16 MiB BSON limit, leaving room for an update's small field.
const NEAR_16: usize = 16 * MIB - 1024;

/// Ten documents of a capped collection's batch `b`: `_id`s that do not follow insertion order,
/// so natural order and `_id` order differ.
fn capped_batch(b: i32, pad: usize) -> Vec<Document> {
    (0..10)
        .map(|k| {
            let n = b * 10 + k;
            doc! {"_id": (n * 7919) % 100_003, "batch": b, "n": n, "pad": "p".repeat(pad)}
        })
        .collect()
}

async fn capped_batches(db: &Database, coll: &str, batches: std::ops::Range<i32>, pad: usize) {
    for b in batches {
        insert(db, coll, capped_batch(b, pad)).await;
    }
}

async fn aggregate(db: &Database, coll: &str, pipeline: Vec<Document>) {
    let _: Vec<Document> = db
        .collection::<Document>(coll)
        .aggregate(pipeline)
        .await
        .unwrap_or_else(|e| panic!("aggregate on {coll}: {e}"))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("aggregate on {coll}: {e}"));
}

fn measurement(id: i32, meta: &str) -> Document {
    doc! {
        "_id": id,
        "t": DateTime::from_millis(1_700_000_000_000 + i64::from(id) * 7_000),
        "m": meta,
        "v": f64::from(id) / 4.0,
    }
}

/// `levels` documents nested inside each other under `a`, with `leaf` at the bottom.
fn nested(levels: usize, leaf: Document) -> Document {
    let mut d = leaf;
    for _ in 0..levels {
        d = doc! {"a": d};
    }
    d
}

/// The `_id`s of many BSON types (none equal to another as MongoDB compares them).
fn typed_ids(offset: i32) -> Vec<Bson> {
    let o = offset;
    vec![
        Bson::String(format!("id-{o}")),
        Bson::Int32(7 + o),
        Bson::Int64((1 << 40) + i64::from(o)),
        Bson::Double(2.5 + f64::from(o)),
        Bson::Decimal128(Decimal128::from_str(&format!("3.75{o}1")).unwrap()),
        Bson::ObjectId(
            ObjectId::parse_str(format!("65a0000000000000000000{:02x}", o % 256)).unwrap(),
        ),
        Bson::DateTime(DateTime::from_millis(1_600_000_000_000 + i64::from(o))),
        Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![0, 1, 2, o as u8],
        }),
        Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: vec![o as u8; 16],
        }),
        Bson::Document(doc! {"a": o, "b": "x"}),
        Bson::Document(doc! {"b": "x", "a": o}),
        Bson::Boolean(o % 2 == 0),
        Bson::Timestamp(Timestamp {
            time: 1_000 + o as u32,
            increment: 1,
        }),
    ]
}

/// Before capture starts: every shape the snapshot loads.
async fn before_snapshot(client: &Client, zoo: &Zoo) {
    let db = client.database(&zoo.main);

    // 1. Unique indexes.
    for coll in [
        "unique_moved",
        "unique_swapped",
        "unique_reinserted",
        "unique_txn",
    ] {
        insert(&db, coll, (0..20).map(user).collect()).await;
        create_index(
            &db,
            coll,
            vec![doc! {"key": {"email": 1}, "name": "email_1", "unique": true}],
        )
        .await;
    }
    insert(&db, "unique_during_snapshot", (0..400).map(user).collect()).await;
    create_index(
        &db,
        "unique_during_snapshot",
        vec![doc! {"key": {"email": 1}, "name": "email_1", "unique": true}],
    )
    .await;
    insert(
        &db,
        "unique_compound",
        (0..30)
            .map(|i| doc! {"_id": i, "org": i % 3, "login": format!("l{}", i / 3)})
            .collect(),
    )
    .await;
    create_index(
        &db,
        "unique_compound",
        vec![doc! {"key": {"org": 1, "login": 1}, "name": "org_login", "unique": true}],
    )
    .await;
    insert(
        &db,
        "unique_sparse",
        (0..20)
            .map(|i| {
                if i % 2 == 0 {
                    doc! {"_id": i, "handle": format!("h{i}")}
                } else {
                    doc! {"_id": i}
                }
            })
            .collect(),
    )
    .await;
    create_index(
        &db,
        "unique_sparse",
        vec![doc! {"key": {"handle": 1}, "name": "handle_1", "unique": true, "sparse": true}],
    )
    .await;
    // Active users have distinct emails; inactive ones may share them.
    insert(
        &db,
        "unique_partial",
        (0..20)
            .map(|i| doc! {"_id": i, "email": format!("p{}@example.com", i % 10), "active": i < 10})
            .collect(),
    )
    .await;
    create_index(
        &db,
        "unique_partial",
        vec![
            doc! {"key": {"email": 1}, "name": "email_active", "unique": true,
            "partialFilterExpression": {"active": true}},
        ],
    )
    .await;

    // 2. Validators added after violating documents exist.
    let people = |bad_from: i32| -> Vec<Document> {
        (0..15)
            .map(|i| {
                if i < bad_from {
                    doc! {"_id": i, "name": format!("n{i}"), "qty": i, "status": "a"}
                } else {
                    doc! {"_id": i, "name": i, "qty": -i, "status": "zzz"}
                }
            })
            .collect()
    };
    for coll in [
        "valid_schema_moderate_pre",
        "valid_query_error_pre",
        "valid_warn_pre",
        "valid_window_moderate",
        "valid_window_strict",
    ] {
        insert(&db, coll, people(10)).await;
    }
    run(
        &db,
        doc! {"collMod": "valid_schema_moderate_pre",
        "validator": {"$jsonSchema": {"bsonType": "object", "required": ["name"],
            "properties": {"name": {"bsonType": "string"}}}},
        "validationLevel": "moderate"},
    )
    .await;
    run(
        &db,
        doc! {"collMod": "valid_query_error_pre", "validator": {"qty": {"$gte": 0}},
        "validationLevel": "strict", "validationAction": "error"},
    )
    .await;
    run(
        &db,
        doc! {"collMod": "valid_warn_pre",
        "validator": {"$jsonSchema": {"required": ["sku"]}}, "validationAction": "warn"},
    )
    .await;

    // 3. Large documents.
    insert(&db, "large_pre", vec![sized(1, 8 * MIB, 'a')]).await;
    insert(&db, "large_pre", vec![sized(2, 12 * MIB, 'b')]).await;
    insert(&db, "large_pre", vec![sized(3, NEAR_16, 'c')]).await;
    db.create_collection("large_txn").await.unwrap();

    // 4. Capped collections, wrapped many times already.
    run(
        &db,
        doc! {"create": "capped_size_wrap", "capped": true, "size": 64 * 1024},
    )
    .await;
    capped_batches(&db, "capped_size_wrap", 0..40, 300).await;
    run(
        &db,
        doc! {"create": "capped_max_wrap", "capped": true, "size": 1024 * 1024, "max": 200},
    )
    .await;
    capped_batches(&db, "capped_max_wrap", 0..50, 20).await;
    insert(
        &db,
        "capped_converted",
        (0..100)
            .map(|i| doc! {"_id": i, "pad": "q".repeat(100)})
            .collect(),
    )
    .await;
    insert(
        &db,
        "capped_clone_src",
        (0..100)
            .map(|i| doc! {"_id": i, "pad": "r".repeat(100)})
            .collect(),
    )
    .await;

    // 5. Aggregation sources and targets.
    insert(
        &db,
        "agg_source",
        (0..100)
            .map(|i| doc! {"_id": i, "cat": i % 5, "v": i})
            .collect(),
    )
    .await;
    insert(
        &db,
        "agg_out_existing",
        (0..10)
            .map(|i| doc! {"_id": 100 + i, "old": true})
            .collect(),
    )
    .await;
    create_index(
        &db,
        "agg_out_existing",
        vec![doc! {"key": {"total": -1}, "name": "total_desc"}],
    )
    .await;
    insert(
        &db,
        "agg_merged",
        (0..3).map(|i| doc! {"_id": i, "kept": "yes"}).collect(),
    )
    .await;

    // 6. Views, time-series and clustered collections.
    run(
        &db,
        doc! {"create": "view_pre", "viewOn": "agg_source", "pipeline": [{"$match": {"cat": 1}}]},
    )
    .await;
    run(
        &db,
        doc! {"create": "ts_pre", "timeseries": {"timeField": "t", "metaField": "m", "granularity": "seconds"}},
    )
    .await;
    insert(
        &db,
        "ts_pre",
        (0..100)
            .map(|i| measurement(i, ["s1", "s2", "s3"][i as usize % 3]))
            .collect(),
    )
    .await;
    // A secondary index of a time-series collection (the snapshot lists it on the collection,
    // the server keeps it on the buckets).
    create_index(
        &db,
        "ts_pre",
        vec![doc! {"key": {"m": 1, "t": -1}, "name": "m_t"}],
    )
    .await;
    run(
        &db,
        doc! {"create": "clustered_pre", "clusteredIndex": {"key": {"_id": 1}, "unique": true}},
    )
    .await;
    insert(
        &db,
        "clustered_pre",
        (0..100)
            .map(|i| doc! {"_id": format!("k{i:04}"), "v": i})
            .collect(),
    )
    .await;

    // 7. Index kinds.
    let ten_years = 10 * 365 * 24 * 3600;
    insert(
        &db,
        "idx_ttl",
        (0..20)
            .map(|i| doc! {"_id": i, "at": DateTime::now(), "seen": DateTime::now()})
            .collect(),
    )
    .await;
    create_index(
        &db,
        "idx_ttl",
        vec![doc! {"key": {"at": 1}, "name": "at_ttl", "expireAfterSeconds": ten_years}],
    )
    .await;
    run(
        &db,
        doc! {"create": "idx_collation", "collation": {"locale": "fr", "strength": 2}},
    )
    .await;
    insert(
        &db,
        "idx_collation",
        ["Émile", "Zoé", "Chloé", "Ève", "Noël", "andré", "Bob"]
            .iter()
            .enumerate()
            .map(|(i, n)| doc! {"_id": i as i32, "name": *n})
            .collect(),
    )
    .await;
    create_index(
        &db,
        "idx_collation",
        vec![doc! {"key": {"name": 1}, "name": "name_ci", "unique": true}],
    )
    .await;
    insert(
        &db,
        "idx_text",
        (0..20)
            .map(|i| doc! {"_id": i, "title": format!("titre {i}"), "body": "le chat et le chien", "lang": "french"})
            .collect(),
    )
    .await;
    create_index(
        &db,
        "idx_text",
        vec![
            doc! {"key": {"title": "text", "body": "text"}, "name": "fulltext",
            "weights": {"title": 10}, "default_language": "french", "language_override": "lang"},
        ],
    )
    .await;
    insert(
        &db,
        "idx_geo",
        (0..20)
            .map(|i| doc! {"_id": i, "loc": {"type": "Point", "coordinates": [f64::from(i), 45.0]}})
            .collect(),
    )
    .await;
    create_index(
        &db,
        "idx_geo",
        vec![doc! {"key": {"loc": "2dsphere"}, "name": "loc_2dsphere"}],
    )
    .await;
    insert(
        &db,
        "idx_hashed",
        (0..20).map(|i| doc! {"_id": i, "k": i * 31}).collect(),
    )
    .await;
    create_index(
        &db,
        "idx_hashed",
        vec![doc! {"key": {"k": "hashed"}, "name": "k_hashed"}],
    )
    .await;
    insert(
        &db,
        "idx_wildcard",
        (0..20)
            .map(|i| doc! {"_id": i, "attrs": {format!("a{}", i % 4): i, "color": "red"}})
            .collect(),
    )
    .await;
    create_index(
        &db,
        "idx_wildcard",
        vec![doc! {"key": {"attrs.$**": 1}, "name": "attrs_wildcard"}],
    )
    .await;
    insert(
        &db,
        "idx_hidden",
        (0..20).map(|i| doc! {"_id": i, "a": i, "b": -i}).collect(),
    )
    .await;
    create_index(
        &db,
        "idx_hidden",
        vec![doc! {"key": {"a": 1}, "name": "a_hidden", "hidden": true}],
    )
    .await;
    insert(
        &db,
        "idx_window",
        (0..20)
            .map(|i| doc! {"_id": i, "t": format!("mot {i}"), "loc": {"type": "Point", "coordinates": [1.0, f64::from(i)]}, "k": i, "attrs": {"x": i}, "at": DateTime::now()})
            .collect(),
    )
    .await;

    // 8. `_id`s of many types.
    insert(
        &db,
        "id_types",
        typed_ids(0)
            .into_iter()
            .map(|id| doc! {"_id": id, "n": 0})
            .collect(),
    )
    .await;
    insert(
        &db,
        "id_types",
        vec![
            doc! {"_id": Bson::MinKey, "n": 0},
            doc! {"_id": Bson::MaxKey, "n": 0},
            doc! {"_id": Bson::Null, "n": 0},
        ],
    )
    .await;

    // 9. Names, field names and nesting (the non-ASCII database).
    let intl = client.database(&zoo.intl);
    insert(
        &intl,
        "a.b c",
        (0..20).map(|i| doc! {"_id": i, "v": i}).collect(),
    )
    .await;
    insert(
        &intl,
        "résumés",
        (0..20)
            .map(|i| doc! {"_id": format!("clé-{i}"), "nom": "Ça été ünïcödé 日本語", "n": i})
            .collect(),
    )
    .await;
    insert(
        &intl,
        "fields_dollar_dot",
        (0..5)
            .map(|i| {
                doc! {"_id": i, "a.b": i, "$price": i * 2, "nested": {"$x": i, "y.z": {"$w.v": i}}}
            })
            .collect(),
    )
    .await;
    insert(
        &intl,
        "nested_100",
        vec![
            {
                let mut d = nested(99, doc! {"leaf": 0});
                d.insert("_id", 0);
                d
            },
            doc! {"_id": 1, "shallow": true},
        ],
    )
    .await;

    // While the snapshot reads (see `during_snapshot_others`).
    insert(
        &db,
        "during_indexed",
        (0..200).map(|i| doc! {"_id": i, "k": i % 17}).collect(),
    )
    .await;
    run(
        &db,
        doc! {"create": "during_capped", "capped": true, "size": 16 * 1024},
    )
    .await;
    capped_batches(&db, "during_capped", 0..10, 200).await;
    insert(&db, "during_large", vec![sized(1, 12 * MIB, 'k')]).await;
    insert(
        &db,
        "during_dropped",
        (0..50).map(|i| doc! {"_id": i}).collect(),
    )
    .await;

    // 10. Across databases.
    insert(
        &db,
        "xdb_moved",
        (0..50).map(|i| doc! {"_id": i, "v": i}).collect(),
    )
    .await;
    create_index(
        &db,
        "xdb_moved",
        vec![doc! {"key": {"v": -1}, "name": "v_desc"}],
    )
    .await;
    let other = client.database(&zoo.other);
    insert(
        &other,
        "xdb_stay",
        (0..30).map(|i| doc! {"_id": i, "w": i}).collect(),
    )
    .await;
    let dropped = client.database(&zoo.dropped);
    insert(
        &dropped,
        "before",
        (0..30).map(|i| doc! {"_id": i, "gen": 0}).collect(),
    )
    .await;
}

/// While the snapshot reads: a capped collection wraps, a 12 MB document changes, an index is
/// built, a collection is created and filled, another dropped: the load reads a fuzzy state
/// that replay from the snapshot's start must make exact.
async fn during_snapshot_others(db: Database) {
    for b in 10..40 {
        insert(&db, "during_capped", capped_batch(b, 200)).await;
        if b == 20 {
            update(
                &db,
                "during_large",
                vec![(doc! {"_id": 1}, set(doc! {"fill": "K", "round": b}))],
            )
            .await;
            create_index(
                &db,
                "during_indexed",
                vec![doc! {"key": {"k": 1}, "name": "k_1"}],
            )
            .await;
        }
        if b == 25 {
            insert(
                &db,
                "during_created",
                (0..50).map(|i| doc! {"_id": i}).collect(),
            )
            .await;
            db.collection::<Document>("during_dropped")
                .drop()
                .await
                .unwrap();
        }
    }
    update(
        &db,
        "during_large",
        vec![(doc! {"_id": 1}, Bson::Document(sized(1, 8 * MIB, 'l')))],
    )
    .await;
}

/// While the snapshot reads: swap unique values through a temporary value, over and over.
async fn during_snapshot(db: Database) {
    for r in 0..60 {
        let (a, b) = (r % 400, (r * 37 + 11) % 400);
        if a == b {
            continue;
        }
        let coll = db.collection::<Document>("unique_during_snapshot");
        let email = |id: i32| {
            let coll = coll.clone();
            async move {
                coll.find_one(doc! {"_id": id})
                    .await
                    .unwrap()
                    .unwrap()
                    .get_str("email")
                    .unwrap()
                    .to_owned()
            }
        };
        let (ea, eb) = (email(a).await, email(b).await);
        update(
            &db,
            "unique_during_snapshot",
            vec![(doc! {"_id": a}, set(doc! {"email": format!("tmp-{r}")}))],
        )
        .await;
        update(
            &db,
            "unique_during_snapshot",
            vec![(doc! {"_id": b}, set(doc! {"email": &ea}))],
        )
        .await;
        update(
            &db,
            "unique_during_snapshot",
            vec![(doc! {"_id": a}, set(doc! {"email": &eb}))],
        )
        .await;
    }
}

/// The first half of the window (between points A and B).
async fn window_b(client: &Client, zoo: &Zoo) {
    let db = client.database(&zoo.main);

    // 1. Unique values moving, several in one batch.
    update(
        &db,
        "unique_moved",
        vec![
            (doc! {"_id": 1}, set(doc! {"email": "u1-new@example.com"})),
            (doc! {"_id": 2}, set(doc! {"email": "u1@example.com"})),
            (doc! {"_id": 3}, set(doc! {"email": "u2@example.com"})),
            (doc! {"_id": 4}, set(doc! {"email": "u3@example.com"})),
        ],
    )
    .await;
    update(
        &db,
        "unique_swapped",
        vec![
            (doc! {"_id": 1}, set(doc! {"email": "tmp@example.com"})),
            (doc! {"_id": 2}, set(doc! {"email": "u1@example.com"})),
            (doc! {"_id": 1}, set(doc! {"email": "u2@example.com"})),
        ],
    )
    .await;
    delete(&db, "unique_reinserted", vec![doc! {"_id": 1}]).await;
    insert(
        &db,
        "unique_reinserted",
        vec![doc! {"_id": 101, "email": "u1@example.com", "name": "New 1"}],
    )
    .await;
    delete(
        &db,
        "unique_reinserted",
        vec![doc! {"_id": 2}, doc! {"_id": 3}],
    )
    .await;
    insert(
        &db,
        "unique_reinserted",
        vec![
            doc! {"_id": 103, "email": "u2@example.com"},
            doc! {"_id": 102, "email": "u3@example.com"},
        ],
    )
    .await;
    update(
        &db,
        "unique_compound",
        vec![
            (doc! {"_id": 0}, set(doc! {"login": "l0-old"})), // (0, l0) → (0, l0-old)
            (doc! {"_id": 1}, set(doc! {"org": 0})),          // (1, l0) → (0, l0)
            (doc! {"_id": 4}, set(doc! {"login": "l0"})),     // (1, l1) → (1, l0)
        ],
    )
    .await;
    update(
        &db,
        "unique_sparse",
        vec![
            (
                doc! {"_id": 0},
                Bson::Document(doc! {"$unset": {"handle": ""}}),
            ),
            (doc! {"_id": 1}, set(doc! {"handle": "h0"})),
            (
                doc! {"_id": 2},
                Bson::Document(doc! {"$unset": {"handle": ""}}),
            ),
        ],
    )
    .await;
    insert(
        &db,
        "unique_sparse",
        vec![doc! {"_id": 100}, doc! {"_id": 101, "handle": "h2"}],
    )
    .await;
    update(
        &db,
        "unique_partial",
        vec![
            (doc! {"_id": 1}, set(doc! {"active": false})),
            (doc! {"_id": 11}, set(doc! {"active": true})),
            (doc! {"_id": 2}, set(doc! {"email": "p2-new@example.com"})),
            (doc! {"_id": 12}, set(doc! {"active": true})),
        ],
    )
    .await;
    let users = db.collection::<Document>("unique_txn");
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    users
        .update_one(
            doc! {"_id": 1},
            doc! {"$set": {"email": "u1-txn@example.com"}},
        )
        .session(&mut session)
        .await
        .unwrap();
    users
        .update_one(doc! {"_id": 2}, doc! {"$set": {"email": "u1@example.com"}})
        .session(&mut session)
        .await
        .unwrap();
    users
        .delete_one(doc! {"_id": 3})
        .session(&mut session)
        .await
        .unwrap();
    users
        .insert_one(doc! {"_id": 103, "email": "u3@example.com"})
        .session(&mut session)
        .await
        .unwrap();
    users
        .update_one(doc! {"_id": 4}, doc! {"$set": {"email": "u2@example.com"}})
        .session(&mut session)
        .await
        .unwrap();
    session.commit_transaction().await.unwrap();

    // 2. Validators changing in the window.
    update(
        &db,
        "valid_schema_moderate_pre",
        vec![
            (doc! {"_id": 10}, set(doc! {"touched": 1})), // invalid stays invalid: moderate
            (doc! {"_id": 0}, set(doc! {"name": "renamed"})),
        ],
    )
    .await;
    insert(
        &db,
        "valid_schema_moderate_pre",
        vec![doc! {"_id": 100, "name": "valid"}],
    )
    .await;
    insert(
        &db,
        "valid_query_error_pre",
        vec![doc! {"_id": 100, "qty": 5}],
    )
    .await;
    update(
        &db,
        "valid_query_error_pre",
        vec![(doc! {"_id": 0}, set(doc! {"qty": 50}))],
    )
    .await;
    delete(&db, "valid_query_error_pre", vec![doc! {"_id": 11}]).await;
    insert(
        &db,
        "valid_warn_pre",
        vec![
            doc! {"_id": 100, "no_sku": true},
            doc! {"_id": 101, "sku": "s"},
        ],
    )
    .await;
    run(
        &db,
        doc! {"collMod": "valid_window_moderate",
        "validator": {"$jsonSchema": {"bsonType": "object", "required": ["name"],
            "properties": {"name": {"bsonType": "string"}, "qty": {"minimum": 0}}}},
        "validationLevel": "moderate", "validationAction": "error"},
    )
    .await;
    update(
        &db,
        "valid_window_moderate",
        vec![(doc! {"_id": 12}, set(doc! {"still": "invalid"}))],
    )
    .await;
    insert(
        &db,
        "valid_window_moderate",
        vec![doc! {"_id": 100, "name": "ok", "qty": 1}],
    )
    .await;
    run(
        &db,
        doc! {"collMod": "valid_window_strict", "validator": {"status": {"$in": ["a", "b"]}},
        "validationLevel": "strict", "validationAction": "error"},
    )
    .await;
    insert(
        &db,
        "valid_window_strict",
        vec![doc! {"_id": 100, "status": "b"}],
    )
    .await;
    update(
        &db,
        "valid_window_strict",
        vec![(doc! {"_id": 13}, set(doc! {"status": "a"}))],
    )
    .await;
    run(
        &db,
        doc! {"create": "valid_window_created", "validator": {"$jsonSchema": {"required": ["must"]}}},
    )
    .await;
    insert(
        &db,
        "valid_window_created",
        vec![doc! {"_id": 1, "must": 1}],
    )
    .await;
    run(
        &db,
        doc! {"insert": "valid_window_created", "documents": [{"_id": 2, "bypassed": true}],
        "bypassDocumentValidation": true},
    )
    .await;

    // 3. Large documents.
    update(
        &db,
        "large_pre",
        vec![
            (doc! {"_id": 2}, set(doc! {"small": 1})),
            (doc! {"_id": 3}, set(doc! {"tail": 42})),
        ],
    )
    .await;
    update(
        &db,
        "large_pre",
        vec![(doc! {"_id": 1}, Bson::Document(sized(1, 12 * MIB, 'd')))],
    )
    .await;
    insert(&db, "large_window", vec![sized(1, 8 * MIB, 'e')]).await;
    insert(&db, "large_window", vec![sized(2, 12 * MIB, 'f')]).await;
    insert(&db, "large_window", vec![sized(3, NEAR_16, 'g')]).await;
    update(
        &db,
        "large_window",
        vec![(doc! {"_id": 2}, set(doc! {"fill": "F"}))],
    )
    .await;
    let big = db.collection::<Document>("large_txn");
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    for i in 0..3 {
        big.insert_one(sized(i, 6 * MIB, 'h'))
            .session(&mut session)
            .await
            .unwrap();
    }
    big.update_one(doc! {"_id": 0}, doc! {"$set": {"fill": "H"}})
        .session(&mut session)
        .await
        .unwrap();
    session.commit_transaction().await.unwrap();
    client
        .database("local")
        .collection::<Document>("oplog.rs")
        .find_one(doc! {"o.partialTxn": true, "o.applyOps.ns": format!("{}.large_txn", zoo.main)})
        .await
        .unwrap()
        .expect("an 18 MB transaction is split into partial oplog entries");

    // 4. Capped collections.
    capped_batches(&db, "capped_size_wrap", 40..80, 300).await;
    capped_batches(&db, "capped_max_wrap", 50..90, 20).await;
    run(
        &db,
        doc! {"convertToCapped": "capped_converted", "size": 8 * 1024},
    )
    .await;
    capped_batches(&db, "capped_converted", 1000..1005, 100).await;
    run(
        &db,
        doc! {"cloneCollectionAsCapped": "capped_clone_src", "toCollection": "capped_cloned",
        "size": 8 * 1024},
    )
    .await;
    capped_batches(&db, "capped_cloned", 1000..1005, 100).await;

    // 5. $out and $merge.
    insert(
        &db,
        "agg_source",
        (100..120)
            .map(|i| doc! {"_id": i, "cat": i % 5, "v": i})
            .collect(),
    )
    .await;
    let group = doc! {"$group": {"_id": "$cat", "total": {"$sum": "$v"}, "n": {"$sum": 1}}};
    aggregate(
        &db,
        "agg_source",
        vec![
            group.clone(),
            doc! {"$sort": {"_id": 1}},
            doc! {"$out": "agg_out_new"},
        ],
    )
    .await;
    aggregate(
        &db,
        "agg_source",
        vec![
            group.clone(),
            doc! {"$sort": {"_id": 1}},
            doc! {"$out": "agg_out_existing"},
        ],
    )
    .await;
    aggregate(
        &db,
        "agg_source",
        vec![
            group.clone(),
            doc! {"$merge": {"into": "agg_merged", "whenMatched": "merge", "whenNotMatched": "insert"}},
        ],
    )
    .await;

    // 6. Views, time-series, clustered.
    run(
        &db,
        doc! {"collMod": "view_pre", "viewOn": "agg_source", "pipeline": [{"$match": {"cat": 2}}, {"$project": {"v": 1}}]},
    )
    .await;
    run(
        &db,
        doc! {"create": "view_window", "viewOn": "agg_source", "pipeline": [{"$match": {"v": {"$gt": 50}}}]},
    )
    .await;
    run(
        &db,
        doc! {"create": "view_dropped", "viewOn": "agg_source", "pipeline": []},
    )
    .await;
    insert(
        &db,
        "ts_pre",
        (100..150)
            .map(|i| measurement(i, ["s1", "s2", "s3"][i as usize % 3]))
            .collect(),
    )
    .await;
    for coll in ["ts_window", "ts_dropped"] {
        run(
            &db,
            doc! {"create": coll, "timeseries": {"timeField": "t", "metaField": "m"}},
        )
        .await;
        create_index(&db, coll, vec![doc! {"key": {"m": 1}, "name": "m_1"}]).await;
        insert(
            &db,
            coll,
            (0..60)
                .map(|i| measurement(i, ["x", "y"][i as usize % 2]))
                .collect(),
        )
        .await;
    }
    insert(
        &db,
        "clustered_pre",
        (100..120)
            .map(|i| doc! {"_id": format!("k{i:04}"), "v": i})
            .collect(),
    )
    .await;
    update(
        &db,
        "clustered_pre",
        vec![(doc! {"_id": "k0005"}, set(doc! {"v": -5}))],
    )
    .await;
    delete(&db, "clustered_pre", vec![doc! {"_id": "k0006"}]).await;
    run(
        &db,
        doc! {"create": "clustered_window", "clusteredIndex": {"key": {"_id": 1}, "unique": true, "name": "by_id"}},
    )
    .await;
    insert(
        &db,
        "clustered_window",
        (0..50).map(|i| doc! {"_id": i * 3, "v": i}).collect(),
    )
    .await;

    // 7. Indexes.
    create_index(
        &db,
        "idx_ttl",
        vec![doc! {"key": {"seen": 1}, "name": "seen_ttl", "expireAfterSeconds": 300_000_000}],
    )
    .await;
    insert(
        &db,
        "idx_ttl",
        vec![doc! {"_id": 100, "at": DateTime::now(), "seen": DateTime::now()}],
    )
    .await;
    update(
        &db,
        "idx_collation",
        vec![
            (doc! {"_id": 0}, set(doc! {"name": "Zoë"})), // Émile → Zoë
            (doc! {"_id": 6}, set(doc! {"name": "émile"})), // Bob takes Émile (same at strength 2)
        ],
    )
    .await;
    insert(
        &db,
        "idx_text",
        vec![doc! {"_id": 100, "title": "nouveau", "body": "les oiseaux"}],
    )
    .await;
    insert(
        &db,
        "idx_geo",
        vec![doc! {"_id": 100, "loc": {"type": "Point", "coordinates": [2.35, 48.85]}}],
    )
    .await;
    insert(&db, "idx_hashed", vec![doc! {"_id": 100, "k": 7}]).await;
    insert(
        &db,
        "idx_wildcard",
        vec![doc! {"_id": 100, "attrs": {"new": {"deep": 1}}}],
    )
    .await;
    run(
        &db,
        doc! {"collMod": "idx_hidden", "index": {"name": "a_hidden", "hidden": false}},
    )
    .await;
    create_index(
        &db,
        "idx_hidden",
        vec![doc! {"key": {"b": 1}, "name": "b_hidden", "hidden": true}],
    )
    .await;
    create_index(
        &db,
        "idx_window",
        vec![
            doc! {"key": {"t": "text"}, "name": "t_text"},
            doc! {"key": {"loc": "2dsphere"}, "name": "loc_geo"},
            doc! {"key": {"k": "hashed"}, "name": "k_hashed"},
            doc! {"key": {"attrs.$**": 1}, "name": "attrs_wc"},
            doc! {"key": {"at": 1}, "name": "at_ttl", "expireAfterSeconds": 300_000_000},
            doc! {"key": {"k": 1}, "name": "k_partial", "partialFilterExpression": {"k": {"$gt": 5}}},
            doc! {"key": {"t": 1}, "name": "t_de", "collation": {"locale": "de", "strength": 1}},
        ],
    )
    .await;

    // 8. `_id` types.
    for id in typed_ids(0) {
        update(
            &db,
            "id_types",
            vec![(doc! {"_id": id}, Bson::Document(doc! {"$inc": {"n": 1}}))],
        )
        .await;
    }
    delete(&db, "id_types", vec![doc! {"_id": Bson::Null}]).await;
    insert(
        &db,
        "id_types",
        typed_ids(1)
            .into_iter()
            .map(|id| doc! {"_id": id, "n": 10})
            .collect(),
    )
    .await;
    insert(
        &db,
        "id_window",
        typed_ids(5)
            .into_iter()
            .map(|id| doc! {"_id": id, "n": 5})
            .collect(),
    )
    .await;

    // 9. Names.
    let intl = client.database(&zoo.intl);
    update(
        &intl,
        "a.b c",
        vec![(doc! {"_id": 1}, set(doc! {"v": "un"}))],
    )
    .await;
    insert(&intl, "a.b c", vec![doc! {"_id": 100}]).await;
    update(
        &intl,
        "résumés",
        vec![(doc! {"_id": "clé-1"}, set(doc! {"nom": "Ελληνικά"}))],
    )
    .await;
    insert(
        &intl,
        "dans l'été",
        vec![doc! {"_id": "é", "créé": "pendant la fenêtre"}],
    )
    .await;
    insert(
        &intl,
        "fields_dollar_dot",
        vec![doc! {"_id": 100, "x.y": 1, "$cost": 3, "o": {"$in": [1], "p.q": 2}}],
    )
    .await;
    update(
        &intl,
        "fields_dollar_dot",
        vec![(
            doc! {"_id": 1},
            Bson::Array(vec![Bson::Document(doc! {"$replaceWith": {"$setField": {
            "field": {"$literal": "$price"}, "input": "$$ROOT", "value": 1000}}})]),
        )],
    )
    .await;
    insert(
        &intl,
        "nested_100",
        vec![{
            let mut d = nested(99, doc! {"leaf": 2});
            d.insert("_id", 2);
            d
        }],
    )
    .await;
    let deep_path = format!("{}leaf", "a.".repeat(99));
    update(
        &intl,
        "nested_100",
        vec![(doc! {"_id": 0}, set(doc! {deep_path: 1}))],
    )
    .await;

    // 10. Across databases.
    let admin = client.database("admin");
    run(
        &admin,
        doc! {"renameCollection": format!("{}.xdb_moved", zoo.main),
        "to": format!("{}.xdb_arrived", zoo.other)},
    )
    .await;
    let other = client.database(&zoo.other);
    insert(&other, "xdb_arrived", vec![doc! {"_id": 100, "v": 100}]).await;
    let dropped = client.database(&zoo.dropped);
    dropped.drop().await.unwrap();
    insert(
        &dropped,
        "after_drop",
        (0..10).map(|i| doc! {"_id": i, "gen": 1}).collect(),
    )
    .await;
}

/// The second half of the window (between points B and C).
async fn window_c(client: &Client, zoo: &Zoo) {
    let db = client.database(&zoo.main);

    capped_batches(&db, "during_capped", 40..45, 200).await;
    for coll in ["during_indexed", "during_created", "during_large"] {
        update(
            &db,
            coll,
            vec![(doc! {"_id": 1}, set(doc! {"after": true}))],
        )
        .await;
    }

    update(
        &db,
        "unique_moved",
        vec![
            (doc! {"_id": 5}, set(doc! {"email": "u5-new@example.com"})),
            (doc! {"_id": 6}, set(doc! {"email": "u5@example.com"})),
            (doc! {"_id": 1}, set(doc! {"email": "u6@example.com"})),
        ],
    )
    .await;
    update(
        &db,
        "unique_swapped",
        vec![
            (doc! {"_id": 3}, set(doc! {"email": "tmp@example.com"})),
            (doc! {"_id": 4}, set(doc! {"email": "u3@example.com"})),
            (doc! {"_id": 3}, set(doc! {"email": "u4@example.com"})),
            (doc! {"_id": 1}, set(doc! {"email": "tmp@example.com"})),
            (doc! {"_id": 2}, set(doc! {"email": "u2@example.com"})),
            (doc! {"_id": 1}, set(doc! {"email": "u1@example.com"})),
        ],
    )
    .await;
    delete(&db, "unique_reinserted", vec![doc! {"_id": 101}]).await;
    insert(
        &db,
        "unique_reinserted",
        vec![doc! {"_id": 1, "email": "u1@example.com", "name": "Back"}],
    )
    .await;
    update(
        &db,
        "unique_compound",
        vec![
            (doc! {"_id": 4}, set(doc! {"org": 2, "login": "l99"})), // (1, l0) → (2, l99)
            (doc! {"_id": 1}, set(doc! {"org": 1})),                 // (0, l0) → (1, l0)
        ],
    )
    .await;
    update(
        &db,
        "unique_sparse",
        vec![
            (doc! {"_id": 1}, set(doc! {"handle": "tmp"})),
            (doc! {"_id": 4}, set(doc! {"handle": "h0"})),
            (doc! {"_id": 1}, set(doc! {"handle": "h4"})),
        ],
    )
    .await;
    update(
        &db,
        "unique_partial",
        vec![
            (doc! {"_id": 11}, set(doc! {"active": false})),
            (doc! {"_id": 1}, set(doc! {"active": true})),
        ],
    )
    .await;
    let users = db.collection::<Document>("unique_txn");
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    for (id, email) in [
        (5, "tmp@example.com"),
        (6, "u5@example.com"),
        (5, "u6@example.com"),
    ] {
        users
            .update_one(doc! {"_id": id}, doc! {"$set": {"email": email}})
            .session(&mut session)
            .await
            .unwrap();
    }
    session.commit_transaction().await.unwrap();

    update(
        &db,
        "valid_query_error_pre",
        vec![(doc! {"_id": 12}, set(doc! {"qty": 12}))],
    )
    .await;
    run(
        &db,
        doc! {"collMod": "valid_window_moderate", "validationAction": "warn"},
    )
    .await;
    insert(
        &db,
        "valid_window_moderate",
        vec![doc! {"_id": 101, "name": 1}],
    )
    .await;
    run(
        &db,
        doc! {"insert": "valid_window_strict", "documents": [{"_id": 101, "status": "bypassed"}],
        "bypassDocumentValidation": true},
    )
    .await;

    update(
        &db,
        "large_pre",
        vec![(doc! {"_id": 3}, Bson::Document(sized(3, NEAR_16, 'i')))],
    )
    .await;
    delete(&db, "large_pre", vec![doc! {"_id": 2}]).await;
    update(
        &db,
        "large_window",
        vec![
            (doc! {"_id": 1}, Bson::Document(sized(1, NEAR_16, 'j'))),
            (doc! {"_id": 2}, set(doc! {"late": true})),
        ],
    )
    .await;

    capped_batches(&db, "capped_size_wrap", 80..120, 300).await;
    capped_batches(&db, "capped_max_wrap", 90..130, 20).await;
    capped_batches(&db, "capped_converted", 1005..1020, 100).await;
    capped_batches(&db, "capped_cloned", 1005..1020, 100).await;

    update(
        &db,
        "agg_source",
        vec![(doc! {"_id": 0}, set(doc! {"v": 1000}))],
    )
    .await;
    let group = doc! {"$group": {"_id": "$cat", "total": {"$sum": "$v"}}};
    aggregate(
        &db,
        "agg_source",
        vec![group.clone(), doc! {"$out": "agg_out_new"}],
    )
    .await;
    aggregate(
        &db,
        "agg_source",
        vec![
            doc! {"$match": {"cat": 0}},
            doc! {"$project": {"v": 1}},
            doc! {"$out": "agg_out_later"},
        ],
    )
    .await;
    aggregate(
        &db,
        "agg_source",
        vec![
            group,
            doc! {"$merge": {"into": "agg_merged", "whenMatched": "replace", "whenNotMatched": "insert"}},
        ],
    )
    .await;

    run(
        &db,
        doc! {"collMod": "view_window", "viewOn": "agg_out_new", "pipeline": [{"$sort": {"total": -1}}]},
    )
    .await;
    db.collection::<Document>("view_dropped")
        .drop()
        .await
        .unwrap();
    insert(
        &db,
        "ts_pre",
        (150..200)
            .map(|i| measurement(i, ["s1", "s2", "s3"][i as usize % 3]))
            .collect(),
    )
    .await;
    let deleted = db
        .collection::<Document>("ts_pre")
        .delete_many(doc! {"m": "s1"})
        .await
        .unwrap();
    assert!(deleted.deleted_count > 0);
    db.collection::<Document>("ts_pre")
        .update_many(doc! {"m": "s2"}, doc! {"$set": {"m": "s4"}})
        .await
        .unwrap();
    insert(
        &db,
        "ts_window",
        (60..90).map(|i| measurement(i, "z")).collect(),
    )
    .await;
    db.collection::<Document>("ts_dropped")
        .drop()
        .await
        .unwrap();
    update(
        &db,
        "clustered_window",
        vec![(doc! {"_id": 3}, set(doc! {"v": "three"}))],
    )
    .await;
    delete(&db, "clustered_window", vec![doc! {"_id": 6}]).await;

    run(
        &db,
        doc! {"collMod": "idx_ttl", "index": {"name": "at_ttl", "expireAfterSeconds": 315_360_001}},
    )
    .await;
    run(
        &db,
        doc! {"collMod": "idx_hidden", "index": {"name": "a_hidden", "hidden": true}},
    )
    .await;
    run(&db, doc! {"dropIndexes": "idx_window", "index": "k_hashed"}).await;
    update(
        &db,
        "idx_text",
        vec![(doc! {"_id": 1}, set(doc! {"body": "la souris"}))],
    )
    .await;

    for id in typed_ids(1) {
        update(
            &db,
            "id_types",
            vec![(
                doc! {"_id": id.clone()},
                Bson::Document(doc! {"_id": id, "replaced": true}),
            )],
        )
        .await;
    }
    update(
        &db,
        "id_window",
        vec![(doc! {"_id": typed_ids(5)[4].clone()}, set(doc! {"n": 6}))],
    )
    .await;

    let intl = client.database(&zoo.intl);
    delete(&intl, "a.b c", vec![doc! {"_id": 2}]).await;
    update(
        &intl,
        "fields_dollar_dot",
        vec![(doc! {"_id": 100}, set(doc! {"plain": 1}))],
    )
    .await;

    let admin = client.database("admin");
    run(
        &admin,
        doc! {"renameCollection": format!("{}.xdb_stay", zoo.other),
        "to": format!("{}.xdb_from_other", zoo.main)},
    )
    .await;
    update(
        &db,
        "xdb_from_other",
        vec![(doc! {"_id": 1}, set(doc! {"w": "moved"}))],
    )
    .await;
    let dropped = client.database(&zoo.dropped);
    dropped.drop().await.unwrap();
    insert(
        &dropped,
        "before",
        (0..5).map(|i| doc! {"_id": i, "gen": 2}).collect(),
    )
    .await;
}

/// A point: its name, the oplog timestamp to restore to, and each database's state there.
struct Point {
    name: &'static str,
    at: OplogTs,
    states: Vec<(String, DbState)>,
}

/// Records a point: the workload is paused, so the source's state now is the state at the
/// marker's timestamp, which follows every write so far.
async fn record(name: &'static str, client: &Client, cap: &Captured, zoo: &Zoo) -> Point {
    let at = marker_point(client, &zoo.main).await;
    cap.settle().await;
    let mut states = Vec::new();
    for db in zoo.all() {
        states.push((db.to_owned(), db_state(client, db).await));
    }
    Point { name, at, states }
}

/// A group of shapes, restored alone when restoring everything fails (to name the shapes
/// that make it fail).
struct Group<'a> {
    name: &'static str,
    /// Collections of the main database whose names start with this ("" for none).
    prefix: &'static str,
    /// Other databases, whole.
    databases: Vec<&'a str>,
    /// Namespaces the group's operations write through on their way (temporary collections of
    /// `$out`, `convertToCapped` and cross-database renames; time-series buckets).
    via: Vec<String>,
}

fn groups(zoo: &Zoo) -> Vec<Group<'_>> {
    let main = &zoo.main;
    let group = |name, prefix, via: Vec<String>| Group {
        name,
        prefix,
        databases: vec![],
        via,
    };
    vec![
        group("unique", "unique_", vec![]),
        group("during", "during_", vec![]),
        group("valid", "valid_", vec![]),
        group("large", "large_", vec![]),
        group(
            "capped",
            "capped_",
            vec![format!("{main}.tmp*.convertToCapped.capped_*")],
        ),
        group("agg", "agg_", vec![format!("{main}.tmp.agg_out.*")]),
        group("view", "view_", vec![]),
        group("ts", "ts_", vec![format!("{main}.system.buckets.ts_*")]),
        group("clustered", "clustered_", vec![]),
        group("idx", "idx_", vec![]),
        group("id", "id_", vec![]),
        Group {
            name: "names",
            prefix: "",
            databases: vec![zoo.intl.as_str()],
            via: vec![],
        },
        Group {
            name: "xdb",
            prefix: "xdb_",
            databases: vec![zoo.other.as_str(), zoo.dropped.as_str()],
            via: vec![format!("{main}.tmp*.renameCollection")],
        },
    ]
}

struct Target<'a> {
    uri: String,
    repo: String,
    keyring: std::path::PathBuf,
    source_id: &'a str,
}

impl Target<'_> {
    /// Restores `point` for namespaces `ns`; the error's first lines if it fails.
    fn restore(&self, point: &Point, ns: &[String]) -> Result<(), String> {
        let at = format!("ts:{}:{}", point.at.t, point.at.i);
        let mut args = vec![
            "--at",
            &at,
            "--target",
            &self.uri,
            "--repo",
            &self.repo,
            "--source",
            self.source_id,
            "--drop",
            "--json",
        ];
        for n in ns {
            args.push("--ns");
            args.push(n);
        }
        let out = mc_restore(&args, &self.keyring);
        if out.status.success() {
            return Ok(());
        }
        // The error, not the progress lines before it.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut lines: Vec<String> = stderr
            .lines()
            .filter(|l| l.contains("error:") || l.contains(" ERROR "))
            .map(|l| l.chars().take(700).collect())
            .collect();
        if lines.is_empty() {
            lines = show(&out)
                .lines()
                .rev()
                .take(4)
                .map(str::to_owned)
                .collect();
            lines.reverse();
        }
        Err(lines.join("\n    "))
    }
}

/// The differences at `point` in database `db`, limited to collections `keep` accepts, each
/// line naming the point and the collection (the shape).
async fn compare(
    point: &Point,
    target: &Client,
    keep: &dyn Fn(&str, &str) -> bool,
) -> (Vec<String>, Vec<String>) {
    let mut failures = Vec::new();
    let mut passed = Vec::new();
    for (db, want) in &point.states {
        let filter = |s: &DbState| -> DbState {
            s.iter()
                .filter(|(c, _)| keep(db, c))
                .map(|(c, v)| (c.clone(), v.clone()))
                .collect()
        };
        let want = filter(want);
        let got = filter(&db_state(target, db).await);
        let diffs = state_differences(&want, &got);
        for d in &diffs {
            failures.push(format!("point {}: {db}.{d}", point.name));
        }
        for c in want.keys() {
            if !diffs.iter().any(|d| d.starts_with(&format!("{c}: "))) {
                // The main database's shapes by their collection's name alone.
                if *db == point.states[0].0 {
                    passed.push(c.clone());
                } else {
                    passed.push(format!("{db}.{c}"));
                }
            }
        }
    }
    (failures, passed)
}

/// The zoo tests what it says: the window changes every shape of the main database but two (so
/// each is restored through replay, not only loaded), and capped collections' natural order is
/// not their `_id` order (so comparing it means something).
fn check_the_workload(a: &Point, b: &Point, c: &Point) {
    let (main_a, main_b, main_c) = (&a.states[0].1, &b.states[0].1, &c.states[0].1);
    // The comparison sees every change the window makes (B and C differ wherever they differ).
    let changed: Vec<&String> = main_c
        .iter()
        .filter(|(name, state)| main_b.get(*name) != Some(state))
        .map(|(name, _)| name)
        .collect();
    let seen = state_differences(main_b, main_c);
    for name in changed {
        assert!(
            seen.iter().any(|d| d.starts_with(&format!("{name}: "))),
            "{name} changed between B and C, unseen by state_differences: {seen:#?}"
        );
    }
    let untouched: Vec<&String> = main_c
        .iter()
        .filter(|(name, state)| main_a.get(*name) == Some(state))
        .map(|(name, _)| name)
        .collect();
    // The source of the capped clone, and unique values moved while the snapshot read.
    assert_eq!(
        untouched,
        ["capped_clone_src", "unique_during_snapshot"],
        "shapes the window leaves as they were at point A"
    );
    for name in [
        "during_capped",
        "capped_size_wrap",
        "capped_max_wrap",
        "capped_converted",
        "capped_cloned",
    ] {
        let state = &main_c[name];
        assert!(
            state.natural.len() == state.documents.len() && state.natural != state.documents,
            "{name}: natural order differs from _id order"
        );
    }
}

/// Restores `point` for namespaces `ns` alone (`label` says which shapes), compares the
/// collections `keep` accepts and adds the differences to `failures`; whether the restore ran.
async fn restore_and_compare(
    t: &Target<'_>,
    point: &Point,
    target: &PrivateReplSet,
    ns: &[String],
    keep: &dyn Fn(&str, &str) -> bool,
    label: &str,
    failures: &mut Vec<String>,
) -> bool {
    match t.restore(point, ns) {
        Ok(()) => {
            let (f, passed) = compare(point, target.node_client(0), keep).await;
            eprintln!(
                "point {}, {label} alone: restored exactly: {}",
                point.name,
                passed.join(", ")
            );
            failures.extend(f);
            true
        }
        Err(e) => {
            failures.push(format!(
                "point {}: restoring {label} alone ({}) failed: {e}",
                point.name,
                ns.join(" ")
            ));
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schema_zoo_restores_every_shape_at_every_point() {
    let client = mongo_client().await;
    let main = unique_db("zoo");
    let zoo = Zoo {
        other: format!("{main}_other"),
        intl: format!("{main}_ünï"),
        dropped: format!("{main}_dropped"),
        main,
    };
    before_snapshot(&client, &zoo).await;

    let source_id = unique_name("zoo");
    let cap = Captured::start(&source_id).await;
    let moving = tokio::spawn(during_snapshot(client.database(&zoo.main)));
    let others = tokio::spawn(during_snapshot_others(client.database(&zoo.main)));
    let settings = SnapshotSettings {
        databases: Some(zoo.all().iter().map(|d| d.to_string()).collect()),
        ..cap.snapshot_settings(&zoo.main)
    };
    cap.snapshot_with(&settings).await;
    moving.await.unwrap();
    others.await.unwrap();
    let a = record("A (after the snapshot)", &client, &cap, &zoo).await;
    window_b(&client, &zoo).await;
    let b = record("B (mid-window)", &client, &cap, &zoo).await;
    window_c(&client, &zoo).await;
    let c = record("C (end)", &client, &cap, &zoo).await;
    let (dir, _repo) = cap.finish().await;
    check_the_workload(&a, &b, &c);

    let target = PrivateReplSet::start(Default::default()).await;
    let (repo, keyring) = repo_paths(dir.path());
    let t = Target {
        uri: target.uri(),
        repo: repo.to_str().unwrap().to_owned(),
        keyring,
        source_id: &source_id,
    };
    let all_ns: Vec<String> = zoo.all().iter().map(|d| format!("{d}.*")).collect();
    let mut failures = Vec::new();
    for point in [&a, &b, &c] {
        match t.restore(point, &all_ns) {
            Ok(()) => {
                let (f, passed) = compare(point, target.node_client(0), &|_, _| true).await;
                eprintln!(
                    "point {}: {} collections restored exactly: {}",
                    point.name,
                    passed.len(),
                    passed.join(", ")
                );
                failures.extend(f);
            }
            Err(e) => {
                failures.push(format!(
                    "point {}: restoring everything failed: {e}",
                    point.name
                ));
                // Which shapes make it fail: one group at a time.
                for g in groups(&zoo) {
                    let mut ns: Vec<String> =
                        g.databases.iter().map(|d| format!("{d}.*")).collect();
                    if !g.prefix.is_empty() {
                        ns.push(format!("{}.{}*", zoo.main, g.prefix));
                    }
                    ns.extend(g.via.iter().cloned());
                    let keep = |db: &str, c: &str| {
                        g.databases.contains(&db)
                            || (db == zoo.main && !g.prefix.is_empty() && c.starts_with(g.prefix))
                    };
                    let label = format!("group {}", g.name);
                    let restored =
                        restore_and_compare(&t, point, &target, &ns, &keep, &label, &mut failures)
                            .await;
                    if restored || !g.databases.is_empty() {
                        continue;
                    }
                    // Which of the group's shapes: one collection at a time.
                    for coll in point.states[0].1.keys().filter(|c| c.starts_with(g.prefix)) {
                        let mut ns = vec![format!("{}.{coll}", zoo.main)];
                        ns.extend(g.via.iter().cloned());
                        let keep = |db: &str, c: &str| db == zoo.main && c == coll;
                        restore_and_compare(&t, point, &target, &ns, &keep, coll, &mut failures)
                            .await;
                    }
                }
            }
        }
    }
    // One collection alone, named as an operator would (`--ns db.coll`): a temporary
    // collection renamed over it ($out, convertToCapped) and a time-series collection's buckets
    // come with it without being named.
    for coll in [
        "capped_converted",
        "agg_out_existing",
        "agg_out_new",
        "ts_window",
    ] {
        let ns = vec![format!("{}.{coll}", zoo.main)];
        let keep = |db: &str, c: &str| db == zoo.main && c == coll;
        restore_and_compare(&t, &c, &target, &ns, &keep, coll, &mut failures).await;
    }
    // A recovery drill of the whole zoo, verified against the source at the restored time.
    let policy = mc_tests::agent::write_test_policy(
        dir.path(),
        "zoo",
        &source_id,
        "MC_TEST_MONGODB_URI",
        "",
    );
    let mut args = vec![
        "drill".to_owned(),
        "--policy".into(),
        policy.to_str().unwrap().to_owned(),
        "--scratch".into(),
        target.uri(),
        "--json".into(),
    ];
    for ns in &all_ns {
        args.extend(["--ns".to_owned(), ns.clone()]);
    }
    let out = std::process::Command::new(workspace_bin("mc-restore"))
        .args(&args)
        .env("MC_TEST_MONGODB_URI", mongodb_uri())
        .output()
        .expect("mc-restore runs");
    if out.status.code() != Some(0) {
        failures.push(format!(
            "the drill of the whole zoo did not pass: {}",
            mc_tests::restore::show(&out)
        ));
    }
    if failures.is_empty() {
        // Tens of megabytes of large documents: left on the shared server they would slow every
        // later snapshot of all databases (agent_process, smoke). Kept when the test fails.
        for db in zoo.all() {
            client.database(db).drop().await.unwrap();
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
