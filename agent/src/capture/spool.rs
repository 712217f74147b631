//! The spool directory (`repository.spool_dir`): segments above `spool_over` bytes of records
//! are sealed into a file there before upload, so memory stays bounded however large they are.
//!
//! A full disk stops sealing, never correctness: the batch stays in memory (its share of the
//! byte budget held, so capture soon stops reading the oplog, which keeps the rest), the
//! durable point advances only when a segment is stored, and sealing is retried with backoff
//! until space returns. [`SpoolFull`] is the error that says so, naming the directory and what
//! is free.

use std::path::{Path, PathBuf};

use mc_core::catalog::RepoError;
use mc_core::storage::disk;

/// Sealing into the spool failed because its file system is full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "spool directory {} is full: {} free; free space or point spool at a larger volume (policy field repository.spool_dir)",
    dir.display(),
    free.map_or_else(|| "unknown bytes".to_owned(), |b| format!("{b} bytes"))
)]
pub struct SpoolFull {
    pub dir: PathBuf,
    /// Bytes free when the error was seen (`None`: the file system could not be asked).
    pub free: Option<u64>,
}

impl SpoolFull {
    /// `Some` when `error`, from sealing into `dir`, says the disk is full.
    pub fn of(dir: &Path, error: &RepoError) -> Option<Self> {
        disk::full_in(error)?;
        Some(Self {
            dir: dir.to_owned(),
            free: disk::free_bytes(dir).ok(),
        })
    }
}
