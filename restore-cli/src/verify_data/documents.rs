//! Comparing the documents of one namespace: both sides read in `_id` order in step (the source
//! at T in a snapshot session), counted and hashed (SHA-256 of every document's raw BSON), and
//! the first `_id` where they differ.

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, RawDocument, RawDocumentBuf};
use mongodb::{Client, ClientSession};
use sha2::{Digest, Sha256};

use super::error::command_code;
use super::error::ReadFailure::{self, Fatal, Unavailable};
use super::{show_ts, DocumentsCheck, FirstDifference, Status, VerifyDataError};
use crate::errors::{SNAPSHOT_TOO_OLD, SNAPSHOT_UNAVAILABLE};

/// Reads both sides in `_id` order in step: counts, hashes and the first difference.
pub(super) async fn compare_documents(
    source: &Client,
    session: &mut ClientSession,
    target: &Client,
    sns: &str,
    tns: &str,
) -> Result<DocumentsCheck, ReadFailure> {
    let at = session
        .snapshot_time()
        .map(show_ts)
        .unwrap_or_else(|| "T".into());
    let src_err = |source: mongodb::error::Error| {
        match command_code(&source) {
        Some(SNAPSHOT_TOO_OLD) => Fatal(VerifyDataError::SnapshotTooOld { at: at.clone() }),
        Some(SNAPSHOT_UNAVAILABLE) => Unavailable(format!(
            "the source has no snapshot of {sns} at T (SnapshotUnavailable: created or replaced after T)"
        )),
        _ => Fatal(VerifyDataError::Command {
            side: "source",
            what: format!("reading {sns} at {at}"),
            error: source,
        }),
    }
    };
    let tgt_err = |source| {
        Fatal(VerifyDataError::Command {
            side: "target",
            what: format!("reading {tns}"),
            error: source,
        })
    };
    let (sdb, scoll) = sns.split_once('.').unwrap_or((sns, ""));
    let (tdb, tcoll) = tns.split_once('.').unwrap_or((tns, ""));
    let mut src = source
        .database(sdb)
        .collection::<RawDocumentBuf>(scoll)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .session(&mut *session)
        .await
        .map_err(src_err)?;
    let mut tgt = target
        .database(tdb)
        .collection::<RawDocumentBuf>(tcoll)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .map_err(tgt_err)?;
    let (mut sh, mut th) = (Sha256::new(), Sha256::new());
    let (mut sn, mut tn) = (0u64, 0u64);
    let (mut s_done, mut t_done) = (false, false);
    let mut first: Option<FirstDifference> = None;
    loop {
        let (s, t) = tokio::join!(
            async {
                if s_done {
                    Ok(false)
                } else {
                    src.advance(&mut *session).await
                }
            },
            async {
                if t_done {
                    Ok(false)
                } else {
                    tgt.advance().await
                }
            }
        );
        let s = s.map_err(src_err)?;
        let t = t.map_err(tgt_err)?;
        s_done = !s;
        t_done = !t;
        if !s && !t {
            break;
        }
        if s {
            sh.update(src.current().as_bytes());
            sn += 1;
        }
        if t {
            th.update(tgt.current().as_bytes());
            tn += 1;
        }
        if first.is_none() {
            first = match (s, t) {
                (true, true) if src.current().as_bytes() != tgt.current().as_bytes() => {
                    Some(first_difference(target, tdb, src.current(), tgt.current()).await)
                }
                (true, false) => Some(FirstDifference {
                    id: id_text(src.current()),
                    what: "missing on the target".into(),
                }),
                (false, true) => Some(FirstDifference {
                    id: id_text(tgt.current()),
                    what: "only on the target (not on the source at T)".into(),
                }),
                _ => None,
            };
        }
    }
    let (source_sha256, target_sha256) = (hex::encode(sh.finalize()), hex::encode(th.finalize()));
    let same = sn == tn && source_sha256 == target_sha256 && first.is_none();
    Ok(DocumentsCheck {
        status: if same {
            Status::Match
        } else {
            Status::Mismatch
        },
        source_count: sn,
        target_count: tn,
        source_sha256,
        target_sha256,
        first_difference: first,
    })
}

/// The first difference between two documents at the same position in `_id` order.
async fn first_difference(
    target: &Client,
    db: &str,
    s: &RawDocument,
    t: &RawDocument,
) -> FirstDifference {
    let (sid, tid) = (id_of(s), id_of(t));
    if sid == tid {
        return FirstDifference {
            id: show_bson(&sid),
            what: "differs".into(),
        };
    }
    // The smaller _id is the one the other side lacks; the server orders BSON values.
    let cmp = target
        .database(db)
        .aggregate(vec![
            doc! {"$documents": [{}]},
            doc! {"$project": {"_id": 0, "c": {"$cmp": [{"$literal": sid.clone()}, {"$literal": tid.clone()}]}}},
        ])
        .await;
    let order = match cmp {
        Ok(mut cursor) => cursor
            .try_next()
            .await
            .ok()
            .flatten()
            .and_then(|d| d.get("c").and_then(Bson::as_i32)),
        Err(_) => None,
    };
    match order {
        Some(c) if c < 0 => FirstDifference {
            id: show_bson(&sid),
            what: "missing on the target".into(),
        },
        Some(_) => FirstDifference {
            id: show_bson(&tid),
            what: "only on the target (not on the source at T)".into(),
        },
        None => FirstDifference {
            id: show_bson(&sid),
            what: format!(
                "missing on the target or out of order (the target has _id {} in its place)",
                show_bson(&tid)
            ),
        },
    }
}

fn id_of(d: &RawDocument) -> Bson {
    d.get("_id")
        .ok()
        .flatten()
        .and_then(|v| Bson::try_from(mongodb::bson::RawBson::from(v)).ok())
        .unwrap_or(Bson::Null)
}

fn id_text(d: &RawDocument) -> String {
    show_bson(&id_of(d))
}

fn show_bson(b: &Bson) -> String {
    b.clone().into_relaxed_extjson().to_string()
}
