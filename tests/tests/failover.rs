//! Capture across elections, on a private 3-node replica set: while a writer inserts and updates
//! with `w: majority` (retrying through elections), the primary is stepped down three times, and
//! capture must follow each new primary. Afterwards the repository's timeline is one run with no
//! gap; its entries are strictly increasing and exactly the final primary's oplog between the
//! run's ends, byte for byte; and every write the cluster acknowledged to the majority is in it.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_agent::capture::oplog::{entry_ts, to_ts, OplogSource};
use mc_agent::capture::{self};
use mc_agent::metrics::Metrics;
use mc_core::catalog::{Catalog, Repository, Timeline};
use mc_core::crypto::{Keyring, SecretKey};
use mc_core::format::{OplogTs, StreamKind};
use mc_core::storage::local::LocalDir;
use mc_tests::agent::{capture_settings, pack, wait_durable};
use mc_tests::mongod::{PrivateReplSet, ReplSetConfig};
use mc_tests::*;
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{CollectionOptions, WriteConcern};
use tokio::sync::watch;

/// What the writer shares with the test while it runs.
#[derive(Default)]
struct WriterProgress {
    /// Documents written so far (each insert, with its update, went through one way or another).
    written: AtomicI64,
    /// Write attempts that failed (and were retried), e.g. during an election.
    errors: AtomicU64,
}

