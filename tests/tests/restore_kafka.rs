//! The combined restore against real servers (issue 6): a MongoDB collection is written and a
//! Kafka consumer group consumes and commits while the agent's oplog capture and Kafka offset
//! capture both run in-process into one repository; at a moment T (both workloads paused) the
//! test records the database's exact state and the group's committed offsets; both continue;
//! afterwards ONE `mc-restore --at T --target … --kafka-groups …` must give back both: the
//! restored database equal to the recorded state, the group's offsets equal to the recorded
//! ones. On the way: `--dry-run` prints the Kafka plan and changes nothing, and a Kafka reset
//! refused after MongoDB was restored exits non-zero saying so, naming the group not reset and
//! the `kafka-offsets` command that finishes the job (which is then run as printed).

use std::time::{Duration, Instant};

use mc_core::format::OplogTs;
use mc_tests::kafka::{
    capture_settings, committed_now, create_topic, now_ms, obey, pause, spawn_consumer,
    spawn_producer, wait_for, wait_members, Cmd, KafkaCapture, Offsets, PARTITIONS,
};
use mc_tests::mongod::PrivateReplSet;
use mc_tests::restore::{assert_same_state, db_state, mc_restore, repo_paths, show, Captured};
use mc_tests::{kafka_bootstrap, mongo_client, unique_db, unique_name};
use mongodb::bson::{doc, Document};
use mongodb::options::{CollectionOptions, WriteConcern};
use mongodb::Collection;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::{mpsc, watch};

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
    let kafka_capture = KafkaCapture::start(
        cap.repo.clone(),
        capture_settings(&kafka_bootstrap(), vec![group.clone()], &source_id),
        Some(cap.source.clone()),
    );
    let (writer, writer_task) = spawn_writer(events.clone());
    let (consumer, consumer_task) =
        spawn_consumer(topic.clone(), group.clone(), unique_name("rk-client"));
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
    kafka_capture.cycle_after(now_ms()).await;
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
    kafka_capture.cycle_after(now_ms()).await;
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
    wait_members("the group to have no members", &group, 0).await;
    let final_offsets = committed_now(&topic, &group).await;
    assert_ne!(final_offsets, offsets_at_t);
    let final_state = db_state(&client, &db_name).await;
    assert_ne!(final_state, state_at_t);
    kafka_capture.cycle_after(now_ms()).await;
    kafka_capture.stop().await;
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
    wait_members("the idle member to join the group", &group, 1).await;
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
    wait_members("the idle member to leave", &group, 0).await;
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

    // A drill with the policy's kafka section also plans (never applies) the group reset at the
    // restored point: the offsets stay where the restore put them.
    let policy = mc_tests::agent::write_test_policy(
        dir.path(),
        "rk-drill",
        &source_id,
        "MC_TEST_MONGODB_URI",
        &format!("kafka:\n  bootstrap_servers: [\"{bootstrap}\"]\n  groups: [\"{group}\"]\n"),
    );
    let out = std::process::Command::new(mc_tests::workspace_bin("mc-restore"))
        .args(["drill", "--policy"])
        .arg(&policy)
        .args([
            "--scratch",
            &target_uri,
            "--ns",
            &format!("{db_name}.*"),
            "--json",
        ])
        .env("MC_TEST_MONGODB_URI", mc_tests::mongodb_uri())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kafka"]["groups"], 1, "{report:#}");
    assert_eq!(
        report["kafka"]["partitions"], PARTITIONS as u64,
        "{report:#}"
    );
    assert!(
        report["phases"].to_string().contains("kafka-plan"),
        "{report:#}"
    );
    assert_eq!(
        committed_now(&topic, &group).await,
        offsets_at_t,
        "a drill changes no offsets"
    );
}
