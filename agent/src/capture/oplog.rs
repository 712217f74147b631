//! The oplog source: reads `local.oplog.rs` of a replica set with a tailable-await cursor,
//! entries kept as raw BSON, a reply ahead of the capture loop ([`ReadAhead`]), and asks for
//! the majority commit point.
//!
//! Capture reads from one member at a time, through a direct connection to the current primary
//! ([`OplogSource::primary_node`]), and asks *that same member* for its commit point. A member
//! only advances its commit point along its own history, so entries of a deposed primary that
//! the majority never had stay above its commit point until they are rolled back; asking the
//! set's new primary instead would release them, because bare timestamps from two histories
//! compare as if they were one.

use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use mc_core::format::OplogTs;
use mongodb::bson::{doc, RawDocument, RawDocumentBuf, Timestamp};
use mongodb::options::CursorType;
use mongodb::raw_batch_cursor::RawBatchCursor;
use mongodb::Client;
use tokio::sync::mpsc;

use super::batcher::OplogEntry;
use super::CaptureError;

/// How long the server holds a tailable-await `getMore` open when there is nothing new. Short,
/// so the capture loop notices shutdown and seal deadlines promptly.
const AWAIT: Duration = Duration::from_millis(250);

/// Entries per cursor batch. The server's default fills replies up to 16 MiB, which would then
/// be held twice (the driver's reply and its copy in [`OplogCursor::next_reply`]), twice over
/// with the read-ahead; a few thousand entries (under 1 MiB of typical oplog) keep that small at
/// the cost of more `getMore` round trips.
const BATCH_SIZE: u32 = 2000;

pub fn to_ts(t: Timestamp) -> OplogTs {
    OplogTs::new(t.time, t.increment)
}

pub fn to_bson_ts(t: OplogTs) -> Timestamp {
    Timestamp {
        time: t.t,
        increment: t.i,
    }
}

/// A connection to the replica set whose oplog is captured.
#[derive(Debug, Clone)]
pub struct OplogSource {
    client: Client,
    /// The parsed URI, to open direct connections to single members with the same credentials
    /// and TLS settings.
    options: mongodb::options::ClientOptions,
}

/// What one member says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeState {
    /// This member's majority commit point.
    pub majority: OplogTs,
    /// Whether it is the writable primary.
    pub primary: bool,
    /// The newest entry in its oplog (its last write).
    pub last_write: OplogTs,
}

impl OplogSource {
    /// Connects (lazily: the driver finds the primary on first use).
    pub async fn connect(uri: &str) -> Result<Self, CaptureError> {
        let mut options = mongodb::options::ClientOptions::parse(uri)
            .await
            .map_err(|e| CaptureError::Source(format!("invalid MongoDB URI: {e}")))?;
        options.app_name = Some("mc-agent".into());
        let client = Client::with_options(options.clone())
            .map_err(|e| CaptureError::Source(e.to_string()))?;
        Ok(Self { client, options })
    }

    /// A source reading only from the current primary, over a direct connection.
    pub async fn primary_node(&self) -> Result<OplogSource, CaptureError> {
        let hello = self
            .client
            .database("admin")
            .run_command(doc! {"hello": 1})
            .await
            .map_err(source_err)?;
        let primary = hello
            .get_str("primary")
            .map_err(|_| CaptureError::Source("the replica set has no primary right now".into()))?;
        let address = mongodb::options::ServerAddress::parse(primary)
            .map_err(|e| CaptureError::Source(format!("primary address {primary:?}: {e}")))?;
        let mut options = self.options.clone();
        options.hosts = vec![address];
        options.direct_connection = Some(true);
        options.repl_set_name = None;
        let client = Client::with_options(options.clone()).map_err(source_err)?;
        tracing::debug!(%primary, "reading the oplog from the primary");
        Ok(Self { client, options })
    }