impl WriterProgress {
    /// Waits until `more` further documents have been written.
    async fn wait_written(&self, more: i64) {
        let target = self.written.load(Relaxed) + more;
        tokio::time::timeout(Duration::from_secs(30), async {
            while self.written.load(Relaxed) < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the writer makes progress on the new primary");
    }
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000)
}

/// Inserts documents `0, 1, 2, …` (and updates earlier ones) with `w: majority` until told to
/// stop; returns the ids whose insert was acknowledged. A failed write is retried as it is (the
/// driver's retryable writes already retry once across an election; this covers the rest). If a
/// retried insert finds its document already there, the first attempt was applied but its
/// acknowledgement was lost, so the id is not counted as acknowledged.
async fn write_until_stopped(
    coll: mongodb::Collection<Document>,
    progress: Arc<WriterProgress>,
    stop: watch::Receiver<bool>,
) -> BTreeSet<i64> {
    let mut acked = BTreeSet::new();
    let mut id: i64 = 0;
    while !*stop.borrow() {
        loop {
            match coll
                .insert_one(doc! {"_id": id, "v": 0, "pad": "x".repeat(200)})
                .await
            {
                Ok(_) => {
                    acked.insert(id);
                    break;
                }
                Err(e) if is_duplicate_key(&e) => break,
                Err(_) => {
                    progress.errors.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        if id % 4 == 0 {
            // `$set` rather than `$inc`: a manual retry of an applied update changes nothing.
            while coll
                .update_one(doc! {"_id": id / 2}, doc! {"$set": {"v": id}})
                .await
                .is_err()
            {
                progress.errors.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        progress.written.fetch_add(1, Relaxed);
        id += 1;
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_follows_three_elections_without_gap_or_loss() {
    let started = Instant::now();
    let set = PrivateReplSet::three().await;
    eprintln!("3-node set up in {:?}", started.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalDir::new(dir.path().join("repo")).unwrap());
    let repo = Repository::new(
        store,
        Keyring::new(vec![SecretKey::generate().unwrap()], "t").unwrap(),
    );
    repo.init().await.unwrap();
    let source_id = unique_name("failover");
    let source = OplogSource::connect(&set.uri()).await.unwrap();

    // The writer, through the replica set URI (retryable writes on by default).
    let client = mongodb::Client::with_uri_str(set.uri()).await.unwrap();
    let db = unique_db("failover");
    let coll = client.database(&db).collection_with_options::<Document>(
        "items",
        CollectionOptions::builder()
            .write_concern(WriteConcern::majority())
            .build(),
    );
    let ns = format!("{db}.items");

    let metrics = Arc::new(Metrics::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let capture = tokio::spawn(capture::run(
        repo.clone(),
        source.clone(),
        capture_settings(&source_id, dir.path()),
        metrics.clone(),
        shutdown_rx,
    ));
    let first = set.wait_primary(None).await;
    wait_durable(&metrics, to_ts(set.majority_point(first).await)).await;

    // The writer starts once capture has begun, so all of its writes are after the run's start.
    let progress = Arc::new(WriterProgress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let writer = tokio::spawn(write_until_stopped(coll, progress.clone(), stop_rx));
    progress.wait_written(20).await;

    // Three elections. After each, the writer must get writes through the new primary and
    // capture must make durable that primary's majority point: entries of the new term.
    let mut after_elections = Vec::new();
    for round in 1..=3 {
        let t = Instant::now();
        let (old, new) = set.step_down_primary().await;
        let elected_in = t.elapsed();
        let new_term_start = to_ts(set.last_write(new).await);
        progress.wait_written(20).await;
        let majority = to_ts(set.majority_point(new).await);
        assert!(majority >= new_term_start);
        wait_durable(&metrics, majority).await;
        eprintln!(
            "election {round}: member {old} → {new} in {elected_in:?}; capture past {majority} {:?} after the step-down (source errors so far: {})",
            t.elapsed(),
            metrics.capture.source_errors.get()
        );
        after_elections.push(new_term_start);
    }

    // Stop writing; capture up to the final majority point, then stop capture.
    progress.wait_written(20).await;
    stop_tx.send(true).unwrap();
    let acked = writer.await.unwrap();
    let last = set.wait_primary(None).await;
    let end = to_ts(set.majority_point(last).await);
    wait_durable(&metrics, end).await;
    shutdown_tx.send(true).unwrap();
    capture.await.unwrap().expect("capture stops cleanly");

    // One continuous run.
    let catalog = Catalog::load(&repo, &source_id, StreamKind::Oplog)
        .await
        .unwrap();
    let timeline = Timeline::build(&catalog.segments);
    assert_eq!(timeline.runs.len(), 1, "one run: {timeline:?}");
    assert!(timeline.gaps.is_empty(), "no gap: {timeline:?}");
    assert!(timeline.unreadable.is_empty(), "{timeline:?}");
    let run = &timeline.runs[0];
    assert!(run.end >= end, "the run reaches the final majority point");

    // Its entries, strictly increasing: nothing repeated, nothing out of order.
    let mut captured: Vec<Vec<u8>> = Vec::new();
    for key in &run.segments {
        let (_, records) = repo.read_segment(key).await.unwrap();
        captured.extend(records);
    }
    let stamps: Vec<OplogTs> = captured
        .iter()
        .map(|r| entry_ts(&RawDocumentBuf::from_bytes(r.clone()).unwrap()).unwrap())
        .collect();
    for pair in stamps.windows(2) {
        assert!(
            pair[0] < pair[1],
            "entries out of order or repeated: {pair:?}"
        );
    }
    assert_eq!(stamps.first(), Some(&run.start));
    assert_eq!(stamps.last(), Some(&run.end));
    for ts in &after_elections {
        assert!(
            run.start < *ts && *ts <= run.end,
            "the run spans the election at {ts}"
        );
    }

    // Exactly the final primary's oplog between the run's ends, byte for byte. (After catch-up
    // every member's oplog is the same history; the primary's is the authoritative one.)
    let expected = mc_tests::agent::oplog_between(set.node_client(last), run.start, run.end).await;
    assert_eq!(captured.len(), expected.len(), "entry count");
    for (i, (got, want)) in captured.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "entry {i} ({}) differs", stamps[i]);
    }

    // Every insert the majority acknowledged is there.
    let inserted: BTreeSet<i64> = captured
        .iter()
        .filter_map(|r| {
            let d = RawDocumentBuf::from_bytes(r.clone()).ok()?;
            let ours = d.get_str("op").ok()? == "i" && d.get_str("ns").ok()? == ns;
            ours.then(|| d.get_document("o").ok()?.get_i64("_id").ok())?
        })
        .collect();
    let missing: Vec<&i64> = acked.difference(&inserted).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged inserts are not in the capture: {missing:?}",
        missing.len(),
        acked.len()
    );
    assert!(
        acked.len() > 80,
        "the writer got {} inserts acknowledged",
        acked.len()
    );

    // The capture carried on across each election: each new primary's first entry (its "new
    // primary" no-op) is in the run. An election need not surface as a source error (a
    // step-down does not kill reads), so this, not `source_errors`, is what is checked.
    let elections: Vec<OplogTs> = captured
        .iter()
        .zip(&stamps)
        .filter(|(r, _)| {
            let d = RawDocumentBuf::from_bytes(r.to_vec()).unwrap();
            d.get_str("op").ok() == Some("n")
                && d.get_document("o").ok().and_then(|o| o.get_str("msg").ok())
                    == Some("new primary")
        })
        .map(|(_, ts)| *ts)
        .collect();
    assert!(
        elections.len() >= 3,
        "three elections' \"new primary\" entries are captured: {elections:?}"
    );
    let source_errors = metrics.capture.source_errors.get();
    eprintln!(
        "{} entries captured in {} segments; {} inserts acknowledged, {} write retries; capture source errors: {source_errors}; total {:?}",
        captured.len(),
        run.segments.len(),
        acked.len(),
        progress.errors.load(Relaxed),
        started.elapsed()
    );
}

/// The string `_id`s starting with `prefix` among the entries stored for `source_id`.
async fn stored_ids_with_prefix(repo: &Repository, source_id: &str, prefix: &str) -> Vec<String> {
    let catalog = Catalog::load(repo, source_id, StreamKind::Oplog)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for seg in &catalog.segments {
        let (_, records) = repo.read_segment(&seg.key).await.unwrap();
        for r in records {
            let d = RawDocumentBuf::from_bytes(r).unwrap();
            let id = d.get_document("o").ok().and_then(|o| o.get_str("_id").ok());
            if let Some(id) = id.filter(|id| id.starts_with(prefix)) {
                ids.push(id.to_owned());
            }
        }
    }
    ids
}

/// A deposed primary's writes that the majority never had must never be captured, because the
/// cluster rolls them back.
///
/// The trap: a step-down does not kill reads, so a tailable cursor stays open on the old
/// primary, while "the primary" of the replica set is by then another member. If the commit
/// point that releases entries is asked of the new primary, bare timestamps from two histories
/// compare as one: once the new primary's majority point passes the old primary's unreplicated
/// entries, they are released and stored, and when the old primary rolls them back the cursor
/// dies, the resume entry is not on the new primary, and a gap follows. (Capture did exactly
/// that before it read entries and commit point from the same member.) Here the old primary is
/// kept from replicating (fail point `stopReplProducer`) so the window stays open; in production
/// it is open from the new primary's first majority commit until the old primary rolls back —
/// seconds, with an asymmetric partition or a paused primary.
///
/// Against the faulty capture it failed every time (5 of 5 runs): the five lost writes were
/// stored, and after the rollback a gap was recorded as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_entries_of_a_deposed_primary_are_never_captured() {
    let set = PrivateReplSet::start(ReplSetConfig {
        nodes: 3,
        // A new primary does not wait to fetch what only the deposed one has: that is what gets
        // rolled back (in production, because the old primary is unreachable).
        catch_up_timeout_ms: Some(0),
        test_commands: true,
        ..ReplSetConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalDir::new(dir.path().join("repo")).unwrap());
    let repo = Repository::new(
        store,
        Keyring::new(vec![SecretKey::generate().unwrap()], "t").unwrap(),
    );
    repo.init().await.unwrap();
    let source_id = unique_name("rollback");
    let source = OplogSource::connect(&set.uri()).await.unwrap();

    // Capture runs; its cursor is opened on the current primary.
    let old = set.wait_primary(None).await;
    let metrics = Arc::new(Metrics::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let capture = tokio::spawn(capture::run(
        repo.clone(),
        source.clone(),
        capture_settings(&source_id, dir.path()),
        metrics.clone(),
        shutdown_rx,
    ));
    wait_durable(&metrics, to_ts(set.majority_point(old).await)).await;

    // Nobody replicates from anybody any more, so what the old primary writes next stays its own
    // (and, once deposed, it does not fetch the new history and roll back either). Replication
    // stops where every member has the same history: neither secondary is ahead of the other,
    // so the one to be elected gets the other's vote.
    assert_eq!(
        set.stop_replication().await,
        old,
        "the primary changed before the test deposed it"
    );
    let db = unique_db("rollback");
    let w1 = set
        .node_client(old)
        .database(&db)
        .collection_with_options::<Document>(
            "items",
            CollectionOptions::builder()
                .write_concern(WriteConcern::nodes(1))
                .build(),
        );
    let before = to_ts(set.last_write(old).await);
    for k in 0..5 {
        w1.insert_one(doc! {"_id": format!("lost-{k}")})
            .await
            .unwrap();
    }
    let lost_last = to_ts(set.last_write(old).await);
    assert!(lost_last > before);

    // Depose it and elect another member, which lacks those writes. The third member is
    // frozen so that it cannot win instead (its own election timeout fires while there is no
    // primary); the old one is kept out by its step-down (60 s), and refuses its vote (it has
    // newer entries), so the candidate needs and gets the third's.
    let candidate = (old + 1) % 3;
    let third = (old + 2) % 3;
    set.admin_command(third, doc! {"replSetFreeze": 60}).await;
    set.admin_command(
        old,
        doc! {"replSetStepDown": 60, "secondaryCatchUpPeriodSecs": 0, "force": true},
    )
    .await;
    set.step_up(candidate).await;
    let new = set.wait_primary(Some(old)).await;
    assert_eq!(new, candidate);
    // The third member follows the new primary (not the old one), so the new history commits.
    set.admin_command(third, doc! {"replSetSyncFrom": set.host(new)})
        .await;
    set.fail_point(third, "stopReplProducer", false).await;
    let client = mongodb::Client::with_uri_str(set.uri()).await.unwrap();
    let coll = client.database(&db).collection_with_options::<Document>(
        "items",
        CollectionOptions::builder()
            .write_concern(WriteConcern::majority())
            .build(),
    );
    let mut n = 0;
    while to_ts(set.majority_point(new).await) <= lost_last {
        coll.insert_one(doc! {"_id": format!("kept-{n}")})
            .await
            .unwrap();
        n += 1;
    }
    let majority = to_ts(set.majority_point(new).await);

    // A correct capture gets past the new primary's majority point without storing a lost entry;
    // a faulty one stores them within a tick and a seal interval. (durable_ts alone cannot tell
    // the two apart, as the new history passes the lost entries' timestamps too, so the
    // repository itself is looked at.)
    let deadline = Instant::now() + Duration::from_secs(20);
    let lost_stored = loop {
        let lost = stored_ids_with_prefix(&repo, &source_id, "lost-").await;
        let durable = metrics.capture.durable_ts.load(Relaxed);
        if !lost.is_empty() || durable >= pack(majority) || Instant::now() > deadline {
            break lost;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let durable = metrics.capture.durable_ts.load(Relaxed);

    // Let the old primary replicate again: it rolls those writes back, proving they were lost.
    set.fail_point(old, "stopReplProducer", false).await;
    let lost_on_old = set
        .node_client(old)
        .database(&db)
        .collection::<Document>("items");
    let rolled_back = tokio::time::timeout(Duration::from_secs(30), async {
        while lost_on_old
            .count_documents(doc! {"_id": {"$regex": "^lost-"}})
            .await
            .map_or(true, |n| n > 0)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        rolled_back.is_ok(),
        "the old primary rolls its lost writes back"
    );
    shutdown_tx.send(true).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), capture).await;
    assert!(
        lost_stored.is_empty(),
        "capture stored writes of the deposed primary that the majority never had and that were \
         rolled back: {lost_stored:?} (gaps counted afterwards: {})",
        metrics.capture.gaps.get()
    );
    assert!(
        durable >= pack(majority),
        "capture did not get past the new primary's majority point {majority} (stuck on the deposed primary?)"
    );
}
