//! `mc-restore catalog …`: the catalog of a source. `rebuild` regenerates a stream's index from
//! the objects alone; `timeline` prints the continuous runs and gaps of the oplog.

use clap::Subcommand;
use mc_core::catalog::index::rebuild;
use mc_core::catalog::{Catalog, Timeline};
use mc_core::cli::RepoOpts;
use mc_core::format::StreamKind;

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Rebuild a stream's index from the objects themselves (reads every object of the stream).
    Rebuild {
        #[command(flatten)]
        repo: RepoOpts,
        /// Source id (as in the policy), e.g. rs0.
        #[arg(long)]
        source: String,
        /// Stream to index.
        #[arg(long, value_enum, default_value = "oplog")]
        stream: IndexedStream,
    },
    /// Print the oplog timeline of a source: continuous runs and the gaps between them.
    Timeline {
        #[command(flatten)]
        repo: RepoOpts,
        #[arg(long)]
        source: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum IndexedStream {
    Oplog,
    KafkaOffsets,
}

impl From<IndexedStream> for StreamKind {
    fn from(s: IndexedStream) -> Self {
        match s {
            IndexedStream::Oplog => StreamKind::Oplog,
            IndexedStream::KafkaOffsets => StreamKind::KafkaOffsets,
        }
    }
}

pub async fn run(cmd: CatalogCommand) -> anyhow::Result<()> {
    match cmd {
        CatalogCommand::Rebuild {
            repo,
            source,
            stream,
        } => {
            let repository = repo.open(false).await?;
            let (catalog, key) = rebuild(&repository, &source, stream.into()).await?;
            match key {
                Some(key) => println!("indexed {} segments into {key}", catalog.segments.len()),
                None => println!("no segments under sources/{source}/; nothing to index"),
            }
        }
        CatalogCommand::Timeline { repo, source, json } => {
            let repository = repo.open(false).await?;
            let catalog = Catalog::load(&repository, &source, StreamKind::Oplog).await?;
            let timeline = Timeline::build(&catalog.segments);
            if json {
                println!("{}", serde_json::to_string_pretty(&timeline)?);
                return Ok(());
            }
            if timeline.runs.is_empty() {
                println!("no oplog segments for source {source}");
            }
            for (i, run) in timeline.runs.iter().enumerate() {
                println!(
                    "run {}: {} .. {}  ({} segments, {} ops)",
                    i + 1,
                    run.start,
                    run.end,
                    run.segments.len(),
                    run.ops
                );
                if let Some(gap) = timeline.gaps.get(i) {
                    println!(
                        "  GAP: nothing restorable after {} until {}",
                        gap.after, gap.before
                    );
                }
            }
            for key in &catalog.missing {
                println!("MISSING: {key} is in the index but not in storage");
            }
            for key in &timeline.unreadable {
                println!("UNREADABLE range in {key}");
            }
        }
    }
    Ok(())
}
