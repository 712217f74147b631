//! The combined restore against real servers (issue 6): a MongoDB collection is written and a
//! Kafka consumer group consumes and commits while the agent's oplog capture and Kafka offset
//! capture both run in-process into one repository; at a moment T (both workloads paused) the
//! test records the database's exact state and the group's committed offsets; both continue;
//! afterwards ONE `mc-restore --at T --target … --kafka-groups …` must give back both: the
//! restored database equal to the recorded state, the group's offsets equal to the recorded
//! ones. On the way: `--dry-run` prints the Kafka plan and changes nothing, and a Kafka reset
//! refused after MongoDB was restored exits non-zero saying so, naming the group not reset and
//! the `kafka-offsets` command that finishes the job (which is then run as printed).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_agent::kafka::KafkaCaptureSettings;
use mc_agent::metrics::Metrics;
use mc_core::format::{OplogTs, WriterInfo};
use mc_tests::mongod::PrivateReplSet;
use mc_tests::restore::{assert_same_state, db_state, mc_restore, repo_paths, show, Captured};
use mc_tests::{kafka_bootstrap, mongo_client, unique_db, unique_name};
use mongodb::bson::{doc, Document};
use mongodb::options::{CollectionOptions, WriteConcern};
use mongodb::Collection;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot, watch};

type Offsets = BTreeMap<(String, i32), i64>;

const PARTITIONS: i32 = 2;

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !cond().await {
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn create_topic(topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .create()
        .expect("kafka admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic request");
    for r in created {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// Produces to every partition in turn until `stop` turns true.
fn spawn_producer(topic: String, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .set("message.timeout.ms", "10000")
            .create()
            .expect("kafka producer");
        let mut i: u64 = 0;
        while !*stop.borrow() {
            let partition = (i % PARTITIONS as u64) as i32;
            producer
                .send(
                    FutureRecord::to(&topic)
                        .partition(partition)
                        .key(&format!("k{i}"))
                        .payload(&format!("v{i}")),
                    Duration::from_secs(10),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("produce message {i}: {e}"));
            i += 1;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = stop.changed() => {}
            }
        }
    })
}

/// Pausing a workload: the reply comes once nothing more will be written until `Resume`, with
/// what has been written (acknowledged) so far.
enum Cmd<T> {
    Pause(oneshot::Sender<T>),
    Resume,
}

/// Receives pending commands; returns false when the workload must stop.
async fn obey<T: Clone>(rx: &mut mpsc::Receiver<Cmd<T>>, progress: &T) -> bool {
    loop {
        match rx.try_recv() {
            Ok(Cmd::Pause(reply)) => {
                let _ = reply.send(progress.clone());
                loop {
                    match rx.recv().await {
                        Some(Cmd::Resume) => break,
                        Some(Cmd::Pause(again)) => {
                            let _ = again.send(progress.clone());
                        }
                        None => return false,
                    }
                }
            }
            Ok(Cmd::Resume) => {}
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
            Err(mpsc::error::TryRecvError::Empty) => return true,
        }
    }
}

async fn pause<T>(tx: &mpsc::Sender<Cmd<T>>) -> T {
    let (reply, got) = oneshot::channel();
    tx.send(Cmd::Pause(reply)).await.unwrap();
    got.await.unwrap()
}

