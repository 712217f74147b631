//! The agent's metrics: counters and gauges updated by the capture pipeline, rendered in the
//! Prometheus text format for `/metrics` and as JSON for `/status`. Plain atomics: the hot path
//! pays one relaxed add per event.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use mc_core::format::OplogTs;
use mc_core::storage::health::{Backlog, HealthSnapshot, StoreState};
use mc_core::storage::StoreHealth;
use serde::Serialize;

/// Everything the agent reports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub ops_captured: AtomicU64,
    pub bytes_sealed: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub segments_uploaded: AtomicU64,
    pub upload_errors: AtomicU64,
    pub source_errors: AtomicU64,
    pub gaps: AtomicU64,
    /// Newest durable oplog timestamp, packed `t << 32 | i`.
    pub durable_ts: AtomicU64,
    /// `wall` time (Unix ms) of the newest durable entry.
    pub durable_wall_ms: AtomicI64,
    /// Unix ms when the newest segment became durable.
    pub last_upload_ms: AtomicI64,
    pub majority_ts: AtomicU64,
    /// 1 while the capture loop is connected and tailing.
    pub capturing: AtomicU64,
    /// 1 while this agent holds the capture lease (always 1 without a lease).
    pub lease_held: AtomicU64,
    /// Fencing token of the current or last lease.
    pub lease_fence: AtomicU64,
    /// Times this agent acquired the lease (a fast-growing count means flapping).
    pub lease_acquisitions: AtomicU64,
    /// Unix ms when the newest snapshot completed (0: none by this process).
    pub last_snapshot_ms: AtomicI64,
    /// Duration of the newest snapshot, ms.
    pub last_snapshot_duration_ms: AtomicU64,
    pub snapshots_taken: AtomicU64,
    pub snapshot_errors: AtomicU64,
    /// Kafka consumer-group offset capture.
    pub kafka: KafkaMetrics,
    /// Scheduled recovery drills.
    pub drills: DrillMetrics,
    /// Retention as the snapshot schedule runs it.
    pub retention: RetentionMetrics,
    /// The repository's store as its logging layer sees it (`mc_repository_up`,
    /// `mc_store_errors_total`, `/status`'s `store`).
    pub store: Arc<StoreHealth>,
    /// Oplog batches handed to the upload sink and not yet stored, oldest first: the wall time
    /// (Unix ms) of each one's first entry and its bytes.
    pub upload_waiting: Mutex<VecDeque<(i64, u64)>>,
    /// The majority commit point when shutdown began (packed), 0 before.
    pub stop_majority_ts: AtomicU64,
    /// The newest entry durable before this process started capturing (packed), 0 if none.
    pub resume_floor_ts: AtomicU64,
    /// Why the agent is not ready yet (`/readyz`), while it waits for something.
    pub waiting_for: Mutex<Option<String>>,
}

/// What the newest scheduled retention run found and did (this process, while it held the lease).
#[derive(Debug)]
pub struct RetentionMetrics {
    /// Incomplete snapshots (no manifest: a crash mid-snapshot) kept within their grace at the
    /// newest retention run; -1 while this agent has not run retention since it last took the
    /// lease, so a standby or deposed holder never reports a stale count.
    pub incomplete_kept: AtomicI64,
    /// Incomplete snapshots whose data retention deleted.
    pub incomplete_deleted: AtomicU64,
}

impl Default for RetentionMetrics {
    fn default() -> Self {
        Self {
            incomplete_kept: AtomicI64::new(-1),
            incomplete_deleted: AtomicU64::new(0),
        }
    }
}

impl RetentionMetrics {
    /// Takes in one retention run: its plan and, unless nothing was to be deleted, what it did.
    pub fn record(
        &self,
        plan: &mc_core::catalog::retention::RetentionPlan,
        done: Option<&mc_core::catalog::retention::Pruned>,
    ) {
        self.incomplete_kept.store(
            i64::try_from(plan.incomplete_kept.len()).unwrap_or(i64::MAX),
            Relaxed,
        );
        if let Some(done) = done {
            self.incomplete_deleted
                .fetch_add(done.incomplete_deleted as u64, Relaxed);
        }
    }

    /// This agent stopped running retention (the lease went elsewhere): its count is unknown.
    pub fn forget_incomplete(&self) {
        self.incomplete_kept.store(-1, Relaxed);
    }
}

/// Scheduled drills' results (all 0 until the first drill of this process finishes).
#[derive(Debug, Default)]
pub struct DrillMetrics {
    pub runs: AtomicU64,
    /// 1 if the newest drill passed, 0 otherwise.
    pub last_success: AtomicU64,
    /// The newest drill's RTO in ms: the larger of measured and projected.
    pub last_rto_ms: AtomicU64,
    /// Unix ms when the newest drill finished.
    pub last_ms: AtomicI64,
}

