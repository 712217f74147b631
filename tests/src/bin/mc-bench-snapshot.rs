//! `mc-bench-snapshot`: base-snapshot throughput (issue 4). Loads N documents of ~1 KiB into a
//! fresh database, snapshots it with the agent's snapshot code into a local-directory
//! repository (compressed and encrypted, as in production), and prints docs/s and MB/s.
//!
//!   cargo run --release -p mc-tests --bin mc-bench-snapshot -- --docs 200000
//!
//! The reference is mongodump 100.8.0 on this machine: 167–294 k docs/s for 200 k × 1 KB
//! documents, without compression or encryption. mongodump itself cannot be installed here, so
//! the ratio printed is against that recorded range, not a same-run baseline.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use mc_agent::capture::oplog::OplogSource;
use mc_agent::snapshot::{take, SnapshotSettings};
use mc_core::catalog::Repository;
use mc_core::crypto::{Keyring, SecretKey};
use mc_core::format::WriterInfo;
use mc_core::storage::local::LocalDir;
use mongodb::bson::{doc, Document};

#[derive(Debug, Parser)]
struct Args {
    /// MongoDB replica set URI.
    #[arg(long, env = "MC_TEST_MONGODB_URI")]
    uri: String,
    /// Documents to load.
    #[arg(long, default_value_t = 200_000)]
    docs: u32,
    /// Collections the documents are spread over (snapshots copy collections in parallel).
    #[arg(long, default_value_t = 4)]
    collections: u32,
    /// Collections copied at once.
    #[arg(long, default_value_t = 4)]
    parallelism: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = mongodb::Client::with_uri_str(&args.uri)
        .await
        .context("connect")?;
    let db_name = format!("bench_snapshot_{}", std::process::id());
    let db = client.database(&db_name);
    // Realistic compressibility: words from a vocabulary in pseudo-random order, ~1 KiB a doc.
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
        "notes",
    ];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut text = move || {
        let mut t = String::with_capacity(1000);
        while t.len() < 940 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            t.push_str(WORDS[(rng % WORDS.len() as u64) as usize]);
            t.push(' ');
        }
        t
    };
    let t_load = Instant::now();
    for c in 0..args.collections {
        let coll = db.collection::<Document>(&format!("c{c}"));
        let per = args.docs / args.collections;
        let mut batch = Vec::with_capacity(1000);
        for i in 0..per {
            batch.push(doc! {"_id": i as i64, "n": i as i64, "text": text()});
            if batch.len() == 1000 {
                coll.insert_many(std::mem::take(&mut batch)).await?;
            }
        }
        if !batch.is_empty() {
            coll.insert_many(batch).await?;
        }
    }
    let load_s = t_load.elapsed().as_secs_f64();

    let dir = tempfile::tempdir()?;
    let repo = Repository::new(
        Arc::new(LocalDir::new(dir.path().join("repo"))?),
        Keyring::new(vec![SecretKey::generate()?], "bench")?,
    );
    repo.init().await?;
    let source = OplogSource::connect(&args.uri).await?;
    let settings = SnapshotSettings {
        source: "bench".into(),
        parallelism: args.parallelism,
        max_segment_bytes: 16 << 20,
        zstd_level: 3,
        writer: WriterInfo {
            id: "bench".into(),
            fence: 0,
        },
        reason: "on-demand".into(),
        databases: Some(vec![db_name.clone()]),
        users_and_roles: false,
    };
    let t = Instant::now();
    let manifest = take(&repo, &source, &settings).await?;
    let secs = t.elapsed().as_secs_f64();
    db.drop().await?;

    let docs = manifest.documents() as f64;
    let mb = manifest.bytes() as f64 / 1e6;
    let stored: u64 = std::fs::read_dir(dir.path().join("repo"))
        .map(|_| dir_size(&dir.path().join("repo")))
        .unwrap_or(0);
    println!(
        "snapshot of {} documents in {} collections (parallelism {})",
        manifest.documents(),
        args.collections,
        args.parallelism
    );
    println!("  load (insert_many, not measured against anything): {load_s:.1} s");
    println!(
        "  snapshot: {secs:.2} s  {:.0} docs/s  {:.1} MB/s raw BSON",
        docs / secs,
        mb / secs
    );
    println!(
        "  stored: {:.1} MB (compressed + encrypted) for {mb:.1} MB of BSON",
        stored as f64 / 1e6
    );
    println!(
        "  vs mongodump reference 167–294 k docs/s (uncompressed, unencrypted): {:.2}× – {:.2}×",
        docs / secs / 294_000.0,
        docs / secs / 167_000.0
    );
    Ok(())
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