/// A group member consuming and committing every message synchronously; its progress is the
/// offsets it knows it committed. Dropping the sender stops it (it leaves the group).
fn spawn_consumer(
    topic: String,
    group: String,
) -> (mpsc::Sender<Cmd<Offsets>>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(async move {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .set("group.id", &group)
            .set("client.id", unique_name("rk-client"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("kafka consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
        let mut committed = Offsets::new();
        while obey(&mut rx, &committed).await {
            let msg = match tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await
            {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => panic!("consume: {e}"),
                Err(_) => continue,
            };
            consumer
                .commit_message(&msg, CommitMode::Sync)
                .expect("commit");
            committed.insert((msg.topic().to_owned(), msg.partition()), msg.offset() + 1);
        }
    });
    (tx, task)
}

/// Inserts events and keeps a per-key counter document up to date (w: majority, so a write is
/// in the majority commit point once acknowledged); its progress is the events written.
fn spawn_writer(
    events: Collection<Document>,
) -> (mpsc::Sender<Cmd<u64>>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(async move {
        let mut n: u64 = 0;
        while obey(&mut rx, &n).await {
            let key = (n % 7) as i64;
            events
                .insert_one(doc! {"_id": format!("e{n}"), "key": key, "n": n as i64, "pad": "x".repeat(100)})
                .await
                .unwrap();
            events
                .update_one(
                    doc! {"_id": format!("counter-{key}")},
                    doc! {"$inc": {"count": 1}, "$set": {"last": n as i64}},
                )
                .upsert(true)
                .await
                .unwrap();
            if n % 10 == 9 {
                events
                    .delete_one(doc! {"_id": format!("e{}", n - 5)})
                    .await
                    .unwrap();
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (tx, task)
}

/// The group's committed offsets on `topic`, read from outside the group.
async fn committed_now(topic: &str, group: &str) -> Offsets {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", group)
        .create()
        .expect("offset reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let got =
        tokio::task::spawn_blocking(move || reader.committed_offsets(tpl, Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("fetch committed offsets");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

/// Number of members of `group` now.
async fn members(group: &str) -> usize {
    let group = group.to_owned();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .create()
            .unwrap();
        let list = client
            .fetch_group_list(Some(&group), Duration::from_secs(10))
            .expect("describe group");
        list.groups().iter().map(|g| g.members().len()).sum()
    })
    .await
    .unwrap()
}

/// Waits for a Kafka capture cycle stamped after `after_ms` to complete.
async fn cycle_after(metrics: &Arc<Metrics>, after_ms: i64) {
    wait_for("a Kafka capture cycle", Duration::from_secs(30), || {
        let m = metrics.clone();
        async move { m.kafka.last_cycle_ms.load(Relaxed) > after_ms }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_command_restores_mongodb_and_kafka_to_the_same_moment() {
    let client = mongo_client().await;
    let db_name = unique_db("rk");
    let events = client
        .database(&db_name)
        .collection_with_options::<Document>(
            "events",
            CollectionOptions::builder()
                .write_concern(WriteConcern::majority())
                .build(),
        );
    events
        .insert_many(
            (0..200)
                .map(|i| doc! {"_id": format!("seed{i}"), "v": i})
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let topic = unique_name("rk-topic");
    let group = unique_name("rk-group");
    create_topic(&topic).await;
    let (stop_producer, rx) = watch::channel(false);
    let producer = spawn_producer(topic.clone(), rx);

    // Both captures into one repository, for one source; the Kafka capture reads MongoDB's
    // majority commit point in each cycle (as `mc-agent run` does with a `kafka:` section).
    let source_id = unique_name("rk").to_lowercase();
    let cap = Captured::start(&source_id).await;
    let kafka_metrics = Arc::new(Metrics::default());
    let (stop_kafka, kafka_rx) = watch::channel(false);
    let kafka_capture = tokio::spawn(mc_agent::kafka::run(
        cap.repo.clone(),
        KafkaCaptureSettings {
            bootstrap: kafka_bootstrap(),
            groups: vec![group.clone()],
            interval: Duration::from_millis(200),
            segment_span: Duration::from_secs(1),
            request_timeout: Duration::from_secs(3),
            source: source_id.clone(),
            writer: WriterInfo {
                id: "test".into(),
                fence: 0,
            },
            zstd_level: 3,
        },
        Some(cap.source.clone()),
        kafka_metrics.clone(),
        kafka_rx,
    ));
    let (writer, writer_task) = spawn_writer(events.clone());
    let (consumer, consumer_task) = spawn_consumer(topic.clone(), group.clone());
    // The snapshot is read while the collection is being written.
    cap.snapshot(&db_name).await;

    // Let both make progress: the group has committed on every partition.
    wait_for(
        "the group to commit on every partition",
        Duration::from_secs(60),
        || {
            let (topic, group) = (topic.clone(), group.clone());
            async move { committed_now(&topic, &group).await.len() == PARTITIONS as usize }
        },
    )
    .await;

    // The moment T. Both workloads pause: nothing more is written to the database or committed
    // by the group until they resume.
    let written_at_t = pause(&writer).await;
    let offsets_at_t = pause(&consumer).await;
    assert_eq!(offsets_at_t.len(), PARTITIONS as usize);
    // A Kafka capture cycle that started after the pause has completed: it read exactly
    // `offsets_at_t`, and the cluster time it recorded is at or after the last (w: majority)
    // write. T is the majority commit point read after it, so that cycle's cluster time is ≤ T.
    cycle_after(&kafka_metrics, now_ms()).await;
    let t: OplogTs = cap.source.majority_point().await.unwrap();
    let state_at_t = db_state(&client, &db_name).await;
    assert_eq!(committed_now(&topic, &group).await, offsets_at_t);
    // Move the majority commit point past T (a write elsewhere), then wait for a cycle stamped
    // after that write: every later cycle records a cluster time > T and is not selected; every
    // earlier one completed while the group was still paused. Only then resume.
    client
        .database(&format!("{db_name}_marker"))
        .collection::<Document>("m")
        .insert_one(doc! {"after_t": true})
        .write_concern(WriteConcern::majority())
        .await
        .unwrap();
    cycle_after(&kafka_metrics, now_ms()).await;
    writer.send(Cmd::Resume).await.unwrap();
    consumer.send(Cmd::Resume).await.unwrap();

    // Both move on well past T.
    wait_for(
        "the workloads to move past T",
        Duration::from_secs(60),
        || {
            let (topic, group, offsets_at_t) = (topic.clone(), group.clone(), offsets_at_t.clone());
            async move {
                let now = committed_now(&topic, &group).await;
                now.iter()
                    .all(|(k, v)| offsets_at_t.get(k).is_some_and(|o| v > o))
            }
        },
    )
    .await;
    let t0 = Instant::now();
    while pause(&writer).await < written_at_t + 20 {
        writer.send(Cmd::Resume).await.unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the writer made no progress"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(writer);
    writer_task.await.unwrap();
    drop(consumer);
    consumer_task.await.unwrap();
    let _ = stop_producer.send(true);
    producer.await.unwrap();
    wait_for(
        "the group to have no members",
        Duration::from_secs(60),
        || {
            let group = group.clone();
            async move { members(&group).await == 0 }
        },
    )
    .await;
    let final_offsets = committed_now(&topic, &group).await;
    assert_ne!(final_offsets, offsets_at_t);
    let final_state = db_state(&client, &db_name).await;
    assert_ne!(final_state, state_at_t);
    cycle_after(&kafka_metrics, now_ms()).await;
    stop_kafka.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), kafka_capture)
        .await
        .expect("Kafka capture stops within 30 s")
        .unwrap();
    let (dir, _repo) = cap.finish().await;
    let (repo, keyring) = repo_paths(dir.path());
    let repo = repo.to_str().unwrap().to_owned();

    let target = PrivateReplSet::start(Default::default()).await;
    let target_uri = target.uri();
    let bootstrap = kafka_bootstrap();
    // The point is the exact oplog timestamp form. `ts:S:I` restores MongoDB to every oplog
    // entry ≤ T, and selects the last Kafka capture whose recorded MongoDB cluster time is ≤ T
    // (docs/restore.md): both sides are decided by the same clock, MongoDB's. An RFC 3339 time
    // would compare the primary's `wall` for MongoDB but the agent's wall clock for Kafka, two
    // clocks and a cycle's duration apart, so it could not be exact.
    let at = format!("ts:{}:{}", t.t, t.i);
    let ns = format!("{db_name}.*");
    let combined = |extra: &[&str]| {
        let mut args = vec![
            "--at",
            &at,
            "--target",
            &target_uri,
            "--repo",
            &repo,
            "--source",
            &source_id,
            "--ns",
            &ns,
            "--kafka-groups",
            &group,
            "--kafka-bootstrap",
            &bootstrap,
            "--drop",
        ];
        args.extend_from_slice(extra);
        mc_restore(&args, &keyring)
    };

    // A dry run prints the MongoDB plan and the Kafka plan table, and changes nothing.
    let out = combined(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("GROUP") && stdout.contains("DELTA") && stdout.contains(&topic),
        "{}",
        show(&out)
    );
    assert_eq!(committed_now(&topic, &group).await, final_offsets);

    // A member in the group: MongoDB is restored, the Kafka reset is refused, the exit is
    // non-zero and the message says what was done and what to run.
    let (idle, mut idle_rx) = mpsc::channel::<Cmd<Offsets>>(1);
    let idle_member = {
        let (topic, group) = (topic.clone(), group.clone());
        tokio::spawn(async move {
            let member: StreamConsumer = ClientConfig::new()
                .set("bootstrap.servers", kafka_bootstrap())
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .create()
                .expect("idle member");
            member.subscribe(&[&topic]).expect("subscribe");
            // Polls (to stay in the group) without committing anything.
            while obey(&mut idle_rx, &Offsets::new()).await {
                let _ = tokio::time::timeout(Duration::from_millis(100), member.recv()).await;
            }
        })
    };
    wait_for(
        "the idle member to join the group",
        Duration::from_secs(60),
        || {
            let group = group.clone();
            async move { members(&group).await == 1 }
        },
    )
    .await;
    let out = combined(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr.contains("MongoDB is restored")
            && stderr.contains("active member")
            && stderr.contains(&format!("groups NOT reset: {group}"))
            && stderr.contains("groups reset: none"),
        "{}",
        show(&out)
    );
    assert_same_state(
        "MongoDB restored before the Kafka reset was refused",
        &state_at_t,
        &db_state(target.node_client(0), &db_name).await,
    );
    assert_eq!(committed_now(&topic, &group).await, final_offsets);
    drop(idle);
    idle_member.await.unwrap();
    wait_for("the idle member to leave", Duration::from_secs(60), || {
        let group = group.clone();
        async move { members(&group).await == 0 }
    })
    .await;
    // The printed command resets just Kafka, to the same point.
    let retry = stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("mc-restore kafka-offsets "))
        .unwrap_or_else(|| panic!("no retry command in: {stderr}"));
    assert!(
        retry.contains(&format!("--at {at} ")),
        "retry at another point: {retry}"
    );
    let retry_args: Vec<&str> = retry.split_whitespace().skip(1).collect();
    let out = mc_restore(&retry_args, &keyring);
    assert_eq!(out.status.code(), Some(0), "{retry}: {}", show(&out));
    assert_eq!(committed_now(&topic, &group).await, offsets_at_t);

    // Move the group away again (to its newest captured offsets), then the one combined command
    // does both.
    let out = mc_restore(
        &[
            "kafka-offsets",
            "--at",
            "latest",
            "--groups",
            &group,
            "--repo",
            &repo,
            "--source",
            &source_id,
            "--bootstrap",
            &bootstrap,
        ],
        &keyring,
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_ne!(committed_now(&topic, &group).await, offsets_at_t);
    let out = combined(&["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    let kafka = &summary["kafka"];
    assert_eq!(kafka["dry_run"], false, "{summary}");
    assert_eq!(kafka["committed"], PARTITIONS as u64, "{summary}");
    assert_eq!(kafka["groups"][0]["group"], group.as_str(), "{summary}");
    assert_same_state(
        &format!("MongoDB restored to {at}"),
        &state_at_t,
        &db_state(target.node_client(0), &db_name).await,
    );
    assert_eq!(
        committed_now(&topic, &group).await,
        offsets_at_t,
        "the group's offsets after the combined restore to {at}"
    );
}
