//! Kafka consumer-group offsets against the real broker: the agent's capture running in-process
//! while a producer writes and a consumer group consumes and commits; then `mc-restore
//! kafka-offsets` puts the group back to what it had committed at each recorded moment. Also:
//! active groups are refused by name, unknown groups and points before any capture are clear
//! errors, an unreachable broker fails within the timeout, and capture survives a dead broker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_agent::kafka::KafkaCaptureSettings;
use mc_agent::metrics::Metrics;
use mc_core::catalog::Repository;
use mc_core::crypto::keys::create_keyring_file;
use mc_core::format::WriterInfo;
use mc_core::storage::local::LocalDir;
use mc_tests::restore::{mc_restore, show};
use mc_tests::{kafka_bootstrap, unique_name};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot, watch};

type Offsets = BTreeMap<(String, i32), i64>;

const PARTITIONS: i32 = 2;

/// Polls `cond` every 50 ms until it holds; fails the test after `limit`.
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

enum Cmd {
    /// Stop consuming; reply with the offsets committed so far (acknowledged by the broker).
    Pause(oneshot::Sender<Offsets>),
    Resume,
}

/// A group member consuming and committing every message synchronously, pausable, and the
/// offsets it knows it committed. Dropping the command sender stops it (it leaves the group).
fn spawn_consumer(
    topic: String,
    group: String,
    client_id: String,
) -> (mpsc::Sender<Cmd>, tokio::task::JoinHandle<Offsets>) {
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(async move {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .set("group.id", &group)
            .set("client.id", &client_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("kafka consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
        let mut committed = Offsets::new();
        loop {
            match rx.try_recv() {
                Ok(Cmd::Pause(reply)) => {
                    let _ = reply.send(committed.clone());
                    match rx.recv().await {
                        Some(Cmd::Resume) => {}
                        Some(Cmd::Pause(again)) => {
                            let _ = again.send(committed.clone());
                        }
                        None => break,
                    }
                }
                Ok(Cmd::Resume) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
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
        drop(consumer);
        committed
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

/// Members of `group` now.
async fn members(group: &str) -> Vec<String> {
    let group = group.to_owned();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .create()
            .unwrap();
        let list = client
            .fetch_group_list(Some(&group), Duration::from_secs(10))
            .expect("describe group");
        list.groups()
            .iter()
            .flat_map(|g| g.members().iter().map(|m| m.client_id().to_owned()))
            .collect()
    })
    .await
    .unwrap()
}

/// A repository in a temporary directory with Kafka capture running in-process.
struct Capture {
    dir: tempfile::TempDir,
    source_id: String,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Capture {
    async fn start(bootstrap: &str, groups: Vec<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keyring = create_keyring_file(&dir.path().join("keyring")).unwrap();
        let repo = Repository::new(
            Arc::new(LocalDir::new(dir.path().join("repo")).unwrap()),
            keyring,
        );
        repo.init().await.unwrap();
        let source_id = "rs0".to_owned();
        let settings = KafkaCaptureSettings {
            bootstrap: bootstrap.to_owned(),
            groups,
            interval: Duration::from_millis(200),
            segment_span: Duration::from_secs(1),
            request_timeout: Duration::from_secs(3),
            source: source_id.clone(),
            writer: WriterInfo {
                id: "test".into(),
                fence: 0,
            },
            zstd_level: 3,
        };
        let metrics = Arc::new(Metrics::default());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(mc_agent::kafka::run(
            repo,
            settings,
            None,
            metrics.clone(),
            rx,
        ));
        Self {
            dir,
            source_id,
            metrics,
            stop,
            task,
        }
    }

    /// Waits for a capture cycle that started after `after_ms` to complete.
    async fn cycle_after(&self, after_ms: i64) -> i64 {
        let m = self.metrics.clone();
        wait_for("a Kafka capture cycle", Duration::from_secs(30), || {
            let m = m.clone();
            async move { m.kafka.last_cycle_ms.load(Relaxed) > after_ms }
        })
        .await;
        self.metrics.kafka.last_cycle_ms.load(Relaxed)
    }

    async fn finish(self) -> (tempfile::TempDir, String) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("capture stops within 30 s")
            .unwrap();
        (self.dir, self.source_id)
    }
}

fn repo_args(dir: &Path) -> (String, PathBuf) {
    (dir.join("repo").display().to_string(), dir.join("keyring"))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offsets_restored_to_each_recorded_moment() {
    let topic = unique_name("ko-topic");
    let group = unique_name("ko-group");
    create_topic(&topic).await;
    let (stop_producer, rx) = watch::channel(false);
    let producer = spawn_producer(topic.clone(), rx);
    let capture = Capture::start(&kafka_bootstrap(), vec![group.clone()]).await;
    let (consumer, consumer_task) =
        spawn_consumer(topic.clone(), group.clone(), unique_name("ko-client"));

    // Wait until the group has committed on every partition, then record three moments.
    let mut recorded: Vec<(i64, Offsets)> = Vec::new();
    let mut last: Offsets = Offsets::new();
    for i in 0..3 {
        // Let the consumer make progress past the previous moment (on every partition).
        let t0 = Instant::now();
        loop {
            let (reply, got) = oneshot::channel();
            consumer.send(Cmd::Pause(reply)).await.unwrap();
            let offsets = got.await.unwrap();
            let progressed = offsets.len() == PARTITIONS as usize
                && offsets
                    .iter()
                    .all(|(k, v)| last.get(k).is_none_or(|old| v > old));
            if progressed {
                // Paused: nothing more is committed until resumed. A capture cycle that starts
                // now sees exactly `offsets`; any T after it and before resuming selects it.
                let paused_at = now_ms();
                capture.cycle_after(paused_at).await;
                let t = now_ms();
                // A cycle stamped at or before `t` may still be reading: resume only once a
                // cycle stamped after `t` has completed (cycles run one after another).
                capture.cycle_after(t).await;
                recorded.push((t, offsets.clone()));
                last = offsets;
                consumer.send(Cmd::Resume).await.unwrap();
                break;
            }
            consumer.send(Cmd::Resume).await.unwrap();
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the consumer made no progress in 60 s (moment {i})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Capture keeps running while the consumer moves on; its lag is tracked.
    assert_eq!(capture.metrics.kafka.groups_tracked.load(Relaxed), 1);
    assert!(capture
        .metrics
        .kafka
        .lag
        .lock()
        .unwrap()
        .contains_key(&group));
    let text = capture.metrics.render("rs0");
    assert!(
        text.contains(&format!(
            "mc_kafka_group_lag{{source=\"rs0\",group=\"{group}\"}}"
        )),
        "{text}"
    );
    assert!(
        text.contains("mc_kafka_rpo_seconds{source=\"rs0\"}"),
        "{text}"
    );

    // Stop the consumer (it leaves the group), then capture.
    drop(consumer);
    consumer_task.await.unwrap();
    let _ = stop_producer.send(true);
    producer.await.unwrap();
    wait_for(
        "the group to have no members",
        Duration::from_secs(60),
        || {
            let group = group.clone();
            async move { members(&group).await.is_empty() }
        },
    )
    .await;
    let final_offsets = committed_now(&topic, &group).await;
    let (dir, source_id) = capture.finish().await;
    let (repo, keyring) = repo_args(dir.path());
    let bootstrap = kafka_bootstrap();

    // `mc-restore list` shows the offset stream's runs.
    let out = mc_restore(
        &["list", "--repo", &repo, "--source", &source_id, "--json"],
        &keyring,
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON list");
    let runs = listed["kafka_offsets"]
        .as_array()
        .expect("kafka_offsets runs");
    assert_eq!(runs.len(), 1, "one unbroken run: {listed}");
    assert!(runs[0]["first_ms"].as_i64().unwrap() <= recorded[0].0);

    // A dry run plans and changes nothing.
    let at0 = rfc3339(recorded[0].0);
    let out = mc_restore(
        &[
            "kafka-offsets",
            "--at",
            &at0,
            "--groups",
            &group,
            "--repo",
            &repo,
            "--source",
            &source_id,
            "--bootstrap",
            &bootstrap,
            "--dry-run",
        ],
        &keyring,
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("GROUP") && stdout.contains("DELTA") && stdout.contains(&topic),
        "{}",
        show(&out)
    );
    assert_eq!(
        committed_now(&topic, &group).await,
        final_offsets,
        "a dry run changed offsets"
    );

    // Restore each moment, newest first then oldest, and compare with what the test committed.
    for (t, want) in recorded.iter().rev().chain(recorded.iter().take(1)) {
        let at = rfc3339(*t);
        let out = mc_restore(
            &[
                "kafka-offsets",
                "--at",
                &at,
                "--groups",
                &group,
                "--repo",
                &repo,
                "--source",
                &source_id,
                "--bootstrap",
                &bootstrap,
                "--json",
            ],
            &keyring,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "restore at {at}: {}",
            show(&out)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        assert_eq!(report["committed"], PARTITIONS as u64, "{report}");
        assert_eq!(
            committed_now(&topic, &group).await,
            *want,
            "offsets after restoring to {at}"
        );
    }

    // Unknown group: a clear error naming the pattern and the groups recorded.
    let out = mc_restore(
        &[
            "kafka-offsets",
            "--at",
            "latest",
            "--groups",
            "no-such-group-*",
            "--repo",
            &repo,
            "--source",
            &source_id,
            "--bootstrap",
            &bootstrap,
        ],
        &keyring,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr.contains("no consumer group recorded")
            && stderr.contains("'no-such-group-*'")
            && stderr.contains(&group),
        "{}",
        show(&out)
    );

    // A point before the first capture: nothing recorded at or before it.
    let out = mc_restore(
        &[
            "kafka-offsets",
            "--at",
            "2001-01-01T00:00:00Z",
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
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no Kafka offsets recorded at or before"),
        "{}",
        show(&out)
    );

    // Broker unreachable: a clear error within the timeout, non-zero exit, nothing hangs.
    let t0 = Instant::now();
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
            "127.0.0.1:1",
            "--timeout",
            "2s",
        ],
        &keyring,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach Kafka at 127.0.0.1:1"),
        "{}",
        show(&out)
    );
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn active_group_is_refused_naming_its_members() {
    let topic = unique_name("ka-topic");
    let group = unique_name("ka-group");
    let client_id = unique_name("ka-client");
    create_topic(&topic).await;
    let (stop_producer, rx) = watch::channel(false);
    let producer = spawn_producer(topic.clone(), rx);
    let capture = Capture::start(&kafka_bootstrap(), vec!["ka-group-*".into()]).await;
    let (consumer, consumer_task) = spawn_consumer(topic.clone(), group.clone(), client_id.clone());
    wait_for("the consumer to commit", Duration::from_secs(60), || {
        let (topic, group) = (topic.clone(), group.clone());
        async move { !committed_now(&topic, &group).await.is_empty() }
    })
    .await;
    capture.cycle_after(now_ms()).await;
    let _ = stop_producer.send(true);
    producer.await.unwrap();
    let (dir, source_id) = Capture::finish(capture).await;
    let (repo, keyring) = repo_args(dir.path());
    assert!(members(&group).await.contains(&client_id));

    let before = committed_now(&topic, &group).await;
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
            &kafka_bootstrap(),
        ],
        &keyring,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr.contains(&format!("group {group} has 1 active member"))
            && stderr.contains(&client_id),
        "{}",
        show(&out)
    );
    assert!(stderr.contains("--wait-inactive"), "{}", show(&out));

    // With --wait-inactive, the reset goes ahead once the consumer leaves.
    let waiting = {
        let args: Vec<String> = [
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
            &kafka_bootstrap(),
            "--wait-inactive",
            "60s",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let keyring = keyring.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            mc_restore(&args, &keyring)
        })
    };
    drop(consumer);
    consumer_task.await.unwrap();
    let out = waiting.await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert!(report["committed"].as_u64().unwrap() >= 1, "{report}");
    let after = committed_now(&topic, &group).await;
    assert!(
        after
            .iter()
            .all(|(k, v)| before.get(k).is_some_and(|b| v <= b)),
        "reset moved offsets forward: {before:?} → {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_counts_errors_and_stops_promptly_when_the_broker_is_down() {
    let capture = Capture::start("127.0.0.1:1", vec!["*".into()]).await;
    let m = capture.metrics.clone();
    wait_for("two failed cycles", Duration::from_secs(60), || {
        let m = m.clone();
        async move { m.kafka.capture_errors.load(Relaxed) >= 2 }
    })
    .await;
    assert_eq!(capture.metrics.kafka.cycles.load(Relaxed), 0);
    let text = capture.metrics.render("rs0");
    assert!(
        text.contains("mc_kafka_rpo_seconds{source=\"rs0\"} -1"),
        "{text}"
    );
    let t0 = Instant::now();
    let (dir, _) = capture.finish().await;
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        t0.elapsed()
    );
    let listed = std::fs::read_dir(dir.path().join("repo")).unwrap().count();
    assert!(listed >= 1);
}
