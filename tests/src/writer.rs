//! The background writer of the tests that run `mc-agent` under a steady load (store and lease
//! outages, the agent process test): documents `{_id: n, pad}` inserted one after another into
//! one collection, optionally each followed by an update of an earlier one, until stopped.
//! [`SteadyWriter::acknowledged`] counts inserts the server acknowledged; [`SteadyWriter::stop`]
//! returns how many there were, so a test can check a restore holds all of them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use tokio::sync::watch;

/// How a [`SteadyWriter`] writes.
#[derive(Debug, Clone, Copy)]
pub struct Steady {
    /// The pause after each insert (and its update).
    pub pause: Duration,
    /// Bytes of padding per document.
    pub pad: usize,
    /// After inserting `n`, also `$inc` field `n` of document `n / 2` (an update per insert).
    pub update: bool,
}

/// One task writing into a collection until [`SteadyWriter::stop`].
pub struct SteadyWriter {
    stop: watch::Sender<bool>,
    acknowledged: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Result<u64, mongodb::error::Error>>,
}

impl SteadyWriter {
    /// Starts writing into `coll` (ids from 0: use a fresh collection).
    pub fn start(coll: mongodb::Collection<Document>, steady: Steady) -> Self {
        let (stop, stopped) = watch::channel(false);
        let acknowledged = Arc::new(AtomicU64::new(0));
        let count = acknowledged.clone();
        let pad = "w".repeat(steady.pad);
        let task = tokio::spawn(async move {
            let mut n = 0i64;
            while !*stopped.borrow() {
                coll.insert_one(doc! {"_id": n, "pad": &pad}).await?;
                if steady.update {
                    coll.update_one(doc! {"_id": n / 2}, doc! {"$inc": {"n": 1}})
                        .await?;
                }
                n += 1;
                count.store(n as u64, Relaxed);
                tokio::time::sleep(steady.pause).await;
            }
            Ok(n as u64)
        });
        Self {
            stop,
            acknowledged,
            task,
        }
    }

    /// Inserts acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Relaxed)
    }

    /// Stops after the write in progress; returns the inserts acknowledged. Panics if a write
    /// failed (the load is part of what the test checks).
    pub async fn stop(self) -> u64 {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => panic!("the steady writer's write failed: {e}"),
            Err(e) => panic!("the steady writer's task failed: {e}"),
        }
    }
}
