//! `mc-agent`: the capture daemon. A thin binary over `mc-core`; each subcommand lives in
//! `commands/` and does its work through the library.

use clap::{Parser, Subcommand};
use mc_core::cli::GlobalOpts;

/// mc-backup's capture agent: streams the MongoDB oplog and Kafka consumer-group offsets into an
/// encrypted, compressed repository (S3 or a local directory).
#[derive(Debug, Parser)]
#[command(name = "mc-agent", version, about, long_about = None, arg_required_else_help = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the build's version and the repository format version it writes.
    Version,
}

fn main() {
    let cli: Cli = mc_core::cli::parse_or_exit();
    cli.global.init_logging();
    let result = match cli.command {
        Command::Version => {
            println!("mc-agent {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    if let Err(err) = result {
        std::process::exit(mc_core::cli::report_fatal("mc-agent", &err));
    }
}
