//! Connecting to both sides, and the cluster time T the source is read at (`--at` resolved
//! against the source's oplog and majority commit point).

use futures::TryStreamExt;
use mongodb::bson::{doc, RawDocumentBuf, Timestamp};
use mongodb::Client;

use super::{show_ts, VerifyDataError};
use crate::point::{Cut, RestorePoint};
use crate::target::{self, TargetError};
use mc_core::format::OplogTs;

/// Connects to the source (`--source-uri`), saying which side failed.
pub async fn connect_source(uri: &str) -> Result<Client, VerifyDataError> {
    target::connect(uri).await.map_err(|e| match e {
        TargetError::Unreachable { error: source, .. }
        | TargetError::Command { error: source, .. } => VerifyDataError::SourceUnreachable {
            uri: target::redact(uri),
            error: source,
        },
        other @ TargetError::NotEmpty { .. } => VerifyDataError::Connect(other),
    })
}

/// Connects to the target (`--target`), saying which side failed.
pub async fn connect_target(uri: &str) -> Result<Client, VerifyDataError> {
    target::connect(uri).await.map_err(|e| match e {
        TargetError::Unreachable { error: source, .. }
        | TargetError::Command { error: source, .. } => VerifyDataError::TargetUnreachable {
            uri: target::redact(uri),
            error: source,
        },
        other @ TargetError::NotEmpty { .. } => VerifyDataError::Connect(other),
    })
}

/// The cluster time at which the source is read for `point`:
/// - `ts:S:I`: that timestamp;
/// - an RFC 3339 time: the last oplog entry the restore's cut admits (the replay applies a
///   prefix of the oplog, so this is exactly the state a restore to that time produces);
/// - `latest`: the source's majority commit point now (meaningful only right after a restore
///   with nothing written to the source since).
pub async fn resolve_point(
    source: &Client,
    point: RestorePoint,
) -> Result<Timestamp, VerifyDataError> {
    let at = point.to_string();
    let committed = majority_point(source, &at).await?;
    let oplog = source
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs");
    let cmd = |what: &str| {
        let what = what.to_owned();
        move |source| VerifyDataError::Command {
            side: "source",
            what,
            error: source,
        }
    };
    let ts = match point {
        RestorePoint::Latest => committed,
        RestorePoint::Exact(ts) => {
            let ts = Timestamp {
                time: ts.t,
                increment: ts.i,
            };
            if ts > committed {
                return Err(VerifyDataError::Point {
                    at,
                    why: format!(
                        "it is after the source's majority commit point {}: that state is not committed yet",
                        show_ts(committed)
                    ),
                });
            }
            ts
        }
        RestorePoint::Time { .. } => {
            let cut = Cut::of(point, OplogTs::new(0, 0));
            let second = cut.bound.t;
            if committed.time <= second {
                return Err(VerifyDataError::Point {
                    at,
                    why: format!(
                        "the source's majority commit point {} has not passed T's second yet; wait a second and retry",
                        show_ts(committed)
                    ),
                });
            }
            let mut last = None;
            let mut cursor = oplog
                .find(doc! {"ts": {
                    "$gte": Timestamp { time: second, increment: 0 },
                    "$lt": Timestamp { time: second.saturating_add(1), increment: 0 },
                }})
                .projection(doc! {"ts": 1, "wall": 1})
                .sort(doc! {"$natural": 1})
                .await
                .map_err(cmd("reading the source's oplog around T"))?;
            while let Some(e) = cursor
                .try_next()
                .await
                .map_err(cmd("reading the source's oplog around T"))?
            {
                let head =
                    crate::replay::entry::head(&e).map_err(|err| VerifyDataError::BadEntry {
                        ts: err.ts,
                        detail: err.detail,
                    })?;
                if !cut.admits(head.ts, head.wall_ms) {
                    break;
                }
                last = Some(Timestamp {
                    time: head.ts.t,
                    increment: head.ts.i,
                });
            }
            match last {
                Some(ts) => ts,
                None => {
                    let before = oplog
                        .find_one(doc! {"ts": {"$lt": Timestamp { time: second, increment: 0 }}})
                        .projection(doc! {"ts": 1})
                        .sort(doc! {"$natural": -1})
                        .await
                        .map_err(cmd("reading the source's oplog before T"))?;
                    before
                        .and_then(|e| e.get_timestamp("ts").ok())
                        .ok_or_else(|| VerifyDataError::Point {
                            at: at.clone(),
                            why: "the source's oplog holds no entry at or before T".into(),
                        })?
                }
            }
        }
    };
    let oldest = oplog
        .find_one(doc! {})
        .projection(doc! {"ts": 1})
        .sort(doc! {"$natural": 1})
        .await
        .map_err(cmd("reading the source's oldest oplog entry"))?
        .and_then(|e| e.get_timestamp("ts").ok());
    match oldest {
        Some(oldest) if oldest <= ts => Ok(ts),
        Some(oldest) => Err(VerifyDataError::OplogTooShort {
            at: show_ts(ts),
            oldest: show_ts(oldest),
        }),
        None => Err(VerifyDataError::Point {
            at,
            why: "the source has no oplog (local.oplog.rs is empty or missing): verify-data needs a replica set member".into(),
        }),
    }
}

/// The source's majority commit point (`hello.lastWrite.majorityOpTime.ts`).
async fn majority_point(source: &Client, at: &str) -> Result<Timestamp, VerifyDataError> {
    let hello = source
        .database("admin")
        .run_command(doc! {"hello": 1})
        .await
        .map_err(|source| VerifyDataError::Command {
            side: "source",
            what: "hello".into(),
            error: source,
        })?;
    hello
        .get_document("lastWrite")
        .and_then(|w| w.get_document("majorityOpTime"))
        .and_then(|o| o.get_timestamp("ts"))
        .map_err(|_| VerifyDataError::Point {
            at: at.to_owned(),
            why: "the source reports no majority commit point: verify-data needs a replica set member as the source".into(),
        })
}
