//! `mc-agent`: the capture daemon. A thin binary over `mc-core`; each subcommand lives in
//! `commands/` and does its work through the library.

mod commands;

use clap::{Parser, Subcommand};
use mc_core::cli::{GlobalOpts, RepoOpts};

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
    /// Create a repository at --repo (or check that one exists and is readable).
    Init {
        #[command(flatten)]
        repo: RepoOpts,
    },
    /// Manage keyrings: generate, rotate, list key ids.
    #[command(subcommand)]
    Key(commands::key::KeyCommand),
    /// Print the build's version and the repository format version it writes.
    Version,
}

#[tokio::main]
async fn main() {
    let cli: Cli = mc_core::cli::parse_or_exit();
    cli.global.init_logging();
    let result = match cli.command {
        Command::Init { repo } => commands::init::run(&repo).await,
        Command::Key(cmd) => commands::key::run(cmd),
        Command::Version => {
            println!(
                "mc-agent {} (repository format {}, segment format {})",
                env!("CARGO_PKG_VERSION"),
                mc_core::catalog::REPO_FORMAT,
                mc_core::format::FORMAT_VERSION
            );
            Ok(())
        }
    };
    if let Err(err) = result {
        std::process::exit(mc_core::cli::report_fatal("mc-agent", &err));
    }
}
