//! Scheduled drills' metrics (`mc_drills_total`, `mc_drill_last_*`; all 0 until the first drill
//! of this process finishes).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Default)]
pub struct DrillMetrics {
    pub runs: Counter,
    /// 1 if the newest drill passed, 0 otherwise.
    pub last_success: Gauge,
    /// The newest drill's RTO, seconds: the larger of measured and projected.
    pub last_rto_seconds: Gauge<f64, AtomicU64>,
    /// Unix time (seconds) when the newest drill finished.
    pub last_timestamp_seconds: Gauge<f64, AtomicU64>,
}

impl DrillMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mc_drills",
            "Scheduled recovery drills run by this agent",
            self.runs.clone(),
        );
        registry.register(
            "mc_drill_last_success",
            "1 if the newest scheduled drill passed (verified, within RTO and RPO), else 0",
            self.last_success.clone(),
        );
        registry.register(
            "mc_drill_last_rto_seconds",
            "RTO of the newest scheduled drill: the larger of measured and projected to full size",
            self.last_rto_seconds.clone(),
        );
        registry.register(
            "mc_drill_last_timestamp_seconds",
            "Unix time the newest scheduled drill finished (0: none yet)",
            self.last_timestamp_seconds.clone(),
        );
    }

    /// A drill finished now: `passed` or not, with an RTO of `rto_seconds`.
    pub fn finished(&self, passed: bool, rto_seconds: f64) {
        self.runs.inc();
        self.last_success.set(i64::from(passed));
        self.last_rto_seconds.set(rto_seconds);
        self.last_timestamp_seconds
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    }
}