/// The Kafka offset capture's metrics (rendered only once it runs).
#[derive(Debug, Default)]
pub struct KafkaMetrics {
    /// 1 once Kafka capture has started in this process.
    pub enabled: AtomicU64,
    /// Successful capture cycles.
    pub cycles: AtomicU64,
    /// Time of the newest successful cycle, Unix ms.
    pub last_cycle_ms: AtomicI64,
    /// How long the newest successful cycle took (list groups, offsets, watermarks), µs.
    pub last_cycle_micros: AtomicU64,
    /// Groups seen by the newest successful cycle.
    pub groups_tracked: AtomicU64,
    /// Failed capture cycles (each is retried with backoff).
    pub capture_errors: AtomicU64,
    /// Failed segment writes (each is retried).
    pub upload_errors: AtomicU64,
    pub segments_uploaded: AtomicU64,
    /// Time of the newest durable capture cycle, Unix ms (0: none yet).
    pub durable_ms: AtomicI64,
    /// Lag (sum over partitions of high − committed) of each group at the newest cycle.
    pub lag: Mutex<BTreeMap<String, i64>>,
}

impl KafkaMetrics {
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
        self.groups_tracked
            .store(lag_by_group.len() as u64, Relaxed);
        if let Ok(mut map) = self.lag.lock() {
            *map = lag_by_group;
        }
        self.last_cycle_ms
            .fetch_max(i64::try_from(time_ms).unwrap_or(i64::MAX), Relaxed);
        self.cycles.fetch_add(1, Relaxed);
    }

    /// The Kafka part of `/status`.
    pub fn status(&self) -> KafkaStatus {
        let cycles = self.cycles.load(Relaxed);
        KafkaStatus {
            cycles,
            groups_tracked: self.groups_tracked.load(Relaxed),
            last_cycle: rfc3339_ms(self.last_cycle_ms.load(Relaxed)),
            last_cycle_seconds: self.last_cycle_seconds(),
            newest_durable: rfc3339_ms(self.durable_ms.load(Relaxed)),
            rpo_seconds: self.rpo_seconds(),
            capture_errors: self.capture_errors.load(Relaxed),
            upload_errors: self.upload_errors.load(Relaxed),
            segments_uploaded: self.segments_uploaded.load(Relaxed),
            total_lag: self.lag.lock().map(|l| l.values().sum()).unwrap_or(0),
        }
    }

    /// How long the newest successful cycle took, seconds; `None` before the first.
    pub fn last_cycle_seconds(&self) -> Option<f64> {
        (self.cycles.load(Relaxed) > 0).then(|| self.last_cycle_micros.load(Relaxed) as f64 / 1e6)
    }

    /// now − time of the newest durable cycle, when there is one.
    pub fn rpo_seconds(&self) -> Option<f64> {
        let ms = self.durable_ms.load(Relaxed);
        (ms > 0).then(|| ((chrono::Utc::now().timestamp_millis() - ms) as f64 / 1000.0).max(0.0))
    }
}

