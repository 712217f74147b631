//! The Kafka offset capture's metrics (`mc_kafka_*`), on `/metrics` only once Kafka capture runs
//! in this process, and the Kafka part of `/status`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::computed::describe;
use super::rfc3339_ms;

#[derive(Debug, Default)]
pub struct KafkaMetrics {
    /// Set once Kafka capture has started in this process: the metrics are shown from then on.
    pub enabled: std::sync::atomic::AtomicBool,
    /// Successful capture cycles.
    pub cycles: Counter,
    /// Time of the newest successful cycle, Unix ms.
    pub last_cycle_ms: AtomicI64,
    /// How long the newest successful cycle took (list groups, offsets, watermarks), µs.
    pub last_cycle_micros: AtomicU64,
    /// Groups seen by the newest successful cycle.
    pub groups_tracked: Gauge<u64, AtomicU64>,
    /// Failed capture cycles (each is retried with backoff).
    pub capture_errors: Counter,
    /// Failed segment writes (each is retried).
    pub upload_errors: Counter,
    pub segments_uploaded: Counter,
    /// Time of the newest durable capture cycle, Unix ms (0: none yet).
    pub durable_ms: AtomicI64,
    /// Lag (sum over partitions of high − committed) of each group at the newest cycle.
    pub lag: Mutex<BTreeMap<String, i64>>,
}

/// The Kafka part of `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct KafkaStatus {
    /// Successful capture cycles of this process.
    pub cycles: u64,
    pub groups_tracked: u64,
    /// Time of the newest successful cycle (RFC 3339), if any.
    pub last_cycle: Option<String>,
    /// How long the newest successful cycle took, seconds.
    pub last_cycle_seconds: Option<f64>,
    /// Time of the newest durable cycle (RFC 3339), if any.
    pub newest_durable: Option<String>,
    /// Now minus the newest durable cycle, seconds.
    pub rpo_seconds: Option<f64>,
    pub capture_errors: u64,
    pub upload_errors: u64,
    pub segments_uploaded: u64,
    /// Sum over the tracked groups of their lag (high watermark − committed) at the newest cycle.
    pub total_lag: i64,
}

impl KafkaMetrics {
    /// Registers the `mc_kafka_*` metrics, encoded only while [`KafkaMetrics::enabled`] is set.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(KafkaCollector(self.clone())));
    }

    /// Kafka capture runs in this process: its metrics and status are shown from now on.
    pub fn enable(&self) {
        self.enabled.store(true, Relaxed);
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// Takes in one successful cycle observed at `time_ms` that took `took`: each tracked
    /// group's lag (from [`crate::kafka::source::Observation::lag_by_group`]).
    pub fn record_cycle(
        &self,
        lag_by_group: BTreeMap<String, i64>,
        time_ms: u64,
        took: std::time::Duration,
    ) {
        self.last_cycle_micros
            .store(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
        self.groups_tracked.set(lag_by_group.len() as u64);
        if let Ok(mut map) = self.lag.lock() {
            *map = lag_by_group;
        }
        self.last_cycle_ms
            .fetch_max(i64::try_from(time_ms).unwrap_or(i64::MAX), Relaxed);
        self.cycles.inc();
    }

    /// The Kafka part of `/status`.
    pub fn status(&self) -> KafkaStatus {
        KafkaStatus {
            cycles: self.cycles.get(),
            groups_tracked: self.groups_tracked.get(),
            last_cycle: rfc3339_ms(self.last_cycle_ms.load(Relaxed)),
            last_cycle_seconds: self.last_cycle_seconds(),
            newest_durable: rfc3339_ms(self.durable_ms.load(Relaxed)),
            rpo_seconds: self.rpo_seconds(),
            capture_errors: self.capture_errors.get(),
            upload_errors: self.upload_errors.get(),
            segments_uploaded: self.segments_uploaded.get(),
            total_lag: self.lag.lock().map(|l| l.values().sum()).unwrap_or(0),
        }
    }

    /// How long the newest successful cycle took, seconds; `None` before the first.
    pub fn last_cycle_seconds(&self) -> Option<f64> {
        (self.cycles.get() > 0).then(|| self.last_cycle_micros.load(Relaxed) as f64 / 1e6)
    }

    /// now − time of the newest durable cycle, when there is one.
    pub fn rpo_seconds(&self) -> Option<f64> {
        let ms = self.durable_ms.load(Relaxed);
        (ms > 0).then(|| ((chrono::Utc::now().timestamp_millis() - ms) as f64 / 1000.0).max(0.0))
    }
}

/// Encodes the `mc_kafka_*` metrics at each scrape, once Kafka capture has started.
#[derive(Debug)]
struct KafkaCollector(Arc<KafkaMetrics>);

impl Collector for KafkaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let k = &self.0;
        if !k.is_enabled() {
            return Ok(());
        }
        let mut one = |name: &str, help: &str, metric: &dyn EncodeMetric| {
            metric.encode(describe(&mut encoder, name, help, metric.metric_type())?)
        };
        one(
            "mc_kafka_groups_tracked",
            "Consumer groups whose offsets the newest Kafka capture cycle recorded",
            &k.groups_tracked,
        )?;
        one(
            "mc_kafka_cycles",
            "Successful Kafka capture cycles",
            &k.cycles,
        )?;
        one(
            "mc_kafka_cycle_seconds",
            "How long the newest successful Kafka capture cycle took (-1 before the first)",
            &ConstGauge::new(k.last_cycle_seconds().unwrap_or(-1.0)),
        )?;
        one(
            "mc_kafka_capture_errors",
            "Failed Kafka capture cycles (broker unreachable or a request failed; retried with backoff)",
            &k.capture_errors,
        )?;
        one(
            "mc_kafka_upload_errors",
            "Failed writes of Kafka offset segments (each is retried)",
            &k.upload_errors,
        )?;
        one(
            "mc_kafka_segments_uploaded",
            "Kafka offset segments made durable",
            &k.segments_uploaded,
        )?;
        one(
            "mc_kafka_rpo_seconds",
            "Now minus the time of the newest durable Kafka capture cycle (-1 before the first)",
            &ConstGauge::new(
                k.rpo_seconds()
                    .map_or(-1.0, |r| (r * 1000.0).round() / 1000.0),
            ),
        )?;
        let mut family = describe(
            &mut encoder,
            "mc_kafka_group_lag",
            "Sum over the group's partitions of high watermark minus committed offset, at the newest cycle",
            MetricType::Gauge,
        )?;
        if let Ok(lags) = k.lag.lock() {
            for (group, lag) in lags.iter() {
                ConstGauge::new(*lag)
                    .encode(family.encode_family(&[("group", group.as_str())])?)?;
            }
        }
        Ok(())
    }
}
