//! Why verify-data stops without a report ([`VerifyDataError`], exit 1), and how a read of one
//! namespace fails: not verifiable (the source has no snapshot of it at T) or fatal.

use mongodb::error::ErrorKind;

use crate::target::TargetError;

/// Why verify-data could not produce a report (exit 1). A mismatch is not an error: it is in
/// the [`DataReport`].
#[derive(Debug, thiserror::Error)]
pub enum VerifyDataError {
    #[error("cannot reach the source MongoDB ({uri}) given by --source-uri: {}; check the URI, that the server runs, and credentials", crate::errors::describe(.error))]
    SourceUnreachable {
        uri: String,
        error: mongodb::error::Error,
    },
    #[error("cannot reach the target MongoDB ({uri}) given by --target: {}; check the URI, that the server runs, and credentials", crate::errors::describe(.error))]
    TargetUnreachable {
        uri: String,
        error: mongodb::error::Error,
    },
    #[error(transparent)]
    Connect(TargetError),
    #[error("{what} on the {side} failed: {}", crate::errors::describe_on(.side, .error))]
    Command {
        side: &'static str,
        what: String,
        error: mongodb::error::Error,
    },
    #[error("cannot verify at {at}: {why}")]
    Point { at: String, why: String },
    #[error("the source no longer keeps a snapshot of {at} (SnapshotTooOld): it keeps history for minSnapshotHistoryWindowInSeconds (300 s by default). Run verify-data within that window after T, or raise the window on the source (setParameter minSnapshotHistoryWindowInSeconds) before the next restore")]
    SnapshotTooOld { at: String },
    #[error("the source's oplog now starts at {oldest}, after {at}: the catalog changes since T cannot all be read, so nothing could be proven. Verify a more recent point")]
    OplogTooShort { at: String, oldest: String },
    #[error("source oplog entry {ts}: {detail}")]
    BadEntry { ts: String, detail: String },
}

/// Why the documents of one namespace could not be compared.
pub(super) enum ReadFailure {
    /// The source cannot serve this collection at T: not verifiable.
    Unavailable(String),
    Fatal(VerifyDataError),
}

/// The server's error code, when the error is a command's.
pub(super) fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}
