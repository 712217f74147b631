//! Scheduled recovery drills (the policy's `drills:`): at each cron time, the agent runs the same
//! drill as `mc-restore drill` (`mc_restore::drill`), one at a time and only while it holds the
//! capture lease, then exports the result as `mc_drill_*` metrics and logs where the report is.

use std::sync::Arc;

use mc_core::catalog::Repository;
use mc_core::policy::CronSchedule;
use mc_restore::drill::{self, report::Verdict, DrillOptions};

use crate::metrics::Metrics;

/// When and how drills run.
#[derive(Debug, Clone)]
pub struct DrillPlan {
    pub schedule: CronSchedule,
    pub options: DrillOptions,
}

/// Runs drills on schedule until `stop`.
pub async fn run_schedule(
    repo: Repository,
    plan: DrillPlan,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let Some(next) = plan.schedule.next_after(chrono::Utc::now()) else {
            tracing::warn!("the drill schedule has no future time; no more drills");
            return;
        };
        // Sleep in short steps so a changed clock or a stop is noticed.
        loop {
            let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
            if wait.is_zero() {
                break;
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(wait.min(std::time::Duration::from_secs(1))) => {}
            }
        }
        if *stop.borrow() {
            return;
        }
        tracing::info!(point = %plan.options.point, "scheduled drill starting");
        let report = drill::run(&repo, &plan.options).await;
        let rto = report
            .rto
            .measured_seconds
            .unwrap_or(0.0)
            .max(report.rto.projected_seconds.unwrap_or(0.0));
        metrics
            .drills
            .finished(report.verdict == Verdict::Pass, rto);
        let key = report.repository_key.as_deref().unwrap_or("(not stored)");
        if report.verdict == Verdict::Pass {
            tracing::info!(drill = %report.id, rto_seconds = rto, report = %key, "scheduled drill passed");
        } else {
            tracing::error!(
                drill = %report.id,
                verdict = report.verdict.word(),
                reasons = %report.reasons.join("; "),
                report = %key,
                "scheduled drill FAILED"
            );
        }
    }
}
