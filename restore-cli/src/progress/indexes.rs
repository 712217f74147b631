//! Index builds' progress as the server reports it: while `createIndexes` runs, MongoDB's build
//! thread shows in `$currentOp` with `progress: {done, total}` and a `msg` naming its stage
//! (`Index Build: scanning collection`, then `inserting keys from external sorter into index`,
//! then `draining writes received during build`). Polled once a second on another connection of
//! the pool, it becomes the running step of the indexes' [`Meter`], while the restore counts the
//! indexes it has built.
//!
//! The poll is best effort: a user without the `inprog` privilege, or a server that does not
//! report, leaves only the count of indexes built, and the display says no more than that.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Client;

use super::{Meter, Step, Ticker};

/// How often the server is asked.
const POLL: Duration = Duration::from_secs(1);

/// Polls `$currentOp` for the index builds of `namespaces` and makes the oldest one `meter`'s
/// running step, until the returned ticker is dropped.
pub fn watch(target: Client, namespaces: Vec<String>, meter: Arc<Meter>) -> Ticker {
    watch_every(POLL, target, namespaces, meter)
}

/// [`watch`], asking every `poll` (a test watches a build of a second or two more closely).
pub fn watch_every(
    poll: Duration,
    target: Client,
    namespaces: Vec<String>,
    meter: Arc<Meter>,
) -> Ticker {
    Ticker(tokio::spawn(watch_builds(poll, target, namespaces, meter)))
}

/// The namespaces the server reports a collection's index builds under: its own, and for a
/// time-series collection its buckets'.
pub fn build_namespaces(ns: &str) -> Vec<String> {
    match ns.split_once('.') {
        Some((db, coll)) if !coll.starts_with("system.buckets.") => {
            vec![ns.to_owned(), format!("{db}.system.buckets.{coll}")]
        }
        _ => vec![ns.to_owned()],
    }
}

async fn watch_builds(poll: Duration, target: Client, namespaces: Vec<String>, meter: Arc<Meter>) {
    let mut told = false;
    loop {
        tokio::time::sleep(poll).await;
        match builds(&target, &namespaces).await {
            Ok(step) => meter.set_step(step),
            Err(e) if !told => {
                told = true;
                tracing::debug!(error = %e, "index build progress is not readable from $currentOp; counting built indexes only");
            }
            Err(_) => {}
        }
    }
}

/// The oldest running build on `namespaces`, as a step (`None` when none runs): what it builds,
/// its stage and position, and how many more run beside it.
async fn builds(
    target: &Client,
    namespaces: &[String],
) -> Result<Option<Step>, mongodb::error::Error> {
    let pipeline = vec![
        doc! {"$currentOp": {"allUsers": true, "idleConnections": false}},
        doc! {"$match": {
            "progress": {"$exists": true},
            "command.createIndexes": {"$exists": true},
            "ns": {"$in": namespaces},
        }},
        doc! {"$sort": {"microsecs_running": -1}},
        doc! {"$project": {"ns": 1, "msg": 1, "progress": 1, "command.indexes.name": 1}},
    ];
    let ops: Vec<Document> = target
        .database("admin")
        .aggregate(pipeline)
        .await?
        .try_collect()
        .await?;
    let Some(op) = ops.first() else {
        return Ok(None);
    };
    let names: Vec<&str> = op
        .get_document("command")
        .and_then(|c| c.get_array("indexes"))
        .map(|a| {
            a.iter()
                .filter_map(|i| i.as_document()?.get_str("name").ok())
                .collect()
        })
        .unwrap_or_default();
    let mut what = format!("{} ({})", op.get_str("ns").unwrap_or("?"), names.join(", "));
    if ops.len() > 1 {
        what.push_str(&format!(" and {} more build(s)", ops.len() - 1));
    }
    let progress = op.get_document("progress").ok();
    Ok(Some(Step {
        what,
        stage: op.get_str("msg").ok().map(stage_of),
        done: progress.map_or(0, |p| number(p, "done")),
        total: progress.map(|p| number(p, "total")),
    }))
}

fn number(d: &Document, key: &str) -> u64 {
    match d.get(key) {
        Some(mongodb::bson::Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
        Some(mongodb::bson::Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
        Some(mongodb::bson::Bson::Double(n)) if *n >= 0.0 => *n as u64,
        _ => 0,
    }
}

/// The stage in a build's `msg`: `Index Build: scanning collection Index Build: scanning
/// collection: 1234/2000000 0%` → `scanning collection`.
pub fn stage_of(msg: &str) -> String {
    let rest = msg.strip_prefix("Index Build: ").unwrap_or(msg);
    let rest = rest.split(" Index Build").next().unwrap_or(rest);
    rest.split(':').next().unwrap_or(rest).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::stage_of;

    #[test]
    fn stages_from_the_servers_messages() {
        assert_eq!(
            stage_of("Index Build: scanning collection Index Build: scanning collection: 1234/2000000 0%"),
            "scanning collection"
        );
        assert_eq!(
            stage_of("Index Build: inserting keys from external sorter into index Index Build: inserting keys from external sorter into index: 10/20 50%"),
            "inserting keys from external sorter into index"
        );
        assert_eq!(
            stage_of("Index Build: draining writes received during build"),
            "draining writes received during build"
        );
        assert_eq!(stage_of("something else: 1/2"), "something else");
    }
}