/// Unix ms as RFC 3339 with ms; 0 (never) as `None`.
fn rfc3339_ms(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .filter(|_| ms > 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A label value in the Prometheus text format.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn pack(ts: OplogTs) -> u64 {
    (u64::from(ts.t) << 32) | u64::from(ts.i)
}

fn unpack(v: u64) -> OplogTs {
    OplogTs::new((v >> 32) as u32, v as u32)
}

/// A point-in-time copy for `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSnapshot {
    pub capturing: bool,
    pub ops_captured: u64,
    pub segments_uploaded: u64,
    pub bytes_uploaded: u64,
    pub upload_errors: u64,
    pub source_errors: u64,
    pub gaps: u64,
    pub lease_held: bool,
    pub lease_fence: u64,
    pub newest_durable_ts: Option<String>,
    pub newest_durable_wall: Option<String>,
    /// Seconds between now and the newest durable entry's wall time.
    pub rpo_seconds: Option<f64>,
    /// Kafka offset capture; `None` when the policy has no `kafka:` section.
    pub kafka: Option<KafkaStatus>,
    /// Bytes of oplog handed to the upload and not yet stored.
    pub upload_waiting_bytes: u64,
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

impl Metrics {
    pub fn set_durable(&self, ts: OplogTs, wall_ms: i64) {
        self.durable_ts.fetch_max(pack(ts), Relaxed);
        self.durable_wall_ms.fetch_max(wall_ms, Relaxed);
        self.last_upload_ms
            .store(chrono::Utc::now().timestamp_millis(), Relaxed);
    }

    pub fn set_majority(&self, ts: OplogTs) {
        self.majority_ts.fetch_max(pack(ts), Relaxed);
    }

    /// A batch was handed to the upload sink: it waits until [`Metrics::upload_stored`].
    pub fn upload_queued(&self, first_wall_ms: i64, bytes: u64) {
        if let Ok(mut q) = self.upload_waiting.lock() {
            q.push_back((first_wall_ms, bytes));
        }
    }

    /// The oldest batch waiting for the store is stored.
    pub fn upload_stored(&self) {
        if let Ok(mut q) = self.upload_waiting.lock() {
            q.pop_front();
        }
    }

    /// What waits for the store: bytes, and the age of the oldest entry not yet stored.
    pub fn backlog(&self) -> Backlog {
        let (bytes, oldest) = self
            .upload_waiting
            .lock()
            .map(|q| (q.iter().map(|(_, b)| b).sum(), q.front().map(|(w, _)| *w)))
            .unwrap_or((0, None));
        let now = chrono::Utc::now().timestamp_millis();
        Backlog {
            waiting_bytes: bytes,
            oldest_age: oldest
                .filter(|w| *w > 0)
                .map(|w| std::time::Duration::from_millis((now - w).max(0) as u64)),
        }
    }

    /// Says why the agent is not ready (`None`: nothing awaited).
    pub fn set_waiting_for(&self, what: Option<String>) {
        if let Ok(mut w) = self.waiting_for.lock() {
            *w = what;
        }
    }

    /// The store's health for `/status`.
    pub fn store_status(&self) -> HealthSnapshot {
        self.store.snapshot()
    }

    /// now − wall time of the newest durable entry, when there is one.
    pub fn rpo_seconds(&self) -> Option<f64> {
        let wall = self.durable_wall_ms.load(Relaxed);
        (wall > 0)
            .then(|| ((chrono::Utc::now().timestamp_millis() - wall) as f64 / 1000.0).max(0.0))
    }

    pub fn status(&self) -> StatusSnapshot {
        let durable = self.durable_ts.load(Relaxed);
        let wall = self.durable_wall_ms.load(Relaxed);
        StatusSnapshot {
            capturing: self.capturing.load(Relaxed) == 1,
            ops_captured: self.ops_captured.load(Relaxed),
            segments_uploaded: self.segments_uploaded.load(Relaxed),
            bytes_uploaded: self.bytes_uploaded.load(Relaxed),
            upload_errors: self.upload_errors.load(Relaxed),
            source_errors: self.source_errors.load(Relaxed),
            gaps: self.gaps.load(Relaxed),
            lease_held: self.lease_held.load(Relaxed) == 1,
            lease_fence: self.lease_fence.load(Relaxed),
            newest_durable_ts: (durable > 0).then(|| unpack(durable).to_string()),
            newest_durable_wall: rfc3339_ms(wall),
            rpo_seconds: self.rpo_seconds(),
            kafka: (self.kafka.enabled.load(Relaxed) == 1).then(|| self.kafka.status()),
            upload_waiting_bytes: self.backlog().waiting_bytes,
        }
    }

    /// The Prometheus text exposition of every metric, labelled with the source id.
    pub fn render(&self, source: &str) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{source=\"{source}\"}} {value}"
            );
        };
        let c = |a: &AtomicU64| a.load(Relaxed).to_string();
        metric(
            "mc_oplog_ops_captured_total",
            "counter",
            "Oplog entries made durable in the repository.",
            c(&self.ops_captured),
        );
        metric(
            "mc_bytes_sealed_total",
            "counter",
            "Uncompressed record bytes sealed into segments.",
            c(&self.bytes_sealed),
        );
        metric(
            "mc_bytes_uploaded_total",
            "counter",
            "Stored (compressed, encrypted) bytes uploaded.",
            c(&self.bytes_uploaded),
        );
        metric(
            "mc_segments_uploaded_total",
            "counter",
            "Segments made durable.",
            c(&self.segments_uploaded),
        );
        metric(
            "mc_upload_errors_total",
            "counter",
            "Failed segment uploads (each is retried).",
            c(&self.upload_errors),
        );
        metric(
            "mc_source_errors_total",
            "counter",
            "Errors reading the oplog (each leads to a reconnect).",
            c(&self.source_errors),
        );
        metric(
            "mc_timeline_gaps_total",
            "counter",
            "Gaps recorded in the timeline (oplog rolled over before capture).",
            c(&self.gaps),
        );
        metric(
            "mc_capturing",
            "gauge",
            "1 while the agent is tailing the oplog.",
            c(&self.capturing),
        );
        metric(
            "mc_lease_held",
            "gauge",
            "1 while this agent holds the capture lease (always 1 without a lease).",
            c(&self.lease_held),
        );
        metric(
            "mc_lease_fence",
            "gauge",
            "Fencing token of this agent's current or last lease.",
            c(&self.lease_fence),
        );
        metric(
            "mc_lease_acquisitions_total",
            "counter",
            "Times this agent acquired the capture lease (fast growth means flapping).",
            c(&self.lease_acquisitions),
        );
        metric(
            "mc_snapshots_total",
            "counter",
            "Base snapshots completed.",
            c(&self.snapshots_taken),
        );
        metric(
            "mc_snapshot_errors_total",
            "counter",
            "Base snapshots that failed.",
            c(&self.snapshot_errors),
        );
        metric(
            "mc_last_snapshot_timestamp_seconds",
            "gauge",
            "Unix time the newest base snapshot completed (0: none yet).",
            (self.last_snapshot_ms.load(Relaxed) as f64 / 1000.0).to_string(),
        );
        metric(
            "mc_last_snapshot_duration_seconds",
            "gauge",
            "How long the newest base snapshot took.",
            (self.last_snapshot_duration_ms.load(Relaxed) as f64 / 1000.0).to_string(),
        );
        let d = &self.drills;
        metric(
            "mc_drills_total",
            "counter",
            "Scheduled recovery drills run by this agent.",
            c(&d.runs),
        );
        metric(
            "mc_drill_last_success",
            "gauge",
            "1 if the newest scheduled drill passed (verified, within RTO and RPO), else 0.",
            c(&d.last_success),
        );
        metric(
            "mc_drill_last_rto_seconds",
            "gauge",
            "RTO of the newest scheduled drill: the larger of measured and projected to full size.",
            (d.last_rto_ms.load(Relaxed) as f64 / 1000.0).to_string(),
        );
        metric(
            "mc_drill_last_timestamp_seconds",
            "gauge",
            "Unix time the newest scheduled drill finished (0: none yet).",
            (d.last_ms.load(Relaxed) as f64 / 1000.0).to_string(),
        );
        metric(
            "mc_incomplete_snapshots",
            "gauge",
            "Incomplete snapshots (no manifest: interrupted by a crash) kept within their grace at this agent's newest retention run (-1: it has run none since it started or took the lease).",
            self.retention.incomplete_kept.load(Relaxed).to_string(),
        );
        metric(
            "mc_incomplete_snapshots_deleted_total",
            "counter",
            "Incomplete snapshots whose data retention deleted after their grace.",
            c(&self.retention.incomplete_deleted),
        );
        let durable = unpack(self.durable_ts.load(Relaxed));
        metric(
            "mc_newest_durable_op_timestamp_seconds",
            "gauge",
            "Oplog time (seconds) of the newest durable entry.",
            durable.t.to_string(),
        );
        let last_upload = self.last_upload_ms.load(Relaxed) as f64 / 1000.0;
        metric(
            "mc_last_upload_timestamp_seconds",
            "gauge",
            "Unix time of the newest durable upload.",
            last_upload.to_string(),
        );
        metric(
            "mc_rpo_seconds",
            "gauge",
            "Now minus the wall time of the newest durable oplog entry (-1 before the first).",
            self.rpo_seconds()
                .map_or("-1".into(), |r| format!("{r:.3}")),
        );
        metric(
            "mc_repository_up",
            "gauge",
            "1 while the repository's object store answers (the newest attempt got an answer), 0 while it fails or before it first answered.",
            u8::from(self.store.state() == StoreState::Up).to_string(),
        );
        metric(
            "mc_upload_waiting_bytes",
            "gauge",
            "Bytes of oplog handed to the upload and not yet stored.",
            self.backlog().waiting_bytes.to_string(),
        );
        let k = &self.kafka;
        if k.enabled.load(Relaxed) == 1 {
            metric(
                "mc_kafka_groups_tracked",
                "gauge",
                "Consumer groups whose offsets the newest Kafka capture cycle recorded.",
                c(&k.groups_tracked),
            );
            metric(
                "mc_kafka_cycles_total",
                "counter",
                "Successful Kafka capture cycles.",
                c(&k.cycles),
            );
            metric(
                "mc_kafka_cycle_seconds",
                "gauge",
                "How long the newest successful Kafka capture cycle took (-1 before the first).",
                k.last_cycle_seconds()
                    .map_or("-1".into(), |s| format!("{s:.6}")),
            );
            metric(
                "mc_kafka_capture_errors_total",
                "counter",
                "Failed Kafka capture cycles (broker unreachable or a request failed; retried with backoff).",
                c(&k.capture_errors),
            );
            metric(
                "mc_kafka_upload_errors_total",
                "counter",
                "Failed writes of Kafka offset segments (each is retried).",
                c(&k.upload_errors),
            );
            metric(
                "mc_kafka_segments_uploaded_total",
                "counter",
                "Kafka offset segments made durable.",
                c(&k.segments_uploaded),
            );
            metric(
                "mc_kafka_rpo_seconds",
                "gauge",
                "Now minus the time of the newest durable Kafka capture cycle (-1 before the first).",
                k.rpo_seconds().map_or("-1".into(), |r| format!("{r:.3}")),
            );
            let name = "mc_kafka_group_lag";
            let _ = writeln!(
                out,
                "# HELP {name} Sum over the group's partitions of high watermark minus committed offset, at the newest cycle.\n# TYPE {name} gauge"
            );
            if let Ok(lags) = k.lag.lock() {
                for (group, lag) in lags.iter() {
                    let _ = writeln!(
                        out,
                        "{name}{{source=\"{source}\",group=\"{}\"}} {lag}",
                        escape_label(group)
                    );
                }
            }
        }
        let name = "mc_store_errors_total";
        let _ = writeln!(
            out,
            "# HELP {name} Failed or timed-out attempts on the object store, by operation and kind (each is retried).\n# TYPE {name} counter"
        );
        for ((op, kind), n) in self.store.errors() {
            let _ = writeln!(
                out,
                "{name}{{source=\"{source}\",op=\"{op}\",kind=\"{kind}\"}} {n}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_source_label() {
        let m = Metrics::default();
        m.ops_captured.fetch_add(42, Relaxed);
        m.set_durable(
            OplogTs::new(1_700_000_000, 3),
            chrono::Utc::now().timestamp_millis() - 2000,
        );
        let text = m.render("rs0");
        assert!(
            text.contains("mc_oplog_ops_captured_total{source=\"rs0\"} 42"),
            "{text}"
        );
        assert!(text.contains("# TYPE mc_rpo_seconds gauge"));
        let rpo = m.rpo_seconds().unwrap();
        assert!((1.5..10.0).contains(&rpo), "{rpo}");
        assert_eq!(
            m.status().newest_durable_ts.as_deref(),
            Some("1700000000.0000000003")
        );
    }

    #[test]
    fn incomplete_snapshots_are_unknown_until_a_retention_run_and_after_the_lease_goes() {
        use mc_core::catalog::retention::{IncompleteSnapshot, Pruned, RetentionPlan};
        let m = Metrics::default();
        let line = |m: &Metrics, name: &str| {
            m.render("rs0")
                .lines()
                .find(|l| l.starts_with(&format!("{name}{{")))
                .map(str::to_owned)
        };
        assert_eq!(
            line(&m, "mc_incomplete_snapshots").as_deref(),
            Some("mc_incomplete_snapshots{source=\"rs0\"} -1")
        );
        let incomplete = |id: &str| IncompleteSnapshot {
            id: id.into(),
            objects: vec![format!("sources/rs0/snapshots/{id}/data/a.seg")],
            bytes: 10,
            last_written: None,
        };
        let plan = RetentionPlan {
            incomplete: vec![incomplete("a"), incomplete("b")],
            incomplete_kept: vec![incomplete("c")],
            ..RetentionPlan::default()
        };
        let done = Pruned {
            incomplete_deleted: 2,
            ..Pruned::default()
        };
        m.retention.record(&plan, Some(&done));
        m.retention.record(&RetentionPlan::default(), None);
        assert_eq!(
            line(&m, "mc_incomplete_snapshots").as_deref(),
            Some("mc_incomplete_snapshots{source=\"rs0\"} 0")
        );
        m.retention.record(&plan, Some(&done));
        assert_eq!(
            line(&m, "mc_incomplete_snapshots").as_deref(),
            Some("mc_incomplete_snapshots{source=\"rs0\"} 1")
        );
        assert_eq!(
            line(&m, "mc_incomplete_snapshots_deleted_total").as_deref(),
            Some("mc_incomplete_snapshots_deleted_total{source=\"rs0\"} 4")
        );
        m.retention.forget_incomplete();
        assert_eq!(
            line(&m, "mc_incomplete_snapshots").as_deref(),
            Some("mc_incomplete_snapshots{source=\"rs0\"} -1")
        );
    }
}
