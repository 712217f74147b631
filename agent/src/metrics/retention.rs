//! What the newest scheduled retention run found and did, this process and while it held the
//! lease (`mc_incomplete_snapshots`, `mc_incomplete_snapshots_deleted_total`).

use mc_core::catalog::retention::{Pruned, RetentionPlan};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug)]
pub struct RetentionMetrics {
    /// Incomplete snapshots (no manifest: a crash mid-snapshot) kept within their grace at the
    /// newest retention run; -1 while this agent has not run retention since it last took the
    /// lease, so a standby or deposed holder never reports a stale count.
    pub incomplete_kept: Gauge,
    /// Incomplete snapshots whose data retention deleted.
    pub incomplete_deleted: Counter,
}

impl Default for RetentionMetrics {
    fn default() -> Self {
        let incomplete_kept = Gauge::default();
        incomplete_kept.set(-1);
        Self {
            incomplete_kept,
            incomplete_deleted: Counter::default(),
        }
    }
}

impl RetentionMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mc_incomplete_snapshots",
            "Incomplete snapshots (no manifest: interrupted by a crash) kept within their grace at this agent's newest retention run (-1: it has run none since it started or took the lease)",
            self.incomplete_kept.clone(),
        );
        registry.register(
            "mc_incomplete_snapshots_deleted",
            "Incomplete snapshots whose data retention deleted after their grace",
            self.incomplete_deleted.clone(),
        );
    }

    /// Takes in one retention run: its plan and, unless nothing was to be deleted, what it did.
    pub fn record(&self, plan: &RetentionPlan, done: Option<&Pruned>) {
        self.incomplete_kept
            .set(i64::try_from(plan.incomplete_kept.len()).unwrap_or(i64::MAX));
        if let Some(done) = done {
            self.incomplete_deleted
                .inc_by(done.incomplete_deleted as u64);
        }
    }

    /// This agent stopped running retention (the lease went elsewhere): its count is unknown.
    pub fn forget_incomplete(&self) {
        self.incomplete_kept.set(-1);
    }
}
