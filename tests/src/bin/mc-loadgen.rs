//! `mc-loadgen`: a MongoDB workload for demos, tests and benchmarks. Writes a realistic mix at a
//! fixed rate: inserts of ~1 KiB documents, updates with `$set`/`$inc`, deletes, and small
//! multi-document transactions. Prints what it did as one JSON line at the end, including the
//! cluster time of its last write, so callers can wait for exactly that point.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use mc_tests::workload::{worker, Counts, Pace};
use mongodb::bson::doc;

#[derive(Debug, Parser)]
#[command(
    name = "mc-loadgen",
    about = "Write a realistic MongoDB workload at a fixed rate"
)]
struct Args {
    /// MongoDB URI (a replica set, for transactions).
    #[arg(long, env = "MC_MONGODB_URI")]
    uri: String,
    /// Database to write into.
    #[arg(long, default_value = "loadgen")]
    db: String,
    /// Operations per second (0: as fast as possible).
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// How long to run, e.g. 10s, 2m.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    workers: u64,
    /// Writes per round trip: 1 sends each write as its own command; more groups each writer's
    /// inserts, updates and deletes by kind (the oplog gets the same entries).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    batch: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = mongodb::Client::with_uri_str(&args.uri)
        .await
        .context("connecting to MongoDB")?;
    let deadline = Instant::now() + args.duration;
    let pace = Pace {
        rate: (args.rate / args.workers.max(1)).max(if args.rate == 0 { 0 } else { 1 }),
        batch: args.batch,
    };
    let mut handles = Vec::new();
    for w in 0..args.workers {
        let client = client.clone();
        let db = args.db.clone();
        handles.push(tokio::spawn(async move {
            worker(client, db, w, pace, deadline).await
        }));
    }
    let mut total = Counts::default();
    for h in handles {
        let c = h.await.context("worker panicked")??;
        total.add(c);
    }
    // The majority point after the last write: everything we wrote is at or before it.
    let hello = client
        .database("admin")
        .run_command(doc! {"hello": 1})
        .await?;
    let last = hello
        .get_document("lastWrite")?
        .get_document("opTime")?
        .get_timestamp("ts")?;
    println!(
        "{}",
        serde_json::json!({
            "inserts": total.inserts, "updates": total.updates, "deletes": total.deletes,
            "transactions": total.transactions, "last_ts": format!("{}.{:010}", last.time, last.increment),
        })
    );
    Ok(())
}
