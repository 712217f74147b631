//! Resetting Kafka consumer groups to the offsets they had committed at a point in time, from
//! the `kafka-offsets` stream the agent captures (`docs/restore.md`, "Kafka consumer groups";
//! the records are specified in `docs/format.md` §8).
//!
//! Three steps, each usable alone:
//!
//! 1. [`offsets_at`]: what the repository says — for every group, its committed offsets in the
//!    **last capture at or before T** ([`OffsetsAt`]). Reads only the repository.
//! 2. [`plan`]: the [`KafkaResetPlan`] against the live cluster — for each selected group and
//!    partition the current committed offset, the target (the recorded offset, moved into the
//!    partition's current low/high watermarks if retention or a truncation put it outside, with
//!    a warning) and the delta; and the group's active members. Changes nothing.
//! 3. [`apply`]: refuses groups with active members (naming them) unless told to wait for them
//!    to leave, commits the targets as the group (explicit offsets, from outside the group),
//!    reads them back, and reports per partition ([`KafkaResetReport`]).
//!
//! [`reset_offsets`] does all three (or the first two with `dry_run`): the call a combined
//! MongoDB + Kafka restore makes with the same restore point.
//!
//! The parts: `point` (which capture a point selects), `recorded` (step 1), `reset_plan`
//! (step 2), `commit` (step 3), `options` (how to reset: [`KafkaResetOptions`], [`TopicMap`]),
//! `cluster` (connecting, and blocking Kafka calls off the runtime), `table` (the plan for
//! people) and `error`.

mod cluster;
mod commit;
mod error;
mod options;
mod point;
mod recorded;
mod reset_plan;
mod table;

use mc_core::catalog::Repository;

pub use commit::{apply, apply_recording, KafkaResetReport};
pub use error::KafkaRestoreError;
pub use options::{KafkaResetOptions, TopicMap};
pub use point::KafkaPoint;
pub use recorded::{coverage, offsets_at, GroupOffsets, KafkaRun, OffsetsAt};
pub use reset_plan::{plan, GroupPlan, KafkaResetPlan, PartitionPlan};
pub use table::format_table;

/// Plans the reset of the groups `options.groups` selects to their offsets at `point` and,
/// unless `options.dry_run`, applies it. The entry point of `mc-restore kafka-offsets` and of
/// a combined restore (pass the MongoDB restore's point: `KafkaPoint::from(RestorePoint)`).
pub async fn reset_offsets(
    repo: &Repository,
    source_id: &str,
    point: KafkaPoint,
    options: &KafkaResetOptions,
) -> Result<KafkaResetReport, KafkaRestoreError> {
    let plan = plan(repo, source_id, point, options).await?;
    if options.dry_run {
        return Ok(KafkaResetReport {
            dry_run: true,
            plan,
            committed: 0,
        });
    }
    apply(plan, options).await
}
