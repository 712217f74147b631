//! One module per `mc-agent` subcommand.

pub mod check;
pub mod init;
pub mod key;
pub mod prune;
pub mod run;
pub mod snapshot;
pub mod status;
