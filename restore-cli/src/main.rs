//! `mc-restore`: the operators' restore CLI. A thin binary over its library (`lib.rs`) and
//! `mc-core`; each subcommand lives in `commands/`.
//!
//! Exit codes: 0 success, 1 error (could not do the job), 2 bad command line, 3 verification
//! found damaged or missing data.

mod commands;

use clap::{Parser, Subcommand};
use mc_core::cli::{GlobalOpts, RepoOpts, SourceOpts};

/// mc-backup's restore CLI: restores MongoDB to a point in time and resets Kafka consumer groups
/// to the offsets of that moment; runs timed, verified recovery drills.
///
/// Restore: mc-restore --at <TIME> --target <MONGODB-URI> --policy FILE [--ns 'db.*'] [--drop]
#[derive(Debug, Parser)]
#[command(
    name = "mc-restore",
    version,
    about,
    long_about = None,
    arg_required_else_help = true,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,

    #[command(flatten)]
    restore: commands::restore::RestoreArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Snapshots, restorable windows, gaps and the newest restorable time of a source.
    List {
        #[command(flatten)]
        source: SourceOpts,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every object of the repository: checksum, every frame, the key. Exit 3 on damage.
    Verify {
        #[command(flatten)]
        repo: RepoOpts,
        /// Only this source's objects (default: all).
        #[arg(long)]
        source: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prove a restore: compare the target with the source as it was at T (snapshot reads).
    /// Exit 3 on any mismatch.
    VerifyData(commands::verify_data::VerifyDataArgs),
    /// A timed, verified restore into a scratch MongoDB with a report; `drill list`,
    /// `drill show ID`. Exit 0 pass, 3 verification failed, 4 RTO/RPO missed, 1 error.
    Drill(commands::drill::DrillArgs),
    /// Reset Kafka consumer groups to their committed offsets in the last capture at or before T.
    KafkaOffsets(commands::kafka_offsets::KafkaOffsetsArgs),
    /// Inspect or rebuild the catalog of a source.
    #[command(subcommand)]
    Catalog(commands::catalog::CatalogCommand),
    /// Print the build's version and the repository format version it reads.
    Version,
}

#[tokio::main]
async fn main() {
    mc_core::process::limit_malloc_arenas();
    let cli: Cli = mc_core::cli::parse_or_exit();
    cli.global.init_logging();
    let result = match cli.command {
        None => commands::restore::run(cli.restore).await,
        Some(Command::List { source, json }) => {
            commands::list::run(&source, json).await.map(|()| 0)
        }
        Some(Command::Verify { repo, source, json }) => {
            commands::verify::run(&repo, source.as_deref(), json).await
        }
        Some(Command::VerifyData(args)) => commands::verify_data::run(args).await,
        Some(Command::Drill(args)) => commands::drill::run(args).await,
        Some(Command::KafkaOffsets(args)) => commands::kafka_offsets::run(args).await,
        Some(Command::Catalog(cmd)) => commands::catalog::run(cmd).await.map(|()| 0),
        Some(Command::Version) => {
            println!(
                "mc-restore {} (repository format {}, segment format {})",
                env!("CARGO_PKG_VERSION"),
                mc_core::catalog::REPO_FORMAT,
                mc_core::format::FORMAT_VERSION
            );
            Ok(0)
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => std::process::exit(mc_core::cli::report_fatal("mc-restore", &err)),
    }
}
