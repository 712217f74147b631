//! `mc-loadgen`: a MongoDB workload for demos, tests and benchmarks. Writes a realistic mix at a
//! fixed rate: inserts of ~1 KiB documents, updates with `$set`/`$inc`, deletes, and small
//! multi-document transactions. Prints what it did as one JSON line at the end, including the
//! cluster time of its last write, so callers can wait for exactly that point.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use mongodb::bson::{doc, Document};

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
}

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    inserts: u64,
    updates: u64,
    deletes: u64,
    transactions: u64,
}

const WORDS: &[&str] = &[
    "interview",
    "candidate",
    "question",
    "answer",
    "score",
    "panel",
    "feedback",
    "schedule",
    "room",
    "python",
    "rust",
    "system",
    "design",
    "hire",
    "offer",
    "remote",
    "onsite",
    "review",
    "notes",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = mongodb::Client::with_uri_str(&args.uri)
        .await
        .context("connecting to MongoDB")?;
    let deadline = Instant::now() + args.duration;
    let per_worker = (args.rate / args.workers.max(1)).max(if args.rate == 0 { 0 } else { 1 });
    let mut handles = Vec::new();
    for w in 0..args.workers {
        let client = client.clone();
        let db = args.db.clone();
        handles.push(tokio::spawn(async move {
            worker(client, db, w, per_worker, deadline).await
        }));
    }
    let mut total = Counts::default();
    for h in handles {
        let c = h.await.context("worker panicked")??;
        total.inserts += c.inserts;
        total.updates += c.updates;
        total.deletes += c.deletes;
        total.transactions += c.transactions;
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

fn document(id: i64, rng: &mut u64) -> Document {
    let mut text = String::new();
    while text.len() < 700 {
        text.push_str(WORDS[(next(rng) % WORDS.len() as u64) as usize]);
        text.push(' ');
    }
    doc! {
        "_id": id,
        "candidate": format!("cand-{}", next(rng) % 100_000),
        "email": format!("user{}@example.com", next(rng) % 1_000_000),
        "score": (next(rng) % 100) as i32,
        "tags": [WORDS[(next(rng) % 19) as usize], WORDS[(next(rng) % 19) as usize]],
        "counters": {"views": 0, "edits": 0},
        "notes": text,
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

async fn worker(
    client: mongodb::Client,
    db: String,
    w: u64,
    rate: u64,
    deadline: Instant,
) -> anyhow::Result<Counts> {
    let coll = client.database(&db).collection::<Document>("interviews");
    let mut counts = Counts::default();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (w + 1);
    // Ids unique across runs (the demo runs it again on the same database) and workers.
    let run = (unix_secs() & 0xF_FFFF) as i64;
    let base = (run << 40) | ((w as i64) << 32);
    let mut next_id = 0i64;
    let interval = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
    let started = Instant::now();
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        let id = base + next_id;
        match n % 20 {
            // A small transaction: insert two documents and bump a third, atomically.
            19 if next_id > 2 => {
                let mut session = client.start_session().await?;
                session.start_transaction().await?;
                coll.insert_one(document(id, &mut rng))
                    .session(&mut session)
                    .await?;
                coll.insert_one(document(id + 1, &mut rng))
                    .session(&mut session)
                    .await?;
                coll.update_one(
                    doc! {"_id": base + next_id / 2},
                    doc! {"$inc": {"counters.edits": 1}},
                )
                .session(&mut session)
                .await?;
                session.commit_transaction().await?;
                next_id += 2;
                counts.transactions += 1;
            }
            0..=9 => {
                coll.insert_one(document(id, &mut rng)).await?;
                next_id += 1;
                counts.inserts += 1;
            }
            10..=15 if next_id > 0 => {
                let target = base + (next(&mut rng) % next_id as u64) as i64;
                coll.update_one(
                    doc! {"_id": target},
                    doc! {"$set": {"score": (next(&mut rng) % 100) as i32}, "$inc": {"counters.views": 1}},
                )
                .await?;
                counts.updates += 1;
            }
            16..=17 if next_id > 10 => {
                let target = base + (next(&mut rng) % next_id as u64) as i64;
                coll.delete_one(doc! {"_id": target}).await?;
                counts.deletes += 1;
            }
            _ => {
                coll.insert_one(document(id, &mut rng)).await?;
                next_id += 1;
                counts.inserts += 1;
            }
        }
        n += 1;
        if let Some(iv) = interval {
            let due = started + iv * n as u32;
            tokio::time::sleep_until(due.into()).await;
        }
    }
    Ok(counts)
}
