//! `mc-restore`: the operators' restore CLI. A thin binary over `mc-core`; each subcommand lives in
//! `commands/` and does its work through the library.

use clap::{Parser, Subcommand};
use mc_core::cli::GlobalOpts;

/// mc-backup's restore CLI: restores MongoDB to a point in time and resets Kafka consumer groups
/// to the offsets of that moment; runs timed, verified recovery drills.
#[derive(Debug, Parser)]
#[command(name = "mc-restore", version, about, long_about = None, arg_required_else_help = true)]
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
            println!("mc-restore {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    if let Err(err) = result {
        std::process::exit(mc_core::cli::report_fatal("mc-restore", &err));
    }
}
