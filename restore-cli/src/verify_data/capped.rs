//! `verify-data` for capped collections, which MongoDB will not read at a past cluster time
//! ("Reading from capped collections with readConcern snapshot is not supported").
//!
//! The source's state at T is rebuilt from what it holds now and what its oplog recorded since
//! T. MongoDB 6.0 records every removal from a capped collection, evictions included, as a
//! delete of its `_id`, and capped collections take no writes inside transactions, so the
//! entries of the namespace after T say exactly which documents came and went:
//!
//! - the documents at T, in natural order, are those deleted after T that were inserted
//!   before it (oldest first: the order they were deleted in), followed by today's documents
//!   not inserted after T;
//! - a document still there and not updated since T has its content at T; so has one deleted
//!   since whose insert the oplog still holds with no update after it (its `o` is the document);
//!   the content of any other is not known, and only its `_id` and position are compared.
//!
//! The target must hold the same `_id`s in the same natural order (a mismatch otherwise), and
//! the same bytes wherever the content at T is known. What is not compared is said, never
//! passed off as checked.

use std::collections::HashSet;

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, RawDocumentBuf, Timestamp};
use mongodb::Client;
use sha2::{Digest, Sha256};

/// What the comparison found.
pub(crate) struct CappedCheck {
    pub source_count: u64,
    pub target_count: u64,
    /// The first difference: `_id` (relaxed JSON) and what differs.
    pub first_difference: Option<(String, String)>,
    /// SHA-256 of the target's documents in natural order.
    pub target_sha256: String,
    /// SHA-256 of the source's documents at T, when every one's content is known.
    pub source_sha256: Option<String>,
    /// Documents whose content at T is unknown (deleted or updated since): compared by `_id`
    /// and position only.
    pub content_unknown: u64,
}

/// A failed read, with the side and what was read.
pub(crate) struct ReadError {
    pub side: &'static str,
    pub what: String,
    pub source: mongodb::error::Error,
}

/// One document at T: its `_id` and, when known, its bytes.
struct AtT {
    id: Bson,
    bytes: Option<Vec<u8>>,
}

async fn natural_order(
    client: &Client,
    ns: &str,
    side: &'static str,
) -> Result<Vec<RawDocumentBuf>, ReadError> {
    let (db, coll) = ns.split_once('.').unwrap_or((ns, ""));
    let read = async {
        client
            .database(db)
            .collection::<RawDocumentBuf>(coll)
            .find(doc! {})
            .sort(doc! {"$natural": 1})
            .await?
            .try_collect::<Vec<_>>()
            .await
    };
    read.await.map_err(|source| ReadError {
        side,
        what: format!("reading {ns} in natural order"),
        source,
    })
}

fn id_of(d: &RawDocumentBuf) -> Bson {
    d.get("_id")
        .ok()
        .flatten()
        .and_then(|v| Bson::try_from(v).ok())
        .unwrap_or(Bson::Null)
}

fn show(id: &Bson) -> String {
    id.clone().into_relaxed_extjson().to_string()
}

