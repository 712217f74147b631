//! Oplog capture's metrics and the state they are read from: what was made durable (entries,
//! bytes, segments), errors and gaps, whether capture is tailing, the newest durable entry (its
//! oplog time, wall time and when it was stored), the majority point, and what waits for the
//! store. The counters are prometheus-client types (one relaxed add per event on the hot path);
//! the RPO, the newest durable time and the upload backlog are computed when scraped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use mc_core::format::OplogTs;
use mc_core::storage::health::Backlog;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::computed::Computed;

#[derive(Debug, Default)]
pub struct CaptureMetrics {
    pub ops_captured: Counter,
    pub bytes_sealed: Counter,
    pub bytes_uploaded: Counter,
    pub segments_uploaded: Counter,
    pub upload_errors: Counter,
    pub source_errors: Counter,
    pub gaps: Counter,
    /// 1 while the capture loop is connected and tailing.
    pub capturing: Gauge,
    /// Newest durable oplog timestamp, packed `t << 32 | i`.
    pub durable_ts: AtomicU64,
    /// `wall` time (Unix ms) of the newest durable entry.
    pub durable_wall_ms: AtomicI64,
    /// Unix ms when the newest segment became durable.
    pub last_upload_ms: AtomicI64,
    pub majority_ts: AtomicU64,
    /// Oplog batches handed to the upload sink and not yet stored, oldest first: the wall time
    /// (Unix ms) of each one's first entry and its bytes.
    pub upload_waiting: Mutex<VecDeque<(i64, u64)>>,
    /// The majority commit point when shutdown began (packed), 0 before.
    pub stop_majority_ts: AtomicU64,
    /// The newest entry durable before this process started capturing (packed), 0 if none.
    pub resume_floor_ts: AtomicU64,
}

/// An oplog timestamp packed into one `u64` (`t << 32 | i`), ordered as the timestamps are.
pub fn pack(ts: OplogTs) -> u64 {
    (u64::from(ts.t) << 32) | u64::from(ts.i)
}

/// The inverse of [`pack`].
pub fn unpack(v: u64) -> OplogTs {
    OplogTs::new((v >> 32) as u32, v as u32)
}

impl CaptureMetrics {
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        for (name, help, counter) in [
            (
                "mc_oplog_ops_captured",
                "Oplog entries made durable in the repository",
                &self.ops_captured,
            ),
            (
                "mc_bytes_sealed",
                "Uncompressed record bytes sealed into segments",
                &self.bytes_sealed,
            ),
            (
                "mc_bytes_uploaded",
                "Stored (compressed, encrypted) bytes uploaded",
                &self.bytes_uploaded,
            ),
            (
                "mc_segments_uploaded",
                "Segments made durable",
                &self.segments_uploaded,
            ),
            (
                "mc_upload_errors",
                "Failed segment uploads (each is retried)",
                &self.upload_errors,
            ),
            (
                "mc_source_errors",
                "Errors reading the oplog (each leads to a reconnect)",
                &self.source_errors,
            ),
            (
                "mc_timeline_gaps",
                "Gaps recorded in the timeline (oplog rolled over before capture)",
                &self.gaps,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "mc_capturing",
            "1 while the agent is tailing the oplog",
            self.capturing.clone(),
        );
        let s = self.clone();
        registry.register(
            "mc_newest_durable_op_timestamp_seconds",
            "Oplog time (seconds) of the newest durable entry",
            Computed::new(move || unpack(s.durable_ts.load(Relaxed)).t),
        );
        let s = self.clone();
        registry.register(
            "mc_last_upload_timestamp_seconds",
            "Unix time of the newest durable upload",
            Computed::new(move || s.last_upload_ms.load(Relaxed) as f64 / 1000.0),
        );
        let s = self.clone();
        registry.register(
            "mc_rpo_seconds",
            "Now minus the wall time of the newest durable oplog entry (-1 before the first)",
            Computed::new(move || {
                s.rpo_seconds()
                    .map_or(-1.0, |r| (r * 1000.0).round() / 1000.0)
            }),
        );
        let s = self.clone();
        registry.register(
            "mc_upload_waiting_bytes",
            "Bytes of oplog handed to the upload and not yet stored",
            Computed::new(move || s.backlog().waiting_bytes),
        );
    }

    pub fn is_capturing(&self) -> bool {
        self.capturing.get() == 1
    }

    pub fn set_durable(&self, ts: OplogTs, wall_ms: i64) {
        self.durable_ts.fetch_max(pack(ts), Relaxed);
        self.durable_wall_ms.fetch_max(wall_ms, Relaxed);
        self.last_upload_ms
            .store(chrono::Utc::now().timestamp_millis(), Relaxed);
    }

    pub fn set_majority(&self, ts: OplogTs) {
        self.majority_ts.fetch_max(pack(ts), Relaxed);
    }

    /// The majority commit point when shutdown began: what capture must store before it stops.
    pub fn set_stop_majority(&self, ts: OplogTs) {
        self.stop_majority_ts.store(pack(ts), Relaxed);
    }

    /// A batch was handed to the upload sink: it waits until [`CaptureMetrics::upload_stored`].
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

    /// now − wall time of the newest durable entry, when there is one.
    pub fn rpo_seconds(&self) -> Option<f64> {
        let wall = self.durable_wall_ms.load(Relaxed);
        (wall > 0)
            .then(|| ((chrono::Utc::now().timestamp_millis() - wall) as f64 / 1000.0).max(0.0))
    }
}
