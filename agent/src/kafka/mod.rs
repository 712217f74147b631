//! Continuous capture of Kafka consumer-group offsets: source (one observation of the cluster
//! per interval) → transform (the checkpointer: a full checkpoint opening each segment, then
//! only changes) → sink (sealing and storing `kafka-offsets` segments, in order).
//!
//! It runs as its own task beside the oplog capture and never waits on it or blocks it: a
//! broker that is down costs retries with backoff, `mc_kafka_capture_errors_total`, a growing
//! `mc_kafka_rpo_seconds` and a gap between segments, nothing else. Each record carries the
//! cycle's wall time and, when the agent captures MongoDB too, the majority commit point read
//! at the same moment, so one restore point maps to both (`docs/format.md` §8).

pub mod checkpoint;
pub mod sink;
pub mod source;

use std::sync::Arc;
use std::time::Duration;

use mc_core::catalog::Repository;
use mc_core::format::WriterInfo;
use mc_core::storage::retry::Backoff;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use self::checkpoint::Checkpointer;
use self::sink::{store_batches, SinkSettings};
use self::source::OffsetSource;
use crate::capture::oplog::OplogSource;
use crate::metrics::Metrics;

/// What Kafka capture runs with, resolved from the policy's `kafka:` section.
#[derive(Debug, Clone)]
pub struct KafkaCaptureSettings {
    /// `host:port,host:port`.
    pub bootstrap: String,
    /// Group patterns (`*`, `?`).
    pub groups: Vec<String>,
    /// Time between capture cycles (`kafka.interval`).
    pub interval: Duration,
    /// A segment is sealed this long after its first cycle; the next opens with a checkpoint.
    pub segment_span: Duration,
    /// Longest wait for one Kafka request.
    pub request_timeout: Duration,
    /// TLS and SASL (`kafka.security`).
    pub security: mc_core::kafka::KafkaSecurity,
    pub source: String,
    pub writer: WriterInfo,
    pub zstd_level: i32,
}

impl KafkaCaptureSettings {
    /// The segment span used by `mc-agent run`: a minute, but at least one interval and at
    /// most half the RPO (so the offset stream's RPO stays within the objective).
    pub fn default_span(interval: Duration, rpo: Duration) -> Duration {
        Duration::from_secs(60).min(rpo / 2).max(interval)
    }
}

/// Runs Kafka capture until `shutdown` turns true; then seals the open segment and stores it.
/// `mongo`, when given, supplies each cycle's MongoDB cluster time.
pub async fn run(
    repo: Repository,
    settings: KafkaCaptureSettings,
    mongo: Option<OplogSource>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    metrics.kafka.enable();
    let mut source = OffsetSource::new(
        settings.bootstrap.clone(),
        settings.security.clone(),
        settings.request_timeout,
    );
    let span_ms = u64::try_from(settings.segment_span.as_millis()).unwrap_or(u64::MAX);
    let mut checkpointer = Checkpointer::new(span_ms);
    let (tx, rx) = mpsc::channel(8);
    let sink = tokio::spawn(store_batches(
        repo,
        SinkSettings {
            source: settings.source.clone(),
            writer: settings.writer.clone(),
            zstd_level: settings.zstd_level,
            interval_ms: u64::try_from(settings.interval.as_millis()).unwrap_or(u64::MAX),
        },
        rx,
        metrics.clone(),
    ));
    // The workspace's backoff: from the interval (at most 1 s), doubling up to half of
    // max(30 s, interval); its jitter adds up to the wait again, so no wait is longer than
    // max(30 s, interval), and a broker back up is read again within that.
    let longest = Duration::from_secs(30).max(settings.interval);
    let mut backoff = Backoff::new(settings.interval.min(Duration::from_secs(1)), longest / 2);
    let mut next = Instant::now();
    tracing::info!(bootstrap = %settings.bootstrap, groups = ?settings.groups, interval = ?settings.interval, "capturing Kafka consumer-group offsets");
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        let started = Instant::now();
        let observed = tokio::select! {
            observed = source.observe(&settings.groups, mongo.as_ref()) => observed,
            _ = shutdown.changed() => break,
        };
        match observed {
            Ok(obs) => {
                backoff.reset();
                metrics
                    .kafka
                    .record_cycle(obs.lag_by_group(), obs.time_ms, started.elapsed());
                if let Some(batch) = checkpointer.push(obs) {
                    if tx.send(batch).await.is_err() {
                        break;
                    }
                }
                next = started + settings.interval;
            }
            Err(e) => {
                metrics.kafka.capture_errors.inc();
                let wait = backoff.next_wait();
                tracing::warn!(error = %e, retry_in = ?wait, "Kafka offset capture failed; MongoDB capture is unaffected");
                // A segment covers an unbroken run of cycles: close it before the gap.
                if let Some(batch) = checkpointer.take() {
                    if tx.send(batch).await.is_err() {
                        break;
                    }
                }
                next = Instant::now() + wait;
            }
        }
    }
    if let Some(batch) = checkpointer.take() {
        let _ = tx.send(batch).await;
    }
    drop(tx);
    let _ = sink.await;
    tracing::info!("Kafka offset capture stopped");
}
