//! One module per `mc-restore` subcommand.

pub mod catalog;
pub mod drill;
pub mod kafka_offsets;
pub mod list;
pub mod restore;
pub mod verify;
pub mod verify_data;

/// Exit code when a check ran and found damaged or missing data (as opposed to 1: could not run).
pub const EXIT_VERIFY_FAILED: i32 = 3;
