//! The interview-platform workload shared by `mc-loadgen` and the capture benchmark: ~1 KiB
//! documents and, per 20 operations, 11 inserts, 6 updates, 2 deletes and one small transaction
//! (two inserts and an `$inc`), paced per writer.

use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};

/// Operations one or more writers made.
#[derive(Default, Debug, Clone, Copy)]
pub struct Counts {
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    pub transactions: u64,
}

impl Counts {
    /// Client writes (a transaction counts as one).
    pub fn total(&self) -> u64 {
        self.inserts + self.updates + self.deletes + self.transactions
    }

    /// Adds another writer's counts.
    pub fn add(&mut self, other: Counts) {
        self.inserts += other.inserts;
        self.updates += other.updates;
        self.deletes += other.deletes;
        self.transactions += other.transactions;
    }
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

/// One ~1 KiB interview document with id `id`.
pub fn document(id: i64, rng: &mut u64) -> Document {
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

/// xorshift64: cheap, deterministic per writer.
pub fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// One writer: `rate` operations per second (0: as fast as it can) into `db.interviews` until
/// `deadline`; ids are unique across runs and writers.
pub async fn worker(
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
