//! One active capturer per source: two agents share a policy; exactly one holds the Redis lease
//! and captures; when it dies without releasing, the other takes over within the lease time;
//! fencing tokens grow; the timeline stays one continuous run with no object overwritten.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_agent::capture::oplog::OplogSource;
use mc_agent::capture::CaptureSettings;
use mc_agent::lease::LeaseStore;
use mc_agent::metrics::Metrics;
use mc_agent::supervisor;
use mc_core::catalog::{Catalog, Repository, Timeline};
use mc_core::crypto::{Keyring, SecretKey};
use mc_core::format::StreamKind;
use mc_core::storage::local::LocalDir;
use mc_tests::*;
use mongodb::bson::doc;
use tokio::sync::watch;

const TTL: Duration = Duration::from_millis(1500);

struct Agent {
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), mc_agent::capture::CaptureError>>,
}

async fn start(repo: &Repository, source_id: &str, holder: &str, spool: &std::path::Path) -> Agent {
    // What `mc-agent run` builds from a policy with the defaults, sized for the test.
    let mut settings =
        CaptureSettings::new(&Default::default(), source_id, holder, spool.to_owned());
    settings.rules.max_bytes = 32 * 1024;
    settings.rules.seal_interval = Duration::from_millis(200);
    settings.tick = Duration::from_millis(50);
    let lease = LeaseStore::connect(&redis_url(), "mc-test", source_id, TTL)
        .await
        .unwrap();
    let source = OplogSource::connect(&mongodb_uri()).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let (stop, rx) = watch::channel(false);
    let parts = supervisor::AgentParts {
        repo: repo.clone(),
        source,
        capture: settings,
        snapshots: None,
        kafka: None,
        drills: None,
        lease: Some(lease),
        holder: holder.into(),
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(supervisor::run(parts, rx));
    Agent {
        metrics,
        stop,
        task,
    }
}

async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_captures_and_a_standby_takes_over() {
    let client = mongo_client().await;
    let db = unique_db("lease");
    let source_id = unique_db("src").replace('_', "-");
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::new(
        Arc::new(LocalDir::new(dir.path().join("repo")).unwrap()),
        Keyring::new(vec![SecretKey::generate().unwrap()], "t").unwrap(),
    );
    repo.init().await.unwrap();

    let (wstop, wrx) = watch::channel(false);
    let coll = client
        .database(&db)
        .collection::<mongodb::bson::Document>("c");
    let writer = tokio::spawn(async move {
        let mut i = 0i64;
        while !*wrx.borrow() {
            coll.insert_one(doc! {"_id": i}).await.unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });

    let a = start(&repo, &source_id, "agent-a", dir.path()).await;
    let b = start(&repo, &source_id, "agent-b", dir.path()).await;
    let held = |x: &Agent| x.metrics.lease.is_held();
    wait_until(
        "one agent holding the lease",
        Duration::from_secs(10),
        || held(&a) || held(&b),
    )
    .await;
    // For a few renewal periods, never both.
    let t0 = Instant::now();
    while t0.elapsed() < TTL * 2 {
        assert!(!(held(&a) && held(&b)), "both agents hold the lease");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (holder, standby) = if held(&a) { (a, b) } else { (b, a) };
    assert_eq!(
        standby.metrics.capture.segments_uploaded.get(),
        0,
        "the standby wrote nothing"
    );
    wait_until("holder uploads", Duration::from_secs(10), || {
        holder.metrics.capture.segments_uploaded.get() > 2
    })
    .await;
    let first_fence = holder.metrics.lease.fence.get();
    let text = mc_agent::metrics::encode(&holder.metrics.registry(&source_id));
    assert!(
        text.contains(&format!("mc_lease_held{{source=\"{source_id}\"}} 1")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "mc_lease_fence{{source=\"{source_id}\"}} {first_fence}"
        )),
        "{text}"
    );

    // Kill the holder without releasing: the standby takes over within TTL plus one poll.
    holder.task.abort();
    let took = wait_until("standby takes over", TTL * 3, || held(&standby)).await;
    assert!(
        took <= TTL + TTL / 3 + Duration::from_millis(500),
        "takeover took {took:?}"
    );
    assert!(
        standby.metrics.lease.fence.get() > first_fence,
        "fencing token grows"
    );
    wait_until("standby uploads", Duration::from_secs(10), || {
        standby.metrics.capture.segments_uploaded.get() > 2
    })
    .await;

    wstop.send(true).unwrap();
    writer.await.unwrap();
    standby.stop.send(true).unwrap();
    standby.task.await.unwrap().unwrap();

    let catalog = Catalog::load(&repo, &source_id, StreamKind::Oplog)
        .await
        .unwrap();
    let timeline = Timeline::build(&catalog.segments);
    assert_eq!(
        timeline.runs.len(),
        1,
        "continuous across the takeover: {timeline:?}"
    );
    let fences: Vec<u64> = catalog.segments.iter().map(|s| s.fence).collect();
    assert!(
        fences.contains(&first_fence) && fences.iter().any(|f| *f > first_fence),
        "{fences:?}"
    );
    assert!(mc_core::catalog::verify(&repo, None).await.unwrap().is_ok());
    client.database(&db).drop().await.unwrap();
}

#[tokio::test]
async fn lease_primitives_are_exclusive_and_owner_checked() {
    let source = unique_name("prim");
    let store = LeaseStore::connect(&redis_url(), "mc-test", &source, Duration::from_secs(5))
        .await
        .unwrap();
    let a = store
        .try_acquire("a")
        .await
        .unwrap()
        .expect("free lease is taken");
    assert_eq!(
        store.try_acquire("b").await.unwrap(),
        None,
        "held lease is not taken twice"
    );
    assert!(store.renew(&a).await.unwrap());
    assert_eq!(
        store.holder().await.unwrap(),
        Some(format!("a {}", a.fence))
    );
    assert!(store.release(&a).await.unwrap());
    let b = store
        .try_acquire("b")
        .await
        .unwrap()
        .expect("released lease is free");
    assert!(b.fence > a.fence);
    assert!(
        !store.renew(&a).await.unwrap(),
        "a deposed holder cannot renew"
    );
    assert!(
        !store.release(&a).await.unwrap(),
        "nor release someone else's lease"
    );
    assert!(store.release(&b).await.unwrap());
}
