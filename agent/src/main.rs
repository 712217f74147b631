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
    /// Run the agent: capture continuously as the policy says, serve metrics and health, stop
    /// cleanly on SIGTERM.
    Run {
        /// The backup policy (YAML); see policies/ and docs/policies.md.
        #[arg(long, value_name = "FILE")]
        policy: std::path::PathBuf,
        /// Longest time to seal and upload after SIGTERM before giving up (exit 1).
        #[arg(long, default_value = "25s", value_parser = humantime::parse_duration)]
        shutdown_timeout: std::time::Duration,
    },
    /// Check a policy file and what it refers to (secrets, keyring, repository URL) without
    /// contacting any server; exit 1 with every problem found.
    Check {
        /// The backup policy (YAML); see policies/ and docs/policies.md.
        #[arg(long, value_name = "FILE")]
        policy: std::path::PathBuf,
    },
    /// Apply the policy's retention now (or show what it would delete with --dry-run).
    Prune {
        #[arg(long, value_name = "FILE")]
        policy: std::path::PathBuf,
        /// Print the decisions, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete the data of incomplete snapshots (no manifest) last written at least this long
        /// ago, instead of the policy's retention.incomplete_snapshot_grace (default 24h). `0s`
        /// cleans up after a crash at once: only when no snapshot is being taken.
        #[arg(long, value_name = "DURATION", value_parser = mc_core::policy::parse_duration)]
        incomplete_grace: Option<std::time::Duration>,
    },
    /// Take a base snapshot now (outside the policy's schedule).
    Snapshot {
        #[arg(long, value_name = "FILE")]
        policy: std::path::PathBuf,
    },
    /// Show what the repository holds for the policy's source: coverage, gaps, RPO now.
    Status {
        #[arg(long, value_name = "FILE")]
        policy: std::path::PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
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
    mc_core::process::fix_mmap_threshold();
    let cli: Cli = mc_core::cli::parse_or_exit();
    cli.global.init_logging();
    let result = match cli.command {
        Command::Run {
            policy,
            shutdown_timeout,
        } => commands::run::run(&policy, shutdown_timeout).await,
        Command::Check { policy } => commands::check::run(&policy),
        Command::Prune {
            policy,
            dry_run,
            incomplete_grace,
        } => commands::prune::run(&policy, dry_run, incomplete_grace).await,
        Command::Snapshot { policy } => commands::snapshot::run(&policy).await,
        Command::Status { policy, json } => commands::status::run(&policy, json).await,
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
