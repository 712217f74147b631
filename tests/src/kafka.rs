//! Helpers for tests of Kafka consumer-group offsets against the real broker: topics, a producer,
//! a pausable committing consumer, committed offsets and group members read from outside the
//! group, and the agent's Kafka capture run in-process with waiting on its cycles.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_agent::capture::oplog::OplogSource;
use mc_agent::kafka::KafkaCaptureSettings;
use mc_agent::metrics::Metrics;
use mc_core::catalog::Repository;
use mc_core::policy::KafkaCluster;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot, watch};

use crate::kafka_bootstrap;

/// Committed offsets by (topic, partition).
pub type Offsets = BTreeMap<(String, i32), i64>;

/// Number of partitions of every topic made by [`create_topic`].
pub const PARTITIONS: i32 = 2;

/// Polls `cond` every 50 ms until it holds; fails the test after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F)
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

/// The wall clock now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Creates `topic` with [`PARTITIONS`] partitions on the test broker.
pub async fn create_topic(topic: &str) {
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

/// Deletes the records of `topic`/`partition` before `offset` (DeleteRecords), as retention
/// would: the partition's low watermark becomes `offset`.
pub async fn delete_records_before(topic: &str, partition: i32, offset: i64) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .create()
        .expect("kafka admin client");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .expect("delete-records partition list");
    let deleted = admin
        .delete_records(&tpl, &AdminOptions::new())
        .await
        .expect("delete records request");
    for e in deleted.elements() {
        e.error()
            .unwrap_or_else(|err| panic!("delete records of {topic}/{partition}: {err}"));
    }
}

/// Produces to every partition of `topic` in turn until `stop` turns true.
pub fn spawn_producer(
    topic: String,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
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
pub enum Cmd<T> {
    /// Stop; reply with the progress so far.
    Pause(oneshot::Sender<T>),
    /// Go on after a `Pause`.
    Resume,
}

/// Receives a workload's pending commands; returns false when the workload must stop.
pub async fn obey<T: Clone>(rx: &mut mpsc::Receiver<Cmd<T>>, progress: &T) -> bool {
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

/// Pauses the workload behind `tx` and returns its progress so far.
pub async fn pause<T>(tx: &mpsc::Sender<Cmd<T>>) -> T {
    let (reply, got) = oneshot::channel();
    tx.send(Cmd::Pause(reply)).await.unwrap();
    got.await.unwrap()
}

/// A member of `group` (as `client_id`) consuming `topic` and committing every message
/// synchronously; pausable, its progress is the offsets it knows it committed. Dropping the
/// sender stops it (it leaves the group).
pub fn spawn_consumer(
    topic: String,
    group: String,
    client_id: String,
) -> (mpsc::Sender<Cmd<Offsets>>, tokio::task::JoinHandle<()>) {
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

/// The group's committed offsets on `topic`, read from outside the group.
pub async fn committed_now(topic: &str, group: &str) -> Offsets {
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

/// Client ids of the members of `group` now.
pub async fn members(group: &str) -> Vec<String> {
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

/// Waits (for `what`) until `group` has exactly `n` members; fails the test after 60 s.
pub async fn wait_members(what: &str, group: &str, n: usize) {
    wait_for(what, Duration::from_secs(60), || async move {
        members(group).await.len() == n
    })
    .await;
}

pub use crate::restore::temp_repository;

/// Kafka capture settings for tests: what `mc-agent run` builds from a policy's `kafka:` section
/// ([`KafkaCaptureSettings::new`]) for a plaintext cluster at `bootstrap` capturing `groups`
/// every 200 ms, written by `test`, then sized for tests: 1 s segments, 3 s request timeout.
pub fn capture_settings(
    bootstrap: &str,
    groups: Vec<String>,
    source: &str,
) -> KafkaCaptureSettings {
    let cluster = KafkaCluster {
        bootstrap: bootstrap.to_owned(),
        groups,
        security: Default::default(),
    };
    let mut settings = KafkaCaptureSettings::new(
        cluster,
        Duration::from_millis(200),
        Duration::from_secs(15 * 60),
        mc_core::policy::CaptureSettings::default().zstd_level,
        source,
        "test",
    );
    settings.segment_span = Duration::from_secs(1);
    settings.request_timeout = Duration::from_secs(3);
    settings
}

/// The agent's Kafka capture running in-process until [`KafkaCapture::stop`].
pub struct KafkaCapture {
    /// The capture's metrics (cycles, errors, lag, last cycle time).
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl KafkaCapture {
    /// Starts capture into `repo` with `settings`; `mongo` supplies each cycle's cluster time.
    pub fn start(
        repo: Repository,
        settings: KafkaCaptureSettings,
        mongo: Option<OplogSource>,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(mc_agent::kafka::run(
            repo,
            settings,
            mongo,
            metrics.clone(),
            rx,
        ));
        Self {
            metrics,
            stop,
            task,
        }
    }

    /// Waits for a capture cycle stamped after `after_ms` to complete; returns its stamp.
    pub async fn cycle_after(&self, after_ms: i64) -> i64 {
        let m = self.metrics.clone();
        wait_for("a Kafka capture cycle", Duration::from_secs(30), || {
            let m = m.clone();
            async move { m.kafka.last_cycle_ms.load(Relaxed) > after_ms }
        })
        .await;
        self.metrics.kafka.last_cycle_ms.load(Relaxed)
    }

    /// Stops capture (it seals and stores its open segment); fails the test after 30 s.
    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("Kafka capture stops within 30 s")
            .unwrap();
    }
}
