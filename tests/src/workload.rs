//! The interview-platform workload shared by `mc-loadgen` and the capture benchmark: ~1 KiB
//! documents and, per 20 operations, 11 inserts, 6 updates, 2 deletes and one small transaction
//! (two inserts and an `$inc`), paced per writer, each write its own command or grouped by kind
//! ([`Pace::batch`]).

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

/// At least `len` bytes of words from the interview vocabulary in pseudo-random order: text that
/// compresses like real prose (about 5–6× with zstd 3).
pub fn text(len: usize, rng: &mut u64) -> String {
    let mut text = String::with_capacity(len + 16);
    while text.len() < len {
        text.push_str(WORDS[(next(rng) % WORDS.len() as u64) as usize]);
        text.push(' ');
    }
    text
}

/// One ~1 KiB interview document with id `id`.
pub fn document(id: i64, rng: &mut u64) -> Document {
    let text = text(700, rng);
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

/// How one writer paces and groups its writes.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Client writes per second (0: as fast as it can).
    pub rate: u64,
    /// Writes per round trip: 1 sends every write as its own command, as most application code
    /// does; above 1, a round's inserts go as one `insert`, its updates as one `update` and its
    /// deletes as one `delete` command (transactions stay their own). The oplog gets the same
    /// entries either way, one per document written; only the client's round trips, and
    /// mongod's cost per command, shrink.
    pub batch: u64,
}

/// One writer: `pace.rate` writes per second into `db.interviews` until `deadline`; ids are
/// unique across runs and writers.
pub async fn worker(
    client: mongodb::Client,
    db: String,
    w: u64,
    pace: Pace,
    deadline: Instant,
) -> anyhow::Result<Counts> {
    let database = client.database(&db);
    let coll = database.collection::<Document>("interviews");
    let mut counts = Counts::default();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (w + 1);
    // Ids unique across runs (the demo runs it again on the same database) and workers.
    let run = (unix_secs() & 0xF_FFFF) as i64;
    let base = (run << 40) | ((w as i64) << 32);
    let mut next_id = 0i64;
    let interval = (pace.rate > 0).then(|| Duration::from_secs_f64(1.0 / pace.rate as f64));
    let batch = pace.batch.max(1);
    let started = Instant::now();
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        let mut round = Round::default();
        for _ in 0..batch {
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
                10..=15 if next_id > 0 => {
                    let target = base + (next(&mut rng) % next_id as u64) as i64;
                    round.updates.push(doc! {
                        "q": {"_id": target},
                        "u": {"$set": {"score": (next(&mut rng) % 100) as i32}, "$inc": {"counters.views": 1}},
                    });
                    counts.updates += 1;
                }
                16..=17 if next_id > 10 => {
                    let target = base + (next(&mut rng) % next_id as u64) as i64;
                    round.deletes.push(doc! {"q": {"_id": target}, "limit": 1});
                    counts.deletes += 1;
                }
                _ => {
                    round.inserts.push(document(id, &mut rng));
                    next_id += 1;
                    counts.inserts += 1;
                }
            }
            n += 1;
            // One write per round trip: send it now, in the mix's order.
            if batch == 1 {
                round.send(&database, "interviews").await?;
            }
        }
        round.send(&database, "interviews").await?;
        if let Some(iv) = interval {
            let due = started + iv * n as u32;
            tokio::time::sleep_until(due.into()).await;
        }
    }
    Ok(counts)
}

/// The writes of one round not yet sent, by kind.
#[derive(Default)]
struct Round {
    inserts: Vec<Document>,
    /// `update` command statements (`{q, u}`).
    updates: Vec<Document>,
    /// `delete` command statements (`{q, limit}`).
    deletes: Vec<Document>,
}

impl Round {
    /// Sends what is pending, one command per kind (inserts first, so updates of this round
    /// can find them), and checks the replies for write errors.
    async fn send(&mut self, db: &mongodb::Database, coll: &str) -> anyhow::Result<()> {
        let inserts = std::mem::take(&mut self.inserts);
        let updates = std::mem::take(&mut self.updates);
        let deletes = std::mem::take(&mut self.deletes);
        if !inserts.is_empty() {
            db.collection::<Document>(coll).insert_many(inserts).await?;
        }
        if !updates.is_empty() {
            let reply = db
                .run_command(doc! {"update": coll, "updates": updates, "ordered": false})
                .await?;
            check_write_reply("update", &reply)?;
        }
        if !deletes.is_empty() {
            let reply = db
                .run_command(doc! {"delete": coll, "deletes": deletes, "ordered": false})
                .await?;
            check_write_reply("delete", &reply)?;
        }
        Ok(())
    }
}

/// `run_command` returns write errors inside an `ok: 1` reply: surface them.
fn check_write_reply(command: &str, reply: &Document) -> anyhow::Result<()> {
    if let Ok(errors) = reply.get_array("writeErrors") {
        anyhow::bail!(
            "{command}: {} write errors, first {:?}",
            errors.len(),
            errors.first()
        );
    }
    if let Ok(error) = reply.get_document("writeConcernError") {
        anyhow::bail!("{command}: write concern error {error}");
    }
    Ok(())
}
