//! # mc-restore's library: point-in-time restore of MongoDB from an mc-backup repository
//!
//! The binary (`main.rs`, `commands/`) parses arguments and prints; the work is here, in the
//! order a restore runs:
//!
//! - [`point`]: what `--at` means, and the exact rule for which oplog entries are included.
//! - [`namespaces`]: the scope (`--ns`, `--exclude-ns`) and renaming (`--ns-from/--ns-to`).
//! - [`plan`]: the `RestorePlan` (snapshot, segments, collections), decided before anything is
//!   written, so `--dry-run` shows exactly what a real run does.
//! - [`target`]: the target's safety check (refuse data in the way unless `--drop`).
//! - [`load`]: the snapshot's collections, documents and indexes into the target.
//! - [`replay`]: the oplog from the snapshot's start through the cut.
//! - [`users`]: users and roles, when asked for, merged into the target's at the end.
//! - [`restore`]: the phases together, with timings, as one `RestoreSummary`.
//! - [`progress`]: what a person (a bar, log lines) or a script (`--json` events) sees of the
//!   phases while they run: position, rate, ETA.
//! - [`journal`]: what a restore has finished, kept on the target, so `--resume` continues
//!   an interrupted one.
//! - [`kafka`]: consumer groups reset to their offsets at the same point (`OffsetsAt`,
//!   `KafkaResetPlan`, `reset_offsets`).
//! - [`drill`]: a timed, verified restore into a scratch target, judged against the RTO/RPO,
//!   with its report.
//! - [`verify_data`]: `verify-data`, the proof: a restored target against the source at T.

pub mod drill;
pub mod errors;
pub mod journal;
pub mod kafka;
pub mod load;
pub mod namespaces;
pub mod plan;
pub mod point;
pub mod progress;
pub mod replay;
pub mod restore;
pub mod target;
pub mod users;
pub mod verify_data;
