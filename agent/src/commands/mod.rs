//! One module per `mc-agent` subcommand.

pub mod init;
pub mod key;