/// Compares capped collection `sns` of the source at `at` with `tns` on the target.
pub(crate) async fn compare(
    source: &Client,
    target: &Client,
    sns: &str,
    tns: &str,
    at: Timestamp,
) -> Result<CappedCheck, ReadError> {
    let now = natural_order(source, sns, "source").await?;
    let entries: Vec<mongodb::bson::Document> = oplog_entries(
        source,
        doc! {"ts": {"$gt": at}, "ns": sns, "op": {"$in": ["i", "u", "d"]}},
        Some(doc! {"op": 1, "o._id": 1, "o2._id": 1}),
        || format!("reading the oplog of {sns} after T"),
    )
    .await?;
    let mut inserted_after: HashSet<String> = HashSet::new();
    let mut updated_after: HashSet<String> = HashSet::new();
    let mut deleted_after: Vec<Bson> = Vec::new();
    for e in &entries {
        let key = |d: &str| e.get_document(d).ok().and_then(|d| d.get("_id")).map(show);
        match e.get_str("op").unwrap_or_default() {
            "i" => {
                inserted_after.extend(key("o"));
            }
            "u" => {
                updated_after.extend(key("o2"));
            }
            "d" => {
                if let Some(id) = e.get_document("o").ok().and_then(|d| d.get("_id")) {
                    deleted_after.push(id.clone());
                }
            }
            _ => {}
        }
    }
    // The documents at T: deleted since (but there at T), then today's not inserted since.
    let mut expected: Vec<AtT> = deleted_after
        .into_iter()
        .filter(|id| !inserted_after.contains(&show(id)))
        .map(|id| AtT { id, bytes: None })
        .collect();
    for d in &now {
        let id = id_of(d);
        let key = show(&id);
        if inserted_after.contains(&key) {
            continue;
        }
        let known = !updated_after.contains(&key);
        expected.push(AtT {
            id,
            bytes: known.then(|| d.as_bytes().to_vec()),
        });
    }

    recover_deleted_contents(source, sns, at, &mut expected).await?;

    let restored = natural_order(target, tns, "target").await?;
    let mut th = Sha256::new();
    for d in &restored {
        th.update(d.as_bytes());
    }
    let content_unknown = expected.iter().filter(|e| e.bytes.is_none()).count() as u64;
    let source_sha256 = (content_unknown == 0).then(|| {
        let mut sh = Sha256::new();
        for e in &expected {
            sh.update(e.bytes.as_deref().unwrap_or_default());
        }
        hex::encode(sh.finalize())
    });
    let mut first_difference = None;
    for i in 0..expected.len().max(restored.len()) {
        let what = match (expected.get(i), restored.get(i)) {
            (Some(e), Some(r)) if e.id != id_of(r) => Some((
                show(&e.id),
                format!(
                    "document #{i} in natural order: the target has _id {} in its place",
                    show(&id_of(r))
                ),
            )),
            (Some(e), Some(r)) if e.bytes.as_deref().is_some_and(|b| b != r.as_bytes()) => {
                Some((show(&e.id), format!("document #{i} differs")))
            }
            (Some(e), None) => Some((
                show(&e.id),
                format!("document #{i} in natural order is missing on the target"),
            )),
            (None, Some(r)) => Some((
                show(&id_of(r)),
                format!("document #{i} in natural order is only on the target"),
            )),
            _ => None,
        };
        if what.is_some() {
            first_difference = what;
            break;
        }
    }
    Ok(CappedCheck {
        source_count: expected.len() as u64,
        target_count: restored.len() as u64,
        first_difference,
        target_sha256: hex::encode(th.finalize()),
        source_sha256,
        content_unknown,
    })
}

/// Fills in the content at T of documents deleted since T, from their inserts in the oplog,
/// where no update of the document follows the insert.
async fn recover_deleted_contents(
    source: &Client,
    sns: &str,
    at: Timestamp,
    expected: &mut [AtT],
) -> Result<(), ReadError> {
    let unknown: Vec<Bson> = expected
        .iter()
        .filter(|e| e.bytes.is_none())
        .map(|e| e.id.clone())
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let filter = doc! {
        "ts": {"$lte": at},
        "ns": sns,
        "$or": [
            {"op": "i", "o._id": {"$in": unknown.clone()}},
            {"op": "u", "o2._id": {"$in": unknown}},
        ],
    };
    let entries: Vec<RawDocumentBuf> = oplog_entries(source, filter, None, || {
        format!("reading the oplog's inserts of {sns}")
    })
    .await?;
    let mut content: std::collections::HashMap<String, Option<Vec<u8>>> = Default::default();
    for e in &entries {
        let op = e.get_str("op").unwrap_or_default();
        let doc = if op == "u" {
            e.get_document("o2").ok()
        } else {
            e.get_document("o").ok()
        };
        let Some(id) = doc
            .and_then(|d| d.get("_id").ok().flatten())
            .and_then(|id| Bson::try_from(id).ok())
        else {
            continue;
        };
        let bytes = match op {
            "i" => e.get_document("o").ok().map(|o| o.as_bytes().to_vec()),
            // Updated after its insert: the content at T is not simply the insert's.
            _ => None,
        };
        content.insert(show(&id), bytes);
    }
    for e in expected.iter_mut().filter(|e| e.bytes.is_none()) {
        if let Some(Some(bytes)) = content.get(&show(&e.id)) {
            e.bytes = Some(bytes.clone());
        }
    }
    Ok(())
}

/// The source's oplog entries matching `filter`, in oplog order.
async fn oplog_entries<T>(
    source: &Client,
    filter: mongodb::bson::Document,
    projection: Option<mongodb::bson::Document>,
    what: impl FnOnce() -> String,
) -> Result<Vec<T>, ReadError>
where
    T: serde::de::DeserializeOwned + Send + Sync,
{
    let read = async {
        source
            .database("local")
            .collection::<T>("oplog.rs")
            .find(filter)
            .sort(doc! {"$natural": 1})
            .projection(projection.unwrap_or_default())
            .await?
            .try_collect()
            .await
    };
    read.await.map_err(|source| ReadError {
        side: "source",
        what: what(),
        source,
    })
}
