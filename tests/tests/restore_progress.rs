//! Progress of a real restore as scripts read it (issue 16): `mc-restore --at latest --json`
//! prints its summary on stdout as before and, on stderr, one JSON progress event per line:
//! every phase starts and ends in order, the load reaches the documents and bytes the plan
//! counted, the index phase knows how many indexes it builds, replay counts its entries against
//! the segments' upper bound.

use mc_tests::restore::{mc_restore, repo_paths, show, Captured};
use mc_tests::*;
use mongodb::bson::{doc, Document};
use mongodb::IndexModel;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_progress_events_follow_the_phases() {
    let client = mongo_client().await;
    let db_name = unique_db("prog");
    let restored = format!("{db_name}_r");
    let db = client.database(&db_name);
    let a = db.collection::<Document>("a");
    a.insert_many(
        (0..3000)
            .map(|i| doc! {"_id": i, "v": i % 97, "pad": "x".repeat(100)})
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    a.create_index(IndexModel::builder().keys(doc! {"v": 1}).build())
        .await
        .unwrap();
    let b = db.collection::<Document>("b");
    b.insert_many(
        (0..500)
            .map(|i| doc! {"_id": i, "k": i, "w": -i})
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    b.create_index(IndexModel::builder().keys(doc! {"k": 1, "w": -1}).build())
        .await
        .unwrap();

    let source_id = unique_name("prog").to_lowercase();
    let cap = Captured::start(&source_id).await;
    cap.snapshot(&db_name).await;
    // Writes after the snapshot: replay has entries to apply.
    for i in 0..200 {
        a.update_one(doc! {"_id": i}, doc! {"$set": {"v": 1000 + i}})
            .await
            .unwrap();
    }
    let (dir, _repo) = cap.finish().await;
    let (repo, keyring) = repo_paths(dir.path());
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
            &restored,
            "--drop",
            "--json",
            "--progress-interval",
            "1s",
        ],
        &keyring,
    );
    assert!(out.status.success(), "{}", show(&out));
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is the summary alone ({e}): {}", show(&out)));

    let stderr = String::from_utf8_lossy(&out.stderr);
    let events: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v: &Value| v.get("event").is_some())
        .collect();
    let of = |kind: &str, phase: &str| -> Value {
        events
            .iter()
            .find(|e| e["event"] == kind && e["phase"] == phase)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} event of {phase}: {stderr}"))
    };

    // Starts and ends, in the order the summary lists the phases.
    let ends: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] != "progress")
        .map(|e| e["phase"].as_str().unwrap())
        .collect();
    let phases: Vec<&str> = summary["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = phases.iter().flat_map(|p| [*p, *p]).collect();
    assert_eq!(ends, expected, "{stderr}");
    assert_eq!(phases[..4], ["prepare", "load", "replay", "indexes"]);
    for e in &events {
        for key in [
            "elapsed",
            "done",
            "total",
            "unit",
            "rate",
            "eta_seconds",
            "step",
        ] {
            assert!(e.get(key).is_some(), "{key} missing: {e}");
        }
        if e["event"] == "progress" {
            assert!(phases.contains(&e["phase"].as_str().unwrap()), "{e}");
        }
    }

    let load_start = of("phase_started", "load");
    assert_eq!(load_start["total"], 3500, "{load_start}");
    assert_eq!(load_start["unit"], "docs");
    let load = of("phase_done", "load");
    assert_eq!(load["done"], 3500, "{load}");
    assert_eq!(load["total"], 3500, "{load}");
    assert_eq!(load["bytes_done"], load["bytes_total"], "{load}");
    assert_eq!(load["bytes_done"], summary["load"]["bytes"], "{load}");
    assert_eq!(load["eta_seconds"], 0.0);

    let replay = of("phase_done", "replay");
    assert_eq!(replay["unit"], "entries");
    assert_eq!(replay["at_most"], true);
    assert_eq!(
        replay["done"], summary["replay"]["entries_read"],
        "{replay}"
    );
    let (done, total) = (
        replay["done"].as_u64().unwrap(),
        replay["total"].as_u64().unwrap(),
    );
    assert!(done >= 200 && done <= total, "{replay}");

    let indexes = of("phase_started", "indexes");
    assert_eq!(indexes["total"], 2, "{indexes}");
    assert_eq!(indexes["unit"], "indexes");
    let built = of("phase_done", "indexes");
    assert_eq!(built["done"], 2, "{built}");
    assert_eq!(built["done"], summary["indexes"]);

    // Phases that count nothing report no position.
    let prepare = of("phase_done", "prepare");
    assert!(prepare["done"].is_null() && prepare["total"].is_null());

    // Without --json and without a terminal: plain log lines as each phase starts and ends, in
    // human units, and no JSON event.
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
            &restored,
            "--drop",
        ],
        &keyring,
    );
    assert!(out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "load started (3.5 k docs, ",
        "load done in ",
        "100%, 3.5 k / 3.5 k docs, ",
        "replay started (at most ",
        "indexes started (2 indexes)",
        "indexes done in ",
    ] {
        assert!(stderr.contains(want), "{want:?} missing: {stderr}");
    }
    assert!(!stderr.contains("\"event\""), "{stderr}");

    client.database(&restored).drop().await.unwrap();
}

/// While `createIndexes` runs, the server's own account of the build (`$currentOp`'s `progress`
/// and `msg`) becomes the index phase's running step: which collection and indexes, the stage,
/// how far.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_index_build_is_seen_from_the_server() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use mc_restore::progress::{indexes, Meter};

    let client = mongo_client().await;
    let db_name = unique_db("progix");
    let coll = client.database(&db_name).collection::<Document>("big");
    for chunk in 0..20 {
        coll.insert_many(
            (0..10_000)
                .map(|i| {
                    let n: i64 = chunk * 10_000 + i;
                    let pad = "y".repeat((n % 40) as usize);
                    doc! {"_id": n, "a": format!("{:x}-{n}", n * 7919), "b": format!("{n}-{pad}"), "c": n % 1013}
                })
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    }
    let ns = format!("{db_name}.big");
    let meter = Arc::new(Meter::default());
    meter.plan(6);
    // Polled every 50 ms, not the display's 1 s: the build takes one to a few seconds here, and
    // a 1 s poll could miss it entirely on a quiet machine.
    let _watch = indexes::watch_every(
        Duration::from_millis(50),
        client.clone(),
        indexes::build_namespaces(&ns),
        meter.clone(),
    );
    let specs: Vec<Document> = [
        ("a", 1),
        ("b", 1),
        ("c", 1),
        ("a", -1),
        ("b", -1),
        ("c", -1),
    ]
    .iter()
    .map(|(k, d)| doc! {"key": {*k: *d, "_id": 1}, "name": format!("{k}_{d}")})
    .collect();
    let build = {
        let db = client.database(&db_name);
        tokio::spawn(async move {
            db.run_command(doc! {"createIndexes": "big", "indexes": specs})
                .await
                .unwrap();
        })
    };
    let started = Instant::now();
    let mut seen = None;
    while !build.is_finished() {
        if let Some(step) = meter.reading("indexes").step {
            seen = Some(step);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    build.await.unwrap();
    let took = started.elapsed();
    client.database(&db_name).drop().await.unwrap();
    let step = seen.unwrap_or_else(|| {
        panic!("no build progress seen from $currentOp during a build of {took:?}")
    });
    assert!(step.what.starts_with(&ns), "{step:?}");
    assert!(step.what.contains("a_1"), "{step:?}");
    assert!(step.stage.is_some(), "{step:?}");
    assert!(step.total.is_some_and(|t| t > 0), "{step:?}");
}