    /// This member's commit point and role (for a source from [`OplogSource::primary_node`]).
    pub async fn node_state(&self) -> Result<NodeState, CaptureError> {
        let hello = self
            .client
            .database("admin")
            .run_command(doc! {"hello": 1})
            .await
            .map_err(source_err)?;
        let majority = majority_of(&hello)?;
        let last_write = hello
            .get_document("lastWrite")
            .and_then(|w| w.get_document("opTime"))
            .and_then(|o| o.get_timestamp("ts"))
            .map(to_ts)
            .unwrap_or(majority);
        Ok(NodeState {
            majority,
            last_write,
            primary: hello.get_bool("isWritablePrimary").unwrap_or(false),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn oplog(&self) -> mongodb::Collection<RawDocumentBuf> {
        self.client.database("local").collection("oplog.rs")
    }

    /// The replica set's majority commit point: no entry at or before it can be rolled back.
    pub async fn majority_point(&self) -> Result<OplogTs, CaptureError> {
        let hello = self
            .client
            .database("admin")
            .run_command(doc! {"hello": 1})
            .await
            .map_err(source_err)?;
        majority_of(&hello)
    }

    /// Whether the oplog still holds the entry with timestamp `ts`.
    pub async fn has_entry(&self, ts: OplogTs) -> Result<bool, CaptureError> {
        let found = self
            .oplog()
            .find_one(doc! {"ts": to_bson_ts(ts)})
            .projection(doc! {"ts": 1})
            .await
            .map_err(source_err)?;
        Ok(found.is_some())
    }

    /// The oldest entry still in the oplog.
    pub async fn oldest(&self) -> Result<Option<OplogTs>, CaptureError> {
        let first = self
            .oplog()
            .find_one(doc! {})
            .sort(doc! {"$natural": 1})
            .projection(doc! {"ts": 1})
            .await
            .map_err(source_err)?;
        first
            .map(|d| {
                d.get_timestamp("ts")
                    .map(to_ts)
                    .map_err(|e| CaptureError::Source(format!("oplog entry without ts: {e}")))
            })
            .transpose()
    }

    /// A tailable-await cursor over entries with `ts >= from`.
    pub async fn tail_from(&self, from: OplogTs) -> Result<OplogCursor, CaptureError> {
        let cursor = self
            .oplog()
            .find(doc! {"ts": {"$gte": to_bson_ts(from)}})
            .cursor_type(CursorType::TailableAwait)
            .max_await_time(AWAIT)
            .batch_size(BATCH_SIZE)
            .no_cursor_timeout(true)
            .batch()
            .await
            .map_err(source_err)?;
        Ok(OplogCursor { cursor })
    }
}

/// An open tail of the oplog, read a server reply at a time. A reply is copied once into a
/// shared buffer and its entries are slices of it: no allocation or copy per entry (a backlog
/// is millions of entries of a few hundred bytes), and no decoding beyond `ts`.
pub struct OplogCursor {
    cursor: RawBatchCursor,
}

impl OplogCursor {
    /// The entries of the next reply, in oplog order; empty when a tailable-await `getMore`
    /// found nothing new in time. `Ok(None)` when the cursor died (it must be reopened).
    pub async fn next_reply(&mut self) -> Result<Option<Vec<OplogEntry>>, CaptureError> {
        let Some(reply) = self.cursor.try_next().await.map_err(source_err)? else {
            return Ok(None);
        };
        let reply = Bytes::copy_from_slice(reply.as_raw_document().as_bytes());
        entries_of_reply(&reply).map(Some)
    }

    /// Reads this cursor ahead of its consumer, on a task of its own (see [`ReadAhead`]).
    pub fn read_ahead(self) -> ReadAhead {
        let (tx, rx) = mpsc::channel(READ_AHEAD_REPLIES);
        let task = tokio::spawn(read_chunks(self, tx));
        ReadAhead { rx, task }
    }
}

/// Replies read ahead and not yet taken, at most: one waits while the next is fetched.
const READ_AHEAD_REPLIES: usize = 1;

/// What the read-ahead task hands over.
pub enum Chunk {
    /// The entries of one reply, in oplog order (never empty).
    Entries(Vec<OplogEntry>),
    /// The cursor was closed by the server; it must be reopened.
    Closed,
    /// Reading failed; the cursor is gone.
    Failed(CaptureError),
}

/// An oplog cursor read on a task of its own, a reply ahead of the consumer, so the next
/// reply is being fetched (and the server is producing it) while the consumer batches the
/// last one. Without it each `getMore` waited for the consumer, and the consumer for the
/// server, in turn. Dropping it stops the task; entries read ahead are then simply read again
/// by the next cursor, which starts after the last entry handed on.
pub struct ReadAhead {
    rx: mpsc::Receiver<Chunk>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadAhead {
    /// The next chunk. Cancel-safe. After [`Chunk::Closed`] or [`Chunk::Failed`] nothing more
    /// comes (`Closed` again).
    pub async fn next(&mut self) -> Chunk {
        self.rx.recv().await.unwrap_or(Chunk::Closed)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The read-ahead task: hands on every non-empty reply as one chunk, then the cursor's end.
async fn read_chunks(mut cursor: OplogCursor, tx: mpsc::Sender<Chunk>) {
    let end = loop {
        match cursor.next_reply().await {
            Ok(Some(entries)) if entries.is_empty() => {}
            Ok(Some(entries)) => {
                if tx.send(Chunk::Entries(entries)).await.is_err() {
                    return;
                }
            }
            Ok(None) => break Chunk::Closed,
            Err(e) => break Chunk::Failed(e),
        }
    };
    let _ = tx.send(end).await;
}

fn majority_of(hello: &mongodb::bson::Document) -> Result<OplogTs, CaptureError> {
    let ts = hello
        .get_document("lastWrite")
        .and_then(|w| w.get_document("majorityOpTime"))
        .and_then(|o| o.get_timestamp("ts"))
        .map_err(|_| {
            CaptureError::Source(
                "the member reports no majority commit point yet (hello.lastWrite.majorityOpTime: a new primary has none until a write of its term commits; a standalone mongod never has one, capture needs a replica set member)"
                    .into(),
            )
        })?;
    Ok(to_ts(ts))
}

/// The entries of a `find`/`getMore` reply (`cursor.firstBatch` or `cursor.nextBatch`), each
/// a slice of `reply`.
fn entries_of_reply(reply: &Bytes) -> Result<Vec<OplogEntry>, CaptureError> {
    let bad = |what: &str| CaptureError::Source(format!("oplog reply: {what}"));
    let doc = RawDocument::from_bytes(reply).map_err(|e| bad(&e.to_string()))?;
    let cursor = doc
        .get_document("cursor")
        .map_err(|_| bad("no cursor document"))?;
    let batch = match cursor.get_array("nextBatch") {
        Ok(b) => b,
        Err(_) => cursor
            .get_array("firstBatch")
            .map_err(|_| bad("no nextBatch or firstBatch array"))?,
    };
    let mut entries = Vec::new();
    for value in batch {
        let raw = value
            .map_err(|e| bad(&e.to_string()))?
            .as_document()
            .ok_or_else(|| bad("a batch value that is not a document"))?;
        entries.push(OplogEntry {
            ts: entry_ts(raw)?,
            raw: reply.slice_ref(raw.as_bytes()),
        });
    }
    Ok(entries)
}

/// The `ts` of a raw oplog entry.
pub fn entry_ts(raw: &RawDocument) -> Result<OplogTs, CaptureError> {
    raw.get_timestamp("ts")
        .map(to_ts)
        .map_err(|e| CaptureError::Source(format!("oplog entry without a timestamp: {e}")))
}

fn source_err(e: mongodb::error::Error) -> CaptureError {
    CaptureError::Source(describe_source_error(&e))
}

/// The role the agent's MongoDB user needs on the source, for capture and snapshots alike
/// (docs/operations.md, "MongoDB users and roles").
pub const SOURCE_ROLE: &str = "backup";

/// A driver error of the source as one line. A missing privilege (server error 13,
/// Unauthorized: "not authorized on DB to execute command { CMD: … }") says which role to
/// grant instead of repeating the refused command (which can hold documents).
pub fn describe_source_error(e: &mongodb::error::Error) -> String {
    match unauthorized(e) {
        Some((db, command)) => format!(
            "server error 13 (Unauthorized): the MongoDB user lacks a privilege for {command} on {db}: grant it the built-in role `{SOURCE_ROLE}` (docs/operations.md, 'MongoDB users and roles')"
        ),
        None => e.to_string(),
    }
}

/// The database and command of an Unauthorized (13) server error, as the server names them.
pub fn unauthorized(e: &mongodb::error::Error) -> Option<(String, String)> {
    let mongodb::error::ErrorKind::Command(c) = e.kind.as_ref() else {
        return None;
    };
    if c.code != 13 {
        return None;
    }
    Some(mc_core::authz::unauthorized_parts(&c.message))
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, DateTime};

    use super::*;

    fn entry(t: u32, i: u32) -> mongodb::bson::Document {
        doc! {
            "op": "i",
            "ns": "app.things",
            "o": {"_id": i as i64, "pad": "x".repeat(i as usize)},
            "ts": Timestamp { time: t, increment: i },
            "t": 1i64,
            "wall": DateTime::from_millis(t as i64 * 1000 + 7),
        }
    }

    fn bson_bytes(d: &mongodb::bson::Document) -> Vec<u8> {
        let mut out = Vec::new();
        d.to_writer(&mut out).unwrap();
        out
    }

    fn reply(batch_field: &str, values: Vec<mongodb::bson::Bson>) -> Bytes {
        let reply =
            doc! {"cursor": {batch_field: values, "id": 7i64, "ns": "local.oplog.rs"}, "ok": 1.0};
        Bytes::from(bson_bytes(&reply))
    }

    #[test]
    fn entries_are_the_exact_bytes_of_the_reply_with_their_timestamps() {
        let docs = [entry(10, 1), entry(10, 2), entry(11, 1)];
        for field in ["firstBatch", "nextBatch"] {
            let bytes = reply(field, docs.iter().cloned().map(Into::into).collect());
            let entries = entries_of_reply(&bytes).unwrap();
            assert_eq!(entries.len(), 3);
            for (e, d) in entries.iter().zip(&docs) {
                assert_eq!(e.raw.as_ref(), bson_bytes(d).as_slice());
                assert_eq!(e.ts, to_ts(d.get_timestamp("ts").unwrap()));
                assert_eq!(
                    e.wall_ms(),
                    d.get_datetime("wall").unwrap().timestamp_millis()
                );
            }
        }
        assert!(entries_of_reply(&reply("nextBatch", vec![]))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_replies_are_errors_that_say_what_is_wrong() {
        let err = |bytes: &Bytes| entries_of_reply(bytes).unwrap_err().to_string();
        let no_cursor = Bytes::from(bson_bytes(&doc! {"ok": 1.0}));
        assert!(
            err(&no_cursor).contains("no cursor document"),
            "{}",
            err(&no_cursor)
        );
        let no_batch = Bytes::from(bson_bytes(&doc! {"cursor": {"id": 0i64}}));
        assert!(err(&no_batch).contains("nextBatch or firstBatch"));
        let not_a_doc = reply("nextBatch", vec![5.into()]);
        assert!(err(&not_a_doc).contains("not a document"));
        let no_ts = reply("nextBatch", vec![doc! {"op": "n"}.into()]);
        assert!(err(&no_ts).contains("without a timestamp"));
        let truncated = Bytes::from(reply("nextBatch", vec![entry(1, 1).into()])[..20].to_vec());
        assert!(entries_of_reply(&truncated).is_err());
        // An entry without `wall` reads as 0 rather than failing: it only feeds a metric.
        let no_wall = reply(
            "nextBatch",
            vec![doc! {"op": "n", "ts": Timestamp { time: 1, increment: 1 }}.into()],
        );
        assert_eq!(entries_of_reply(&no_wall).unwrap()[0].wall_ms(), 0);
    }
}
