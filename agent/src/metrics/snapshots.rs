//! The base snapshots' metrics: how many completed or failed, and when the newest completed and
//! how long it took (`mc_snapshots_total`, `mc_snapshot_errors_total`, `mc_last_snapshot_*`).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Default)]
pub struct SnapshotMetrics {
    /// Snapshots this process completed.
    pub taken: Counter,
    /// Snapshots this process started that failed.
    pub errors: Counter,
    /// Unix time (seconds) when the newest snapshot completed; 0: none known.
    pub last_timestamp_seconds: Gauge<f64, AtomicU64>,
    /// How long the newest snapshot took, seconds.
    pub last_duration_seconds: Gauge<f64, AtomicU64>,
}

impl SnapshotMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mc_snapshots",
            "Base snapshots completed",
            self.taken.clone(),
        );
        registry.register(
            "mc_snapshot_errors",
            "Base snapshots that failed",
            self.errors.clone(),
        );
        registry.register(
            "mc_last_snapshot_timestamp_seconds",
            "Unix time the newest base snapshot completed (0: none yet)",
            self.last_timestamp_seconds.clone(),
        );
        registry.register(
            "mc_last_snapshot_duration_seconds",
            "How long the newest base snapshot took",
            self.last_duration_seconds.clone(),
        );
    }

    /// The newest snapshot (taken now or read from the repository) finished at Unix ms
    /// `finished_ms` after `took_ms`.
    pub fn newest(&self, finished_ms: i64, took_ms: u64) {
        self.last_timestamp_seconds.set(finished_ms as f64 / 1000.0);
        self.last_duration_seconds.set(took_ms as f64 / 1000.0);
    }
}
