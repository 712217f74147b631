//! One module per `mc-restore` subcommand.

pub mod catalog;
pub mod list;
pub mod restore;
pub mod verify;

/// Exit code when a check ran and found damaged or missing data (as opposed to 1: could not run).
pub const EXIT_VERIFY_FAILED: i32 = 3;
